//! End-to-end tests of the built `snap` binary on local repositories
//! (issue "Core").

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Deterministic pseudo-random bytes (xorshift), for incompressible content.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn set_mtime(p: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 123_456_789);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// Builds the tree the issue names: empty and 1-byte files, a 200 MiB file,
/// symlinks, deep and unicode paths, a non-UTF-8 name, a hard link, a sparse
/// file, a fifo, odd modes and an extended attribute.
fn make_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("one"), b"x").unwrap();
    // 200 MiB: half noise, half repetitive text, so both raw and zstd blobs occur.
    {
        let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
        for i in 0..100u64 {
            if i % 2 == 0 {
                f.write_all(&noise(i + 1, 2 << 20)).unwrap();
            } else {
                let line = format!("line {i} of a fairly compressible text block\n");
                f.write_all(&line.repeat((2 << 20) / line.len() + 1).as_bytes()[..2 << 20])
                    .unwrap();
            }
        }
    }
    let mut deep = root.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("leaf.txt"), b"deep leaf").unwrap();
    let uni = root.join("ünïcødé 日本語 🦀");
    std::fs::create_dir_all(&uni).unwrap();
    std::fs::write(uni.join("файл.txt"), "привет".repeat(100)).unwrap();
    std::fs::write(
        root.join(OsStr::from_bytes(b"bad-\xff\xfe-name")),
        b"non-utf8 name",
    )
    .unwrap();
    std::os::unix::fs::symlink("one", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    std::fs::write(root.join("hard-a"), b"hard linked content").unwrap();
    std::fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    {
        let f = std::fs::File::create(root.join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"island in the middle", 32 << 20).unwrap();
    }
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    std::fs::write(root.join("exec.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("exec.sh"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::write(root.join("private"), b"secret-ish").unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let _ = xattr::set(root.join("one"), "user.snaptest", b"attr-value");
    for (i, e) in walk(root).iter().enumerate() {
        set_mtime(e, 1_600_000_000 + i as i64);
    }
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.push(p);
    }
    out.sort();
    out.reverse(); // children before parents, so directory mtimes stick
    out
}

fn stored_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for p in walk(dir) {
        if p.is_file() {
            n += std::fs::metadata(&p).unwrap().len();
        }
    }
    n
}

