//! Errors at the engine boundary (issue #15, "Errors"): usage errors exit 2
//! as `snap --help` documents, warnings raised inside the library follow the
//! `--json` error contract (one JSON object per stderr line), and an error's
//! causes are printed once each.
//!
//! `SNAP_ERRORS_BIN` runs these tests against another `snap` binary (used to
//! show that they fail on a build without the changes).

mod common;
use common::cli::Snap;
use serde_json::Value;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> PathBuf {
    std::env::var_os("SNAP_ERRORS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(common::cli::snap_bin)
}

/// `snap ARGS` against `s`'s repository (as [`Snap::cmd`], with [`bin`]).
fn run<I, S>(s: &Snap, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(bin())
        .arg("--repo")
        .arg(&s.repo)
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(args)
        .env("SNAP_PASSWORD", &s.password)
        .env("SNAP_TEST_FAST_KDF", "1")
        .env_remove("SNAP_REPO")
        .env_remove("SNAP_PASSWORD_FILE")
        .env_remove("SNAP_STATS")
        .stdin(Stdio::null())
        .output()
        .expect("running snap")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every line of `err` as a JSON object; panics naming a line that is not.
fn json_lines(err: &str) -> Vec<Value> {
    err.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("stderr line is not a JSON object: {l:?}\n{err}"))
        })
        .collect()
}

/// A repository with one snapshot of a small tree.
fn repo_with_snapshot() -> Snap {
    let s = Snap::new();
    let o = run(&s, ["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let data = s.path("data");
    std::fs::create_dir_all(data.join("d")).unwrap();
    std::fs::write(data.join("d/a.txt"), b"alpha\n").unwrap();
    let o = run(&s, [OsStr::new("backup"), data.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    s
}

/// Usage errors exit 2, in text and under `--json` (whose error object
/// carries `"code": 2`): an invalid `--include` pattern, an invalid snapshot
/// id, an unknown flag. Other errors still exit 1.
#[test]
fn usage_errors_exit_2() {
    let s = repo_with_snapshot();
    let target = s.path("target");
    let t = target.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["restore", "latest", "--target", t, "--include", "["],
        &["restore", "latest", "--target", t, "--exclude", "a[b"],
        &["ls", "latest~x"],
        &["snapshots", "--no-such-flag"],
    ];
    for args in cases {
        let o = run(&s, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        let json: Vec<&str> = ["--json"].iter().chain(args).copied().collect();
        let o = run(&s, &json);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{json:?}: {err}");
        let lines = json_lines(&err);
        assert_eq!(lines.len(), 1, "{json:?}: {err}");
        assert_eq!(lines[0]["type"], "error", "{err}");
        assert_eq!(lines[0]["code"], 2, "{err}");
    }
    assert!(!target.join("d").exists(), "a refused restore wrote files");
    // Not a usage error: a snapshot that does not exist is exit 1.
    let o = run(&s, ["ls", "deadbeef"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// A warning raised inside the library (here: the backup's lease cannot be
/// removed at the end, because a source command replaced its object by a
/// directory) comes through the program's warning sink: under `--json` as a
/// `{"type": "warning"}` object on stderr, never as plain text; without
/// `--json` with the usual "snap: warning:" prefix.
#[test]
fn library_warning_follows_the_json_contract() {
    let s = Snap::new();
    let o = run(&s, ["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let locks = PathBuf::from(&s.repo).join("locks");
    let command = format!(
        "x.txt=for f in '{}'/*; do rm \"$f\" && mkdir -p \"$f/x\"; done; echo data",
        locks.display()
    );
    for json in [true, false] {
        let mut args = vec!["backup", "--command", &command];
        if json {
            args.insert(0, "--json");
        }
        let o = run(&s, &args);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        if json {
            let lines = json_lines(&err);
            let w: Vec<&Value> = lines.iter().filter(|v| v["type"] == "warning").collect();
            assert_eq!(w.len(), 1, "{err}");
            let m = w[0]["message"].as_str().unwrap();
            assert!(m.starts_with("removing lease "), "{m}");
            assert!(m.contains("Is a directory"), "{m}");
        } else {
            let w: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
            assert_eq!(w.len(), 1, "{err}");
            assert!(w[0].starts_with("snap: warning: removing lease "), "{err}");
        }
        // Leave the repository without the stuck lease for the next round.
        std::fs::remove_dir_all(&locks).unwrap();
        std::fs::create_dir(&locks).unwrap();
    }
}

/// An error's cause (an `std::io::Error` kept as `source()`) is printed once,
/// after the message of the level that met it; the same under `--json`.
#[test]
fn io_cause_is_printed_once() {
    let s = Snap::new();
    let o = run(&s, ["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let missing = s.path("no-such-password-file");
    let pf = missing.to_str().unwrap();
    let o = run(&s, ["--password-file", pf, "snapshots"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "{err}");
    assert!(line.starts_with("snap: error: "), "{err}");
    assert!(line.contains(pf), "{err}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{err}"
    );
    let o = run(&s, ["--json", "--password-file", pf, "snapshots"]);
    let err = stderr(&o);
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let m = lines[0]["message"].as_str().unwrap();
    assert_eq!(m.matches("No such file or directory").count(), 1, "{m}");
    assert_eq!(lines[0]["code"], 1, "{err}");
}

/// A backup's own warnings (an entry that cannot be read; a file changed
/// while read) come as JSON objects on stderr under `--json`, like the
/// library's: `/proc/self/mem` reads as an I/O error at offset 0.
#[test]
fn backup_warnings_follow_the_json_contract() {
    let s = Snap::new();
    s.init();
    let o = run(&s, ["--json", "backup", "/proc/self/mem"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    let lines = json_lines(&err);
    assert!(
        lines.iter().any(|v| v["type"] == "warning"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("/proc/self/mem"))),
        "no JSON warning naming the file: {err}"
    );
}
