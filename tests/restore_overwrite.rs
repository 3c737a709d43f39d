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

/// Runs `snap --json restore latest --target T ARGS…` with `SNAP_STATS=1`
/// (expecting success) and returns the summary and the bytes of `data/`
/// objects read from the store.
fn restore_counted(s: &Snap, target: &Path, extra: &[&str]) -> (Value, String, u64) {
    let mut a = os(&[&"--json", &"restore", &"latest", &"--target", &target]);
    a.extend(extra.iter().map(OsString::from));
    let out = s.cmd(&a).env("SNAP_STATS", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{a:?}: {stdout}{stderr}");
    let sum = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let data_down = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "store_stats")
        .map(|v| {
            v["requests"]["by_kind"]["data"]["bytes_down"]
                .as_u64()
                .unwrap_or(0)
        })
        .unwrap_or_else(|| panic!("no store_stats in {stderr}"));
    (sum, stdout, data_down)
}

/// Issue #14 target: `--overwrite if-changed` over a tree where 1% of the
/// files changed (a small edit inside a large file, an append, an mtime
/// touched) reads and writes at most 5% of the tree's bytes, leaves the
/// tree identical to the snapshot and updates the edited file in place.
#[test]
fn if_changed_over_one_percent_changed_reads_and_writes_little() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let s = Snap::new();
    let src = s.path("src");
    let mut rng = common::gen::Rng::new(14);
    // 297 files of 48 KiB and 3 of 6 MiB (random: nothing compresses or
    // deduplicates), about 32 MiB.
    let (small, big) = (48 << 10, 6 << 20);
    let mut total = 0u64;
    for i in 0..300 {
        let d = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        let n = if i < 3 { big } else { small };
        std::fs::write(d.join(format!("f{i}")), rng.bytes(n)).unwrap();
        total += n as u64;
    }
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    let r = restored_path(&t, &src);
    let later = SystemTime::now() + Duration::from_secs(60);
    // 3 of 300 files change: 100 bytes in the middle of a 6 MiB file, 1000
    // bytes appended to a small one, another small one only touched.
    let edited = r.join("d0/f0");
    let f = std::fs::File::options().write(true).open(&edited).unwrap();
    f.write_all_at(&[0xa5; 100], 3 << 20).unwrap();
    drop(f);
    let ino = std::fs::metadata(&edited).unwrap().ino();
    let appended = r.join("d4/f14");
    let mut f = std::fs::File::options()
        .append(true)
        .open(&appended)
        .unwrap();
    std::io::Write::write_all(&mut f, &[7; 1000]).unwrap();
    drop(f);
    set_mtime(&r.join("d5/f25"), later);

    // A dry run names the two updates, counts their changed chunks, writes nothing.
    let (sum, out, _) = restore_counted(&s, &t, &["--overwrite", "if-changed", "--dry-run"]);
    assert_eq!(sum["updated"], 2, "{sum}");
    assert_eq!(sum["kept"], 298, "{sum}");
    assert!(
        out.contains(r#""action":"update""#) && out.contains("d0/f0"),
        "{out}"
    );
    let would = sum["bytes"].as_u64().unwrap();
    assert!(would > 0 && would <= total / 20, "{sum}");
    assert!(
        !tree_diff(&src, &r).is_empty(),
        "the dry run changed the tree"
    );

    let (sum, _, data_down) = restore_counted(&s, &t, &["--overwrite", "if-changed"]);
    let written = sum["bytes"].as_u64().unwrap();
    let read = sum["bytes_read"].as_u64().unwrap();
    eprintln!(
        "if-changed over 1% changed: wrote {written}, read {read} from the repository \
         ({data_down} data bytes by store stats), compared {} of {total} bytes",
        sum["bytes_compared"]
    );
    assert_eq!(sum["updated"], 2, "{sum}");
    assert_eq!(sum["files"], 2, "{sum}");
    assert_eq!(sum["kept"], 298, "{sum}");
    assert_eq!(written, would, "{sum}");
    assert!(written > 0 && written <= total / 20, "{sum}");
    assert!(read > 0 && read <= total / 20, "{sum}");
    assert!(data_down <= total / 20, "store read {data_down} bytes");
    // Files equal in size and mtime were not read: only the three changed ones.
    let compared = sum["bytes_compared"].as_u64().unwrap();
    assert!(compared <= (big + 3 * small) as u64, "{sum}");
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        std::fs::metadata(&edited).unwrap().ino(),
        ino,
        "not updated in place"
    );

    // Verified, and a second pass finds nothing to do.
    let (sum, _, data_down) = restore_counted(&s, &t, &["--overwrite", "if-changed", "--verify"]);
    assert_eq!(sum["verify_failed"], 0, "{sum}");
    assert_eq!(sum["kept"], 300, "{sum}");
    assert_eq!(
        (sum["bytes"].as_u64(), sum["bytes_read"].as_u64()),
        (Some(0), Some(0)),
        "{sum}"
    );
    // What the store served is the trees (tree blobs live in data packs).
    assert!(data_down < total / 100, "store read {data_down} bytes");
}

