//! Every writer holds a lease (format-spec §19): the session API and the
//! commands that used to write without one (`import-tar`, `key remove`).

mod common;
use common::cli::Snap;
use snap::session::Operation;
use snap::store::StoreOptions;
use snap::{ErrorKind, Session};
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The live leases, as `snap --json locks` lists them.
fn live_leases(s: &Snap) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(["--json", "locks"])).expect("locks --json");
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|l| l["live"] == true)
        .cloned()
        .collect()
}

/// Polls `snap locks` until a lease appears (at most 30 s).
fn wait_for_lease(s: &Snap, child: &mut Child) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(l) = live_leases(s).into_iter().next() {
            return l;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer ended without a lease ever being listed"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no lease appeared while the writer was waiting for input"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A small uncompressed tar archive with one file.
fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"imported while a lease was held\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, "dir/file.txt", &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// `import-tar -` takes a `backup` lease (detail `import-tar`) before it
/// reads the archive and holds it while it writes: an exclusive operation is
/// refused with exit 11 naming it, and the lease is gone once the import
/// has recorded its snapshot. (Before the session API the import took no
/// lease at all, so a concurrent prune could delete packs it relied on.)
#[test]
fn import_tar_holds_a_lease_while_it_writes() {
    let s = Snap::new();
    s.init();
    let mut child = s
        .cmd(["--json", "import-tar", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lease = wait_for_lease(&s, &mut child);
    assert_eq!(lease["lease"]["operation"], "backup", "{lease}");
    assert_eq!(lease["lease"]["detail"], "import-tar", "{lease}");
    assert_eq!(lease["lease"]["pid"], child.id(), "{lease}");

    let (code, err) = s.fail(["repair", "index"]);
    assert_eq!(code, 11, "{err}");
    assert!(err.contains("backup (import-tar) by pid"), "{err}");

    // The archive arrives; the import finishes and releases its lease.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(live_leases(&s).is_empty());
    assert_eq!(s.snapshot_ids().len(), 1);
    let ls = s.ok(["ls", "latest"]);
    assert!(ls.contains("file.txt"), "{ls}");
}

/// `key remove` takes the exclusive lease: while a backup holds its lease
/// it is refused with exit 11 naming the backup, and the key file stays;
/// once the backup has ended it succeeds. (Before, it removed the key file
/// without any lease.)
#[test]
fn key_remove_is_refused_while_a_backup_holds_a_lease() {
    let s = Snap::new();
    s.init();
    let out = s
        .cmd(["--json", "key", "add"])
        .env("SNAP_NEW_PASSWORD", "a second password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = added["id"].as_str().unwrap().to_string();
    let keys_dir = std::path::Path::new(&s.repo).join("keys");
    let key_files = || std::fs::read_dir(&keys_dir).unwrap().count();
    assert_eq!(key_files(), 2);

    // A backup reading a stream that has not arrived yet holds its lease.
    let mut backup = s
        .cmd(["backup", "--stdin", "--stdin-name", "slow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lease = wait_for_lease(&s, &mut backup);
    assert_eq!(lease["lease"]["operation"], "backup", "{lease}");

    let (code, err) = s.fail(["key", "remove", &second[..8]]);
    assert_eq!(code, 11, "{err}");
    assert!(err.contains("backup by pid"), "{err}");
    assert_eq!(key_files(), 2, "the key file was removed despite the lease");
    // The refused command left no lease of its own behind.
    assert_eq!(live_leases(&s).len(), 1);

    let mut stdin = backup.stdin.take().unwrap();
    stdin.write_all(b"stream data\n").unwrap();
    drop(stdin);
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    s.ok(["key", "remove", &second[..8]]);
    assert_eq!(key_files(), 1);
    assert!(live_leases(&s).is_empty());
}

/// `key passwd` is exclusive too; `key add`, `tag` and `forget` take shared
/// leases that a running backup does not block.
#[test]
fn key_passwd_is_exclusive_and_shared_writers_run_beside_a_backup() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    s.backup_json([src.as_os_str()]);
    s.backup_json([src.as_os_str()]);

    let mut backup = s
        .cmd(["backup", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lease(&s, &mut backup);

    let out = s
        .cmd(["key", "passwd"])
        .env("SNAP_NEW_PASSWORD", "new password")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(11),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .cmd(["key", "add"])
        .env("SNAP_NEW_PASSWORD", "another password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(["tag", "latest", "--add", "kept"]);
    s.ok(["forget", "--keep-tag", "kept"]);
    assert_eq!(s.snapshot_ids().len(), 1);
    // Only the backup's lease is left.
    assert_eq!(live_leases(&s).len(), 1);

    drop(backup.stdin.take());
    assert!(backup.wait().unwrap().success());
    assert!(live_leases(&s).is_empty());
}

/// The library side: a session lists its lease from `Session::open` until
/// it is dropped, and a write entry point refuses a session opened for
/// another operation.
#[test]
fn session_holds_its_lease_and_checks_its_operation() {
    let s = Snap::new();
    s.init();
    let open = |op| {
        Session::open(
            &s.repo,
            s.password.as_bytes(),
            &s.cache,
            &StoreOptions::default(),
            op,
        )
    };
    let session = open(Operation::Backup).unwrap();
    let leases = live_leases(&s);
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["name"], session.lease().name());
    assert_eq!(leases[0]["lease"]["operation"], "backup");

    // A backup's session may not remove key files or snapshots.
    let e = session.remove_key("00").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
    assert!(e.to_string().contains("key remove"), "{e}");
    let e = session
        .remove_snapshot(&snap::SnapshotId::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{e}");

    // An exclusive session is refused while the backup's lease lives.
    let e = open(Operation::KeyRemove).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
    assert_eq!(live_leases(&s).len(), 1);

    let repo = session.finish();
    assert!(live_leases(&s).is_empty());
    assert!(repo.snapshots().unwrap().is_empty());
    let exclusive = open(Operation::KeyRemove).unwrap();
    assert_eq!(live_leases(&s)[0]["lease"]["operation"], "exclusive");
    drop(exclusive);
    assert!(live_leases(&s).is_empty());
}
