//! Issue #14 (recovery engine, part 2): restoring over existing data with
//! `--overwrite`, `--delete`, `--dry-run` and `--verify`.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Runs `snap --json restore latest --target T ARGS…` (expecting `code`) and
/// returns the summary line.
fn restore_json(s: &Snap, target: &Path, extra: &[&str], code: i32) -> (Value, String) {
    let mut a = os(&[&"--json", &"restore", &"latest", &"--target", &target]);
    a.extend(extra.iter().map(OsString::from));
    let out = s.run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{a:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    (sum, stdout)
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A source with `a.txt` and `b.txt` (4 KiB each), backed up; returns
/// (snap, src, target restored once).
fn setup() -> (Snap, PathBuf, PathBuf) {
    let s = Snap::new();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), vec![b'a'; 4096]).unwrap();
    std::fs::write(src.join("sub/b.txt"), vec![b'b'; 4096]).unwrap();
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    (s, src.clone(), restored_path(&t, &src))
}

#[test]
fn overwrite_modes() {
    let (s, src, r) = setup();
    let t = s.path("t");
    let a = r.join("a.txt");
    let b = r.join("sub/b.txt");
    let future = SystemTime::now() + Duration::from_secs(3600);
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    // a: other content, same size; b: same content, other mtime.
    let changed = |a: &Path, b: &Path, t_a: SystemTime| {
        std::fs::write(a, vec![b'x'; 4096]).unwrap();
        set_mtime(a, t_a);
        set_mtime(b, future);
    };

    changed(&a, &b, future);
    let (sum, _) = restore_json(&s, &t, &["--overwrite", "never"], 0);
    assert_eq!(sum["kept"], 2, "{sum}");
    assert_eq!(std::fs::read(&a).unwrap(), vec![b'x'; 4096]);

    // if-newer: a newer than the snapshot is kept; an older one replaced.
    let (sum, _) = restore_json(&s, &t, &["--overwrite", "if-newer"], 0);
    assert_eq!(sum["kept"], 2, "{sum}");
    assert_eq!(std::fs::read(&a).unwrap(), vec![b'x'; 4096]);
    set_mtime(&a, past);
    let (sum, _) = restore_json(&s, &t, &["--overwrite", "if-newer"], 0);
    assert_eq!(sum["kept"], 1, "{sum}");
    assert_eq!(std::fs::read(&a).unwrap(), vec![b'a'; 4096]);

    // if-changed: a's content differs (rewritten), b's matches (kept, its
    // mtime restored).
    changed(&a, &b, future);
    let (sum, _) = restore_json(&s, &t, &["--overwrite", "if-changed"], 0);
    assert_eq!(sum["kept"], 1, "{sum}");
    assert_eq!(sum["bytes"], 4096, "{sum}");
    assert_eq!(sum["bytes_compared"], 2 * 4096, "{sum}");
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");

    // always (the default): everything rewritten.
    changed(&a, &b, future);
    let (sum, _) = restore_json(&s, &t, &[], 0);
    assert_eq!(sum["kept"], 0, "{sum}");
    assert_eq!(sum["bytes"], 2 * 4096, "{sum}");
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn delete_removes_extras_but_never_follows_symlinks() {
    let (s, src, r) = setup();
    let t = s.path("t");
    let outside = s.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), b"not mine").unwrap();
    std::fs::write(r.join("extra.txt"), b"extra").unwrap();
    std::fs::create_dir_all(r.join("sub/extra_dir/deeper")).unwrap();
    std::fs::write(r.join("sub/extra_dir/deeper/f"), b"f").unwrap();
    std::os::unix::fs::symlink(&outside, r.join("sub/link_out")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep.txt"), r.join("file_link")).unwrap();

    // --dry-run lists the deletions and changes nothing.
    let (sum, out) = restore_json(&s, &t, &["--delete", "--dry-run"], 0);
    assert_eq!(sum["deleted"], 4, "{sum}");
    assert!(out.contains("\"action\":\"delete\""), "{out}");
    assert!(r.join("extra.txt").exists());
    assert!(r.join("sub/link_out").symlink_metadata().is_ok());

    let (sum, _) = restore_json(&s, &t, &["--delete"], 0);
    assert_eq!(sum["deleted"], 4, "{sum}");
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
    assert!(r.join("sub/link_out").symlink_metadata().is_err());
    assert!(r.join("file_link").symlink_metadata().is_err());
    assert_eq!(
        std::fs::read(outside.join("keep.txt")).unwrap(),
        b"not mine"
    );
    // The target's own parents (outside the restored subtree) are untouched.
    assert!(outside.exists());
}

#[test]
fn dry_run_writes_nothing() {
    let (s, _src, r) = setup();
    let fresh = s.path("fresh");
    let (sum, out) = restore_json(&s, &fresh, &["--dry-run"], 0);
    assert!(!fresh.exists(), "dry run created the target");
    assert_eq!(sum["files"], 2, "{sum}");
    assert!(out.contains("\"action\":\"write\""), "{out}");
    // Over an existing target with a changed file: listed, not written.
    std::fs::write(r.join("a.txt"), vec![b'x'; 4096]).unwrap();
    let t = s.path("t");
    let (sum, out) = restore_json(&s, &t, &["--dry-run", "--overwrite", "if-changed"], 0);
    assert_eq!(sum["kept"], 1, "{sum}");
    assert!(out.contains("a.txt"), "{out}");
    assert_eq!(std::fs::read(r.join("a.txt")).unwrap(), vec![b'x'; 4096]);
}

#[test]
fn verify_reads_back_and_names_a_mismatch() {
    let (s, _src, r) = setup();
    let t = s.path("t");
    let (sum, _) = restore_json(&s, &t, &["--verify"], 0);
    assert_eq!(sum["verify_failed"], 0, "{sum}");
    assert_eq!(sum["bytes_compared"], 2 * 4096, "{sum}");
    // A file changed on disk and kept by --overwrite never: verify names it.
    std::fs::write(r.join("a.txt"), vec![b'x'; 4096]).unwrap();
    let (sum, out) = restore_json(&s, &t, &["--verify", "--overwrite", "never"], 1);
    assert_eq!(sum["verify_failed"], 1, "{sum}");
    assert!(
        out.contains("a.txt") && out.contains("verify_failed"),
        "{out}"
    );
}

#[test]
fn if_changed_over_one_percent_changed_reads_and_writes_little() {
    let s = Snap::new();
    let src = s.path("src");
    let n = 200;
    let size = 64 << 10;
    for i in 0..n {
        let d = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..size).map(|j| ((i * 131 + j * 7) % 251) as u8).collect();
        std::fs::write(d.join(format!("f{i}")), data).unwrap();
    }
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    let r = restored_path(&t, &src);
    // 1% of the files change (same size, new content and mtime).
    for i in [3, 150] {
        let p = r.join(format!("d{}/f{i}", i % 10));
        std::fs::write(&p, vec![0x5a; size]).unwrap();
    }
    let (sum, _) = restore_json(&s, &t, &["--overwrite", "if-changed"], 0);
    let total = (n * size) as u64;
    let written = sum["bytes"].as_u64().unwrap();
    let read = sum["bytes_compared"].as_u64().unwrap();
    eprintln!("if-changed over 1% changed: wrote {written}, read {read} of {total} bytes");
    assert_eq!(sum["kept"], n as u64 - 2, "{sum}");
    assert!(written + read <= total / 20, "{sum}");
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
}