#[test]
fn generated_tree_roundtrip_and_incremental() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    make_tree(&src);
    let first = s.backup_json([src.as_os_str()]);
    let added1 = first["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(added1 > 100 << 20, "first backup stored {added1} bytes");
    let repo_after_first = stored_bytes(Path::new(&s.repo));

    let target = s.path("out");
    s.ok([
        os("restore"),
        os("latest"),
        os("--target"),
        target.as_os_str(),
    ]);
    let restored = restored_path(&target, &src);
    let d = tree_diff(&src, &restored);
    assert!(d.is_empty(), "restored tree differs: {d:?}");
    // Hard links come back linked, sparse files come back sparse.
    let a = std::fs::metadata(restored.join("hard-a")).unwrap();
    let b = std::fs::metadata(restored.join("hard-b")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link restored as two files");
    let sp = std::fs::metadata(restored.join("sparse")).unwrap();
    assert_eq!(sp.len(), 64 << 20);
    assert!(
        sp.blocks() * 512 < 8 << 20,
        "sparse file restored dense: {} blocks",
        sp.blocks()
    );
    assert!(std::fs::metadata(restored.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    if xattr::get(src.join("one"), "user.snaptest")
        .ok()
        .flatten()
        .is_some()
    {
        assert_eq!(
            xattr::get(restored.join("one"), "user.snaptest")
                .unwrap()
                .as_deref(),
            Some(&b"attr-value"[..])
        );
    }

    // Second backup of the unchanged tree: under 1% of the first's bytes.
    let second = s.backup_json([src.as_os_str()]);
    let added2 = second["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(
        added2 * 100 < added1,
        "second backup added {added2} of {added1} bytes"
    );
    assert_eq!(second["summary"]["files_new"].as_u64(), Some(0));
    assert!(second["summary"]["files_unchanged"].as_u64().unwrap() >= 10);
    let growth = stored_bytes(Path::new(&s.repo)) - repo_after_first;
    assert!(
        growth * 100 < repo_after_first,
        "repository grew by {growth} bytes"
    );

    // A changed file is read again, and only its new chunks are stored.
    std::fs::write(src.join("one"), b"y").unwrap();
    let third = s.backup_json([src.as_os_str()]);
    assert_eq!(third["summary"]["files_changed"].as_u64(), Some(1));
    assert!(third["summary"]["bytes_added_stored"].as_u64().unwrap() < 1 << 20);
    assert_eq!(s.snapshot_ids().len(), 3);
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn stdin_stream_roundtrip_and_failing_command() {
    let s = Snap::new();
    s.init();
    let data = noise(7, 3 << 20);
    let mut child = s
        .cmd([
            os("backup"),
            os("--stdin"),
            os("--stdin-name"),
            os("dump.sql"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let out = s
        .cmd([os("restore"), os("latest"), os("--stdout")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, data);

    // --command stores the command's stdout.
    s.ok([
        os("backup"),
        os("--command"),
        os("printf 'abc%.0s' $(seq 1000)"),
        os("--stdin-name"),
        os("gen"),
    ]);
    let out = s
        .cmd([os("restore"), os("latest"), os("--stdout")])
        .output()
        .unwrap();
    assert_eq!(out.stdout, "abc".repeat(1000).as_bytes());

    // A failing command records no snapshot and names the command and code.
    let before = s.snapshot_ids().len();
    let (code, err) = s.fail([
        os("backup"),
        os("--command"),
        os("echo partial; echo boom >&2; exit 7"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("exit code 7"), "{err}");
    assert!(err.contains("echo partial"), "{err}");
    assert!(err.contains("boom"), "{err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert_eq!(s.snapshot_ids().len(), before);
}

#[test]
fn wrong_password_missing_repo_and_missing_path() {
    let s = Snap::new();
    // Not initialised: exit 10.
    let (code, err) = s.fail(["snapshots"]);
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("snap init"), "{err}");
    s.init();
    let mut wrong = Snap::new();
    wrong.repo = s.repo.clone();
    wrong.password = "not the password".into();
    let (code, err) = wrong.fail(["snapshots"]);
    assert_eq!(code, 12, "{err}");
    assert!(err.contains("wrong password"), "{err}");
    let (code, err) = s.fail(["backup", "/definitely/not/here"]);
    assert_eq!(code, 1);
    assert!(err.contains("/definitely/not/here"), "{err}");
    let (_, err) = s.fail(["restore", "deadbeef", "--target", "/tmp/x"]);
    assert!(err.contains("no snapshot matches"), "{err}");
    // Initialising twice is refused.
    let (_, err) = s.fail(["init"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn corrupt_pack_is_detected_not_restored() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), noise(3, 1 << 20)).unwrap();
    s.ok([os("backup"), src.as_os_str()]);
    // Flip one byte in the middle of every pack.
    for p in walk(&Path::new(&s.repo).join("data")) {
        if p.is_file() {
            let mut b = std::fs::read(&p).unwrap();
            let i = b.len() / 3;
            b[i] ^= 0x40;
            std::fs::write(&p, b).unwrap();
        }
    }
    let (code, err) = s.fail([
        os("restore"),
        os("latest"),
        os("--target"),
        s.path("out").as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("failed authentication") || err.contains("does not match"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// An unreadable file is reported and skipped; the backup finishes with exit
/// code 3. Root reads any file, so when running as root the backup runs as
/// `nobody` through `setpriv`.
#[test]
fn unreadable_file_gives_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    let s = Snap::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("readable"), b"ok").unwrap();
    std::fs::write(src.join("locked"), b"nope").unwrap();
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if as_root {
        // Hand the repository and cache to nobody.
        for p in walk(s.dir.path()) {
            let _ = std::os::unix::fs::lchown(&p, Some(65534), Some(65534));
        }
        std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(common::cli::snap_bin());
        c
    } else {
        std::process::Command::new(common::cli::snap_bin())
    };
    let out = cmd
        .arg("--repo")
        .arg(&s.repo)
        .arg("--cache-dir")
        .arg(&s.cache)
        .arg("backup")
        .arg(&src)
        .env("SNAP_PASSWORD", &s.password)
        .env("SNAP_TEST_FAST_KDF", "1")
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    if as_root {
        for p in walk(s.dir.path()) {
            let _ = std::os::unix::fs::lchown(&p, Some(0), Some(0));
        }
    }
    // The snapshot exists and holds the readable file.
    let ls = s.ok(["ls", "latest"]);
    assert!(ls.contains("readable"), "{ls}");
    assert!(!ls.contains("locked"), "{ls}");
}

#[test]
fn exclude_tag_host_and_snapshot_selection() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("keep/a.txt"), b"a").unwrap();
    std::fs::write(src.join("keep/b.log"), b"b").unwrap();
    std::fs::write(src.join("cache/c.txt"), b"c").unwrap();
    let cache_glob = format!("{}/cache", src.display());
    s.ok([
        os("backup"),
        src.as_os_str(),
        os("--exclude"),
        os("*.log"),
        os("--exclude"),
        os(&cache_glob),
        os("--tag"),
        os("nightly"),
        os("--tag"),
        os("app"),
        os("--host"),
        os("db-1"),
        os("--description"),
        os("before upgrade"),
    ]);
    let ls = s.ok(["ls", "latest"]);
    assert!(ls.contains("keep/a.txt"), "{ls}");
    assert!(!ls.contains("b.log"), "{ls}");
    assert!(!ls.contains("cache"), "{ls}");
    let v: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    assert_eq!(v[0]["tags"], serde_json::json!(["app", "nightly"]));
    assert_eq!(v[0]["hostname"], "db-1");
    assert_eq!(v[0]["description"], "before upgrade");
    // Table output names the snapshot; ids resolve by prefix and latest~N.
    let first = v[0]["id"].as_str().unwrap().to_string();
    assert!(s.ok(["snapshots"]).contains(&first[..8]));
    s.ok([os("backup"), src.as_os_str()]);
    let target = s.path("out");
    s.ok([
        os("restore"),
        os("latest~1"),
        os("--target"),
        target.as_os_str(),
    ]);
    assert!(restored_path(&target, &src).join("keep/a.txt").exists());
    assert!(!restored_path(&target, &src).join("keep/b.log").exists());
    let target2 = s.path("out2");
    s.ok([
        os("restore"),
        os(&first[..10]),
        os("--target"),
        target2.as_os_str(),
        os("--include"),
        os("*.txt"),
    ]);
    assert!(restored_path(&target2, &src).join("keep/a.txt").exists());
    // A different host does not pick that snapshot as parent: all files are new.
    let sum = s.backup_json([src.as_os_str(), os("--host"), os("other")]);
    assert_eq!(sum["summary"]["files_unchanged"].as_u64(), Some(0));
    let sum = s.backup_json([src.as_os_str(), os("--host"), os("other")]);
    assert!(sum["summary"]["files_unchanged"].as_u64().unwrap() >= 2);
}
