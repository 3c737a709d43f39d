//! Verification that runs itself, monitoring and `snap status` (issue #17):
//! restore-test as a step of `snap run` that reports through the failure
//! hooks, Prometheus metrics in a textfile and pushed over HTTP, a
//! healthchecks-style ping, check rotation, and `snap status` exit codes.
//! The HTTP receivers are tiny servers on 127.0.0.1 inside the test.

mod common;
use common::cli::Snap;
use common::profiled::{lines, Profiled};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One received request: method, path, body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// An HTTP/1.1 server on 127.0.0.1 that answers 200 to everything and
/// records each request; returns its base URL.
fn http_server() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            rec.lock()
                .unwrap()
                .push((method, path, String::from_utf8_lossy(&body).into_owned()));
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

fn make_db(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "pragma journal_mode=wal;
         create table accounts(id integer primary key, balance integer);
         insert into accounts(balance) values (100), (250), (650);",
    )
    .unwrap();
}

/// A metric sample's value from a textfile, by name and label fragment.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A profile with a SQLite source whose restore-test is a step of `snap
/// run` on both repositories: passing, the metrics file says so, the ping
/// URL gets a success and the Pushgateway a PUT; after the expectation is
/// changed so that the check fails, the run fails at restore-test, the
/// on-failure and notify-failure hooks run, the metrics file says 0 and
/// the ping goes to URL/fail.
#[test]
fn restore_test_in_run_reports_success_and_failure() {
    let (url, seen) = http_server();
    let body = |expect: &str| {
        format!(
            r#"
[profile.app]
repository = "main"
sqlite = ["app={{dir}}/app.db"]
copy-to = "offsite"
state-file = "{{dir}}/state/app.json"
metrics-file = "{{dir}}/metrics/snap.prom"
metrics-push = "{url}"
ping-url = "{url}/ping/abc"
on-failure = "touch {{dir}}/on-failure-ran"
notify-failure = "cat > {{dir}}/notify-failure.json"
notify-success = "touch {{dir}}/notify-success-ran"
[profile.app.restore-test]
every = "always"
offsite = true
sql = [{{ query = "select sum(balance) from accounts", expect = "{expect}" }}]
"#
        )
    };
    let p = Profiled::with_offsite(&body("1000"));
    make_db(&p.dir().join("app.db"));
    // Another profile's lines in the same metrics file survive.
    std::fs::create_dir_all(p.dir().join("metrics")).unwrap();
    std::fs::write(
        p.dir().join("metrics/snap.prom"),
        "# TYPE snap_snapshots gauge\nsnap_snapshots{profile=\"other\",repository=\"x\"} 7\n",
    )
    .unwrap();
    let out = p.ok(&["--json", "run", "app"]);
    let objs = lines(&out);
    let steps: Vec<(String, String)> = objs
        .iter()
        .filter(|o| o["type"] == "step")
        .map(|o| {
            (
                o["step"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("backup".to_string(), "ok".to_string()),
            ("copy".into(), "ok".into()),
            ("restore-test".into(), "ok".into()),
            ("restore-test".into(), "ok".into())
        ],
        "{out}"
    );
    assert!(p.dir().join("notify-success-ran").exists());
    let m = p.read("metrics/snap.prom");
    assert_eq!(
        sample(&m, "snap_snapshots", "profile=\"other\""),
        Some(7.0),
        "{m}"
    );
    for repo in ["main", "offsite"] {
        let l = format!("profile=\"app\",repository=\"{repo}\"");
        assert_eq!(
            sample(&m, "snap_restore_test_success", &l),
            Some(1.0),
            "{m}"
        );
        assert_eq!(sample(&m, "snap_snapshots", &l), Some(1.0), "{m}");
        assert!(
            sample(&m, "snap_repository_size_bytes", &l).unwrap() > 0.0,
            "{m}"
        );
    }
    let run = "repository=\"main\",operation=\"run\"";
    assert_eq!(sample(&m, "snap_last_run_success", run), Some(1.0), "{m}");
    assert!(sample(&m, "snap_last_success_timestamp_seconds", run).unwrap() > 1.7e9);
    assert!(sample(&m, "snap_backup_bytes_read", "repository=\"main\"").unwrap() > 0.0);
    assert!(sample(&m, "snap_duration_seconds", "operation=\"backup\"").is_some());
    {
        let s = seen.lock().unwrap();
        assert!(
            s.iter().any(|(m, p, b)| m == "PUT"
                && p == "/metrics/job/snap/profile/app"
                && b.contains("snap_restore_test_success{profile=\"app\"")),
            "{s:?}"
        );
        assert!(
            s.iter().any(|(m, p, _)| m == "POST" && p == "/ping/abc"),
            "{s:?}"
        );
        assert!(!s.iter().any(|(_, p, _)| p.ends_with("/fail")), "{s:?}");
    }

    // The restore-test now fails: the job fails there, hooks and metrics say so.
    p.write(&body("999"));
    let (code, out, err) = p.out(&["--json", "run", "app"]);
    assert_ne!(code, 0, "{out}{err}");
    let summary = lines(&out).pop().unwrap();
    assert_eq!(summary["status"], "failure", "{out}");
    assert_eq!(summary["failed_step"], "restore-test", "{out}");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("expected \"999\""),
        "{out}"
    );
    assert!(p.dir().join("on-failure-ran").exists());
    let nf: Value = serde_json::from_str(p.read("notify-failure.json").trim()).unwrap();
    assert_eq!(nf["failed_step"], "restore-test");
    let m = p.read("metrics/snap.prom");
    assert_eq!(
        sample(&m, "snap_restore_test_success", "repository=\"main\""),
        Some(0.0),
        "{m}"
    );
    assert_eq!(sample(&m, "snap_last_run_success", run), Some(0.0), "{m}");
    // The last success is still the first run's.
    assert!(sample(&m, "snap_last_success_timestamp_seconds", run).is_some());
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(m, p, b)| m == "POST" && p == "/ping/abc/fail" && b.contains("restore-test")),
        "{:?}",
        seen.lock().unwrap()
    );
    // Standalone restore-test of the offsite copy records its own result.
    let (code, _, err) = p.out(&["restore-test", "app", "--repository", "offsite"]);
    assert_ne!(code, 0);
    assert!(err.contains("expected \"999\""), "{err}");
    let (code, _, err) = p.out(&["restore-test", "app", "--repository", "nope"]);
    assert_eq!(code, 2, "{err}");
}