/// A file updated by `if-changed` that has another hard link is replaced,
/// not written in place: the other name keeps its content. A shortened
/// file is extended with the missing chunks.
#[test]
fn if_changed_never_writes_through_a_hard_link() {
    let s = Snap::new();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = common::gen::Rng::new(7);
    std::fs::write(src.join("linked"), rng.bytes(1 << 20)).unwrap();
    std::fs::write(src.join("short"), rng.bytes(1 << 20)).unwrap();
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    let r = restored_path(&t, &src);
    let other = s.path("other_name");
    std::fs::hard_link(r.join("linked"), &other).unwrap();
    let mut changed = std::fs::read(&other).unwrap();
    changed[1000] ^= 0xff;
    std::fs::write(&other, &changed).unwrap(); // through the other name
    let f = std::fs::File::options()
        .write(true)
        .open(r.join("short"))
        .unwrap();
    f.set_len(100_000).unwrap();
    drop(f);

    let (sum, _) = restore_json(&s, &t, &["--overwrite", "if-changed"], 0);
    assert_eq!(sum["files"], 2, "{sum}");
    assert_eq!(sum["updated"], 1, "{sum}"); // "short"; "linked" replaced whole
    let d = tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        changed,
        "wrote through the link"
    );
}

/// An existing file that `--overwrite if-changed` would update in place is
/// left exactly as it was when a blob it needs is damaged in the
/// repository: the restore reports it as not restored (exit 1) and does not
/// remove it or write part of it.
#[test]
fn if_changed_keeps_the_existing_file_when_a_needed_blob_is_damaged() {
    keeps_the_existing_file_when_a_needed_blob_is_damaged(None);
}

/// The same with the undo store's fallback forced (as where the target's
/// file system has no `O_TMPFILE`) and bounded to 64 KiB of memory: the
/// 6 MiB of overwritten bytes spill to a named temporary file, which is
/// unlinked at once (none is left in the target), and the file is still
/// put back exactly.
#[test]
fn if_changed_undo_fallback_spills_past_its_memory_bound() {
    keeps_the_existing_file_when_a_needed_blob_is_damaged(Some(64 << 10));
}

