//! Backups of a file system that changes under snap (issue 12, backup side)
//! and of paths and excludes as a user types them (issue 13): files growing,
//! shrinking or replaced by a FIFO while the backup runs, `/proc` and `/sys`
//! files, `../NAME`, `data/` against `./data`, relative `--exclude`
//! patterns, and the user name without `$USER`.

mod common;
use common::cli::{restored_path, Snap};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A finished `snap` run: exit status, stdout, stderr.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `snap ARGS` (in `cwd` if given) and waits at most `limit`; a run
/// still going then is killed and the test fails (snap hung).
fn run_bounded(s: &Snap, args: &[&str], cwd: Option<&Path>, limit: Duration) -> Run {
    run_bounded_with(s, args, cwd, limit, |_| {})
}

/// [`run_bounded`], calling `beside(pid)` on a thread while snap runs.
fn run_bounded_with(
    s: &Snap,
    args: &[&str],
    cwd: Option<&Path>,
    limit: Duration,
    beside: impl FnOnce(u32) + Send,
) -> Run {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut c = s.cmd(args);
    c.stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let mut child = c.spawn().expect("running snap");
    let started = Instant::now();
    let pid = child.id();
    std::thread::scope(|scope| {
        scope.spawn(move || beside(pid));
        wait_bounded(&mut child, args, started, limit, err.path())
    });
    let status = child.wait().unwrap();
    Run {
        status,
        stdout: std::fs::read_to_string(out.path()).unwrap(),
        stderr: std::fs::read_to_string(err.path()).unwrap(),
    }
}

fn wait_bounded(
    child: &mut std::process::Child,
    args: &[&str],
    started: Instant,
    limit: Duration,
    err: &Path,
) {
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "snap {args:?} still running after {limit:?} (hung); stderr so far: {}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until process `pid` has `path` open (its /proc/PID/fd); false if
/// it exits first or 60 s pass.
fn wait_until_open(pid: u32, path: &Path) -> bool {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let Ok(rd) = std::fs::read_dir(&fd_dir) else {
            return false;
        };
        for e in rd.flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|t| t == path) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Path → recorded size of every entry of snapshot `id`.
fn ls_sizes(s: &Snap, id: &str) -> BTreeMap<String, u64> {
    let out = s.ok(["--json", "ls", id]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The JSON of the newest snapshot.
fn latest(s: &Snap) -> serde_json::Value {
    let out = s.ok(["--json", "snapshots"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().last().cloned().expect("a snapshot")
}

/// Runs `f` on a thread until the returned guard is dropped.
struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut f: impl FnMut() + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                f();
            }
        });
        Background {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// After a backup of a file that changed while read: `check --read-data`
/// passes, the size recorded is the size restored, and `content_ok` accepts
/// the restored bytes.
fn assert_stored_as_read(s: &Snap, src: &Path, content_ok: impl Fn(&[u8]) -> bool) {
    s.ok(["check", "--read-data"]);
    let sizes = ls_sizes(s, "latest");
    let recorded = sizes[src.to_str().unwrap()];
    let target = s.path(&format!("restore-{}", rand_suffix()));
    s.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = std::fs::read(restored_path(&target, src)).unwrap();
    assert_eq!(
        restored.len() as u64,
        recorded,
        "restored size != recorded size"
    );
    assert!(
        content_ok(&restored),
        "restored content is not what was read"
    );
    // `export` writes the recorded size too.
    let tar = s.path(&format!("export-{}.tar", rand_suffix()));
    s.ok(["export", "latest", "-o", tar.to_str().unwrap()]);
    let mut ar = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let want = src.to_str().unwrap().trim_start_matches('/');
    let mut found = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(want) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            assert_eq!(v, restored, "export differs from restore");
            found = true;
        }
    }
    assert!(found, "{want} not in the export");
    let _ = std::fs::remove_dir_all(&target);
    let _ = std::fs::remove_file(&tar);
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn file_growing_while_read_is_stored_as_read_with_a_warning() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // Read first, so the log grows between the walk and its read.
    std::fs::write(data.join("a.bin"), noise(1, 8 << 20)).unwrap();
    let log = data.join("z.log");
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let mut observed = false;
    for round in 0..6 {
        let appender = {
            let log = log.clone();
            let mut n = 0u64;
            Background::start(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                n += 1;
                f.write_all(format!("line {n:08}\n").repeat(64).as_bytes())
                    .unwrap();
                std::thread::sleep(Duration::from_micros(500));
            })
        };
        let r = run_bounded(
            &s,
            &["backup", data.to_str().unwrap()],
            None,
            Duration::from_secs(120),
        );
        drop(appender);
        let code = r.status.code();
        let warned = r.stderr.contains("z.log: changed while reading");
        assert!(
            (code == Some(3) && warned) || (code == Some(0) && !warned),
            "round {round}: exit {code:?}, stderr: {}",
            r.stderr
        );
        // The log only grows: what was stored is a prefix of it now.
        let now = std::fs::read(&log).unwrap();
        assert_stored_as_read(&s, &log, |b| now.starts_with(b) && b.len() >= 64 << 20);
        if warned {
            observed = true;
            break;
        }
    }
    assert!(
        observed,
        "the log never changed during its read in 6 backups"
    );
}

