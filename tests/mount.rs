//! `snap mount`: the read logic through the library (no FUSE needed), then
//! the real thing: the built binary mounted on a folder and read with plain
//! std::fs calls, `cp` and `grep`, unmounted by SIGTERM and by `umount`.
//!
//! Where /dev/fuse cannot be opened the FUSE test says so and passes; under
//! CI=true it fails instead.

mod common;
use common::cli::{restored_path, Snap};
use common::gen::Rng;
use common::services::in_ci;
use snap::read::mount::{FsError, MountFs, MountOptions, ROOT_INO};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Two snapshots of a tree with a multi-chunk file, a small text file, a
/// symlink, and a stream. Returns (harness, source dir, big file bytes,
/// stream bytes, [first id, second id, stream snapshot id]).
struct Fixture {
    s: Snap,
    src: PathBuf,
    big: Vec<u8>,
    stream: Vec<u8>,
    ids: Vec<String>,
}

/// Files in the folder `many`.
const MANY: usize = 1500;

/// The first version of docs/notes.txt (the second lacks the needle).
const NOTES: &[u8] = b"first line\nthe needle is here\nlast\n";

fn fixture() -> Fixture {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    let mut rng = Rng::new(7);
    let big = rng.bytes(5 << 20);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("docs/notes.txt"), NOTES).unwrap();
    std::fs::set_permissions(
        src.join("docs/notes.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("docs/notes.txt", src.join("link")).unwrap();
    // More names than one readdir reply holds: the listing comes in pages.
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..MANY {
        std::fs::write(
            src.join(format!("many/file-with-a-longish-name-{i:05}")),
            b"",
        )
        .unwrap();
    }
    let v1 = s.backup_json([src.as_os_str(), "--tag".as_ref(), "daily".as_ref()]);
    std::fs::write(src.join("docs/notes.txt"), b"second version, no match\n").unwrap();
    let v2 = s.backup_json([src.as_os_str()]);
    let stream = rng.text(700_000);
    let out = s.run_stdin(
        ["--json", "backup", "--stdin", "--stdin-name", "db.sql"],
        &stream,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v3: serde_json::Value =
        serde_json::from_str(line.lines().last().unwrap()).expect("summary JSON");
    let ids = [v1, v2, v3]
        .iter()
        .map(|v| v["snapshot"].as_str().unwrap()[..8].to_string())
        .collect();
    Fixture {
        s,
        src,
        big,
        stream,
        ids,
    }
}

/// Walks `path` (components of bytes) from the root with lookups.
fn walk(fs: &MountFs, path: &Path) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for c in path.components() {
        use std::os::unix::ffi::OsStrExt;
        if let std::path::Component::Normal(n) = c {
            ino = fs.lookup(ino, n.as_bytes())?.ino;
        }
    }
    Ok(ino)
}

#[test]
fn library_reads_any_range_through_a_bounded_cache() {
    let f = fixture();
    let repo = snap::Repository::open(&f.s.repo, f.s.password.as_bytes(), &f.s.cache).unwrap();
    // The big file spans several content blobs, so reads cross blob edges.
    let (_, first) = repo.resolve_snapshot(&f.ids[0]).unwrap();
    let entry = snap::read::restore::find_entry(
        &repo,
        &first.tree,
        f.src.join("big.bin").to_str().unwrap(),
    )
    .unwrap();
    assert!(entry.content.len() >= 4, "{} blobs", entry.content.len());
    // A cache of 1 MiB: smaller than the big file, so blobs are dropped and
    // decoded again; every read must still be right.
    let fs = MountFs::new(
        repo,
        MountOptions {
            cache_bytes: 1 << 20,
        },
    )
    .unwrap();

    let names: Vec<String> = fs
        .children(walk(&fs, Path::new("snapshots")).unwrap())
        .unwrap()
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect();
    let mut want: Vec<String> = f.ids.clone();
    want.push("latest".into());
    want.sort();
    assert_eq!(names, want);
    let latest = walk(&fs, Path::new("snapshots/latest")).unwrap();
    assert_eq!(fs.readlink(latest).unwrap(), f.ids[2].as_bytes());
    // One host: its three snapshots by time, and `latest` naming the newest.
    let hosts = fs.children(walk(&fs, Path::new("hosts")).unwrap()).unwrap();
    assert_eq!(hosts.len(), 1);
    let by_time = fs.children(hosts[0].1).unwrap();
    let names: Vec<&[u8]> = by_time.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names.len(), 4, "{by_time:?}");
    assert_eq!(*names.last().unwrap(), b"latest");
    // Only the newest (the stream snapshot) has @streams.
    let target = fs.readlink(by_time[3].1).unwrap();
    let newest = fs.lookup(hosts[0].1, &target).unwrap();
    assert!(
        fs.lookup(newest.ino, b"@streams").is_ok(),
        "hosts/*/latest names the newest"
    );

    let snap1 = PathBuf::from("snapshots").join(&f.ids[0]);
    let big = walk(&fs, &restored_path(&snap1, &f.src.join("big.bin"))).unwrap();
    let attr = fs.attr(big).unwrap();
    assert_eq!(attr.size, f.big.len() as u64);
    let fh = fs.open(big).unwrap();
    let mut rng = Rng::new(99);
    let n = f.big.len() as u64;
    for _ in 0..300 {
        let off = rng.range(0, n + 10);
        let len = rng.range(0, 400_000) as u32;
        let got = fs.read(fh, off, len).unwrap();
        let lo = off.min(n) as usize;
        let hi = (off + u64::from(len)).min(n) as usize;
        assert_eq!(got.len(), hi - lo, "length at {off}+{len}");
        assert!(got == f.big[lo..hi], "bytes differ at {off}+{len}");
    }
    let (used, _) = fs.cache_usage();
    assert!(
        used <= 1 << 20,
        "cache holds {used} bytes over its 1 MiB bound"
    );
    fs.release(fh);
    assert!(matches!(fs.read(fh, 0, 1), Err(FsError::BadHandle)));

    // Errors: a missing name, a folder opened as a file, a file listed.
    let root1 = walk(&fs, &snap1).unwrap();
    assert!(matches!(fs.lookup(root1, b"nope"), Err(FsError::NotFound)));
    assert!(matches!(fs.open(root1), Err(FsError::IsDir)));
    assert!(matches!(fs.children(big), Err(FsError::NotDir)));
    // The stream is a file under @streams in its snapshot.
    let st = walk(
        &fs,
        Path::new(&format!("snapshots/{}/@streams/db.sql", f.ids[2])),
    )
    .unwrap();
    let fh = fs.open(st).unwrap();
    assert!(fs.read(fh, 0, u32::MAX).unwrap() == f.stream);
}

