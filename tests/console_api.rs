//! `snap serve`: the console's JSON API against the built binary, on a real
//! repository (local directory, the S3 server of scripts/services.sh, and a
//! profile that dumps the test PostgreSQL), with a blocking HTTP client.
//! Every endpoint, and the refusals: no login, missing or wrong CSRF token,
//! a path outside the snapshot, a bad id, a conflicting job.

mod common;
use common::cli::Snap;
use common::services;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `snap serve` on a free loopback port; killed when dropped.
struct Console {
    child: Child,
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of a response.
struct Res {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Console {
    /// Starts `snap serve --listen 127.0.0.1:0 EXTRA…` for `s`'s repository
    /// and waits for its "snap console on URL" line.
    fn start(s: &Snap, extra: &[&str]) -> Console {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = s
            .cmd(&args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting snap serve");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    if let Some(u) = l.strip_prefix("snap console on ") {
                        break u.trim_end_matches('/').to_string();
                    }
                }
                Err(e) => panic!("snap serve did not start: {e}"),
            }
        };
        std::thread::spawn(move || for _ in rx {});
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        Console {
            child,
            base,
            agent,
            cookie: None,
            csrf: None,
        }
    }

    fn finish(&self, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Res {
        let mut r = r.expect("HTTP request");
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let mut body = Vec::new();
        r.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .expect("reading the body");
        Res {
            status,
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Res {
        let mut rq = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            rq = rq.header("Cookie", c);
        }
        self.finish(rq.call())
    }

    /// A POST with the console's CSRF token, or `csrf` when given.
    fn post_with(&self, path: &str, body: Vec<u8>, csrf: Option<&str>, ctype: &str) -> Res {
        let mut rq = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", ctype);
        if let Some(c) = &self.cookie {
            rq = rq.header("Cookie", c);
        }
        if let Some(t) = csrf.or(self.csrf.as_deref()) {
            rq = rq.header("X-CSRF-Token", t);
        }
        self.finish(rq.send(&body[..]))
    }

    fn post(&self, path: &str, v: Value) -> Res {
        self.post_with(path, v.to_string().into_bytes(), None, "application/json")
    }

    /// Reads the CSRF token from `/api/session`.
    fn session(&mut self) -> Value {
        let v = self.get("/api/session").json();
        self.csrf = v["csrf"].as_str().map(str::to_string);
        v
    }

    /// Waits until job `id` ended; returns it.
    fn wait_job(&self, id: u64) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let j = self.get(&format!("/api/jobs/{id}")).json();
            if j["state"] != "running" {
                return j;
            }
            assert!(Instant::now() < until, "job {id} still running: {j}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A data folder with `a.txt` and `sub/b.bin` (300 KiB); returns its path.
fn data(s: &Snap) -> (std::path::PathBuf, Vec<u8>) {
    let d = s.path("data");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), b"hello console\n").unwrap();
    let b = bytes(7, 300 * 1024);
    std::fs::write(d.join("sub/b.bin"), &b).unwrap();
    (d, b)
}

/// The path inside the snapshot of `file` (via `snap ls --json`).
fn snap_path(s: &Snap, snapshot: &str, suffix: &str) -> String {
    let ls: Value = serde_json::from_str(&s.ok(["--json", "ls", snapshot])).unwrap();
    ls.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .find(|p| p.ends_with(suffix))
        .unwrap_or_else(|| panic!("{suffix} not in {ls}"))
        .trim_start_matches('/')
        .to_string()
}

fn entries_of_tar(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(buf);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (p, v)
        })
        .collect()
}

