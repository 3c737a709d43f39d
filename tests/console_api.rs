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
        Console::start_on(s, "127.0.0.1:0", extra, None)
    }

    /// Starts `snap serve --listen LISTEN EXTRA…`; with `tls_root` (a DER
    /// certificate) the client speaks HTTPS trusting only that certificate.
    /// A wildcard listen address is reached on 127.0.0.1.
    fn start_on(s: &Snap, listen: &str, extra: &[&str], tls_root: Option<Vec<u8>>) -> Console {
        let mut args = vec!["serve", "--listen", listen];
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
                        break u
                            .trim_end_matches('/')
                            .replace("//0.0.0.0:", "//127.0.0.1:");
                    }
                }
                Err(e) => panic!("snap serve did not start: {e}"),
            }
        };
        std::thread::spawn(move || for _ in rx {});
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)));
        if let Some(der) = tls_root {
            let cert = ureq::tls::Certificate::from_der(&der).to_owned();
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            );
        }
        let agent = ureq::Agent::new_with_config(cfg.build());
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
    assert_eq!(sess["repository"], s.repo.as_str(), "{sess}");

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
    // The repository's path (or S3 URL) is not told before the login.
    assert!(sess["repository"].is_null(), "{sess}");
    let page = String::from_utf8_lossy(&c.get("/api/session").body).into_owned();
    assert!(!page.contains(&s.repo), "{page}");
    // Unauthenticated: refused.
    for p in [
        "/api/snapshots",
        "/api/profiles",
        "/api/jobs",
        "/api/status",
        "/api/snapshots/latest/zip",
    ] {
        let r = c.get(p);
        assert_eq!(r.status, 401, "{p}");
        assert!(r.json()["error"].as_str().unwrap().contains("log in"));
    }
    assert_eq!(
        c.post("/api/jobs/backup", json!({"paths": ["/tmp"]}))
            .status,
        401
    );
    for p in ["/api/jobs/1/stop", "/api/jobs/restore-db"] {
        assert_eq!(c.post(p, json!({})).status, 401, "{p}");
    }
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
    assert_eq!(sess["repository"], s.repo.as_str(), "{sess}");
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

/// Writes the Argon2 hash of `password` to `hash` with `snap serve --set-password`.
fn set_password(s: &Snap, hash: &std::path::Path, password: &str) {
    let out = s
        .cmd(["serve", "--set-password", hash.to_str().unwrap()])
        .env("SNAP_CONSOLE_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs `c` in with `password`; returns the login answer.
fn log_in(c: &mut Console, password: &str) -> Res {
    let ok = c.post("/api/login", json!({ "password": password }));
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let cookie = ok.header("set-cookie").unwrap().to_string();
    c.cookie = Some(cookie.split(';').next().unwrap().to_string());
    c.csrf = ok.json()["csrf"].as_str().map(str::to_string);
    ok
}

/// HTTPS end to end: a self-signed certificate made here, `--listen
/// 0.0.0.0:0` with TLS and a login, a client trusting only that certificate
/// logs in and lists snapshots; plain HTTP to the same port gets nothing;
/// a non-loopback address without a password or without TLS is refused in
/// one line.
#[test]
fn console_tls_end_to_end() {
    let s = Snap::new();
    s.init();
    let (d, _) = data(&s);
    s.ok(["backup", d.to_str().unwrap()]);
    let hash = s.path("console.hash");
    set_password(&s, &hash, "tls pass 7");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("making a self-signed certificate");
    let (cert, key) = (s.path("cert.pem"), s.path("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (cert, key, hash) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        hash.to_str().unwrap(),
    );

    // Not loopback: TLS without a password, or a password without TLS, is refused in one line.
    for extra in [
        vec!["--tls-cert", cert, "--tls-key", key],
        vec!["--password-hash-file", hash],
    ] {
        let mut args = vec!["serve", "--listen", "0.0.0.0:0"];
        args.extend(extra);
        let (code, err) = s.fail(&args);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not a loopback address"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let mut c = Console::start_on(
        &s,
        "0.0.0.0:0",
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--password-hash-file",
            hash,
        ],
        Some(ck.cert.der().to_vec()),
    );
    assert!(c.base.starts_with("https://127.0.0.1:"), "{}", c.base);
    let sess = c.session();
    assert_eq!(sess["login_required"], true, "{sess}");
    assert_eq!(c.get("/api/snapshots").status, 401);
    let ok = log_in(&mut c, "tls pass 7");
    let cookie = ok.header("set-cookie").unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    let list = c.get("/api/snapshots").json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Plain HTTP on the TLS port: no answer a client could use.
    let plain = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let url = format!("{}/api/session", c.base.replacen("https://", "http://", 1));
    if let Ok(r) = plain.get(&url).call() {
        panic!("plain HTTP got an answer: {}", r.status());
    }
    // The HTTPS server still serves after the plain request.
    assert_eq!(c.get("/api/snapshots").status, 200);
}

/// Whether Info-ZIP `unzip` is installed (scripts/services.sh installs
/// it); under CI=true its absence fails the test.
fn unzip_available() -> bool {
    let ok = std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !services::in_ci(),
            "CI=true but unzip is missing: `source scripts/services.sh start` installs it"
        );
        eprintln!("skipping: unzip is not installed");
    }
    ok
}