/// `snap status` exits 0 for a fresh profile and non-zero for a stale one
/// (a backup older than max-age, a copy that never ran); a check with
/// `check-every` is skipped while it is not due, and status judges it by
/// max-age plus the rotation.
#[test]
fn status_fresh_and_stale_and_check_rotation() {
    let p = Profiled::with_offsite(
        r#"
[profile.fresh]
repository = "main"
paths = ["{dir}/data"]
max-age = "26h"
check-every = "7d"
state-file = "{dir}/fresh.json"
[profile.fresh.restore-test]
every = "7d"
min-files = 1
[profile.stale]
repository = "main"
paths = ["{dir}/data"]
copy-to = "offsite"
max-age = "1h"
state-file = "{dir}/stale.json"
"#,
    );
    std::fs::create_dir_all(p.dir().join("data")).unwrap();
    std::fs::write(p.dir().join("data/f.txt"), b"hello").unwrap();
    let out = p.ok(&["--json", "run", "fresh"]);
    assert!(
        lines(&out)
            .iter()
            .any(|o| o["step"] == "check" && o["status"] == "ok"),
        "{out}"
    );
    assert!(
        lines(&out)
            .iter()
            .any(|o| o["step"] == "restore-test" && o["status"] == "ok"),
        "{out}"
    );
    // The second run skips the check: it ran less than 7 days ago.
    let out = p.ok(&["--json", "run", "fresh"]);
    assert!(
        lines(&out)
            .iter()
            .any(|o| o["step"] == "check" && o["status"] == "not-due"),
        "{out}"
    );
    assert!(
        lines(&out)
            .iter()
            .any(|o| o["step"] == "restore-test" && o["status"] == "not-due"),
        "{out}"
    );
    let out = p.ok(&["status", "fresh"]);
    assert!(
        out.contains("backup") && out.contains("check") && out.contains("restore-test"),
        "{out}"
    );

    // Never run: stale.
    let (code, out, err) = p.out(&["status", "stale"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("never succeeded"), "{err}");
    // A backup and copy, then the state file ages by a day.
    p.ok(&["run", "stale"]);
    p.ok(&["status", "stale"]);
    let f = p.dir().join("stale.json");
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    for (_, r) in st["ops"].as_object_mut().unwrap() {
        let t = r["last_success"].as_i64().unwrap() - 86400;
        r["last_success"] = t.into();
    }
    std::fs::write(&f, st.to_string()).unwrap();
    let (code, out, err) = p.out(&["--json", "status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("profile stale: backup on main last succeeded 1 d"),
        "{err}"
    );
    assert!(!err.contains("profile fresh"), "{err}");
    let docs: Value = serde_json::from_str(&out).unwrap();
    let stale = docs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["profile"] == "stale")
        .unwrap();
    assert_eq!(stale["stale"], true);
    assert_eq!(stale["operations"][1]["operation"], "copy");
    assert_eq!(stale["operations"][1]["stale"], true);
    // A damaged state file is a one-line error naming it.
    std::fs::write(&f, b"{not json").unwrap();
    let (code, _, err) = p.out(&["status", "stale"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stale.json") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// `snap check --compare-source` names a file whose bytes changed (same
/// size, same mtime), a changed mode, a deleted and a new file, and
/// ignores a file whose only change is its mtime.
/// An initialised repository and a source folder `src` beside it holding
/// `files` (relative path, text), folders made as needed.
fn source_tree(files: &[(&str, &str)]) -> (Snap, std::path::PathBuf) {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    for (name, body) in files {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    (s, src)
}

/// The `difference` lines of `check --json --compare-source` output as
/// (change, path below `src`).
fn differences(objs: &[Value], src: &Path) -> Vec<(String, String)> {
    objs.iter()
        .filter(|v| v["type"] == "difference")
        .map(|v| {
            let p = v["path"].as_str().unwrap();
            (
                v["change"].as_str().unwrap().to_string(),
                p.strip_prefix(src.to_str().unwrap()).unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn compare_source_finds_changes_and_ignores_mtime() {
    use std::os::unix::fs::PermissionsExt;
    let (s, src) = source_tree(&[
        ("same.txt", "unchanged"),
        ("touched.txt", "only its mtime changes"),
        ("sub/edited.bin", "0123456789abcdef"),
        ("chmod.sh", "#!/bin/sh\n"),
        ("gone.txt", "deleted later"),
    ]);
    std::os::unix::fs::symlink("same.txt", src.join("link")).unwrap();
    s.ok(["backup", src.to_str().unwrap()]);
    let out = s.ok(["check", "--compare-source", src.to_str().unwrap()]);
    assert!(out.contains("no differences"), "{out}");

    filetime::set_file_mtime(
        src.join("touched.txt"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
    let edited = src.join("sub/edited.bin");
    let mtime =
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(&edited).unwrap());
    std::fs::write(&edited, "0123456789abcdeX").unwrap();
    filetime::set_file_mtime(&edited, mtime).unwrap();
    std::fs::set_permissions(src.join("chmod.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    std::fs::write(src.join("new.txt"), "new").unwrap();

    let o = s.run(["--json", "check", "--compare-source", src.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let objs = lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        differences(&objs, &src),
        [
            ("mode".to_string(), "/chmod.sh".to_string()),
            ("missing".into(), "/gone.txt".into()),
            ("new".into(), "/new.txt".into()),
            ("content".into(), "/sub/edited.bin".into()),
        ],
        "{objs:?}"
    );
    let last = objs.last().unwrap();
    assert_eq!(last["ok"], false);
    assert!(last["files_read"].as_u64().unwrap() >= 3, "{last}");
    // A path no snapshot holds is a usage error.
    let (code, err) = s.fail(["check", "--compare-source", "/nonexistent/x"]);
    assert_eq!(code, 2, "{err}");
}

/// `check --compare-source PATH --exclude GLOB` skips what a backup with
/// the same `--exclude` skipped, with the same matching (a name at any
/// depth, a trailing path, everything below an excluded folder): such a
/// tree compares clean, while without the patterns its excluded entries
/// show up as new; a change outside the patterns is still found.
#[test]
fn compare_source_with_the_backups_excludes() {
    let (s, src) = source_tree(&[
        ("app/main.rs", "fn main() {}"),
        ("app/debug.log", "log"),
        ("app/cache/deep/blob", "cached"),
        ("data/keep.txt", "kept"),
        ("data/run.log", "log"),
    ]);
    let excludes = ["--exclude", "*.log", "--exclude", "app/cache"];
    let src_s = src.to_str().unwrap();
    let mut backup = vec!["backup", src_s];
    backup.extend(excludes);
    s.ok(&backup);
    let compare = |extra: &[&str]| {
        let mut a = vec!["--json", "check", "--compare-source", src_s];
        a.extend(extra);
        let o = s.run(&a);
        let objs = lines(&String::from_utf8_lossy(&o.stdout));
        (
            o.status.code(),
            differences(&objs, &src),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, diffs, err) = compare(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        diffs,
        [
            ("new".to_string(), "/app/cache".to_string()),
            ("new".into(), "/app/debug.log".into()),
            ("new".into(), "/data/run.log".into()),
        ]
    );
    let (code, diffs, err) = compare(&excludes);
    assert_eq!((code, diffs.as_slice()), (Some(0), &[][..]), "{err}");
    // Changes in excluded entries stay unseen; one outside them is found,
    // and an entry the snapshot holds that is excluded now is not compared.
    std::fs::write(src.join("app/cache/deep/blob"), "other").unwrap();
    std::fs::write(src.join("data/keep.txt"), "KEPT").unwrap();
    let (code, diffs, err) = compare(&["--exclude", "*.log", "--exclude", "app/cache"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        diffs,
        [("content".to_string(), "/data/keep.txt".to_string())]
    );
    let (code, diffs, err) = compare(&[
        "--exclude",
        "*.log",
        "--exclude",
        "app/cache",
        "--exclude",
        "keep.txt",
    ]);
    assert_eq!((code, diffs.as_slice()), (Some(0), &[][..]), "{err}");
    // A bad pattern is a usage error naming it.
    let (code, _, err) = compare(&["--exclude", "a[b"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a[b"), "{err}");
}

/// A standalone `snap check --metrics-file FILE` (no profile) writes the
/// check series a profile's check step writes; a later failing check sets
/// success to 0 and keeps the last success time; other samples in the
/// file are kept.
#[test]
fn standalone_check_writes_metrics() {
    let (s, src) = source_tree(&[("a.txt", "some bytes")]);
    s.ok(["backup", src.to_str().unwrap()]);
    let file = s.path("snap.prom");
    let other = "snap_snapshots{profile=\"web\",repository=\"main\"} 7";
    std::fs::write(&file, format!("{other}\n")).unwrap();
    let f = file.to_str().unwrap();
    s.ok(["check", "--metrics-file", f]);
    let m = std::fs::read_to_string(&file).unwrap();
    let labels = format!(
        "profile=\"nightly-check\",repository=\"{}\",operation=\"check\"",
        s.repo
    );
    let first = |text: &str, metric: &str| sample(text, metric, &labels);
    // Default name: profile="check".
    let default = format!(
        "profile=\"check\",repository=\"{}\",operation=\"check\"",
        s.repo
    );
    assert_eq!(
        sample(&m, "snap_last_run_success", &default),
        Some(1.0),
        "{m}"
    );
    assert!(m.contains(other), "{m}");
    assert!(m.contains("# TYPE snap_last_run_success gauge"), "{m}");

    s.ok([
        "check",
        "--metrics-file",
        f,
        "--metrics-name",
        "nightly-check",
    ]);
    let m = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first(&m, "snap_last_run_success"), Some(1.0), "{m}");
    let success = first(&m, "snap_last_success_timestamp_seconds").expect("last success");
    assert!(first(&m, "snap_duration_seconds").is_some(), "{m}");
    // Damage the repository: every pack gone.
    for e in std::fs::read_dir(std::path::Path::new(&s.repo).join("data")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, err) = s.fail([
        "check",
        "--metrics-file",
        f,
        "--metrics-name",
        "nightly-check",
    ]);
    assert_eq!(code, 1, "{err}");
    let m = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first(&m, "snap_last_run_success"), Some(0.0), "{m}");
    assert_eq!(
        first(&m, "snap_last_success_timestamp_seconds"),
        Some(success),
        "{m}"
    );
    assert!(
        first(&m, "snap_last_run_timestamp_seconds").unwrap() > success,
        "{m}"
    );
    assert!(m.contains(other), "{m}");
    assert_eq!(
        sample(&m, "snap_last_run_success", &default),
        Some(1.0),
        "{m}"
    );
    // Each series once.
    assert_eq!(m.matches("snap_last_run_success{").count(), 2, "{m}");
}
