//! Append-only operation (issue #16, format-spec §19, §25): with storage credentials that
//! allow PutObject, GetObject and ListBucket but not DeleteObject, `backup`, `copy` (to such
//! a repository) and `check` run to completion; a delete (`forget`, `unlock --all`) fails at
//! the store and snap says why in one line. Runs the built binary against the moto of
//! scripts/services.sh that enforces IAM authorization (SNAP_TEST_S3AUTH_*); under CI=true a
//! missing server fails the test.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services::{self, unique_name, S3Auth};

fn snap_with(auth: &S3Auth, prefix: &str, keys: &(String, String)) -> Snap {
    let mut s = Snap::new();
    s.repo = format!("s3://{}/{prefix}", auth.bucket);
    s.env = auth.env(keys);
    s
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn append_only_credentials_backup_copy_check_and_refuse_deletes() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let prefix = unique_name("append_");
    let full = snap_with(&auth, &prefix, &auth.full);
    full.init();
    // The same repository and cache dir, seen through the append-only user.
    let mut app = snap_with(&auth, &prefix, &auth.append);
    app.cache = full.path("cache-append");

    let src = full.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"first file\n".repeat(1000)).unwrap();
    let mut rng = common::gen::Rng::new(16);
    std::fs::write(src.join("d/b.bin"), rng.bytes(3 << 20)).unwrap();

    // Backup: completes; the lease it cannot delete is left with a one-line warning.
    let out = app.run([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    let err = stderr_of(&out);
    assert!(out.status.success(), "append-only backup failed: {err}");
    assert!(
        err.contains("left in place: the store refused DeleteObject"),
        "no warning about the lease: {err}"
    );
    // A second backup (the first one's lease is still live) and a check.
    std::fs::write(src.join("c.txt"), b"second night\n").unwrap();
    let out = app.run([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    assert!(out.status.success(), "second backup: {}", stderr_of(&out));
    let out = app.run(["check", "--read-data"]);
    assert!(
        out.status.success(),
        "append-only check: {}",
        stderr_of(&out)
    );
    let ids = app.snapshot_ids();
    assert_eq!(ids.len(), 2);

    // Copy from a local repository into an append-only repository.
    let local = Snap::new();
    local.init();
    let local_src = local.path("lsrc");
    std::fs::create_dir_all(&local_src).unwrap();
    std::fs::write(local_src.join("x.bin"), rng.bytes(1 << 20)).unwrap();
    local.ok([std::ffi::OsStr::new("backup"), local_src.as_os_str()]);
    let out = app
        .cmd(["copy", "--from", &local.repo])
        .env("SNAP_FROM_PASSWORD", &local.password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "append-only copy: {}",
        stderr_of(&out)
    );
    assert_eq!(app.snapshot_ids().len(), 3);

    // Deletes are refused at the store, and snap says why in one line.
    let (code, err) = app.fail(["forget", &ids[0]]);
    assert_ne!(code, 0);
    let line = err
        .lines()
        .find(|l| l.starts_with("snap: error"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains("the store refused DeleteObject: access denied — this repository's credentials are append-only; run prune from a machine with full credentials"),
        "unclear error: {err}"
    );
    let (_, err) = app.fail(["unlock", "--all"]);
    assert!(err.contains("the store refused DeleteObject"), "{err}");
    // Nothing was lost: three snapshots, and the data reads back byte-identical.
    assert_eq!(full.snapshot_ids().len(), 3);
    let target = full.path("restore");
    full.ok([
        std::ffi::OsStr::new("restore"),
        std::ffi::OsStr::new(&ids[1]),
        std::ffi::OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let diff = tree_diff(&src, &restored_path(&target, &src));
    assert!(diff.is_empty(), "restore differs: {diff:?}");

    // The trusted machine (full credentials) removes the leases left behind and forgets.
    let out = full.ok(["unlock", "--all"]);
    let n: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("unlock output: {out}"));
    assert!(
        n >= 3,
        "expected the leases left behind, removed {n}: {out}"
    );
    full.ok(["forget", &ids[0]]);
    assert_eq!(full.snapshot_ids().len(), 2);
}
