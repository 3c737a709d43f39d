//! The web console clicked through in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, found by [`services::chromium`]), as a new user would, on a real
//! repository with a real profile: the built `snap serve` on a free loopback port, a
//! chromedriver this test starts on another free port (killed with the browser by a drop
//! guard, also when a test panics), and thirtyfour as the WebDriver client.
//!
//! Flows, each ending with a screenshot in `<target>/console-screenshots/<flow>.png`
//! (`s3-<flow>.png` for the S3 repository) and a check of the page's text:
//! * `backup`: "Back up site now" on a profile, the job seen running and then done, the
//!   new snapshot in the table;
//! * `browse`: the snapshot's tree clicked down to a file, downloaded by the browser into a
//!   temp folder (Chrome's `download.default_directory`) and compared with the source;
//! * `restore`: the restore dialog refused without its confirmation, then with it; the
//!   restored tree compared with the source;
//! * `upload`: a tar archive chosen in the file input and imported; the new snapshot
//!   browsed;
//! * `meta`: description and tags set through the page's prompts and seen in the table;
//!   the open tree follows the snapshot to its new id;
//! * `diff`: the table filtered by tag, then two snapshots checked and diffed;
//! * `paths`: "Back up now" for a path typed in.
//!
//! A third test logs in to a console with a password (`login-page.png`, `login-in.png`,
//! `login-out.png`); the repository's path is not shown before the login.
//!
//! A fourth (`console_operations_in_the_browser`, local repository and the running
//! PostgreSQL) covers:
//! * `status`: after a profile's run from the page and a restore-test from the command
//!   line, the status panel shows backup, check and restore-test with result "ok";
//! * `zip`: a snapshot's root downloaded as zip through Chromium; `unzip -t` passes and
//!   the extracted bytes are the source's;
//! * `restore-db`: a PostgreSQL dump stream restored through the database dialog into a
//!   new database (refused without the confirmation tick), checked by a query;
//! * `stop`: a long backup (a source that sleeps) stopped with the job's Stop button ends
//!   "stopped", leaves no lease and `snap check` passes (`stop-running.png` shows it
//!   running first).
//!
//! With `SNAP_CONSOLE_SHOTS_DIR` set, the local screenshots are also copied there (how
//! docs/console/ is made).
//! Script errors and unhandled promise rejections on the page fail the flows. Every wait
//! polls a condition (100 ms) with a deadline; there are no fixed sleeps. The tests take a
//! lock so that only one browser runs at a time.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services;
use serde_json::Value;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thirtyfour::prelude::*;

/// How long any one condition may take to come true (generous: CI machines are busy).
const WAIT: Duration = Duration::from_secs(45);

/// One browser at a time: two Chromiums on a 2-core machine make both slow.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A program started in a process group of its own under a small `sh` that leads the
/// group; dropping this kills the whole group: the program and whatever it started
/// (Chromium outlives a killed chromedriver otherwise; `snap serve` has job processes).
/// When the test process dies without unwinding (SIGKILL by a CI timeout, Ctrl-C), the
/// `sh` sees its standard input, a pipe from the test, close and kills the group itself.
/// The group also ends when the program exits, so `try_wait` tells that it did.
struct Group {
    child: Child,
}

