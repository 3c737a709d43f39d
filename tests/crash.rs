//! Crash safety (issue "Reliability and security"): `snap backup` is killed
//! with SIGKILL at random moments (deterministic seed) while the source tree
//! changes a little between attempts. After every kill, the snapshots of all
//! earlier completed backups must still restore byte-identical (checked
//! against a reference model), and the next backup must succeed.
//!
//! Cost control: after each kill the test restores the newest completed
//! snapshot plus one random older one; the whole model (every snapshot) is
//! verified every 10 kills and at the end with `verify_repository`.

mod common;
use common::cli::Snap;
use common::gen::{Rng, Tree};
use common::services;
use common::verify::{backup_id, restore_hash, tree_hash, verify_repository, Model};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What happened over a run of kills.
#[derive(Debug, Default)]
struct Stats {
    /// Kills that hit a running backup (it died by SIGKILL).
    killed: usize,
    /// Attempts where the backup had already finished before the signal.
    finished_first: usize,
    /// Snapshots checked by restoring after kills.
    restores: usize,
}

/// Runs a backup of `src` as a child process, kills it after `delay`, and
/// returns `Some(snapshot id)` if it had completed first.
fn backup_and_kill(s: &Snap, src: &std::path::Path, delay: Duration) -> Option<String> {
    let mut child = s
        .cmd([
            std::ffi::OsStr::new("--json"),
            std::ffi::OsStr::new("backup"),
            src.as_os_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning snap backup");
    std::thread::sleep(delay);
    // SIGKILL (a no-op on a process that already exited but is not reaped).
    let _ = child.kill();
    let out = child.wait_with_output().expect("waiting for snap backup");
    use std::os::unix::process::ExitStatusExt;
    if out.status.signal() == Some(libc::SIGKILL) {
        return None;
    }
    assert!(
        out.status.success(),
        "backup neither succeeded nor died of SIGKILL: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::to_string);
    let v: serde_json::Value = serde_json::from_str(&line.expect("summary")).expect("json");
    Some(backup_id(&v))
}

fn crash_loop(s: &Snap, kills: usize, seed: u64, big_size: usize) -> Stats {
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    s.ok(["init", "--pack-size-mib", "1"]);
    let src = s.path("src");
    let mut tree = Tree::new(&src, seed, 40, big_size, 3);
    let mut model = Model::default();
    let scratch = tempfile::tempdir().unwrap();

    // Warm-up: a full backup, then time an incremental one of the same shape
    // as the attempts below (one new big file, two rewritten small files).
    let h = tree_hash(&src);
    model.add(&backup_id(&s.backup_json([&src])), &src, h);
    tree.mutate();
    let h = tree_hash(&src);
    let t0 = Instant::now();
    model.add(&backup_id(&s.backup_json([&src])), &src, h);
    let typical = t0.elapsed().max(Duration::from_millis(20));
    eprintln!("typical incremental backup: {typical:?}");

    for attempt in 1..=kills {
        tree.mutate();
        let h = tree_hash(&src);
        let delay_ms = rng.range(5, typical.as_millis() as u64 + 1);
        match backup_and_kill(s, &src, Duration::from_millis(delay_ms)) {
            Some(id) => {
                stats.finished_first += 1;
                model.add(&id, &src, h);
            }
            None => stats.killed += 1,
        }
        // Every earlier completed snapshot is listed; the newest and a
        // random older one restore byte-identical.
        let listed = s.snapshot_ids();
        for id in model.snapshots.keys() {
            assert!(
                listed.contains(id),
                "attempt {attempt}: snapshot {id} vanished after a kill"
            );
        }
        let ids: Vec<&String> = model.snapshots.keys().collect();
        let newest = model
            .snapshots
            .iter()
            .max_by_key(|(id, _)| listed.iter().position(|l| l == *id))
            .map(|(id, _)| id.clone())
            .unwrap();
        let older = ids[rng.range(0, ids.len() as u64) as usize].clone();
        for id in [newest, older] {
            let exp = &model.snapshots[&id];
            let got = restore_hash(s, &id, &exp.src, scratch.path())
                .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
            assert_eq!(
                got, exp.hash,
                "attempt {attempt}: snapshot {id} restores wrong data"
            );
            stats.restores += 1;
        }
        // The next backup succeeds (on a slightly changed tree).
        tree.mutate();
        let h = tree_hash(&src);
        model.add(&backup_id(&s.backup_json([&src])), &src, h);
        if attempt % 10 == 0 {
            verify_repository(s, &model);
        }
    }
    verify_repository(s, &model);
    eprintln!(
        "{kills} kill attempts: {} killed mid-backup, {} finished first; {} snapshots in the model, all verified",
        stats.killed,
        stats.finished_first,
        model.snapshots.len()
    );
    stats
}

#[test]
fn sigkill_during_local_backup_30_times() {
    let s = Snap::new();
    let st = crash_loop(&s, 30, 0x5eed_0001, 3 << 20);
    // The delay distribution is meant to land inside the backup most of the
    // time; if nearly nothing was killed, the test did not test anything.
    assert!(
        st.killed >= 15,
        "only {} of 30 kills hit a running backup",
        st.killed
    );
}

#[test]
fn sigkill_during_s3_backup_10_times() {
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("crash_"));
    s.env = s3.env();
    let st = crash_loop(&s, 10, 0x5eed_0002, 1 << 20);
    assert!(
        st.killed >= 5,
        "only {} of 10 kills hit a running backup",
        st.killed
    );
}