/// Whether FUSE can be used here; the reason when not.
fn fuse_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map(drop)
        .map_err(|e| format!("/dev/fuse cannot be opened: {e}"))
}

/// A running `snap mount`; on drop (a failed test) it is killed and the
/// mount point detached so that no stale mount stays behind.
struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
    done: Arc<AtomicBool>,
}

impl Mounted {
    fn start(s: &Snap, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let child = s
            .cmd([
                "mount".as_ref(),
                dir.as_os_str(),
                "--cache-size".as_ref(),
                "8".as_ref(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn snap mount");
        // Watchdog: a file system that stops answering would hang the test's
        // own reads; after 3 minutes the server is killed (pending calls then
        // fail with ENOTCONN) and the mount point detached.
        let done = Arc::new(AtomicBool::new(false));
        {
            let (done, pid, dir) = (done.clone(), child.id().to_string(), dir.to_path_buf());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(180) {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                eprintln!("watchdog: snap mount {pid} still serving after 180 s; killing it");
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                let _ = Command::new("umount").arg("-l").arg(&dir).status();
            });
        }
        let mut m = Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
            done,
        };
        let t0 = Instant::now();
        while !dir.join("snapshots").exists() {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let out = m.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "snap mount exited with {st} before mounting: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "mount did not appear in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Waits for the process; returns (exit code, stderr).
    fn wait(mut self) -> (Option<i32>, String) {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        self.done.store(true, Ordering::SeqCst);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[test]
fn mounted_repository_reads_like_a_file_system() {
    if let Err(why) = fuse_usable() {
        if in_ci() {
            panic!("CI=true but FUSE is not usable: {why}");
        }
        eprintln!("skipping: FUSE not usable here ({why})");
        return;
    }
    let f = fixture();
    let mnt = f.s.path("mnt");
    let m = Mounted::start(&f.s, &mnt);

    // Listings: snapshots by id with `latest`, by host and time, by tag.
    let ls = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", p.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut want = f.ids.clone();
    want.push("latest".into());
    want.sort();
    assert_eq!(ls(&mnt.join("snapshots")), want);
    assert_eq!(ls(&mnt), ["hosts", "snapshots", "tags"]);
    assert_eq!(
        std::fs::read_link(mnt.join("snapshots/latest")).unwrap(),
        PathBuf::from(&f.ids[2])
    );
    let hosts = ls(&mnt.join("hosts"));
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(ls(&mnt.join("hosts").join(&hosts[0])).len(), 4); // 3 + latest
    let newest = mnt
        .join("hosts")
        .join(&hosts[0])
        .join("latest/@streams/db.sql");
    assert!(std::fs::read(newest).unwrap() == f.stream);
    assert_eq!(ls(&mnt.join("tags")), ["daily"]);
    assert_eq!(ls(&mnt.join("tags/daily")), [f.ids[0].clone()]);

    let s1 = mnt.join("snapshots").join(&f.ids[0]);
    let s2 = mnt.join("snapshots").join(&f.ids[1]);
    let in1 = |rel: &str| restored_path(&s1, &f.src.join(rel));
    let in2 = |rel: &str| restored_path(&s2, &f.src.join(rel));
    assert_eq!(ls(&in1("")), ["big.bin", "docs", "link", "many"]);
    let many = ls(&in1("many"));
    let want: Vec<String> = (0..MANY)
        .map(|i| format!("file-with-a-longish-name-{i:05}"))
        .collect();
    assert!(many == want, "{} names listed, {MANY} expected", many.len());

    // Metadata: sizes, modes, mtimes, symlink targets.
    let meta = std::fs::symlink_metadata(in1("docs/notes.txt")).unwrap();
    assert_eq!(meta.len(), NOTES.len() as u64);
    assert_eq!(meta.mode() & 0o7777, 0o640);
    let big_src = std::fs::metadata(f.src.join("big.bin")).unwrap();
    let big_meta = std::fs::metadata(in1("big.bin")).unwrap();
    assert_eq!(big_meta.len(), f.big.len() as u64);
    assert_eq!(big_meta.mtime(), big_src.mtime());
    assert_eq!(big_meta.mtime_nsec(), big_src.mtime_nsec());
    assert_eq!(
        std::fs::read_link(in1("link")).unwrap(),
        PathBuf::from("docs/notes.txt")
    );
    assert_eq!(std::fs::read(in1("link")).unwrap(), NOTES);
    assert_eq!(
        std::fs::read(in2("docs/notes.txt")).unwrap(),
        b"second version, no match\n"
    );

    // `cp` a multi-chunk file out and compare.
    let copy = f.s.path("copy.bin");
    let st = Command::new("cp")
        .arg(in1("big.bin"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read(&copy).unwrap() == f.big, "cp copy differs");

    // Reads at random offsets.
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(in2("big.bin")).unwrap();
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let off = rng.range(0, f.big.len() as u64);
            let len = rng.range(1, 300_000) as usize;
            file.seek(SeekFrom::Start(off)).unwrap();
            let mut buf = Vec::new();
            file.by_ref()
                .take(len as u64)
                .read_to_end(&mut buf)
                .unwrap();
            let end = (off as usize + len).min(f.big.len());
            assert!(
                buf == f.big[off as usize..end],
                "bytes differ at {off}+{len}"
            );
        }
    }

    // grep across both snapshots: only the first holds the needle.
    let out = Command::new("grep")
        .args(["-rl", "needle"])
        .arg(mnt.join("snapshots"))
        .output()
        .unwrap();
    let hits = String::from_utf8_lossy(&out.stdout);
    let hits: Vec<&str> = hits.lines().collect();
    assert!(
        hits.iter().all(|h| h.contains(&f.ids[0])) && !hits.is_empty(),
        "grep hits: {hits:?}"
    );

    // The stream, as a file under @streams.
    let stream = std::fs::read(mnt.join("snapshots/latest/@streams/db.sql")).unwrap();
    assert!(stream == f.stream, "stream bytes differ");

    // Read-only.
    assert!(std::fs::write(in1("new.txt"), b"x").is_err());

    // SIGTERM unmounts and exits 0.
    let st = Command::new("kill")
        .args(["-TERM", &m.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, stderr) = m.wait();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(stderr.contains("unmounted"), "stderr: {stderr}");
    assert!(
        !mnt.join("snapshots").exists(),
        "still mounted after SIGTERM"
    );

    // `umount` from outside ends the process too.
    let m = Mounted::start(&f.s, &mnt);
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    let (code, stderr) = m.wait();
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(!mnt.join("snapshots").exists());
}

#[test]
fn mount_refuses_a_missing_mount_point() {
    let s = Snap::new();
    s.init();
    let (code, stderr) = s.fail(["mount", s.path("nope").to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("mount point"), "{stderr}");
    let file = s.path("file");
    std::fs::write(&file, b"x").unwrap();
    let (code, stderr) = s.fail(["mount", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a folder"), "{stderr}");
}

#[test]
fn library_answers_a_damaged_blob_with_an_error_not_a_panic() {
    let f = fixture();
    let repo = snap::Repository::open(&f.s.repo, f.s.password.as_bytes(), &f.s.cache).unwrap();
    let (_, first) = repo.resolve_snapshot(&f.ids[0]).unwrap();
    let big_path = f.src.join("big.bin");
    let entry =
        snap::read::restore::find_entry(&repo, &first.tree, big_path.to_str().unwrap()).unwrap();
    // Flip one byte inside the third content blob, in its pack file.
    let loc = repo.locate(&entry.content[2]).unwrap();
    let pack = Path::new(&f.s.repo).join(snap::store::ObjectKind::Pack.key(&loc.pack.to_hex()));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[loc.offset as usize + loc.length as usize / 2] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();
    let start: u64 = {
        let mut n = 0;
        for id in &entry.content[..2] {
            n += u64::from(repo.locate(id).unwrap().raw_len);
        }
        n
    };

    let fs = MountFs::new(repo, MountOptions::default()).unwrap();
    let ino = walk(
        &fs,
        &restored_path(&PathBuf::from("snapshots").join(&f.ids[0]), &big_path),
    )
    .unwrap();
    let fh = fs.open(ino).unwrap();
    // The blobs before the damaged one still read; a range touching it fails
    // with a Corrupt error (EIO), every time.
    assert!(fs.read(fh, 0, start as u32).unwrap() == f.big[..start as usize]);
    for _ in 0..2 {
        match fs.read(fh, start + 10, 100) {
            Err(e @ FsError::Repo(_)) => assert_eq!(e.errno(), libc::EIO),
            other => panic!("damaged blob read gave {other:?}"),
        }
    }
}

/// Looks up every entry below folder `ino` (depth first, as a `find`
/// does through the kernel) and returns the inodes looked up, parents
/// before children, once per lookup.
fn lookup_all(fs: &MountFs, ino: u64, out: &mut Vec<u64>) {
    for (name, _) in fs.children(ino).unwrap() {
        let a = fs.lookup(ino, &name).unwrap();
        out.push(a.ino);
        if a.kind == snap::format::tree::EntryKind::Dir {
            lookup_all(fs, a.ino, out);
        }
    }
}

/// FUSE `forget` is honoured: a walk of a snapshot (1500 files and more)
/// grows the inode table by what it looked up, forgetting those inodes
/// (children first, as the kernel does) brings it back to where it was,
/// and a second walk grows it no further than the first. A walk that
/// forgets as it goes keeps it small. Looked-up inodes stay stable while
/// referenced.
#[test]
fn library_forget_keeps_the_inode_table_bounded() {
    let f = fixture();
    let repo = snap::Repository::open(&f.s.repo, f.s.password.as_bytes(), &f.s.cache).unwrap();
    let fs = MountFs::new(repo, MountOptions::default()).unwrap();
    let start = fs.inode_count();
    let snap_dir = walk(&fs, &PathBuf::from("snapshots").join(&f.ids[0])).unwrap();
    let mut peaks = Vec::new();
    for _ in 0..2 {
        let mut looked = Vec::new();
        lookup_all(&fs, snap_dir, &mut looked);
        assert!(looked.len() > MANY, "{}", looked.len());
        peaks.push(fs.inode_count());
        // The same name gives the same inode while it is referenced.
        let again = walk(&fs, &PathBuf::from("snapshots").join(&f.ids[0]).join("x"));
        assert!(matches!(again, Err(FsError::NotFound)));
        for ino in looked.iter().rev() {
            fs.forget(*ino, 1);
        }
        // What is left: the pinned top, the walk() lookups of the snapshot
        // folder and of the `snapshots` folder.
        assert_eq!(fs.inode_count(), start, "after forgetting a walk");
    }
    assert_eq!(peaks[0], peaks[1], "the second walk grew the table more");
    assert!(peaks[0] > start + MANY, "{peaks:?}");

    // Forgetting as it goes (the kernel under memory pressure): the table
    // stays at the folders on the way plus one entry.
    let many = fs.lookup(snap_dir, b"src").map(|a| a.ino);
    let mut dir = snap_dir;
    let mut path_inos = Vec::new();
    for c in restored_path(Path::new(""), &f.src.join("many")).components() {
        use std::os::unix::ffi::OsStrExt;
        dir = fs.lookup(dir, c.as_os_str().as_bytes()).unwrap().ino;
        path_inos.push(dir);
    }
    let base = fs.inode_count();
    let mut peak = 0;
    for (name, ino) in fs.children(dir).unwrap() {
        let a = fs.lookup(dir, &name).unwrap();
        assert_eq!(a.ino, ino, "listing and lookup disagree");
        peak = peak.max(fs.inode_count());
        fs.forget(a.ino, 1);
    }
    assert_eq!(peak, base + 1, "forgotten entries stayed in the table");
    for ino in path_inos.iter().rev() {
        fs.forget(*ino, 1);
    }
    if let Ok(i) = many {
        fs.forget(i, 1);
    }
    assert!(fs.inode_count() <= start + 2, "{}", fs.inode_count());
    // A forgotten folder is found (and read) again.
    assert!(walk(
        &fs,
        &restored_path(&PathBuf::from("snapshots").join(&f.ids[0]), &f.src)
    )
    .is_ok());
}

/// A backup made while the file system is up appears after a refresh
/// (the FUSE layer refreshes when a snapshot folder is listed); a
/// snapshot already there keeps its inode.
#[test]
fn library_refresh_shows_a_new_snapshot() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"one").unwrap();
    let first = s.backup_json([src.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()[..8]
        .to_string();
    let repo = snap::Repository::open(&s.repo, s.password.as_bytes(), &s.cache).unwrap();
    let fs = MountFs::new(repo, MountOptions::default()).unwrap();
    let snaps = walk(&fs, Path::new("snapshots")).unwrap();
    let before = fs.lookup(snaps, first.as_bytes()).unwrap().ino;
    std::fs::write(src.join("a"), b"two").unwrap();
    let second = s.backup_json([src.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()[..8]
        .to_string();
    assert!(fs.lookup(snaps, second.as_bytes()).is_err());
    assert_eq!(fs.refresh().unwrap(), 2);
    let names: Vec<Vec<u8>> = fs
        .children(snaps)
        .unwrap()
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert!(names.contains(&second.clone().into_bytes()), "{names:?}");
    assert_eq!(fs.lookup(snaps, first.as_bytes()).unwrap().ino, before);
    assert_eq!(
        fs.readlink(fs.lookup(snaps, b"latest").unwrap().ino)
            .unwrap(),
        second.as_bytes()
    );
    let a = walk(
        &fs,
        &restored_path(&Path::new("snapshots").join(&second), &src.join("a")),
    )
    .unwrap();
    let fh = fs.open(a).unwrap();
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"two");
}

/// Through FUSE: mount, back up again, list `snapshots/`: the new
/// snapshot is there (and `latest` points to it).
#[test]
fn mounted_snapshot_list_follows_new_backups() {
    if let Err(why) = fuse_usable() {
        if in_ci() {
            panic!("CI=true but FUSE is not usable: {why}");
        }
        eprintln!("skipping: FUSE not usable here ({why})");
        return;
    }
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"one").unwrap();
    let first = s.backup_json([src.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()[..8]
        .to_string();
    let mnt = s.path("mnt");
    let m = Mounted::start(&s, &mnt);
    let list = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(mnt.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(), vec![first.clone(), "latest".to_string()]);
    std::fs::write(src.join("a"), b"two").unwrap();
    let second = s.backup_json([src.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()[..8]
        .to_string();
    let t0 = Instant::now();
    while !list().contains(&second) {
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", list());
        std::thread::sleep(Duration::from_millis(300));
    }
    let a = restored_path(&mnt.join("snapshots").join(&second), &src.join("a"));
    assert_eq!(std::fs::read(a).unwrap(), b"two");
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    let (code, stderr) = m.wait();
    assert_eq!(code, Some(0), "stderr: {stderr}");
}