impl Group {
    /// Runs `cmd` (program, arguments and environment are taken; stdin is /dev/null)
    /// with `stdout` and `stderr` as given.
    fn spawn(cmd: &Command, stdout: Stdio, stderr: Stdio) -> Group {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"("$@"; kill -KILL 0) </dev/null & cat >/dev/null; kill -KILL 0"#)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        let child = sh
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        Group { child }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group id is the sh's pid (process_group(0)); only what we started.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// chromedriver on a free port, with the Chromium sessions it starts.
struct Chromedriver {
    group: Group,
    url: String,
}

/// A free TCP port on 127.0.0.1 (the kernel's choice; released before it is used, so a
/// caller retries when the port was taken meanwhile).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

impl Chromedriver {
    /// Starts `driver` on a free port and waits until `GET /status` says it is ready.
    /// Retries on another port when it exits early (a port taken meanwhile).
    /// Chromium (its child) keeps its crash database and caches under `home`'s XDG
    /// folders, not the user's.
    fn start(driver: &Path, log: &Path, home: &Path) -> Chromedriver {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build(),
        );
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(driver);
            cmd.arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .env("XDG_CONFIG_HOME", home.join("config"))
                .env("XDG_CACHE_HOME", home.join("cache"));
            let mut cd = Chromedriver {
                group: Group::spawn(&cmd, Stdio::null(), Stdio::null()),
                url: format!("http://127.0.0.1:{port}"),
            };
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(st)) = cd.group.child.try_wait() {
                    last = format!("chromedriver exited with {st}");
                    break;
                }
                if let Ok(mut r) = agent.get(format!("{}/status", cd.url)).call() {
                    let body = r.body_mut().read_to_string().unwrap_or_default();
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if v["value"]["ready"] == true {
                        return cd;
                    }
                    last = format!("not ready: {v}");
                }
                if Instant::now() > until {
                    last = format!("no ready answer on port {port} within 30 s ({last})");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(cd);
        }
        panic!(
            "chromedriver did not start: {last}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// A running `snap serve` on a free loopback port; killed with its jobs when dropped.
/// Its standard error is copied to the test's output (shown when a test fails).
struct Console {
    _group: Group,
    base: String,
}

impl Console {
    /// Starts `snap serve --listen 127.0.0.1:0 EXTRA…` for `s`'s repository and waits
    /// for its "snap console on URL" line.
    fn start(s: &Snap, extra: &[&str]) -> Console {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut group = Group::spawn(&s.cmd(&args), Stdio::null(), Stdio::piped());
        let err = group.child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("serve: {line}");
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
        Console {
            _group: group,
            base,
        }
    }
}

/// Where the screenshots go: `<target dir>/console-screenshots` (the parent of cargo's
/// `CARGO_TARGET_TMPDIR`, so `CARGO_TARGET_DIR` is honoured).
fn screenshot_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&d).expect("creating the screenshot folder");
    d
}

/// The browser session with what a failure message needs.
struct Page {
    driver: WebDriver,
    /// Prefix of screenshot names ("" or "s3-").
    prefix: &'static str,
    downloads: PathBuf,
}

impl Page {
    /// The visible text of the whole page.
    async fn text(&self) -> String {
        match self.driver.find(By::Tag("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(e) => format!("(no page text: {e})"),
        }
    }

    /// Saves `<prefix><name>.png`; returns its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let p = screenshot_dir().join(format!("{}{name}.png", self.prefix));
        self.driver
            .screenshot(&p)
            .await
            .unwrap_or_else(|e| panic!("screenshot {}: {e}", p.display()));
        // The walkthrough's pictures (docs/console/): a copy of the local flows' shots.
        if let Some(dir) = std::env::var_os("SNAP_CONSOLE_SHOTS_DIR") {
            if !self.prefix.starts_with("s3") && !name.starts_with("FAILED") {
                let dir = PathBuf::from(dir);
                std::fs::create_dir_all(&dir).unwrap();
                let to = dir.join(format!("{}{name}.png", self.prefix));
                std::fs::copy(&p, &to)
                    .unwrap_or_else(|e| panic!("copying {} to {}: {e}", p.display(), to.display()));
            }
        }
        p
    }