/// `unzip -t` accepts `zip`, and `unzip -d to` extracts it.
fn unzip_ok(zip: &std::path::Path, to: &std::path::Path) {
    let t = std::process::Command::new("unzip")
        .arg("-t")
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "unzip -t rejects {}:\n{}{}",
        zip.display(),
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
    let x = std::process::Command::new("unzip")
        .arg("-q")
        .arg("-d")
        .arg(to)
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        x.status.success(),
        "unzip -d: {}{}",
        String::from_utf8_lossy(&x.stdout),
        String::from_utf8_lossy(&x.stderr)
    );
}

/// Zip archives Info-ZIP `unzip` accepts (folders included): `snap export
/// --format zip` to a file and to a pipe, and the console's folder
/// download; the extracted bytes are the backed-up ones.
#[test]
fn zip_exports_pass_unzip() {
    if !unzip_available() {
        return;
    }
    let s = Snap::new();
    s.init();
    let (d, b) = data(&s);
    std::fs::create_dir_all(d.join("sub/empty")).unwrap();
    std::fs::create_dir_all(d.join("sub/deep/er")).unwrap();
    std::fs::write(d.join("sub/deep/er/c.txt"), b"deep\n").unwrap();
    s.ok(["backup", d.to_str().unwrap()]);
    let check = |root: &std::path::Path| {
        let got = std::fs::read(common::cli::restored_path(root, &d.join("sub/b.bin")))
            .expect("extracted b.bin");
        assert!(got == b, "extracted bytes differ");
        let c = std::fs::read(common::cli::restored_path(
            root,
            &d.join("sub/deep/er/c.txt"),
        ))
        .expect("extracted c.txt");
        assert_eq!(c, b"deep\n");
        assert!(common::cli::restored_path(root, &d.join("sub/empty")).is_dir());
    };

    // To a file (seekable) and to a pipe (through a temporary file).
    let f = s.path("out.zip");
    s.ok([
        "export",
        "latest",
        "--format",
        "zip",
        "-o",
        f.to_str().unwrap(),
    ]);
    unzip_ok(&f, &s.path("x1"));
    check(&s.path("x1"));
    let out = s
        .cmd(["export", "latest", "--format", "zip"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let piped = s.path("piped.zip");
    std::fs::write(&piped, &out.stdout).unwrap();
    unzip_ok(&piped, &s.path("x2"));
    check(&s.path("x2"));

    // The console's folder download.
    let mut c = Console::start(&s, &[]);
    c.session();
    let id = c.get("/api/snapshots").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bpath = snap_path(&s, &id, "sub/b.bin");
    let sub = bpath.trim_end_matches("/b.bin");
    let z = c.get(&format!("/api/snapshots/{id}/zip?path={sub}"));
    assert_eq!(z.status, 200, "{}", String::from_utf8_lossy(&z.body));
    assert_eq!(z.header("content-type"), Some("application/zip"));
    assert!(z.header("content-disposition").unwrap().contains("sub.zip"));
    let zf = s.path("console.zip");
    std::fs::write(&zf, &z.body).unwrap();
    let x3 = s.path("x3");
    unzip_ok(&zf, &x3);
    assert!(std::fs::read(x3.join("b.bin")).unwrap() == b);
    assert_eq!(std::fs::read(x3.join("deep/er/c.txt")).unwrap(), b"deep\n");
    assert!(x3.join("empty").is_dir());
    // The whole snapshot, and the refusals.
    let all = c.get(&format!("/api/snapshots/{id}/zip"));
    assert_eq!(all.status, 200);
    let af = s.path("all.zip");
    std::fs::write(&af, &all.body).unwrap();
    unzip_ok(&af, &s.path("x4"));
    check(&s.path("x4"));
    assert_eq!(
        c.get(&format!("/api/snapshots/{id}/zip?path=../x")).status,
        400
    );
    assert_eq!(
        c.get(&format!("/api/snapshots/{id}/zip?path={bpath}"))
            .status,
        400
    );
    assert_eq!(c.get("/api/snapshots/00000000/zip").status, 404);
    assert_eq!(c.get("/api/snapshots/xyz!/zip").status, 400);
}

/// The database restores of the console: refusals (no confirmation, a
/// password in the connection string, a snapshot without a dump, bad
/// kinds, ids and SQLite targets, no CSRF token), then a PostgreSQL dump
/// restored into a new database of the running server and a SQLite
/// database to a new file, as jobs, checked by querying them.
#[test]
fn console_restore_database() {
    let Some(pg) = services::pg() else { return };
    let src = services::unique_name("snap_cdb_src_");
    let dst = services::unique_name("snap_cdb_dst_");
    pg.createdb(&src);
    pg.psql(
        &src,
        "create table accounts(id int primary key, name text); insert into accounts values (1, 'ada'), (2, 'grace');",
    );
    let mut s = Snap::new();
    s.env = pg.env();
    s.init();
    s.ok(["backup", "--pg", &format!("app={}", pg.conninfo(&src))]);
    let lite = s.path("app.db");
    {
        let db = rusqlite::Connection::open(&lite).unwrap();
        db.execute_batch("create table t(x text); insert into t values ('lite row');")
            .unwrap();
    }
    s.ok(["backup", "--sqlite", &format!("app.db={}", lite.display())]);
    let (d, _) = data(&s);
    s.ok(["backup", d.to_str().unwrap()]);
    let mut c = Console::start(&s, &[]);
    c.session();
    let list = c.get("/api/snapshots").json();
    let id = |i: usize| list[i]["id"].as_str().unwrap().to_string();
    let (pg_snap, lite_snap, files_snap) = (id(0), id(1), id(2));
    let dst_conn = pg.conninfo(&dst);

    let refused = |body: Value, status: u16, needle: &str| {
        let r = c.post("/api/jobs/restore-db", body.clone());
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let e = r.json()["error"].as_str().unwrap_or("").to_string();
        assert!(e.contains(needle), "{body}: {e}");
        e
    };
    refused(
        json!({"snapshot": pg_snap, "kind": "pg", "target": dst_conn}),
        400,
        "confirm",
    );
    let e = refused(
        json!({"snapshot": pg_snap, "kind": "pg", "target": format!("{dst_conn} password=hunter2"), "confirm": true}),
        400,
        "password",
    );
    assert!(!e.contains("hunter2"), "{e}");
    refused(
        json!({"snapshot": files_snap, "kind": "pg", "target": dst_conn, "confirm": true}),
        400,
        "no database dump",
    );
    refused(
        json!({"snapshot": pg_snap, "kind": "oracle", "target": dst_conn, "confirm": true}),
        400,
        "kind",
    );
    refused(
        json!({"snapshot": "zz", "kind": "pg", "target": dst_conn, "confirm": true}),
        400,
        "bad snapshot id",
    );
    refused(
        json!({"snapshot": "00000000", "kind": "pg", "target": dst_conn, "confirm": true}),
        404,
        "",
    );
    refused(
        json!({"snapshot": pg_snap, "kind": "pg", "target": "-h evil", "confirm": true}),
        400,
        "must not start with -",
    );
    let new_lite = s.path("restored.db");
    for (target, needle) in [
        ("rel/app.db".to_string(), "absolute"),
        (format!("{}/../x.db", s.path("").display()), "absolute"),
        (s.path("").to_string_lossy().into_owned(), "absolute"),
        (d.to_string_lossy().into_owned(), "is a folder"),
        (lite.to_string_lossy().into_owned(), "exists"),
        (
            s.path("no/such/dir/x.db").to_string_lossy().into_owned(),
            "does not exist",
        ),
    ] {
        refused(
            json!({"snapshot": lite_snap, "kind": "sqlite", "target": target, "confirm": true}),
            400,
            needle,
        );
    }
    refused(
        json!({"snapshot": lite_snap, "kind": "sqlite", "target": new_lite, "create": true, "confirm": true}),
        400,
        "go with pg or mysql",
    );
    let no_csrf = c.post_with(
        "/api/jobs/restore-db",
        json!({"snapshot": pg_snap, "kind": "pg", "target": dst_conn, "confirm": true})
            .to_string()
            .into_bytes(),
        Some(""),
        "application/json",
    );
    assert_eq!(no_csrf.status, 403);

    // PostgreSQL: into a new, empty database.
    pg.createdb(&dst);
    let r = c.post(
        "/api/jobs/restore-db",
        json!({"snapshot": pg_snap, "kind": "pg", "target": dst_conn, "confirm": true}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["kind"], "restore-db");
    let j = c.wait_job(r.json()["id"].as_u64().unwrap());
    let rows = if j["state"] == "done" {
        pg.psql(
            &dst,
            "select string_agg(name, ',' order by id) from accounts",
        )
    } else {
        String::new()
    };
    pg.dropdb(&dst);
    pg.dropdb(&src);
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(rows, "ada,grace");

    // SQLite: to a new file.
    let r = c.post(
        "/api/jobs/restore-db",
        json!({"snapshot": lite_snap, "kind": "sqlite", "target": new_lite, "confirm": true}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let j = c.wait_job(r.json()["id"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    let db = rusqlite::Connection::open(&new_lite).unwrap();
    let x: String = db.query_row("select x from t", [], |r| r.get(0)).unwrap();
    assert_eq!(x, "lite row");
    // Now it exists: refused without force, done with it.
    refused(
        json!({"snapshot": lite_snap, "kind": "sqlite", "target": new_lite, "confirm": true}),
        400,
        "exists",
    );
    let r = c.post(
        "/api/jobs/restore-db",
        json!({"snapshot": lite_snap, "kind": "sqlite", "target": new_lite, "force": true, "confirm": true}),
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        c.wait_job(r.json()["id"].as_u64().unwrap())["state"],
        "done"
    );
}

/// `GET /api/status`: a profile's installed schedule, and its last backup,
/// check and restore-test with age and result, before and after a run from the
/// console and a `snap restore-test`.
#[test]
fn console_status_shows_runs_restore_tests_and_schedule() {
    let s = Snap::new();
    s.init();
    let (d, _) = data(&s);
    let state = s.path("web-state.json");
    let units = s.path("units");
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.web]\nrepository = \"main\"\npaths = [{:?}]\nstate-file = {:?}\nmax-age = \"1d\"\ncheck = true\ncheck-every = \"7d\"\n\n[profile.web.restore-test]\nmin-files = 2\n",
            s.repo,
            d.to_str().unwrap(),
            state.to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    std::fs::create_dir_all(&units).unwrap();
    s.ok([
        "--config",
        cfg,
        "schedule",
        "web",
        "--daily",
        "02:30",
        "--install",
        "--no-enable",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    let mut c = Console::start(
        &s,
        &["--config", cfg, "--unit-dir", units.to_str().unwrap()],
    );
    c.session();
    let op = |st: &Value, name: &str| -> Value {
        st[0]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };

    // Before any run: the backup never succeeded, so it is stale.
    let st = c.get("/api/status").json();
    assert_eq!(st[0]["profile"], "web", "{st}");
    assert_eq!(st[0]["max_age"], "1d");
    assert_eq!(st[0]["check_every"], "7d");
    let sched = &st[0]["schedule"][0];
    assert_eq!(sched["kind"], "systemd", "{st}");
    assert!(
        sched["schedule"].as_str().unwrap().contains("02:30"),
        "{st}"
    );
    assert!(op(&st, "backup")["last_success"].is_null(), "{st}");
    assert_eq!(op(&st, "backup")["stale"], true);
    assert!(op(&st, "check")["last_success"].is_null(), "{st}");
    assert_eq!(st[0]["stale"], true);
    assert!(op(&st, "restore-test").is_null(), "{st}");

    // A run from the console, then a restore-test from the command line.
    let j = c.post("/api/jobs/backup", json!({"profile": "web"}));
    assert_eq!(j.status, 202, "{}", String::from_utf8_lossy(&j.body));
    assert_eq!(
        c.wait_job(j.json()["id"].as_u64().unwrap())["state"],
        "done"
    );
    s.ok(["--config", cfg, "restore-test", "web"]);
    let st = c.get("/api/status").json();
    let b = op(&st, "backup");
    assert!(b["last_success"].is_string(), "{st}");
    assert_eq!(b["stale"], false, "{st}");
    assert_eq!(b["last_run_failed"], false);
    assert!(b["age_seconds"].as_i64().unwrap() < 600, "{st}");
    let ck = op(&st, "check");
    assert!(ck["last_success"].is_string(), "{st}");
    assert_eq!(ck["last_run_failed"], false, "{st}");
    let rt = op(&st, "restore-test");
    assert!(rt["last_success"].is_string(), "{st}");
    assert_eq!(rt["last_run_failed"], false, "{st}");
    assert_eq!(st[0]["stale"], false, "{st}");

    // A failed restore-test shows up as failed.
    std::fs::write(
        s.path("snap.toml"),
        std::fs::read_to_string(cfg)
            .unwrap()
            .replace("min-files = 2", "min-files = 99"),
    )
    .unwrap();
    s.fail(["--config", cfg, "restore-test", "web"]);
    let rt = op(&c.get("/api/status").json(), "restore-test");
    assert_eq!(rt["last_run_failed"], true, "{rt}");
    assert!(rt["error"].as_str().is_some_and(|e| !e.is_empty()), "{rt}");
}

/// Stored pack files of a local repository.
fn packs(repo: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![std::path::Path::new(repo).join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                stack.push(e.path());
            } else if !name.starts_with('.') && !name.contains("tmp") {
                n += 1;
            }
        }
    }
    n
}

/// `POST /api/jobs/{id}/stop`: a profile backup stopped half way ends as
/// "stopped", leaves no lease and no snapshot, `snap check` passes, and the
/// next backup reuses the packs stored before the stop. Refusals: no CSRF
/// token, bad and unknown ids, a job that already ended.
/// A console on a new repository (1 MiB packs) whose profile `big` backs up a 16 MiB
/// stream that then waits 60 s, started as a job and running with at least 8 packs stored:
/// (the repository, the console, the job id).
fn slow_backup_running(seed: u64) -> (Snap, Console, u64) {
    let s = Snap::new();
    s.ok(["init", "--pack-size-mib", "1"]);
    let big = s.path("big.bin");
    std::fs::write(&big, bytes(seed, 16 << 20)).unwrap();
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.big]\nrepository = \"main\"\ncommand = [{:?}]\n",
            s.repo,
            format!("big.bin=cat {}; sleep 60", big.display())
        ),
    )
    .unwrap();
    let mut c = Console::start(&s, &["--config", cfg.to_str().unwrap()]);
    c.session();
    let j = c.post("/api/jobs/backup", json!({"profile": "big"}));
    assert_eq!(j.status, 202, "{}", String::from_utf8_lossy(&j.body));
    let id = j.json()["id"].as_u64().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while packs(&s.repo) < 8 {
        assert!(Instant::now() < until, "no 8 packs stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    (s, c, id)
}

#[test]
fn console_stop_job_keeps_repository_valid() {
    const MIB: usize = 1 << 20;
    let (mut s, c, id) = slow_backup_running(11);
    assert_eq!(c.get(&format!("/api/jobs/{id}")).json()["state"], "running");
    let no = c.post_with(
        &format!("/api/jobs/{id}/stop"),
        b"{}".to_vec(),
        Some(""),
        "application/json",
    );
    assert_eq!(no.status, 403);
    let r = c.post(&format!("/api/jobs/{id}/stop"), json!({}));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["stop_requested"], true);
    let j = c.wait_job(id);
    assert_eq!(j["state"], "stopped", "{j}");
    assert_ne!(j["exit_code"], 0, "{j}");
    let again = c.post(&format!("/api/jobs/{id}/stop"), json!({}));
    assert_eq!(again.status, 409);
    assert!(again.json()["error"]
        .as_str()
        .unwrap()
        .contains("already ended"));
    assert_eq!(c.post("/api/jobs/x/stop", json!({})).status, 400);
    assert_eq!(c.post("/api/jobs/999/stop", json!({})).status, 404);

    // No lease, no snapshot, a valid repository.
    let locks: Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
    assert_eq!(locks.as_array().map(Vec::len), Some(0), "{locks}");
    assert!(s.snapshot_ids().is_empty());
    s.ok(["check"]);
    // The next backup (on a fresh cache: it learns what is stored from the
    // repository's index) reuses the packs stored before the stop.
    drop(c);
    s.cache = s.path("fresh-cache");
    let sum = s.backup_json([
        "--command",
        &format!("big.bin=cat {}", s.path("big.bin").display()),
    ]);
    let added = sum["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(
        added < (16 * MIB / 2) as u64,
        "the next backup stored {added} bytes of 16 MiB"
    );
    s.ok(["check"]);
}

/// A MariaDB dump restored from the console into a new database of the
/// running server (`--create`); a password in the CONNINFO is refused.
#[test]
fn console_restore_mariadb() {
    let Some(my) = services::mysql() else { return };
    let src = services::unique_name("snap_cmy_src_");
    let dst = services::unique_name("snap_cmy_dst_");
    my.createdb(&src);
    my.sql(
        &src,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two')",
    );
    let s = Snap::new();
    s.init();
    s.ok(["backup", "--mysql", &my.conninfo(&src)]);
    let mut c = Console::start(&s, &[]);
    c.session();
    let id = c.get("/api/snapshots").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pw = c.post(
        "/api/jobs/restore-db",
        json!({"snapshot": id, "kind": "mysql", "target": "mysql://root:hunter2@127.0.0.1/x", "confirm": true}),
    );
    assert_eq!(pw.status, 400);
    let e = pw.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
    let r = c.post(
        "/api/jobs/restore-db",
        json!({"snapshot": id, "kind": "mysql", "target": my.conninfo(&dst), "create": true, "confirm": true}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let j = c.wait_job(r.json()["id"].as_u64().unwrap());
    let rows = if j["state"] == "done" {
        my.sql(&dst, "SELECT GROUP_CONCAT(v ORDER BY id) FROM t")
    } else {
        String::new()
    };
    my.dropdb(&src);
    if j["state"] == "done" {
        my.dropdb(&dst);
    }
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(rows, "one,two");
}

/// SIGINT to `snap serve` stops its running jobs as Ctrl-C would (they
/// lead process groups of their own, so only the server's clean-up reaches
/// them): the backup job's `snap` ends, its lease is gone, `snap check`
/// passes.
#[test]
fn console_sigint_stops_running_jobs() {
    let (s, mut c, id) = slow_backup_running(12);
    let locks = || -> usize {
        let v: Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
        v.as_array().map(Vec::len).unwrap_or(99)
    };
    assert_eq!(c.get(&format!("/api/jobs/{id}")).json()["state"], "running");
    assert_eq!(locks(), 1, "the backup job holds a lease");
    let st = std::process::Command::new("kill")
        .args(["-INT", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let until = Instant::now() + Duration::from_secs(30);
    while c.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "snap serve did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + Duration::from_secs(30);
    while locks() != 0 {
        assert!(
            Instant::now() < until,
            "the job's lease is still there 30 s after the server ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    s.ok(["check"]);
    assert!(
        s.snapshot_ids().is_empty(),
        "the stopped backup wrote a snapshot"
    );
}