/// Browse, download, tar, diff, description/tags, backup/restore/import
/// jobs with SSE, and the refusals, on one repository.
fn endpoints(s: &Snap) {
    s.init();
    let (d, b) = data(s);
    s.ok(["backup", "--host", "h1", "--tag", "t1", d.to_str().unwrap()]);
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.slow]\nrepository = \"main\"\npaths = [{:?}]\ncommand = [\"slow=sleep 2; echo slow\"]\nkeep-last = 5\n",
            s.repo,
            d.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut c = Console::start(s, &["--config", cfg.to_str().unwrap()]);

    // The page and its assets, built into the binary.
    let page = c.get("/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("snap console"));
    assert_eq!(c.get("/app.js").status, 200);
    assert_eq!(c.get("/style.css").status, 200);

    let sess = c.session();
    assert_eq!(sess["login_required"], false);
    assert_eq!(sess["csrf"].as_str().map(str::len), Some(64), "{sess}");

    // Snapshots with filters.
    let list = c.get("/api/snapshots").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let first = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["host"], "h1");
    assert!(list[0]["size"].as_u64().unwrap() >= b.len() as u64);
    assert!(list[0]["bytes_added"].as_u64().unwrap() > 0);
    assert_eq!(
        c.get("/api/snapshots?host=h1&tag=t1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get("/api/snapshots?host=nope")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        c.get("/api/snapshots?tag=nope")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        c.get(&format!("/api/snapshots/{first}")).json()["hostname"],
        "h1"
    );

    // Profiles with their last runs.
    let profs = c.get("/api/profiles").json();
    assert_eq!(profs[0]["name"], "slow", "{profs}");
    assert_eq!(profs[0]["keep_last"], 5);

    // Browse the tree down to sub/, then download b.bin and compare bytes.
    let bpath = snap_path(s, &first, "sub/b.bin");
    let sub = bpath.trim_end_matches("/b.bin");
    let root = c.get(&format!("/api/snapshots/{first}/tree")).json();
    assert!(!root["entries"].as_array().unwrap().is_empty(), "{root}");
    let t = c
        .get(&format!("/api/snapshots/{first}/tree?path={sub}"))
        .json();
    let names: Vec<_> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("b.bin")], "{t}");
    let f = c.get(&format!("/api/snapshots/{first}/file?path={bpath}"));
    assert_eq!(f.status, 200);
    assert!(f.body == b, "downloaded bytes differ");
    assert!(f.header("content-disposition").unwrap().contains("b.bin"));

    // A folder as tar.
    let tr = c.get(&format!("/api/snapshots/{first}/tar?path={sub}"));
    assert_eq!(tr.status, 200);
    let ents = entries_of_tar(&tr.body);
    assert!(
        ents.iter().any(|(p, v)| p.ends_with("b.bin") && *v == b),
        "tar entries: {:?}",
        ents.iter().map(|e| &e.0).collect::<Vec<_>>()
    );

    // Refusals: a path outside the snapshot, bad and unknown ids, not a file.
    for bad in ["../etc/passwd", "a/../../x", "./x"] {
        let r = c.get(&format!("/api/snapshots/{first}/file?path={bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("outside the snapshot"));
        assert_eq!(
            c.get(&format!("/api/snapshots/{first}/tree?path={bad}"))
                .status,
            400
        );
    }
    let r = c.get("/api/snapshots/xyz!/tree");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("bad snapshot id"));
    assert_eq!(c.get("/api/snapshots/00000000/tree").status, 404);
    assert_eq!(
        c.get(&format!("/api/snapshots/{first}/file?path={sub}"))
            .status,
        400
    );
    assert_eq!(
        c.get(&format!("/api/snapshots/{first}/file?path={sub}/nope"))
            .status,
        404
    );
    assert_eq!(c.get("/api/jobs/abc").status, 400);
    assert_eq!(c.get("/api/jobs/999").status, 404);

    // CSRF: missing and wrong tokens are refused, even on loopback.
    let meta = json!({"description": "before the upgrade", "tags": ["t1", "keep"]});
    let no = c.post_with(
        &format!("/api/snapshots/{first}/meta"),
        meta.to_string().into_bytes(),
        Some(""),
        "application/json",
    );
    assert_eq!(no.status, 403);
    let wrong = c.post_with(
        &format!("/api/snapshots/{first}/meta"),
        meta.to_string().into_bytes(),
        Some(&"0".repeat(64)),
        "application/json",
    );
    assert_eq!(wrong.status, 403);
    assert!(wrong.json()["error"].as_str().unwrap().contains("CSRF"));
    // Description and tags.
    let m = c.post(&format!("/api/snapshots/{first}/meta"), meta);
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    let first = m.json()["id"].as_str().unwrap().to_string();
    let list = c.get("/api/snapshots?tag=keep").json();
    assert_eq!(list[0]["description"], "before the upgrade", "{list}");
    assert_eq!(list[0]["id"], first.as_str());

    // A profile's backup as a job; a second writing job is refused while it runs.
    std::fs::write(d.join("a.txt"), b"hello again\n").unwrap();
    let j = c.post("/api/jobs/backup", json!({"profile": "slow"}));
    assert_eq!(j.status, 202, "{}", String::from_utf8_lossy(&j.body));
    let slow = j.json()["id"].as_u64().unwrap();
    let clash = c.post("/api/jobs/backup", json!({"paths": [d.to_str().unwrap()]}));
    assert_eq!(clash.status, 409);
    let why = clash.json()["error"].as_str().unwrap().to_string();
    assert!(
        why.contains("still running") && why.contains("profile slow"),
        "{why}"
    );
    // Progress as server-sent events, until the job is done.
    let sse = c.get(&format!("/api/jobs/{slow}/events"));
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8_lossy(&sse.body).to_string();
    assert!(text.contains("event: job"), "{text}");
    assert!(text.contains("\"state\":\"done\""), "{text}");
    assert_eq!(c.wait_job(slow)["state"], "done");
    assert_eq!(
        c.post("/api/jobs/backup", json!({"profile": "nope"}))
            .status,
        404
    );
    assert_eq!(
        c.post("/api/jobs/backup", json!({"paths": ["relative"]}))
            .status,
        400
    );

    // A backup of paths, with progress from the child's status lines.
    let j = c.post(
        "/api/jobs/backup",
        json!({"paths": [d.to_str().unwrap()], "tags": ["web"]}),
    );
    assert_eq!(j.status, 202);
    let j = c.wait_job(j.json()["id"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["percent"], 1.0);
    let list = c.get("/api/snapshots").json();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let last = list[2]["id"].as_str().unwrap().to_string();
    assert_eq!(list[2]["tags"], json!(["web"]));

    // Diff.
    let df = c.get(&format!("/api/diff?from={first}&to={last}")).json();
    let changes = df["changes"].as_array().unwrap();
    assert!(changes.iter().any(|ch| ch["path"].as_str().unwrap().ends_with("a.txt") && ch["change"] == "modified"), "{df}");
    assert_eq!(
        c.get(&format!("/api/diff?from={first}&to=nothex")).status,
        400
    );

    // Restore into a target; refused targets.
    let target = s.path("restored");
    let r = c.post(
        "/api/jobs/restore",
        json!({"snapshot": first, "target": target.to_str().unwrap()}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        c.wait_job(r.json()["id"].as_u64().unwrap())["state"],
        "done"
    );
    let back = std::fs::read(target.join(&bpath)).expect("restored file");
    assert!(back == b, "restored bytes differ");
    assert_eq!(
        c.post(
            "/api/jobs/restore",
            json!({"snapshot": first, "target": "rel/dir"})
        )
        .status,
        400
    );
    assert_eq!(
        c.post(
            "/api/jobs/restore",
            json!({"snapshot": first, "target": "/tmp/x", "path": "../x"})
        )
        .status,
        400
    );
    assert_eq!(
        c.post(
            "/api/jobs/restore",
            json!({"snapshot": "zz", "target": "/tmp/x"})
        )
        .status,
        400
    );

    // Upload a tar archive: imported as a new snapshot.
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tb.append_data(&mut h, "up/x.txt", &b"12345"[..]).unwrap();
    let body = tb.into_inner().unwrap();
    let nocsrf = c.post_with(
        "/api/jobs/import?name=site.tar",
        body.clone(),
        Some("bad"),
        "application/x-tar",
    );
    assert_eq!(nocsrf.status, 403);
    let up = c.post_with(
        "/api/jobs/import?name=site.tar&tag=upload",
        body,
        None,
        "application/x-tar",
    );
    assert_eq!(up.status, 202, "{}", String::from_utf8_lossy(&up.body));
    let j = c.wait_job(up.json()["id"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    let list = c.get("/api/snapshots?tag=upload").json();
    assert_eq!(list[0]["description"], "uploaded site.tar", "{list}");
    let id = list[0]["id"].as_str().unwrap();
    let x = c.get(&format!("/api/snapshots/{id}/file?path=up/x.txt"));
    assert_eq!(x.body, b"12345");

    // The jobs survive in the server: all listed.
    let jobs = c.get("/api/jobs").json();
    assert_eq!(jobs.as_array().unwrap().len(), 4, "{jobs}");
}

#[test]
fn console_endpoints_local() {
    endpoints(&Snap::new());
}

#[test]
fn console_endpoints_s3() {
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("console"));
    s.env = s3.env();
    endpoints(&s);
}

#[test]
fn console_login_and_refusals() {
    let s = Snap::new();
    s.init();
    let (d, _) = data(&s);
    s.ok(["backup", d.to_str().unwrap()]);
    let hash = s.path("console.hash");
    let out = s
        .cmd(["serve", "--set-password", hash.to_str().unwrap()])
        .env("SNAP_CONSOLE_PASSWORD", "open sesame 42")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = std::fs::read_to_string(&hash).unwrap();
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(!h.contains("open sesame"));

    // Anything but loopback needs TLS and a login.
    let (code, err) = s.fail(["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    let (code, _) = s.fail([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--password-hash-file",
        hash.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);

    let mut c = Console::start(&s, &["--password-hash-file", hash.to_str().unwrap()]);
    let sess = c.session();
    assert_eq!(sess["login_required"], true);
    assert_eq!(sess["logged_in"], false);
    assert!(sess["csrf"].is_null());
    // Unauthenticated: refused.
    for p in ["/api/snapshots", "/api/profiles", "/api/jobs"] {
        let r = c.get(p);
        assert_eq!(r.status, 401, "{p}");
        assert!(r.json()["error"].as_str().unwrap().contains("log in"));
    }
    assert_eq!(
        c.post("/api/jobs/backup", json!({"paths": ["/tmp"]}))
            .status,
        401
    );
    // Wrong password.
    assert_eq!(
        c.post("/api/login", json!({"password": "wrong"})).status,
        401
    );
    // Right password: an HttpOnly, SameSite=Strict cookie.
    let ok = c.post("/api/login", json!({"password": "open sesame 42"}));
    assert_eq!(ok.status, 200);
    let cookie = ok.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    c.cookie = Some(cookie.split(';').next().unwrap().to_string());
    let token = ok.json()["csrf"].as_str().unwrap().to_string();
    assert_eq!(c.get("/api/snapshots").json().as_array().unwrap().len(), 1);
    let sess = c.session();
    assert_eq!(sess["csrf"], token.as_str());
    // Logged in but without the CSRF token: refused.
    let id = c.get("/api/snapshots").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.post_with(
        &format!("/api/snapshots/{id}/meta"),
        b"{\"description\":\"x\"}".to_vec(),
        Some(""),
        "application/json",
    );
    assert_eq!(r.status, 403);
    // A forged cookie is not a session.
    c.cookie = Some(format!("snap_session={}", "a".repeat(64)));
    assert_eq!(c.get("/api/snapshots").status, 401);
    // Log out ends the session.
    c.cookie = Some(cookie.split(';').next().unwrap().to_string());
    assert_eq!(c.post("/api/logout", json!({})).status, 200);
    assert_eq!(c.get("/api/snapshots").status, 401);
}

#[test]
fn console_pg_profile_backup() {
    let Some(pg) = services::pg() else { return };
    let db = services::unique_name("snap_console_");
    pg.createdb(&db);
    pg.psql(&db, "create table accounts(id int primary key, name text); insert into accounts values (1, 'ada');");
    let mut s = Snap::new();
    s.env = pg.env();
    s.init();
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.db]\nrepository = \"main\"\npg = [{:?}]\n",
            s.repo,
            format!("app={}", pg.conninfo(&db))
        ),
    )
    .unwrap();
    let mut c = Console::start(&s, &["--config", cfg.to_str().unwrap()]);
    c.session();
    let j = c.post("/api/jobs/backup", json!({"profile": "db"}));
    assert_eq!(j.status, 202, "{}", String::from_utf8_lossy(&j.body));
    let j = c.wait_job(j.json()["id"].as_u64().unwrap());
    pg.dropdb(&db);
    assert_eq!(j["state"], "done", "{j}");
    let profs = c.get("/api/profiles").json();
    assert_eq!(
        profs[0]["last_runs"].as_array().unwrap().len(),
        1,
        "{profs}"
    );
    let snaps = c.get("/api/snapshots?tag=profile:db").json();
    assert!(
        !snaps[0]["streams"].as_array().unwrap().is_empty(),
        "{snaps}"
    );
}
