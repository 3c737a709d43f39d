//! Crash safety (issue "Reliability and security"): `snap backup` is killed
//! with SIGKILL at random moments (deterministic seed) while the source tree
//! changes a little between attempts. After every kill, the snapshots of all
//! earlier completed backups must still restore byte-identical (checked
//! against a reference model), and the next backup must succeed.
//!
//! Cost control: after each kill the test restores the newest completed
//! snapshot plus one random older one; the whole model (every snapshot) is
//! verified every 10 kills and at the end with `verify_repository`.
//!
//! The same is done for `snap prune`, `snap forget --prune` and `snap copy`
//! (see [`prune_crash_loop`] and [`sigkill_during_copy_10_times`]). The tests
//! of this file run one at a time ([`SERIAL`]): each one times an
//! uninterrupted run to choose its kill delays, and a test running beside it
//! would skew that measurement.

mod common;
use common::cli::Snap;
use common::gen::{Rng, Tree};
use common::services;
use common::verify::{backup_id, restore_hash, tree_hash, verify_repository, Model};
use std::ffi::OsString;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Serialises the tests of this file (timing-based kill delays).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

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

    // Kill delays are drawn below `upper`, which shrinks whenever the process
    // finished first, so most kills land inside a run on a slow or busy
    // machine too.
    let mut upper = typical.as_millis() as u64 + 1;
    for attempt in 1..=kills {
        tree.mutate();
        let h = tree_hash(&src);
        let delay_ms = rng.range(5, upper.max(6));
        match backup_and_kill(s, &src, Duration::from_millis(delay_ms)) {
            Some(id) => {
                stats.finished_first += 1;
                upper = upper * 2 / 3;
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
    let _serial = serial();
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
    let _serial = serial();
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

/// Runs `snap ARGS` as a child process and sends SIGKILL after `delay`.
/// Returns `None` if the signal killed it, else its output (the command had
/// finished first; the caller checks its status).
fn run_and_kill(s: &Snap, args: &[OsString], delay: Duration) -> Option<Output> {
    let child = s
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning snap");
    let mut child = child;
    std::thread::sleep(delay);
    let _ = child.kill();
    let out = child.wait_with_output().expect("waiting for snap");
    use std::os::unix::process::ExitStatusExt;
    if out.status.signal() == Some(libc::SIGKILL) {
        return None;
    }
    Some(out)
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Live or expired leases left under `locks/`.
fn lease_count(s: &Snap) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(["--json", "locks"])).expect("locks --json");
    v.as_array().expect("array").len()
}

/// (packs, staging files `<key>#<n>`) stored under `data/` of a local
/// repository. A staging file is what a put killed before it published its
/// object leaves (object_store's LocalFileSystem); `list` skips them.
fn stored_packs(repo: &std::path::Path) -> (usize, usize) {
    let (mut packs, mut staging) = (0, 0);
    for d in std::fs::read_dir(repo.join("data")).expect("data/") {
        for f in std::fs::read_dir(d.expect("entry").path()).expect("data/xx") {
            if f.expect("entry")
                .file_name()
                .to_string_lossy()
                .contains('#')
            {
                staging += 1;
            } else {
                packs += 1;
            }
        }
    }
    (packs, staging)
}

/// What happened over the prune kills.
#[derive(Debug, Default)]
struct PruneStats {
    /// Kills that hit a running process (it died by SIGKILL).
    killed: usize,
    /// Attempts where the command had finished before the signal.
    finished_first: usize,
    /// Kills after which a stale lease of the killed process was left.
    stale_leases: usize,
}

/// Prune crash loop. A repository with small packs (1 MiB) gets a new
/// snapshot of a changing tree each round and loses its oldest one, so every
/// prune has packs to delete (marks of the round before, `--grace 0s`),
/// packs to mark and packs to repack (`--max-unused 0%`). With `forget`,
/// the killed command is `forget --keep-last 3 --prune` (it deletes the
/// snapshot itself); otherwise the oldest snapshot is forgotten first and
/// the killed command is `prune`.
///
/// After every kill: a stale lease of the killed prune blocks the next prune
/// (exit 11) until `snap unlock --all`; every snapshot the command was not
/// asked to remove is listed; every listed model snapshot restores
/// byte-identical and `check --read-data` passes ([`verify_repository`]);
/// then an uninterrupted prune succeeds. At the end two prunes leave no pack
/// outside the index.
fn prune_crash_loop(kills: usize, seed: u64, forget: bool) -> PruneStats {
    const KEEP: usize = 3;
    let s = Snap::new();
    let mut rng = Rng::new(seed);
    let mut stats = PruneStats::default();
    s.ok(["init", "--pack-size-mib", "1"]);
    let src = s.path("src");
    let mut tree = Tree::new(&src, seed, 24, 1 << 20, 2);
    let mut model = Model::default();
    // Snapshot ids in creation order (the order `--keep-last` keeps by).
    let mut order: Vec<String> = Vec::new();
    let backup = |tree: &mut Tree, model: &mut Model, order: &mut Vec<String>| {
        tree.mutate();
        let h = tree_hash(&src);
        let id = backup_id(&s.backup_json([&src]));
        model.add(&id, &src, h);
        order.push(id);
    };
    let keep_last = KEEP.to_string();
    let prune_cmd: Vec<&str> = if forget {
        vec![
            "--json",
            "forget",
            "--keep-last",
            &keep_last,
            "--prune",
            "--grace",
            "0s",
            "--max-unused",
            "0%",
        ]
    } else {
        vec!["--json", "prune", "--grace", "0s", "--max-unused", "0%"]
    };
    // One round's preparation: a new snapshot; in prune mode the oldest
    // beyond KEEP is forgotten (uninterrupted) so the prune has work.
    let prepare = |model: &mut Model, order: &mut Vec<String>, tree: &mut Tree| {
        backup(tree, model, order);
        if !forget {
            while model.snapshots.len() > KEEP {
                let oldest = order
                    .iter()
                    .find(|id| model.snapshots.contains_key(*id))
                    .unwrap()
                    .clone();
                s.ok(["forget", &oldest]);
                model.snapshots.remove(&oldest);
            }
        }
    };
    // Warm-up: KEEP snapshots, then two timed uninterrupted rounds (the
    // second one also deletes the first one's marks).
    for _ in 0..KEEP {
        backup(&mut tree, &mut model, &mut order);
    }
    let mut typical = Duration::ZERO;
    for _ in 0..2 {
        prepare(&mut model, &mut order, &mut tree);
        let t0 = Instant::now();
        s.ok(&prune_cmd);
        typical = t0.elapsed();
        model
            .snapshots
            .retain(|id, _| order.iter().rev().take(KEEP).any(|k| k == id));
    }
    let typical = typical.max(Duration::from_millis(20));
    let mut upper = typical.as_millis() as u64 + 1;
    eprintln!(
        "uninterrupted {}: {typical:?}",
        if forget { "forget --prune" } else { "prune" }
    );

    for attempt in 1..=kills {
        prepare(&mut model, &mut order, &mut tree);
        // Snapshots the command must not remove: the newest KEEP.
        let keep: Vec<String> = order
            .iter()
            .filter(|id| model.snapshots.contains_key(*id))
            .rev()
            .take(KEEP)
            .cloned()
            .collect();
        let delay = Duration::from_millis(rng.range(5, upper.max(6)));
        match run_and_kill(&s, &os_args(&prune_cmd), delay) {
            None => stats.killed += 1,
            Some(out) => {
                assert!(
                    out.status.success(),
                    "attempt {attempt}: neither succeeded nor died of SIGKILL: {:?}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                stats.finished_first += 1;
                upper = upper * 2 / 3;
            }
        }
        // A lease left by the killed prune blocks other prunes until it
        // expires or is removed.
        if lease_count(&s) > 0 {
            stats.stale_leases += 1;
            let (code, err) = s.fail(["prune", "--grace", "0s"]);
            assert_eq!(code, 11, "attempt {attempt}: stale lease: {err}");
            assert!(err.contains("snap unlock"), "attempt {attempt}: {err}");
            s.ok(["unlock", "--all"]);
            assert_eq!(lease_count(&s), 0);
        }
        let listed = s.snapshot_ids();
        for id in &keep {
            assert!(
                listed.contains(id),
                "attempt {attempt}: kept snapshot {id} vanished after a kill"
            );
        }
        // Forgotten (by the killed forget) snapshots leave the model.
        model.snapshots.retain(|id, _| listed.contains(id));
        if !forget {
            assert_eq!(model.snapshots.len(), KEEP, "attempt {attempt}");
        }
        verify_repository(&s, &model);
        // The next uninterrupted run succeeds, and leaves exactly the
        // newest KEEP snapshots.
        s.ok(&prune_cmd);
        let listed = s.snapshot_ids();
        let mut want = keep.clone();
        want.sort();
        let mut got = listed.clone();
        got.sort();
        assert_eq!(got, want, "attempt {attempt}: snapshots after the rerun");
        model.snapshots.retain(|id, _| listed.contains(id));
    }
    // Final: two more prunes delete the last marks; every stored pack is
    // indexed again (nothing a killed run left behind is kept) and the
    // repository checks clean.
    s.ok(["prune", "--grace", "0s", "--max-unused", "0%"]);
    s.ok(["prune", "--grace", "0s", "--max-unused", "0%"]);
    verify_repository(&s, &model);
    let c: serde_json::Value =
        serde_json::from_str(&s.ok(["--json", "check"])).expect("check --json");
    let repo = std::path::Path::new(&s.repo);
    let (packs, staging) = stored_packs(repo);
    assert_eq!(
        packs as u64,
        c["packs"].as_u64().unwrap(),
        "packs in data/ that the index does not name are left over"
    );
    // Mark objects only: a put killed mid-write leaves a `NAME#N` staging
    // file, which readers ignore (spec §2).
    let marks: Vec<String> = std::fs::read_dir(repo.join("marks"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.contains('#'))
                .collect()
        })
        .unwrap_or_default();
    assert!(marks.is_empty(), "marks left over: {marks:?}");
    eprintln!(
        "{kills} {} kill attempts: {} killed mid-run, {} finished first, {} left a stale lease; {} snapshots verified at the end; {staging} staging files of killed uploads left in data/",
        if forget { "forget --prune" } else { "prune" },
        stats.killed,
        stats.finished_first,
        stats.stale_leases,
        model.snapshots.len()
    );
    stats
}

#[test]
fn sigkill_during_prune_10_times() {
    let _serial = serial();
    let st = prune_crash_loop(10, 0x5eed_0003, false);
    assert!(
        st.killed >= 5,
        "only {} of 10 kills hit a running prune",
        st.killed
    );
}

#[test]
fn sigkill_during_forget_prune_10_times() {
    let _serial = serial();
    let st = prune_crash_loop(10, 0x5eed_0004, true);
    assert!(
        st.killed >= 5,
        "only {} of 10 kills hit a running forget --prune",
        st.killed
    );
}

/// The reference model of a copy destination: each destination snapshot
/// must restore like the source snapshot named by its `original`. Panics if
/// a destination snapshot is not a copy of a source snapshot in `src`.
fn copy_model(dst: &Snap, src: &Model) -> Model {
    let v: serde_json::Value =
        serde_json::from_str(&dst.ok(["--json", "snapshots"])).expect("snapshots --json");
    let mut m = Model::default();
    for s in v.as_array().expect("array") {
        let id = s["id"].as_str().expect("id");
        let orig = s["original"].as_str().unwrap_or(id);
        let exp = src
            .snapshots
            .get(orig)
            .unwrap_or_else(|| panic!("destination snapshot {id} copies unknown {orig}"));
        m.add(id, &exp.src, exp.hash.clone());
    }
    m
}

/// `snap copy` (local → local, 1 MiB packs) killed 10 times at random
/// moments. Each round adds two snapshots of a changing tree to the source,
/// so every copy has data to send. After every kill the destination holds
/// only complete copies, each restoring byte-identical to its source
/// snapshot, and `check --read-data` passes on it. At the end a rerun
/// completes and every source snapshot restores from the destination.
#[test]
fn sigkill_during_copy_10_times() {
    let _serial = serial();
    let src = Snap::new();
    src.ok(["init", "--pack-size-mib", "1"]);
    let mut dst = Snap::new();
    dst.env
        .push(("SNAP_FROM_PASSWORD".into(), src.password.clone()));
    dst.ok(["init", "--pack-size-mib", "1"]);
    let copy: Vec<OsString> = vec![
        "--json".into(),
        "copy".into(),
        "--from".into(),
        src.repo.clone().into(),
    ];
    let path = src.path("src");
    let mut tree = Tree::new(&path, 0x5eed_0005, 24, 1 << 20, 2);
    let mut model = Model::default();
    let mut rng = Rng::new(0x5eed_0005);
    let backup = |tree: &mut Tree, model: &mut Model| {
        tree.mutate();
        let h = tree_hash(&path);
        model.add(&backup_id(&src.backup_json([&path])), &path, h);
    };
    for _ in 0..3 {
        backup(&mut tree, &mut model);
    }
    dst.ok(&copy);
    // Timed: a copy of two new snapshots, as in each round below.
    backup(&mut tree, &mut model);
    backup(&mut tree, &mut model);
    let t0 = Instant::now();
    dst.ok(&copy);
    let typical = t0.elapsed().max(Duration::from_millis(20));
    let mut upper = typical.as_millis() as u64 + 1;
    eprintln!("uninterrupted copy of two snapshots: {typical:?}");
    assert_eq!(copy_model(&dst, &model).snapshots.len(), 5);

    let (mut killed, mut finished) = (0, 0);
    for attempt in 1..=10 {
        backup(&mut tree, &mut model);
        backup(&mut tree, &mut model);
        let delay = Duration::from_millis(rng.range(5, upper.max(6)));
        match run_and_kill(&dst, &copy, delay) {
            None => killed += 1,
            Some(out) => {
                assert!(
                    out.status.success(),
                    "attempt {attempt}: copy neither succeeded nor died of SIGKILL: {:?}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                finished += 1;
                upper = upper * 2 / 3;
            }
        }
        // Only complete copies are listed, and they restore; the
        // destination checks clean.
        let m = copy_model(&dst, &model);
        assert!(m.snapshots.len() >= 5, "attempt {attempt}: copies vanished");
        verify_repository(&dst, &m);
    }
    // A rerun completes: every source snapshot is in the destination.
    let out = dst.ok(&copy);
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("summary")).expect("json");
    assert_eq!(
        summary["selected"].as_u64(),
        Some(model.snapshots.len() as u64)
    );
    let m = copy_model(&dst, &model);
    assert_eq!(
        m.snapshots.len(),
        model.snapshots.len(),
        "the rerun did not copy every snapshot"
    );
    verify_repository(&dst, &m);
    eprintln!(
        "10 copy kill attempts: {killed} killed mid-copy, {finished} finished first; {} snapshots copied and verified",
        m.snapshots.len()
    );
    assert!(killed >= 5, "only {killed} of 10 kills hit a running copy");
}
