//! What a new user hits in the first hour (issue 13, "Day one"): each test
//! runs the built `snap` binary.

mod common;
use common::cli::{snap_bin, Snap};
use common::gen::Rng;
use common::services;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A folder with `n` small files with long names, so that listings are long.
fn small_tree(root: &Path, n: usize, seed: u64) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..n {
        std::fs::write(
            root.join(format!("file-with-a-rather-long-name-{seed}-{i:05}.txt")),
            format!("content {seed} {i}\n"),
        )
        .unwrap();
    }
}

/// `snap ARGS` with its standard output closed by the reader before snap
/// writes: returns (exit code, stderr).
fn run_with_closed_stdout(s: &Snap, args: &[&str]) -> (Option<i32>, String) {
    let mut child = s
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_stdout_ends_every_command_quietly() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    small_tree(&data, 200, 1);
    s.ok([std::ffi::OsStr::new("backup"), data.as_os_str()]);
    small_tree(&data, 200, 2);
    s.ok([std::ffi::OsStr::new("backup"), data.as_os_str()]);
    let file = data.join("file-with-a-rather-long-name-1-00000.txt");
    let file = file.to_str().unwrap();
    for args in [
        &["ls", "latest"][..],
        &["find", "*.txt"],
        &["diff", "latest~1", "latest"],
        &["export", "latest"],
        &["snapshots"],
        &["--json", "snapshots"],
        &["dump", "latest", file],
        &["completions", "bash"],
        &["man"],
    ] {
        let (code, err) = run_with_closed_stdout(&s, args);
        assert_eq!(code, Some(141), "snap {args:?}: stderr {err}");
        // Messages such as find's "indexed N new folders" may come first.
        assert!(
            !err.contains("panicked") && !err.contains("error") && !err.contains("Broken pipe"),
            "snap {args:?} printed: {err}"
        );
    }
    // The documented code.
    let help = s
        .ok(["--help"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("141 standard output was closed"), "{help}");
}

#[test]
fn empty_variables_count_as_unset() {
    let s = Snap::new();
    s.init();
    // SNAP_PASSWORD_FILE= with SNAP_PASSWORD set: the password comes from SNAP_PASSWORD.
    let out = s
        .cmd(["snapshots"])
        .env("SNAP_PASSWORD_FILE", "")
        .env("SNAP_S3_ENDPOINT", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SNAP_REPO= snap init: the default repository under $XDG_DATA_HOME.
    let data_home = s.path("xdg-data");
    let out = Command::new(snap_bin())
        .args(["init"])
        .current_dir(s.dir.path())
        .env("SNAP_REPO", "")
        .env("SNAP_PASSWORD_FILE", "")
        .env("SNAP_CACHE_DIR", "")
        .env("SNAP_PASSWORD", &s.password)
        .env("SNAP_TEST_FAST_KDF", "1")
        .env("XDG_DATA_HOME", &data_home)
        .env("XDG_CACHE_HOME", s.path("xdg-cache"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data_home.join("snap/repo/config").is_file());
}

#[test]
fn unknown_url_scheme_is_refused() {
    let s = Snap::new();
    let cwd = s.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    for loc in ["gs://bucket/x", "azure://c/x", "b2://bucket"] {
        let out = Command::new(snap_bin())
            .args(["--repo", loc, "init"])
            .current_dir(&cwd)
            .env("SNAP_PASSWORD", &s.password)
            .env("SNAP_TEST_FAST_KDF", "1")
            .env_remove("SNAP_REPO")
            .env_remove("SNAP_PASSWORD_FILE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // A usage error (exit 2, as `snap --help` documents).
        assert_eq!(out.status.code(), Some(2), "{loc}: {err}");
        let scheme = loc.split("://").next().unwrap();
        assert!(
            err.contains(&format!("unsupported scheme {scheme}://")) && err.contains("s3://"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(left.is_empty(), "init created {left:?}");
}

#[test]
fn latest_beyond_the_count_says_how_many() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    small_tree(&data, 2, 1);
    for _ in 0..3 {
        s.ok([std::ffi::OsStr::new("backup"), data.as_os_str()]);
    }
    let (code, err) = s.fail(["restore", "latest~99", "--target", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the repository holds 3 snapshots (latest~0 to latest~2)"),
        "{err}"
    );
    s.ok(["ls", "latest~2"]);
}

#[test]
fn dump_of_a_folder_says_folder_and_what_to_use() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    small_tree(&data, 2, 1);
    s.ok([std::ffi::OsStr::new("backup"), data.as_os_str()]);
    let (code, err) = s.fail(["dump", "latest", data.to_str().unwrap()]);
    // A usage error (exit 2).
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a folder, not a file"), "{err}");
    assert!(
        err.contains("restore") && err.contains("--include") && err.contains("snap export"),
        "{err}"
    );
    assert!(!err.contains("Dir"), "{err}");
}

#[test]
fn usage_errors_under_json_are_one_json_object() {
    let s = Snap::new();
    for args in [
        &["--json", "snapshots", "--no-such-flag"][..],
        &["--json", "no-such-command"],
        &["--json", "restore"],
        &["forget", "--json", "--keep-last", "x"],
    ] {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(err.trim()).expect("JSON error object");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], 2, "{v}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{v}");
    }
    // Without --json clap's own text stays; --help and --version are unchanged.
    let out = s.run(["snapshots", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
    let out = s.run(["--json", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));
    let out = s.run(["--json", "--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("snap "));
}

#[test]
fn subcommand_help_puts_global_options_under_their_own_heading() {
    let s = Snap::new();
    for cmd in ["backup", "restore", "snapshots", "forget"] {
        let help = s.ok([cmd, "--help"]);
        let (own, global) = help
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("{cmd} --help has no Global options heading:\n{help}"));
        assert!(global.contains("--repo"), "{help}");
        assert!(global.contains("--password-file"), "{help}");
        assert!(
            !own.contains("--repo"),
            "{cmd}: --repo among the command's options"
        );
        assert!(own.contains("Options:"), "{help}");
    }
}

#[test]
fn man_page_has_nested_subcommands() {
    let s = Snap::new();
    let man = s.ok(["man"]);
    for name in [
        "snap key add",
        "snap key passwd",
        "snap repair index",
        "snap repair snapshots",
        "snap cache rebuild",
    ] {
        let heading = format!(".SH \"{}\"", name["snap ".len()..].to_uppercase());
        assert!(man.contains(&heading), "man page lacks {heading}");
        assert!(man.contains(name), "man page lacks {name}");
    }
}

#[test]
fn init_refuses_a_folder_holding_other_files() {
    let s = Snap::new();
    std::fs::create_dir_all(&s.repo).unwrap();
    std::fs::write(Path::new(&s.repo).join("notes.txt"), b"mine").unwrap();
    let (code, err) = s.fail(["init"]);
    // A usage error (exit 2).
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&s.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    // An existing empty folder is fine; a second init says "already exists".
    std::fs::remove_file(Path::new(&s.repo).join("notes.txt")).unwrap();
    s.init();
    let (_, err) = s.fail(["init"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn key_files_are_private_to_the_owner() {
    let s = Snap::new();
    s.init();
    let new_pw = s.path("new-pw");
    std::fs::write(&new_pw, "another password\n").unwrap();
    s.ok([
        std::ffi::OsStr::new("key"),
        "add".as_ref(),
        "--new-password-file".as_ref(),
        new_pw.as_os_str(),
    ]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(Path::new(&s.repo)), 0o700);
    let keys: Vec<_> = std::fs::read_dir(Path::new(&s.repo).join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(mode(&k), 0o600, "{}", k.display());
    }
}

#[test]
fn snapshots_filters() {
    let s = Snap::new();
    s.init();
    let (a, b) = (s.path("a"), s.path("b"));
    small_tree(&a, 1, 1);
    small_tree(&b, 1, 2);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    s.ok(["backup", a, "--tag", "db", "--host", "h1"]);
    s.ok(["backup", a, "--tag", "db", "--host", "h1"]);
    s.ok(["backup", b, "--tag", "files", "--host", "h1"]);
    s.ok(["backup", a, "--tag", "db", "--tag", "x", "--host", "h2"]);
    let list = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut v = vec!["--json", "snapshots"];
        v.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&s.ok(&v))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(list(&[]).len(), 4);
    assert_eq!(list(&["--tag", "db"]).len(), 3);
    assert_eq!(list(&["--tag", "db", "--tag", "x"]).len(), 1);
    assert_eq!(list(&["--host", "h2"]).len(), 1);
    assert_eq!(list(&["--path", b]).len(), 1);
    assert_eq!(list(&["--host", "h1", "--path", a]).len(), 2);
    // --latest 1: the newest of each host and path set (h1 a, h1 b, h2 a).
    let latest = list(&["--latest", "1"]);
    assert_eq!(latest.len(), 3, "{latest:?}");
    let all = list(&[]);
    assert!(
        !latest.iter().any(|x| x["id"] == all[0]["id"]),
        "oldest h1 a kept"
    );
    assert_eq!(
        list(&["--latest", "1", "--tag", "db", "--host", "h1"]).len(),
        1
    );
    let text = s.ok(["snapshots", "--tag", "files"]);
    assert!(text.contains("1 snapshots"), "{text}");
}

#[test]
fn forget_prune_dry_run_estimates_what_the_real_run_does() {
    let s = Snap::new();
    s.init();
    let d = s.path("d");
    std::fs::create_dir_all(&d).unwrap();
    let mut rng = Rng::new(7);
    std::fs::write(d.join("blob"), rng.bytes(3 << 20)).unwrap();
    s.ok([std::ffi::OsStr::new("backup"), d.as_os_str()]);
    std::fs::write(d.join("blob"), rng.bytes(3 << 20)).unwrap();
    s.ok([std::ffi::OsStr::new("backup"), d.as_os_str()]);
    let prune_line = |out: &str| -> serde_json::Value {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["type"] == "prune")
            .expect("a prune line")
    };
    let args = ["--json", "forget", "--keep-last", "1", "--prune"];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let est = prune_line(&s.ok(&dry));
    assert_eq!(s.snapshot_ids().len(), 2, "the dry run removed a snapshot");
    let real = prune_line(&s.ok(args));
    assert!(
        real["bytes_marked"].as_u64().unwrap() > 3 << 20,
        "the real run marked too little: {real}"
    );
    for k in [
        "snapshots",
        "packs_marked",
        "bytes_marked",
        "packs_repacked",
        "packs_deleted",
    ] {
        assert_eq!(est[k], real[k], "{k}: estimate {est} vs run {real}");
    }
}

#[test]
fn pg_create_into_an_existing_database_is_refused() {
    let Some(pg) = services::pg() else { return };
    let db = services::unique_name("snap_create_");
    pg.createdb(&db);
    pg.psql(
        &db,
        "create table t as select g as id, md5(g::text) as v from generate_series(1, 1000) g",
    );
    let s = Snap::new();
    s.init();
    let conninfo = pg.conninfo(&db);
    s.backup_json(["--pg", &conninfo]);

    let (code, err) = s.fail(["restore", "latest", "--pg", &conninfo, "--create"]);
    // A usage error (exit 2).
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("database \"{db}\" already exists")) && err.contains("--clean"),
        "{err}"
    );
    assert_eq!(pg.psql(&db, "select count(*) from t"), "1000");

    // With --clean the database is dropped and recreated from the dump.
    pg.psql(&db, "insert into t values (1001, 'extra')");
    s.ok([
        "restore", "latest", "--pg", &conninfo, "--create", "--clean",
    ]);
    assert_eq!(pg.psql(&db, "select count(*) from t"), "1000");

    // Without --create into the existing database: pg_restore stops at the
    // first error (the table exists) and its single transaction leaves the
    // rows as they were.
    let (_, err) = s.fail(["restore", "latest", "--pg", &conninfo]);
    assert!(err.contains("pg_restore failed"), "{err}");
    assert_eq!(pg.psql(&db, "select count(*) from t"), "1000");

    // A dump piped in through --stdin records no database: the dump's own
    // header names it.
    let dump = pg
        .command("pg_dump")
        .args(["-Fc", "-Z0", &db])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let out = s.run_stdin(
        ["backup", "--stdin", "--stdin-name", "shop.dump"],
        &dump.stdout,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = [
        "restore",
        "latest",
        "--pg",
        &conninfo,
        "--stream",
        "shop.dump",
        "--create",
    ];
    let (_, err) = s.fail(args);
    assert!(
        err.contains(&format!("database \"{db}\" already exists")),
        "{err}"
    );
    assert_eq!(pg.psql(&db, "select count(*) from t"), "1000");
    pg.dropdb(&db);
    s.ok(args);
    assert_eq!(pg.psql(&db, "select count(*) from t"), "1000");
    pg.dropdb(&db);
}

#[test]
fn error_chain_prints_each_cause_once() {
    let s = Snap {
        repo: "s3://snap-no-bucket/x".into(),
        ..Snap::new()
    };
    let out = s
        .cmd([
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--s3-retry-timeout",
            "0",
            "snapshots",
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "{err}");
    let parts: Vec<&str> = line.split(": ").filter(|p| p.len() > 12).collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(p),
            "{p:?} is printed twice in {line}"
        );
    }
}

#[test]
fn backup_json_prints_status_lines_with_totals_and_events() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    small_tree(&data, 50, 1);
    let mut rng = Rng::new(3);
    std::fs::write(data.join("big"), rng.bytes(2 << 20)).unwrap();
    let total: u64 = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let out = s.ok([
        std::ffi::OsStr::new("--json"),
        "backup".as_ref(),
        data.as_os_str(),
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let (summary, progress) = lines.split_last().unwrap();
    assert_eq!(summary["type"], "summary", "{out}");
    // Progress: status lines, and the library's events (README "Events").
    assert!(
        progress
            .iter()
            .all(|v| v["type"] == "status" || v["type"] == "event"),
        "{out}"
    );
    let events: Vec<&str> = progress
        .iter()
        .filter(|v| v["type"] == "event")
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"started"), "{out}");
    assert!(events.contains(&"pack_uploaded"), "{out}");
    assert!(events.contains(&"snapshot_saved"), "{out}");
    assert!(events.contains(&"finished"), "{out}");
    let status: Vec<&serde_json::Value> =
        progress.iter().filter(|v| v["type"] == "status").collect();
    assert!(!status.is_empty(), "no status line: {out}");
    let last = status.last().unwrap();
    assert_eq!(last["total_bytes"], total, "{last}");
    assert_eq!(last["total_files"], 51, "{last}");
    assert_eq!(last["bytes_done"], total, "{last}");
    assert_eq!(last["percent_done"], 1.0, "{last}");
    assert_eq!(last["seconds_remaining"], 0, "{last}");
    // --no-progress: the summary alone.
    small_tree(&data, 51, 2);
    let out = s.ok([
        std::ffi::OsStr::new("--json"),
        "--no-progress".as_ref(),
        "backup".as_ref(),
        data.as_os_str(),
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
}