#[test]
fn file_truncated_while_read_does_not_kill_snap() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("db");
    let mut observed = false;
    for round in 0..6 {
        std::fs::File::create(&file)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        // Another process truncates the file as soon as snap has opened it.
        let r = run_bounded_with(
            &s,
            &["backup", data.to_str().unwrap()],
            None,
            Duration::from_secs(120),
            |pid| {
                if wait_until_open(pid, &file) {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            },
        );
        let code = r.status.code();
        assert!(
            code.is_some(),
            "round {round}: snap died of signal {:?} (SIGBUS is 7); stderr: {}",
            std::os::unix::process::ExitStatusExt::signal(&r.status),
            r.stderr
        );
        let warned = r.stderr.contains("db: changed while reading");
        assert!(
            (code == Some(3) && warned) || (code == Some(0) && !warned),
            "round {round}: exit {code:?}, stderr: {}",
            r.stderr
        );
        assert_stored_as_read(&s, &file, |b| b.iter().all(|&x| x == 0));
        if warned {
            observed = true;
            break;
        }
    }
    assert!(
        observed,
        "the file never changed during its read in 6 backups"
    );
}

#[test]
fn file_replaced_by_a_fifo_after_the_walk_is_skipped_not_waited_for() {
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // Many files make the time between the walk and the reads long enough
    // for the names below to change type in between.
    for i in 0..400 {
        std::fs::write(data.join(format!("f{i:04}")), noise(i, 2000)).unwrap();
    }
    let names: Vec<PathBuf> = (0..4).map(|i| data.join(format!("a{i}"))).collect();
    for n in &names {
        std::fs::write(n, b"regular").unwrap();
    }
    let side = s.path("side");
    std::fs::create_dir_all(&side).unwrap();
    let swapper = {
        let names = names.clone();
        let mut k = 0u64;
        Background::start(move || {
            // Each name turns into a FIFO and back, atomically by rename.
            k += 1;
            for (i, n) in names.iter().enumerate() {
                let tmp = side.join(format!("t{i}-{k}"));
                if (k + i as u64) % 2 == 0 {
                    std::fs::write(&tmp, b"regular").unwrap();
                } else {
                    nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .unwrap();
                }
                std::fs::rename(&tmp, n).unwrap();
            }
            std::thread::sleep(Duration::from_micros(300));
        })
    };
    let mut observed = false;
    for round in 0..25 {
        let r = run_bounded(
            &s,
            &["backup", data.to_str().unwrap()],
            None,
            Duration::from_secs(60),
        );
        let code = r.status.code();
        let skipped = r.stderr.contains("no longer a regular file (now a FIFO)");
        assert!(
            matches!(code, Some(0) | Some(3)),
            "round {round}: exit {code:?}, stderr: {}",
            r.stderr
        );
        assert_eq!(code == Some(3), skipped, "round {round}: {}", r.stderr);
        if skipped {
            observed = true;
            break;
        }
    }
    drop(swapper);
    assert!(
        observed,
        "no FIFO appeared between walk and read in 25 backups"
    );
    s.ok(["check", "--read-data"]);
}

#[test]
fn proc_and_sys_files_are_stored_with_their_content() {
    let s = Snap::new();
    s.init();
    let mut paths = vec![
        PathBuf::from("/proc/self/status"),
        PathBuf::from("/proc/cpuinfo"),
    ];
    // A sysfs attribute: `stat` says 4096, the content is a few bytes.
    for c in [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/uevent_seqnum",
        "/sys/devices/system/cpu/online",
        "/sys/power/state",
    ] {
        let p = Path::new(c);
        if std::fs::read(p).is_ok_and(|v| !v.is_empty()) {
            paths.push(p.to_path_buf());
            break;
        }
    }
    for p in &paths {
        let stat_size = std::fs::metadata(p).unwrap().len();
        let real = std::fs::read(p).unwrap().len() as u64;
        assert_ne!(
            stat_size,
            real,
            "{}: stat already tells its size",
            p.display()
        );
    }
    let mut args = vec!["backup"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    s.ok(&args);
    s.ok(["check", "--read-data"]);
    let sizes = ls_sizes(&s, "latest");
    let target = s.path("restore");
    s.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    for p in &paths {
        let recorded = sizes[p.to_str().unwrap()];
        let restored = std::fs::read(restored_path(&target, p)).unwrap();
        assert!(recorded > 0, "{}: stored empty", p.display());
        assert_eq!(restored.len() as u64, recorded, "{}", p.display());
        if p.ends_with("cpuinfo") {
            assert_eq!(restored, std::fs::read(p).unwrap(), "cpuinfo differs");
        }
    }
}

/// A small tree under `root`: data/{one, two/three}.
fn small_tree(root: &Path) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("two")).unwrap();
    std::fs::write(data.join("one"), noise(7, 50_000)).unwrap();
    std::fs::write(data.join("two/three"), noise(8, 70_000)).unwrap();
    data
}