    /// Polls `f` every 100 ms until it gives `Some`; after [`WAIT`] saves a
    /// `FAILED-…` screenshot and panics with `what` and the page's text.
    async fn until<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() > until {
                let shot = self.screenshot(&format!("FAILED-{}", slug(what))).await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; screenshot {}; page text:\n{}",
                    shot.display(),
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the element `css`, if it exists now.
    async fn text_of(&self, css: &str) -> Option<String> {
        self.driver.find(By::Css(css)).await.ok()?.text().await.ok()
    }

    /// The element `css` once it exists and is displayed.
    async fn element(&self, css: &str) -> WebElement {
        self.until(&format!("element {css}"), || async move {
            let e = self.driver.find(By::Css(css)).await.ok()?;
            e.is_displayed().await.ok()?.then_some(e)
        })
        .await
    }

    /// Clicks the element `css` (waiting for it to be displayed).
    async fn click(&self, css: &str) {
        let what = format!("a click on {css}");
        self.until(&what, || async move {
            let e = self.driver.find(By::Css(css)).await.ok()?;
            if !e.is_displayed().await.ok()? {
                return None;
            }
            e.click().await.ok()
        })
        .await
    }

    /// Clicks the first element matching `css` whose text is `text`.
    async fn click_text(&self, css: &str, text: &str) {
        let what = format!("a click on {css} \"{text}\"");
        self.until(&what, || async move {
            for e in self.driver.find_all(By::Css(css)).await.ok()? {
                if e.text().await.ok()?.trim() == text {
                    return e.click().await.ok();
                }
            }
            None
        })
        .await
    }

    /// Waits until the page's text contains `needle`.
    async fn see(&self, needle: &str) {
        self.until(&format!("\"{needle}\" on the page"), || async move {
            self.text().await.contains(needle).then_some(())
        })
        .await
    }

    /// The text of each row of the snapshot table (newest first), with its `data-id`.
    async fn snapshot_rows(&self) -> Option<Vec<(String, String)>> {
        let mut rows = Vec::new();
        for r in self
            .driver
            .find_all(By::Css("#snapshots tbody tr"))
            .await
            .ok()?
        {
            rows.push((r.attr("data-id").await.ok()??, r.text().await.ok()?));
        }
        Some(rows)
    }

    /// Waits until the table lists `n` snapshots; returns the rows.
    async fn rows(&self, n: usize) -> Vec<(String, String)> {
        self.until(&format!("{n} snapshots in the table"), || async move {
            self.snapshot_rows().await.filter(|r| r.len() == n)
        })
        .await
    }

    /// The number of jobs shown.
    async fn job_count(&self) -> usize {
        self.driver
            .find_all(By::Css("#jobs .job"))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Waits for job number `count` (the newest, shown first) to end; returns every
    /// state text seen on the way (e.g. "running 0% (0 B)", …, "done"). Panics when it
    /// failed.
    async fn watch_job(&self, count: usize) -> Vec<String> {
        self.until(&format!("job #{count} on the page"), || async move {
            (self.job_count().await >= count).then_some(())
        })
        .await;
        let mut seen: Vec<String> = Vec::new();
        let until = Instant::now() + WAIT;
        loop {
            let t = self
                .text_of("#jobs .job:first-child .job-state")
                .await
                .unwrap_or_default();
            if !t.is_empty() && seen.last() != Some(&t) {
                seen.push(t.clone());
            }
            if !t.is_empty() && !t.starts_with("running") {
                assert_eq!(t, "done", "job #{count} ended so: {seen:?}");
                return seen;
            }
            if Instant::now() > until {
                let shot = self.screenshot(&format!("FAILED-job-{count}")).await;
                panic!(
                    "job #{count} did not end within {WAIT:?} (states {seen:?}); screenshot {}; page text:\n{}",
                    shot.display(),
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .chars()
        .take(60)
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64).
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

/// A source folder with `a.txt`, `sub/b.bin` (300 KiB) and `sub/deeper/c.txt`; returns
/// its path and b.bin's bytes.
fn source(s: &Snap) -> (PathBuf, Vec<u8>) {
    let d = s.path("site");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::write(d.join("a.txt"), b"hello browser\n").unwrap();
    let b = bytes(11, 300 * 1024);
    std::fs::write(d.join("sub/b.bin"), &b).unwrap();
    std::fs::write(d.join("sub/deeper/c.txt"), b"three levels down\n").unwrap();
    (d, b)
}

/// A tar archive with `up/x.txt`, written to `path`.
fn tar_file(path: &Path) {
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let body = b"uploaded through the browser\n";
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tb.append_data(&mut h, "up/x.txt", &body[..]).unwrap();
    std::fs::write(path, tb.into_inner().unwrap()).unwrap();
}

/// Starts headless Chromium through `cd`, downloading into `downloads`.
async fn browser(chromium: &services::Chromium, cd: &Chromedriver, s: &Snap) -> WebDriver {
    let downloads = s.path("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let profile_dir = s.path("chromium-profile");
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(chromium.browser.to_str().unwrap()).unwrap();
    for a in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ] {
        caps.add_arg(a).unwrap();
    }
    caps.add_arg(&format!("--user-data-dir={}", profile_dir.display()))
        .unwrap();
    // A command sent while a prompt is open fails instead of dismissing the prompt.
    caps.set("unhandledPromptBehavior", "ignore").unwrap();
    caps.add_experimental_option(
        "prefs",
        serde_json::json!({
            "download.default_directory": downloads.to_str().unwrap(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        }),
    )
    .unwrap();
    WebDriver::new(cd.url.clone(), caps)
        .await
        .expect("starting a Chromium session")
}

/// A console with a browser on it. Fields drop in order: the browser session ends, then
/// chromedriver (and what it started) is killed, then the server.
struct Ui {
    page: Page,
    _driver: Chromedriver,
    _console: Console,
}

/// Starts `snap serve EXTRA…` on `s`, chromedriver and headless Chromium, and opens the
/// page; screenshots are named `<prefix><flow>.png`.
async fn open(s: &Snap, chromium: &services::Chromium, extra: &[&str], prefix: &'static str) -> Ui {
    let console = Console::start(s, extra);
    let cd = Chromedriver::start(
        &chromium.driver,
        &s.path("chromedriver.log"),
        &s.path("browser-home"),
    );
    let page = Page {
        driver: browser(chromium, &cd, s).await,
        prefix,
        downloads: s.path("downloads"),
    };
    page.driver
        .goto(format!("{}/", console.base))
        .await
        .unwrap();
    Ui {
        page,
        _driver: cd,
        _console: console,
    }
}

/// Every flow on repository `s` (initialised here): a profile `site` backing up
/// [`source`], with a `before` hook that sleeps so that the job is seen running.
async fn flows(s: &Snap, prefix: &'static str) {
    let _one = ONE_BROWSER.lock().await;
    let Some(chromium) = services::chromium() else {
        return;
    };
    let t0 = Instant::now();
    s.init();
    let (src, b) = source(s);
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.site]\nrepository = \"main\"\n\
             paths = [{:?}]\nbefore = \"sleep 2\"\nstate-file = {:?}\n",
            s.repo,
            src.to_str().unwrap(),
            s.path("site-state.json").to_str().unwrap(),
        ),
    )
    .unwrap();
    let ui = open(s, &chromium, &["--config", cfg.to_str().unwrap()], prefix).await;
    let page = &ui.page;
    let d = &page.driver;
    page.see("Back up site now").await;
    page.rows(0).await;
    // Script errors and unhandled promise rejections from here on are collected and must
    // stay none (a failed async click handler would otherwise go unnoticed).
    d.execute(
        "window.__errors = [];\
         window.addEventListener('error', (e) => window.__errors.push(String(e.message)));\
         window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));",
        Vec::new(),
    )
    .await
    .unwrap();
    eprintln!("browser ready after {:?}", t0.elapsed());

    // (a) Back up now, watch the job run and end, see the snapshot.
    page.click("button.run-profile").await;
    let states = page.watch_job(1).await;
    assert!(
        states[0].starts_with("running"),
        "the job was not seen running: {states:?}"
    );
    let rows = page.rows(1).await;
    let ids = s.snapshot_ids();
    assert_eq!(ids, vec![rows[0].0.clone()], "table vs snapshots --json");
    let short = &ids[0][..8];
    assert!(rows[0].1.contains(short), "row {:?} lacks {short}", rows[0]);
    assert!(rows[0].1.contains("profile:site"), "row {:?}", rows[0]);
    page.see("done").await;
    page.see(short).await;
    page.see("last run: 2").await; // the profile's last run, a date
    page.screenshot("backup").await;
    eprintln!("backup flow done after {:?}", t0.elapsed());

    // (b) Browse down to sub/ and download b.bin through the browser.
    page.click(&format!("#snapshots tr[data-id='{}'] a.browse", ids[0]))
        .await;
    page.see(&format!("Browse {short}")).await;
    let comps: Vec<String> = src
        .join("sub")
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for c in &comps {
        page.click_text("#tree a.dir", &format!("{c}/")).await;
        page.until(&format!("{c} in the crumbs"), || async move {
            let t = page.text_of("#crumbs").await?;
            t.contains(&format!("{c} /")).then_some(())
        })
        .await;
    }
    page.see("deeper/").await;
    page.see("300.00 KiB").await;
    page.click("#tree a.download").await;
    let got = &s.path("downloads/b.bin");
    let want_len = b.len();
    let data = page
        .until("b.bin in the download folder", || async move {
            // Chrome writes NAME.crdownload and renames it when complete.
            let v = std::fs::read(got).ok()?;
            (v.len() == want_len).then_some(v)
        })
        .await;
    assert!(data == b, "downloaded b.bin differs from the source");
    assert!(
        std::fs::read_dir(&page.downloads).unwrap().count() == 1,
        "stray downloads"
    );
    page.screenshot("browse").await;
    eprintln!("browse flow done after {:?}", t0.elapsed());

    // (c) Restore the whole snapshot: refused without the confirmation, done with it.
    let target = s.path("restored");
    page.click("#crumbs a").await; // back to the root: restore everything
    page.until("the root of the snapshot", || async move {
        let t = page.text_of("#crumbs").await?;
        (t.trim() == "/").then_some(())
    })
    .await;
    let jobs = page.job_count().await;
    page.click("#restore-button").await;
    page.see("(everything)").await;
    let input = page.element("#restore-target").await;
    input.clear().await.unwrap();
    input.send_keys(target.to_str().unwrap()).await.unwrap();
    page.click("#restore-go").await;
    page.see("restore not started: tick the confirmation").await;
    assert_eq!(page.job_count().await, jobs, "a job started unconfirmed");
    assert!(!target.exists(), "restored without the confirmation");
    page.click("#restore-button").await;
    let input = page.element("#restore-target").await;
    input.clear().await.unwrap();
    input.send_keys(target.to_str().unwrap()).await.unwrap();
    page.click("#restore-confirm").await;
    page.screenshot("restore-dialog").await;
    page.click("#restore-go").await;
    page.watch_job(jobs + 1).await;
    let diff = tree_diff(&src, &restored_path(&target, &src));
    assert!(diff.is_empty(), "restored tree differs: {diff:?}");
    page.see("restore").await;
    page.screenshot("restore").await;
    eprintln!("restore flow done after {:?}", t0.elapsed());

    // (d) Upload a tar archive and import it.
    let tar = s.path("site.tar");
    tar_file(&tar);
    let jobs = page.job_count().await;
    page.element("#upload-file")
        .await
        .send_keys(tar.to_str().unwrap())
        .await
        .unwrap();
    page.click("#upload-button").await;
    page.watch_job(jobs + 1).await;
    // The file input is emptied once the upload started (a second click must not
    // import the same archive again).
    let left = d
        .execute(
            "return document.getElementById('upload-file').files.length;",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        left.json(),
        &serde_json::json!(0),
        "the upload kept its file"
    );
    let rows = page.rows(2).await;
    assert!(
        rows[0].1.contains("uploaded site.tar"),
        "newest row {:?}",
        rows[0]
    );
    let up = rows[0].0.clone();
    page.click(&format!("#snapshots tr[data-id='{up}'] a.browse"))
        .await;
    page.see(&format!("Browse {}", &up[..8])).await;
    page.click_text("#tree a.dir", "up/").await;
    page.see("x.txt").await;
    page.screenshot("upload").await;
    eprintln!("upload flow done after {:?}", t0.elapsed());

    // (e) Description and tags of the first snapshot, through the page's prompts.
    page.click(&format!("#snapshots tr[data-id='{}'] a.browse", ids[0]))
        .await;
    page.see(&format!("Browse {short}")).await;
    // One click, not the retrying one: the click opens a prompt, and a retry would meet it.
    let _ = page.element("#meta-button").await.click().await;
    for answer in ["before the upgrade", "profile:site, keep"] {
        page.until("a prompt", || async move {
            page.driver.get_alert_text().await.ok()
        })
        .await;
        d.send_alert_text(answer).await.unwrap();
        d.accept_alert().await.unwrap();
    }
    page.see("before the upgrade").await;
    let rows = page.rows(2).await;
    let row = rows
        .iter()
        .find(|r| r.1.contains("before the upgrade"))
        .expect("a row with the description");
    assert!(row.1.contains("keep"), "{row:?}");
    let list: Value =
        serde_json::from_str(&s.ok(["--json", "snapshots", "--tag", "keep"])).unwrap();
    assert_eq!(list[0]["id"].as_str(), Some(row.0.as_str()), "{list}");
    assert_eq!(list[0]["description"], "before the upgrade", "{list}");
    // The open tree follows the snapshot to its new id: its title and its links too.
    page.see(&format!("Browse {}", &row.0[..8])).await;
    page.click_text("#tree a.dir", &format!("{}/", comps[0]))
        .await;
    let first_dir = format!("{} /", comps[0]);
    page.until("the first folder after the rename", || async {
        let t = page.text_of("#crumbs").await?;
        t.contains(&first_dir).then_some(())
    })
    .await;
    page.screenshot("meta").await;
    eprintln!("meta flow done after {:?}", t0.elapsed());

    // Filter by the new tag, then diff the two snapshots.
    page.element("#f-tag")
        .await
        .send_keys("keep")
        .await
        .unwrap();
    page.click("#filters button").await;
    page.rows(1).await;
    page.element("#f-tag").await.clear().await.unwrap();
    page.click("#filters button").await;
    page.rows(2).await;
    for (id, _) in page.rows(2).await {
        page.click(&format!("#snapshots tr[data-id='{id}'] input.pick"))
            .await;
    }
    page.click("#diff-button").await;
    let diff = page
        .until("the diff", || async {
            let t = page.text_of("#diff").await?;
            (!t.is_empty()).then_some(t)
        })
        .await;
    // From the profile's snapshot (older) to the upload: b.bin went, x.txt came.
    let line_of = |suffix: &str| {
        diff.lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not in the diff:\n{diff}"))
            .to_string()
    };
    assert!(line_of("up/x.txt").starts_with("added"), "{diff}");
    assert!(line_of("sub/b.bin").starts_with("removed"), "{diff}");
    page.screenshot("diff").await;
    eprintln!("diff flow done after {:?}", t0.elapsed());

    // (f) "Back up now" for paths typed in, with the folder changed meanwhile.
    std::fs::write(src.join("a.txt"), b"hello again\n").unwrap();
    let jobs = page.job_count().await;
    page.element("#backup-paths")
        .await
        .send_keys(src.to_str().unwrap())
        .await
        .unwrap();
    page.click("#backup-now").await;
    page.watch_job(jobs + 1).await;
    let rows = page.rows(3).await;
    let ids = s.snapshot_ids();
    assert_eq!(
        ids.last(),
        Some(&rows[0].0),
        "newest row vs snapshots --json"
    );
    page.see(&ids[2][..8]).await;
    page.screenshot("paths").await;
    eprintln!("paths flow done after {:?}", t0.elapsed());

    let errors = d
        .execute("return window.__errors;", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        errors.json(),
        &serde_json::json!([]),
        "script errors on the page"
    );

    let errors = page.text_of("#error").await.expect("the page has #error");
    assert_eq!(errors, "", "the page shows an error");
    page.driver.clone().quit().await.unwrap();
}

/// A console with a login (`--password-hash-file`): a wrong password refused on the page,
/// the right one lets the user in (the browser keeps the session cookie across a reload
/// and sends the CSRF token with a change), and "Log out" ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_in_the_browser() {
    let _one = ONE_BROWSER.lock().await;
    let Some(chromium) = services::chromium() else {
        return;
    };
    let s = Snap::new();
    s.init();
    let (src, _) = source(&s);
    s.ok(["backup", src.to_str().unwrap()]);
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
    let ui = open(
        &s,
        &chromium,
        &["--password-hash-file", hash.to_str().unwrap()],
        "login-",
    )
    .await;
    let page = &ui.page;
    let d = &page.driver;

    let login = |pw: &'static str| async move {
        let field = page.element("#login-password").await;
        field.clear().await.unwrap();
        field.send_keys(pw).await.unwrap();
        page.click("#login-form button").await;
    };
    page.see("Log in").await;
    assert!(
        !page.text().await.contains("Snapshots"),
        "the app shows before a login"
    );
    // Nothing about the server before the login: not the repository's path.
    assert!(
        !page.text().await.contains(&s.repo),
        "the repository shows before a login"
    );
    page.screenshot("page").await;
    login("not the password").await;
    page.see("wrong password").await;
    login("open sesame 42").await;
    let rows = page.rows(1).await;
    page.see("Log out").await;
    page.see(&s.repo).await;
    assert!(!page.text().await.contains("wrong password"));

    // The cookie outlives a reload; a change (description) passes the CSRF check.
    d.refresh().await.unwrap();
    page.rows(1).await;
    page.click(&format!("#snapshots tr[data-id='{}'] a.browse", rows[0].0))
        .await;
    let _ = page.element("#meta-button").await.click().await;
    for answer in ["after the login", ""] {
        page.until("a prompt", || async {
            page.driver.get_alert_text().await.ok()
        })
        .await;
        d.send_alert_text(answer).await.unwrap();
        d.accept_alert().await.unwrap();
    }
    page.see("after the login").await;
    page.screenshot("in").await;

    page.click("#logout").await;
    page.see("Log in").await;
    d.refresh().await.unwrap();
    page.see("Log in").await;
    page.element("#login-password").await;
    assert!(
        !page.text().await.contains("after the login"),
        "still logged in"
    );
    page.screenshot("out").await;
    let list: Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    assert_eq!(list[0]["description"], "after the login", "{list}");
    page.driver.clone().quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_the_browser_local() {
    flows(&Snap::new(), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_the_browser_s3() {
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("console_browser"));
    s.env = s3.env();
    flows(&s, "s3-").await;
}

/// Waits until a `*.zip` (a finished download: Chrome renames `NAME.crdownload` when
/// complete) is in `dir`; returns its path.
async fn downloaded_zip(page: &Page) -> PathBuf {
    page.until("a zip in the download folder", || async {
        std::fs::read_dir(&page.downloads)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "zip"))
    })
    .await
}

/// The text of the `result` cell of the status panel's row for `op` of `profile`.
async fn status_result(page: &Page, profile: &str, op: &str) -> Option<String> {
    let css = format!("tr.status-row[data-profile='{profile}'][data-operation='{op}'] td.result");
    page.text_of(&css).await
}

/// The status panel, a zip download, the database restore dialog and the Stop button (see
/// the module docs), on a local repository with a PostgreSQL dump and two profiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_operations_in_the_browser() {
    let _one = ONE_BROWSER.lock().await;
    let Some(chromium) = services::chromium() else {
        return;
    };
    let Some(pg) = services::pg() else { return };
    let t0 = Instant::now();
    let mut s = Snap::new();
    s.env = pg.env();
    s.init();
    let src_db = services::unique_name("snap_bdb_src_");
    let dst_db = services::unique_name("snap_bdb_dst_");
    pg.createdb(&src_db);
    pg.psql(
        &src_db,
        "create table accounts(id int primary key, name text); insert into accounts values (1, 'ada'), (2, 'grace');",
    );
    s.ok(["backup", "--pg", &format!("app={}", pg.conninfo(&src_db))]);
    pg.dropdb(&src_db);
    let (src, b) = source(&s);
    let pidfile = s.path("slow.pid");
    let cfg = s.path("snap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = {:?}\n\n[profile.web]\nrepository = \"main\"\n\
             paths = [{:?}]\nstate-file = {:?}\ncheck = true\n\n\
             [profile.web.restore-test]\nmin-files = 2\n\n\
             [profile.slow]\nrepository = \"main\"\nstate-file = {:?}\ncommand = [{:?}]\n",
            s.repo,
            src.to_str().unwrap(),
            s.path("web-state.json").to_str().unwrap(),
            s.path("slow-state.json").to_str().unwrap(),
            format!(
                "slow.txt=echo $$ > {}; echo begin; sleep 60",
                pidfile.display()
            ),
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let ui = open(&s, &chromium, &["--config", &cfg], "").await;
    let page = &ui.page;
    let d = &page.driver;
    page.see("Back up web now").await;
    page.rows(1).await;
    eprintln!("browser ready after {:?}", t0.elapsed());

    // Status panel: never run, then a run from the page and a restore-test.
    assert_eq!(
        status_result(page, "web", "backup").await.as_deref(),
        Some("never")
    );
    page.click_text("button.run-profile", "Back up web now")
        .await;
    page.watch_job(1).await;
    page.rows(2).await;
    s.ok(["--config", &cfg, "restore-test", "web"]);
    d.refresh().await.unwrap();
    for op in ["backup", "check", "restore-test"] {
        page.until(&format!("{op} ok in the status panel"), || async move {
            (status_result(page, "web", op).await.as_deref() == Some("ok")).then_some(())
        })
        .await;
    }
    page.see("restore-test").await;
    let shot = page.screenshot("status").await;
    eprintln!(
        "status flow done after {:?} ({})",
        t0.elapsed(),
        shot.display()
    );

    // Zip download of the web snapshot's root, through the browser.
    let ids = s.snapshot_ids();
    let web = ids.last().unwrap().clone();
    page.click(&format!("#snapshots tr[data-id='{web}'] a.browse"))
        .await;
    page.see(&format!("Browse {}", &web[..8])).await;
    page.click("#zip-link").await;
    let zip = downloaded_zip(page).await;
    let t = Command::new("unzip").arg("-t").arg(&zip).output().unwrap();
    assert!(
        t.status.success(),
        "unzip -t rejects {}:\n{}{}",
        zip.display(),
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
    let x = s.path("unzipped");
    let st = Command::new("unzip")
        .arg("-q")
        .arg("-d")
        .arg(&x)
        .arg(&zip)
        .status()
        .unwrap();
    assert!(st.success());
    // Bytes compared (zip keeps times in 2-second local-time steps: not compared).
    for f in ["a.txt", "sub/b.bin", "sub/deeper/c.txt"] {
        let got = std::fs::read(restored_path(&x, &src.join(f)))
            .unwrap_or_else(|e| panic!("{f} not in the zip: {e}"));
        assert!(
            got == std::fs::read(src.join(f)).unwrap(),
            "{f} differs in the zip"
        );
    }
    assert!(std::fs::read(restored_path(&x, &src.join("sub/b.bin"))).unwrap() == b);
    page.screenshot("zip").await;
    eprintln!("zip flow done after {:?}", t0.elapsed());

    // Database restore: the dialog refuses without the tick, then restores.
    pg.createdb(&dst_db);
    let pg_snap = ids[0].clone();
    page.click(&format!("#snapshots tr[data-id='{pg_snap}'] a.browse"))
        .await;
    page.see(&format!("Browse {}", &pg_snap[..8])).await;
    let jobs = page.job_count().await;
    let fill = || async {
        page.click("#restore-db-button").await;
        page.see("streams: app").await;
        let t = page.element("#restore-db-target").await;
        t.clear().await.unwrap();
        t.send_keys(pg.conninfo(&dst_db)).await.unwrap();
    };
    fill().await;
    page.click("#restore-db-go").await;
    page.see("database restore not started: tick the confirmation")
        .await;
    assert_eq!(page.job_count().await, jobs, "a job started unconfirmed");
    fill().await;
    page.click("#restore-db-confirm").await;
    page.screenshot("restore-db-dialog").await;
    page.click("#restore-db-go").await;
    page.watch_job(jobs + 1).await;
    let rows = pg.psql(
        &dst_db,
        "select string_agg(name, ',' order by id) from accounts",
    );
    pg.dropdb(&dst_db);
    assert_eq!(rows, "ada,grace");
    page.screenshot("restore-db").await;
    eprintln!("restore-db flow done after {:?}", t0.elapsed());

    // Stop: a backup whose source sleeps, stopped from the page.
    let _ = std::fs::remove_file(&pidfile);
    let jobs = page.job_count().await;
    page.click_text("button.run-profile", "Back up slow now")
        .await;
    page.until("the slow source to start", || async {
        std::fs::read_to_string(&pidfile)
            .ok()
            .filter(|p| !p.trim().is_empty())
    })
    .await;
    page.until(&format!("job #{} running", jobs + 1), || async {
        (page.job_count().await > jobs).then_some(())
    })
    .await;
    page.see("running").await;
    page.screenshot("stop-running").await;
    page.click("#jobs .job:first-child .job-stop").await;
    let state = page
        .until("the job stopped", || async {
            let t = page.text_of("#jobs .job:first-child .job-state").await?;
            (!t.starts_with("running")).then_some(t)
        })
        .await;
    assert!(state.starts_with("stopped"), "the job ended so: {state}");
    page.see("stopped").await;
    page.screenshot("stop").await;
    let locks: Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
    assert_eq!(locks.as_array().map(Vec::len), Some(0), "{locks}");
    assert_eq!(
        s.snapshot_ids().len(),
        2,
        "the stopped backup wrote a snapshot"
    );
    s.ok(["check"]);
    eprintln!("stop flow done after {:?}", t0.elapsed());

    let errors = page.text_of("#error").await.expect("the page has #error");
    assert_eq!(errors, "", "the page shows an error");
    page.driver.clone().quit().await.unwrap();
}