fn keeps_the_existing_file_when_a_needed_blob_is_damaged(undo_memory: Option<u64>) {
    use std::os::unix::fs::MetadataExt;
    let mut s = Snap::new();
    if let Some(n) = undo_memory {
        s.env.push(("SNAP_TEST_UNDO_MEMORY".into(), n.to_string()));
    }
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = common::gen::Rng::new(21);
    std::fs::write(src.join("big"), rng.bytes(6 << 20)).unwrap();
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    let r = restored_path(&t, &src);
    let big = r.join("big");
    // The user's copy differs from the snapshot in every chunk (one byte
    // in every 16 KiB), same size: if-changed plans an update of every chunk.
    let mut mine = std::fs::read(&big).unwrap();
    for i in (0..mine.len()).step_by(16 << 10) {
        mine[i] ^= 0x5a;
    }
    std::fs::write(&big, &mine).unwrap();
    let ino = std::fs::metadata(&big).unwrap().ino();
    // Damage the first blob of every pack holding file content (trees are
    // small and written after the content).
    let mut flipped = 0;
    for p in files_under(&Path::new(&s.repo).join("data")) {
        if p.is_file() && std::fs::metadata(&p).unwrap().len() > (1 << 20) {
            let mut b = std::fs::read(&p).unwrap();
            b[64] ^= 0x40;
            std::fs::write(&p, b).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0);

    let (sum, out) = restore_json(&s, &t, &["--overwrite", "if-changed"], 1);
    assert_eq!(sum["damaged"], 1, "{sum}");
    assert_eq!(sum["updated"], 0, "{sum}");
    assert!(out.contains(r#""type":"damaged""#), "{out}");
    let now = std::fs::read(&big).expect("the existing file was removed");
    assert!(now == mine, "the existing file was changed");
    assert_eq!(std::fs::metadata(&big).unwrap().ino(), ino);

    // Without --json: one line names the file and says it was left as it was.
    let out = s.run(os(&[
        &"restore",
        &"latest",
        &"--target",
        &t,
        &"--overwrite",
        &"if-changed",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("big") && l.contains("not restored"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("left as it was"), "{err}");
    assert!(std::fs::read(&big).unwrap() == mine);
    let left: Vec<PathBuf> = files_under(&t)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".snap-undo"))
        .collect();
    assert!(left.is_empty(), "undo files left in the target: {left:?}");
}

/// Every path under `root` (files and folders).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A folder where the snapshot has a file is not removed, and it does not
/// stop the restore: that file is named in one line (exit 1), every other
/// file is restored.
#[test]
fn a_folder_in_place_of_a_file_is_named_and_the_rest_restored() {
    let (s, src, r) = setup();
    let t = s.path("t");
    std::fs::remove_file(r.join("a.txt")).unwrap();
    std::fs::create_dir_all(r.join("a.txt/mine")).unwrap();
    std::fs::write(r.join("a.txt/mine/keep"), b"user data").unwrap();
    std::fs::write(r.join("sub/b.txt"), b"changed").unwrap();
    let (sum, out) = restore_json(&s, &t, &[], 1);
    assert_eq!(sum["blocked"], 1, "{sum}");
    assert!(out.contains(r#""type":"blocked""#), "{out}");
    assert_eq!(
        std::fs::read(r.join("sub/b.txt")).unwrap(),
        vec![b'b'; 4096]
    );
    assert_eq!(
        std::fs::read(r.join("a.txt/mine/keep")).unwrap(),
        b"user data"
    );
    let out = s.run(os(&[&"restore", &"latest", &"--target", &t]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("a.txt") && l.contains("a folder is in the way")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = src;
}

/// `--dry-run` predicts the real run: a folder in place of a file is
/// "blocked", an unchanged symlink is kept (not rewritten), a changed file
/// is updated; the dry run's summary counts match the real run's.
#[test]
fn dry_run_predicts_blocked_kept_symlink_and_update() {
    let s = Snap::new();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), vec![b'a'; 4096]).unwrap();
    std::fs::write(src.join("b.txt"), vec![b'b'; 4096]).unwrap();
    std::os::unix::fs::symlink("b.txt", src.join("link")).unwrap();
    s.init();
    s.ok(os(&[&"backup", &src]));
    let t = s.path("t");
    restore_json(&s, &t, &[], 0);
    let r = restored_path(&t, &src);
    // a.txt: a folder in its place; b.txt: changed; link: unchanged.
    std::fs::remove_file(r.join("a.txt")).unwrap();
    std::fs::create_dir_all(r.join("a.txt/mine")).unwrap();
    std::fs::write(r.join("b.txt"), vec![b'x'; 4096]).unwrap();
    let link_before = std::fs::symlink_metadata(r.join("link")).unwrap();

    let (dry, out) = restore_json(&s, &t, &["--overwrite", "if-changed", "--dry-run"], 1);
    let actions: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "action")
        .map(|v| {
            let p = v["path"].as_str().unwrap().to_string();
            let name = p.rsplit('/').next().unwrap().to_string();
            (v["action"].as_str().unwrap().to_string(), name)
        })
        .collect();
    let action = |name: &str| {
        actions
            .iter()
            .find(|(_, n)| n == name)
            .map(|(a, _)| a.as_str())
            .unwrap_or_else(|| panic!("no action for {name}: {out}"))
    };
    assert_eq!(action("a.txt"), "blocked", "{out}");
    assert_eq!(action("link"), "keep", "{out}");
    assert_eq!(action("b.txt"), "update", "{out}");
    assert!(out.contains(r#""type":"blocked""#), "{out}");
    assert_eq!(std::fs::read(r.join("b.txt")).unwrap(), vec![b'x'; 4096]);

    let (real, _) = restore_json(&s, &t, &["--overwrite", "if-changed"], 1);
    for k in [
        "files", "dirs", "kept", "updated", "blocked", "bytes", "deleted",
    ] {
        assert_eq!(dry[k], real[k], "{k}: dry run {dry}\nreal run {real}");
    }
    assert_eq!(real["blocked"], 1, "{real}");
    assert_eq!(real["updated"], 1, "{real}");
    assert_eq!(std::fs::read(r.join("b.txt")).unwrap(), vec![b'b'; 4096]);
    // The unchanged symlink was kept, not made anew.
    use std::os::unix::fs::MetadataExt;
    let link_after = std::fs::symlink_metadata(r.join("link")).unwrap();
    assert_eq!(
        link_before.ino(),
        link_after.ino(),
        "the symlink was rewritten"
    );
    assert!(r.join("a.txt/mine").is_dir());
}