#[test]
fn backup_of_dotdot_path_stores_the_folder() {
    let s = Snap::new();
    s.init();
    let data = small_tree(&s.path("w"));
    let inside = s.path("w/elsewhere");
    std::fs::create_dir_all(&inside).unwrap();
    let r = run_bounded(
        &s,
        &["backup", "../data"],
        Some(&inside),
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("warning"), "stderr: {}", r.stderr);
    let snap = latest(&s);
    assert_eq!(snap["paths"], serde_json::json!([data.to_str().unwrap()]));
    let target = s.path("restore");
    s.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    let diff = common::cli::tree_diff(&data, &restored_path(&target, &data));
    assert!(diff.is_empty(), "{diff:?}");
    let _ = r.stdout;
}

#[test]
fn trailing_slash_and_dot_slash_name_the_same_path_and_find_the_parent() {
    let s = Snap::new();
    s.init();
    let data = small_tree(&s.path("w"));
    let cwd = s.path("w");
    let first = run_bounded(
        &s,
        &["--json", "backup", "data/"],
        Some(&cwd),
        Duration::from_secs(60),
    );
    assert_eq!(first.status.code(), Some(0), "{}", first.stderr);
    let second = run_bounded(
        &s,
        &["--json", "backup", "./data"],
        Some(&cwd),
        Duration::from_secs(60),
    );
    assert_eq!(second.status.code(), Some(0), "{}", second.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(second.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["bytes_read"], 0, "{summary}");
    assert_eq!(summary["summary"]["files_unchanged"], 2, "{summary}");
    let snaps: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    for sn in snaps {
        assert_eq!(sn["paths"], serde_json::json!([data.to_str().unwrap()]));
    }
    assert_eq!(snaps[1]["parent"], snaps[0]["id"]);
}

#[test]
fn exclude_patterns_match_as_a_restic_user_expects() {
    let s = Snap::new();
    s.init();
    let cwd = s.path("w");
    let data = cwd.join("data");
    for d in ["git/objects", "keep", "sub/data/git", "logs"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    for f in [
        "git/objects/x",
        "keep/y",
        "keep/y.tmp",
        "sub/data/git/z",
        "sub/kept",
        "logs/a.log",
        "logs/b.txt",
    ] {
        std::fs::write(data.join(f), f.as_bytes()).unwrap();
    }
    let abs_logs = format!("{}/logs/*.log", data.display());
    let r = run_bounded(
        &s,
        &[
            "backup",
            "data",
            // relative with `/`: anywhere, so both data/git folders
            "--exclude",
            "data/git",
            // `./`: from the current directory only
            "--exclude",
            "./data/keep/y",
            // absolute
            "--exclude",
            &abs_logs,
            // base name
            "--exclude",
            "*.tmp",
        ],
        Some(&cwd),
        Duration::from_secs(60),
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    let sizes = ls_sizes(&s, "latest");
    let d = data.to_str().unwrap();
    let has = |rel: &str| sizes.contains_key(&format!("{d}/{rel}"));
    for gone in [
        "git",
        "git/objects/x",
        "sub/data/git",
        "keep/y",
        "keep/y.tmp",
        "logs/a.log",
    ] {
        assert!(!has(gone), "{gone} was not excluded: {sizes:?}");
    }
    for kept in ["keep", "sub/data", "sub/kept", "logs/b.txt"] {
        assert!(has(kept), "{kept} was excluded: {sizes:?}");
    }
}

#[test]
fn user_is_looked_up_from_the_uid_without_user_or_logname() {
    let s = Snap::new();
    s.init();
    let data = small_tree(&s.path("w"));
    let who = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let who = String::from_utf8(who.stdout).unwrap().trim().to_string();
    assert!(!who.is_empty());
    let out = s
        .cmd(["backup", data.to_str().unwrap()])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(latest(&s)["username"], serde_json::json!(who));
}
