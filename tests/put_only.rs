//! Put-only host keys (issue #16, format-spec §5.1, §11.1, §13.1, §25.9): a host whose key
//! was made with `snap key add --put-only` backs up a file tree and a real `pg_dump`
//! stream night after night, with full deduplication and delta blobs from its local base
//! cache, but cannot restore, list, find, dump, diff, check, forget or prune; a full key
//! restores everything byte-identical. Runs the built binary against a local repository
//! and the S3 server of scripts/services.sh (SNAP_TEST_S3_*), and the PostgreSQL of
//! SNAP_TEST_PG_*; under CI=true a missing service fails the test.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services;
use snap::crypto::KeyRole;
use snap::format::keyfile::KeyFile;
use snap::{ErrorKind, Repository};

const PUT_PASSWORD: &str = "put-only host password";
const REFUSAL: &str =
    "this key is put-only: it can make backups but not read or delete them; use a full key";

/// A full-key handle on a new split-key repository at `repo` (`init --put-only-ready`)
/// and a put-only handle on it with its own cache directory.
fn split_repo(full: Snap) -> (Snap, Snap) {
    full.ok(["init", "--put-only-ready"]);
    let out = full
        .cmd(["key", "add", "--put-only"])
        .env("SNAP_NEW_PASSWORD", PUT_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "key add --put-only: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("added put-only key"));
    let mut put = Snap::new();
    put.repo = full.repo.clone();
    put.env = full.env.clone();
    put.password = PUT_PASSWORD.into();
    (full, put)
}

/// Asserts that `snap ARGS` with the put-only key fails with exit 1 and exactly the
/// one-line refusal.
fn refused(put: &Snap, args: &[&str]) {
    let (code, err) = put.fail(args);
    assert_eq!(code, 1, "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines, [format!("snap: error: {REFUSAL}")], "{args:?}");
}

fn write_tree(root: &std::path::Path, seed: u64) {
    let mut rng = common::gen::Rng::new(seed);
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    std::fs::write(root.join("a.txt"), b"first file\n".repeat(5000)).unwrap();
    std::fs::write(root.join("docs/b.bin"), rng.bytes(3 << 20)).unwrap();
    std::fs::write(root.join("docs/deep/c.txt"), b"deep\n").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
}

/// Files: two put-only backups (the second uploads almost nothing), every read and delete
/// refused, a full key restores byte-identical.
fn files_roundtrip(full: Snap) {
    let (full, put) = split_repo(full);
    let src = full.path("src");
    write_tree(&src, 7);
    let s1 = put.backup_json([src.as_os_str()]);
    assert_eq!(s1["summary"]["files_new"], 3, "{s1}");
    let s2 = put.backup_json([src.as_os_str()]);
    // The parent comes from the host's own catalog and tree cache: every file unchanged,
    // nothing read, and at most the few tree blobs on the way to the sources stored.
    assert_eq!(s2["summary"]["files_unchanged"], 3, "{s2}");
    assert_eq!(s2["summary"]["bytes_read"], 0, "{s2}");
    let added = s2["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(
        added < 8 << 10,
        "second unchanged backup stored {added} bytes"
    );

    let id = s2["snapshot"].as_str().unwrap().to_string();
    let target = full.path("t");
    for args in [
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
        vec!["restore", &id, "--target", target.to_str().unwrap()],
        vec!["ls", "latest"],
        vec!["find", "a.txt"],
        vec!["dump", "latest", "a.txt"],
        vec!["snapshots"],
        vec!["diff", "latest~1", "latest"],
        vec!["stats"],
        vec!["check"],
        vec!["forget", &id],
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["tag", &id, "--add", "x"],
        vec!["key", "export"],
        vec!["key", "add"],
    ] {
        refused(&put, &args);
    }
    assert!(!target.exists(), "a refused restore wrote {target:?}");

    // The full key sees both snapshots and restores the tree byte-identical.
    assert_eq!(full.snapshot_ids().len(), 2);
    full.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "restored tree differs: {d:?}");
    full.ok(["check", "--read-data"]);
}

#[test]
fn put_only_host_backs_up_files_local() {
    files_roundtrip(Snap::new());
}

#[test]
fn put_only_host_backs_up_files_s3() {
    let Some(s3) = services::s3() else { return };
    let mut full = Snap::new();
    full.repo = s3.repo_url(&services::unique_name("putonly_"));
    full.env = s3.env();
    files_roundtrip(full);
}

/// One night: dumps `db` with pg_dump into a file and backs it up from stdin with each
/// handle; returns the dump bytes and each backup's `bytes_added_stored`.
fn night(pg: &services::Pg, db: &str, handles: &[&Snap]) -> (Vec<u8>, Vec<u64>) {
    let out = pg
        .command("pg_dump")
        .args(["--no-owner", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = out.stdout;
    let mut added = Vec::new();
    for h in handles {
        let out = h.run_stdin(
            ["--json", "backup", "--stdin", "--stdin-name", "shop.sql"],
            &dump,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
        added.push(v["summary"]["bytes_added_stored"].as_u64().unwrap());
    }
    (dump, added)
}

#[test]
fn put_only_pg_dump_second_night_within_twice_a_full_key() {
    let Some(pg) = services::pg() else { return };
    let db = services::unique_name("snap_putonly_");
    pg.createdb(&db);
    pg.pgbench_init(&db, 1);
    let (full, put) = split_repo(Snap::new());
    // The comparison: the same dumps into a repository written with a full key, with the
    // same chunker seed and id key (so chunks, and any trained dictionary, are the same and
    // the difference is the put-only host's own).
    let reference = Snap::new();
    reference.ok_from(
        ["init", "--copy-chunker-params-from", &full.repo],
        &full.password,
    );

    let (dump1, n1) = night(&pg, &db, &[&put, &reference]);
    pg.psql(
        &db,
        "update pgbench_accounts set abalance = abalance + 7 where aid % 211 = 0",
    );
    let (dump2, n2) = night(&pg, &db, &[&put, &reference]);
    pg.dropdb(&db);
    let (put2, full2) = (n2[0], n2[1]);
    println!(
        "first night stored: put-only {} B, full {} B; second night stored: put-only {put2} B, full {full2} B ({:.2}x)",
        n1[0],
        n1[1],
        put2 as f64 / full2.max(1) as f64
    );
    assert!(
        put2 <= 2 * full2.max(1),
        "second night: put-only key stored {put2} B, full key {full2} B"
    );
    // The put-only host's delta bases come from its local cache: without them every
    // changed chunk is stored whole, about as much as the first night (measured before
    // the cache existed: 114,593 B against 119,097 B).
    assert!(
        put2 * 2 < n1[0],
        "second night {put2} B vs first {} B",
        n1[0]
    );

    refused(&put, &["restore", "latest", "--stdout"]);
    refused(&put, &["dump", "latest", "@streams/shop.sql"]);
    // The full key restores both nights' dumps byte for byte.
    let ids = full.snapshot_ids();
    assert_eq!(ids.len(), 2);
    for (id, want) in ids.iter().zip([&dump1, &dump2]) {
        let out = full.cmd(["restore", id, "--stdout"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == *want, "dump of snapshot {id} differs");
    }
    full.ok(["check", "--read-data"]);
}

#[test]
fn put_only_key_file_holds_no_secret_and_cannot_open_a_snapshot() {
    let (full, put) = split_repo(Snap::new());
    let src = full.path("src");
    write_tree(&src, 9);
    put.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);

    let opts = snap::store::StoreOptions::default();
    let fulll = Repository::open_opts(
        &full.repo,
        full.password.as_bytes(),
        &full.path("lib-full"),
        &opts,
    )
    .unwrap();
    let putl = Repository::open_opts(
        &put.repo,
        PUT_PASSWORD.as_bytes(),
        &full.path("lib-put"),
        &opts,
    )
    .unwrap();
    assert_eq!(fulll.role(), KeyRole::Full);
    assert_eq!(putl.role(), KeyRole::PutOnly);
    let snaps: Vec<snap::SnapshotId> = snap::repo::list_sealed(fulll.store()).unwrap();
    assert_eq!(snaps.len(), 1);
    let s = fulll.read_snapshot(&snaps[0]).unwrap();
    let e = putl.read_snapshot(&snaps[0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PutOnly, "{e}");
    assert_eq!(e.to_string(), REFUSAL);
    // Nor a tree it did not write in this process, though it can locate it.
    assert!(putl.locate(&s.tree).is_ok());
    assert_eq!(
        putl.read_tree(&s.tree).unwrap_err().kind(),
        ErrorKind::PutOnly
    );
    assert!(fulll.read_tree(&s.tree).is_ok());

    // The put-only key file, opened with its password, holds the put key only: none of
    // the encryption key's or the data secret key's bytes (no 32-byte window, no 8-byte
    // window either).
    let master = fulll.key().to_bytes().unwrap();
    let data_secret = fulll.key().data_secret_bytes().unwrap();
    let keys = snap::keys::list_keys(fulll.store()).unwrap();
    let kf: KeyFile = keys
        .iter()
        .filter_map(|k| k.file.clone())
        .find(KeyFile::is_put_only)
        .expect("a put-only key file");
    let raw_json = kf.encode();
    let k = snap::crypto::unwrap_master_key(&kf, PUT_PASSWORD.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(k.role(), KeyRole::PutOnly);
    assert!(k.to_bytes().is_err(), "a put key has no master key to give");
    let put_key = k.put_key_bytes().unwrap();
    assert_eq!(put_key.len(), snap::crypto::PUT_KEY_LEN);
    for secret in [&master[..32], &data_secret[..]] {
        for w in secret.windows(8) {
            assert!(!put_key.windows(8).any(|p| p == w));
            assert!(!raw_json.windows(8).any(|p| p == w));
            let hexw = hex::encode(w);
            assert!(!String::from_utf8_lossy(&raw_json).contains(&hexw));
        }
    }
}

#[test]
fn single_key_repository_refuses_put_only_keys_with_a_way_out() {
    let s = Snap::new();
    s.init();
    let out = s
        .cmd(["key", "add", "--put-only"])
        .env("SNAP_NEW_PASSWORD", PUT_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("snap init --put-only-ready") && err.contains("snap copy"),
        "{err}"
    );
    // Nothing was written: still one key file.
    assert_eq!(
        std::fs::read_dir(std::path::Path::new(&s.repo).join("keys"))
            .unwrap()
            .count(),
        1
    );
}

/// A full key keeps a split-key repository alive: forget and prune (repacking the put-only
/// host's packs), `check --read-data`, the recovery code, a copy into another repository,
/// and the put-only host's next backup after the prune; the put-only key changes its own
/// password but cannot remove key files.
#[test]
fn full_key_prunes_copies_and_recovers_a_split_repository() {
    let (full, put) = split_repo(Snap::new());
    let src = full.path("src");
    write_tree(&src, 11);
    put.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    std::fs::remove_file(src.join("docs/b.bin")).unwrap();
    std::fs::write(src.join("new.txt"), b"night two\n").unwrap();
    put.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    full.ok(["forget", "--keep-last", "1", "--prune"]);
    full.ok(["check", "--read-data"]);
    assert_eq!(full.snapshot_ids().len(), 1);
    // The put-only host notices the prune through the index and marks, and goes on; its
    // catalog rebuild keeps its own snapshot record and trees, so only the new file is read.
    std::fs::write(src.join("third.txt"), b"night three\n").unwrap();
    let s3 = put.backup_json([src.as_os_str()]);
    assert_eq!(s3["summary"]["bytes_read"], 12, "{s3}");
    assert_eq!(s3["summary"]["files_unchanged"], 3, "{s3}");
    full.ok(["check", "--read-data"]);
    let target = full.path("t");
    full.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "restored tree differs: {d:?}");

    // Copy into a single-key repository, which restores the same tree; the put-only key
    // can neither be the source nor the destination of a copy.
    let other = Snap::new();
    other.init();
    let out = other
        .cmd(["copy", "--from", &put.repo])
        .env("SNAP_FROM_PASSWORD", PUT_PASSWORD)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(REFUSAL), "{err}");
    let out = put
        .cmd(["copy", "--from", &other.repo])
        .env("SNAP_FROM_PASSWORD", &other.password)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(REFUSAL), "{err}");
    other.ok_from(["copy", "--from", &full.repo], &full.password);
    let t2 = full.path("t2");
    other.ok(["restore", "latest", "--target", t2.to_str().unwrap()]);
    assert!(tree_diff(&src, &restored_path(&t2, &src)).is_empty());

    // The recovery code of a split-key repository brings back a full key.
    let code = full.ok(["key", "export"]);
    let out = full
        .cmd(["key", "import"])
        .env("SNAP_NEW_PASSWORD", "recovered")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(code.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Key management with the put-only key: its own password, nothing else.
    let out = put
        .cmd(["key", "passwd"])
        .env("SNAP_NEW_PASSWORD", "put-only host, new")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut put2 = Snap::new();
    put2.repo = put.repo.clone();
    put2.cache = put.cache.clone();
    put2.password = "put-only host, new".into();
    put2.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    refused(&put2, &["ls", "latest"]);
    let keys = full.ok(["--json", "key", "list"]);
    let keys: Vec<serde_json::Value> = serde_json::from_str(&keys).unwrap();
    let full_key = keys.iter().find(|k| k["role"] == "full").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    refused(&put2, &["key", "remove", &full_key]);
    assert_eq!(
        keys.iter().filter(|k| k["role"] == "put-only").count(),
        1,
        "{keys:?}"
    );
}
