//! A hostile or damaged repository (issue #12, "one bad object must not stop
//! everything"): each test crafts the damage with real files and runs the
//! built `snap` binary against it.
//!
//! `SNAP_HOSTILE_BIN` runs these tests against another `snap` binary (used to
//! show that they fail on a build without the fixes).

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::gen::Rng;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("SNAP_HOSTILE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(common::cli::snap_bin)
}

/// `snap ARGS` against `s`'s repository with `cache` as cache directory.
fn cmd_with<I, S>(s: &Snap, cache: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin());
    c.arg("--repo")
        .arg(&s.repo)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("SNAP_PASSWORD", &s.password)
        .env("SNAP_TEST_FAST_KDF", "1")
        .env_remove("SNAP_REPO")
        .env_remove("SNAP_PASSWORD_FILE")
        .stdin(Stdio::null());
    for (k, v) in &s.env {
        c.env(k, v);
    }
    c
}

fn run<I, S>(s: &Snap, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cmd_with(s, &s.cache, args).output().expect("running snap")
}

/// Runs with a fresh, empty cache directory (as on a new machine).
fn run_fresh<I, S>(s: &Snap, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cache = s.path(&common::services::unique_name("cache"));
    cmd_with(s, &cache, args).output().expect("running snap")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "snap failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[track_caller]
fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "snap unexpectedly succeeded:\nstdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// A directory of `n` incompressible files of `size` bytes.
fn make_dir(root: &Path, seed: u64, n: usize, size: usize) {
    std::fs::create_dir_all(root).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        std::fs::write(root.join(format!("f{i:03}")), rng.bytes(size)).unwrap();
    }
}

fn backup(s: &Snap, dir: &Path) -> String {
    let out = ok(&run(
        s,
        [OsStr::new("--json"), "backup".as_ref(), dir.as_os_str()],
    ));
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    v["snapshot"].as_str().unwrap().to_string()
}

/// Restores `id` and compares the restored copy of `src` with `src`.
#[track_caller]
fn restores_intact(s: &Snap, id: &str, src: &Path) {
    let target = s.path(&common::services::unique_name("restore"));
    ok(&run(
        s,
        [
            OsStr::new("restore"),
            id.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ));
    let d = tree_diff(src, &restored_path(&target, src));
    assert!(d.is_empty(), "restore of {id} differs: {d:?}");
}

fn objects(s: &Snap, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(&s.repo).join(dir))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn pack_files(s: &Snap) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in objects(s, "data") {
        for f in std::fs::read_dir(d).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Index objects that are in `after` but not in `before`.
fn new_index(s: &Snap, before: &[PathBuf]) -> PathBuf {
    let v: Vec<PathBuf> = objects(s, "index")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(v.len(), 1, "expected one new index object: {v:?}");
    v[0].clone()
}

/// One index object replaced by another's bytes and one bit flipped in a
/// snapshot object: the rest of the repository stays usable, `check` names
/// both, `prune` and `repair snapshots` refuse while the index is unreadable,
/// `repair index` rebuilds it, `repair snapshots` removes the bad snapshot.
#[test]
fn bad_index_and_snapshot_objects_are_skipped_listed_and_repaired() {
    let mut s = Snap::new();
    ok(&run(&s, ["init"]));
    let (a, b, c) = (s.path("a"), s.path("b"), s.path("c"));
    make_dir(&a, 1, 8, 40_000);
    make_dir(&b, 2, 8, 40_000);
    make_dir(&c, 3, 8, 40_000);
    let i0 = objects(&s, "index");
    let sa = backup(&s, &a);
    let ia = new_index(&s, &i0);
    let i1 = objects(&s, "index");
    let sb = backup(&s, &b);
    let ib = new_index(&s, &i1);
    let sc = backup(&s, &c);

    // Index b replaced by a replay of index a; one bit of snapshot c flipped.
    std::fs::copy(&ia, &ib).unwrap();
    let sc_path = Path::new(&s.repo).join("snapshots").join(&sc);
    let mut bytes = std::fs::read(&sc_path).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&sc_path, &bytes).unwrap();
    let (ib_short, sc_short) = (&name(&ib)[..8], &sc[..8]);

    // A new machine: both are skipped with warnings naming them.
    s.cache = s.path("cache-after-damage");
    let o = run(&s, ["--json", "snapshots"]);
    let out = ok(&o);
    let err = text(&o.stderr);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sa.as_str(), sb.as_str()], "stderr: {err}");
    assert!(err.contains(ib_short) && err.contains(sc_short), "{err}");
    for line in err.lines() {
        let w: serde_json::Value = serde_json::from_str(line).expect("--json warnings are JSON");
        assert_eq!(w["type"], "warning", "{line}");
    }

    // The intact snapshot restores; a backup works.
    let o = run(&s, ["snapshots"]);
    assert!(text(&o.stderr).contains("snap: warning: skipping"), "{o:?}");
    restores_intact(&s, &sa, &a);
    backup(&s, &a);

    // check names both objects and fails.
    let all = failed(&run(&s, ["check"]));
    assert!(all.contains(&name(&ib)) && all.contains(&sc), "{all}");

    // Nothing is deleted while an index object is unreadable.
    let packs_before = pack_files(&s);
    ok(&run(&s, ["forget", &sa]));
    let all = failed(&run(&s, ["prune", "--grace", "0s"]));
    assert!(all.contains("snap repair index"), "{all}");
    let all = failed(&run(&s, ["repair", "snapshots"]));
    assert!(all.contains("snap repair index"), "{all}");
    assert_eq!(pack_files(&s), packs_before, "packs changed");

    // repair index replaces the bad index; b restores again.
    ok(&run(&s, ["repair", "index"]));
    assert!(!ib.exists(), "unreadable index object still there");
    restores_intact(&s, &sb, &b);
    // repair snapshots removes the snapshot object that does not authenticate.
    let out = ok(&run(&s, ["repair", "snapshots"]));
    assert!(out.contains(sc_short), "{out}");
    assert!(!sc_path.exists(), "unreadable snapshot object still there");
    let o = run_fresh(&s, ["check"]);
    ok(&o);
    assert!(!text(&o.stderr).contains("warning"), "{o:?}");
    ok(&run(&s, ["prune", "--grace", "0s"]));
    restores_intact(&s, &sb, &b);
}

/// A snapshot object damaged after the catalog cached it, and a catalog row
/// edited to point a snapshot at another tree: `check` re-reads the
/// snapshot objects and reports both.
#[test]
fn check_rereads_snapshot_objects_instead_of_trusting_the_catalog() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let (a, b) = (s.path("a"), s.path("b"));
    make_dir(&a, 4, 3, 10_000);
    make_dir(&b, 5, 3, 10_000);
    let sa = backup(&s, &a);
    let sb = backup(&s, &b);
    ok(&run(&s, ["check"]));

    // Catalog row of a edited to b's tree.
    let cat = find_catalog(&s.cache);
    {
        let db = rusqlite::Connection::open(&cat).unwrap();
        let jb: String = db
            .query_row(
                "SELECT json FROM snapshots WHERE id = ?1",
                [hex::decode(&sb).unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        let n = db
            .execute(
                "UPDATE snapshots SET json = ?1 WHERE id = ?2",
                rusqlite::params![jb, hex::decode(&sa).unwrap()],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let all = failed(&run(&s, ["check"]));
    assert!(
        all.contains("catalog disagrees") && all.contains(&sa[..8]),
        "{all}"
    );
    ok(&run(&s, ["cache", "rebuild"]));
    ok(&run(&s, ["check"]));
    restores_intact(&s, &sa, &a);

    // A blob location edited in the catalog.
    {
        let db = rusqlite::Connection::open(&cat).unwrap();
        let n = db
            .execute(
                "UPDATE blobs SET offset = offset + 1 WHERE id = (SELECT id FROM blobs LIMIT 1)",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let all = failed(&run(&s, ["check"]));
    assert!(all.contains("catalog disagrees with the index"), "{all}");
    ok(&run(&s, ["cache", "rebuild"]));
    ok(&run(&s, ["check"]));

    // Snapshot object b damaged after it was cached.
    let p = Path::new(&s.repo).join("snapshots").join(&sb);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x80;
    std::fs::write(&p, &bytes).unwrap();
    let all = failed(&run(&s, ["check"]));
    assert!(all.contains(&sb), "{all}");
}

fn find_catalog(cache: &Path) -> PathBuf {
    for e in std::fs::read_dir(cache).unwrap() {
        let p = e.unwrap().path().join("catalog.sqlite");
        if p.exists() {
            return p;
        }
    }
    panic!("no catalog under {}", cache.display());
}

/// Garbage in catalog.sqlite: moved aside, rebuilt, one warning naming it.
#[test]
fn corrupt_catalog_is_moved_aside_and_rebuilt() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let a = s.path("a");
    make_dir(&a, 6, 3, 10_000);
    let sa = backup(&s, &a);
    let cat = find_catalog(&s.cache);
    for ext in ["-wal", "-shm"] {
        let mut p = cat.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::write(&cat, Rng::new(7).bytes(8192)).unwrap();

    let o = run(&s, ["snapshots"]);
    let out = ok(&o);
    assert!(out.contains(&sa[..8]), "{out}");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one warning: {err}");
    assert!(
        err.contains("warning") && err.contains(&cat.display().to_string()),
        "{err}"
    );
    let aside: Vec<String> = std::fs::read_dir(cat.parent().unwrap())
        .unwrap()
        .map(|e| name(&e.unwrap().path()))
        .filter(|n| n.starts_with("catalog.sqlite.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    restores_intact(&s, &sa, &a);

    // `cache rebuild` also copes with a corrupt catalog.
    std::fs::write(&cat, Rng::new(8).bytes(4096)).unwrap();
    ok(&run(&s, ["cache", "rebuild"]));
}

/// Two `snap init` racing for one location, many times: exactly one wins,
/// exactly one key file remains, and the loser's password never opens it.
fn race_inits(location: impl Fn(usize) -> (Snap, Snap), rounds: usize) {
    for round in 0..rounds {
        let (s1, mut s2) = location(round);
        s2.password = "another password".into();
        let c1 = cmd_with(&s1, &s1.cache, ["init"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let c2 = cmd_with(&s2, &s2.cache, ["init"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o1 = c1.wait_with_output().unwrap();
        let o2 = c2.wait_with_output().unwrap();
        let won: Vec<&Snap> = [(&s1, &o1), (&s2, &o2)]
            .iter()
            .filter(|(_, o)| o.status.success())
            .map(|(s, _)| *s)
            .collect();
        assert!(
            won.len() == 1,
            "round {round}: {} inits succeeded: {} / {}",
            won.len(),
            text(&o1.stderr),
            text(&o2.stderr)
        );
        let lost = if std::ptr::eq(won[0], &s1) { &o2 } else { &o1 };
        assert!(
            text(&lost.stderr).contains("already exists"),
            "round {round}: {}",
            text(&lost.stderr)
        );
        let keys = ok(&run_fresh(won[0], ["--json", "key", "list"]));
        let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
        assert_eq!(
            keys.as_array().unwrap().len(),
            1,
            "round {round}: key files left: {keys}"
        );
        // Both passwords with a fresh cache: the winner's opens.
        ok(&run_fresh(won[0], ["snapshots"]));
        let other = if std::ptr::eq(won[0], &s1) { &s2 } else { &s1 };
        let o = run_fresh(other, ["snapshots"]);
        assert_eq!(o.status.code(), Some(12), "round {round}: {o:?}");
    }
}

#[test]
fn concurrent_inits_leave_exactly_one_master_key() {
    race_inits(
        |_| {
            let s1 = Snap::new();
            let mut s2 = Snap::new();
            s2.repo = s1.repo.clone();
            (s1, s2)
        },
        12,
    );
}

#[test]
fn concurrent_inits_on_s3_leave_exactly_one_master_key() {
    let Some(s3) = common::services::s3() else {
        return;
    };
    race_inits(
        |_| {
            let url = s3.repo_url(&common::services::unique_name("race"));
            let mut s1 = Snap::new();
            let mut s2 = Snap::new();
            s1.repo = url.clone();
            s2.repo = url;
            s1.env = s3.env();
            s2.env = s3.env();
            (s1, s2)
        },
        2,
    );
}

/// An init that crashed after writing its key file (or key files planted
/// before init) cannot make a second master key usable.
#[test]
fn key_files_left_before_init_never_open_the_repository() {
    let s = Snap::new();
    let keys = Path::new(&s.repo).join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    // Stale key files wrapping other master keys under the same password,
    // named to be tried first.
    // Half under the repository's password, half under another one (the
    // password of an init that lost a race).
    for i in 0..8 {
        let mk = snap::crypto::MasterKey::generate();
        let pw = if i < 4 {
            "other password"
        } else {
            s.password.as_str()
        };
        let kf = snap::crypto::wrap_master_key_with_params(
            &mk,
            pw.as_bytes(),
            (8 * 1024, 1, 1),
            "2026-01-01T00:00:00.000Z".into(),
            "h".into(),
            "u".into(),
        )
        .unwrap();
        // First and last in name order, whichever order a reader uses.
        let name = if i % 2 == 0 {
            format!("{i:064}")
        } else {
            format!("{}{i}", "f".repeat(63))
        };
        std::fs::write(keys.join(name), kf.encode()).unwrap();
    }
    ok(&run(&s, ["init"]));
    let a = s.path("a");
    make_dir(&a, 9, 2, 5000);
    let sa = backup(&s, &a);
    let o = run_fresh(&s, ["snapshots"]);
    assert!(ok(&o).contains(&sa[..8]));
    assert!(text(&o.stderr).contains("another master key"), "{o:?}");
    // The other password opens only key files of another master key: it can
    // neither read nor write this repository.
    let mut other = Snap::new();
    other.repo = s.repo.clone();
    other.password = "other password".into();
    let packs = pack_files(&s);
    let all = failed(&run(&other, ["backup", a.to_str().unwrap()]));
    assert!(all.contains("does not match the master key"), "{all}");
    assert_eq!(
        pack_files(&s),
        packs,
        "a backup under another master key wrote packs"
    );
    assert_eq!(objects(&s, "snapshots").len(), 1);
}

/// Peak resident memory of a finished child, KiB (`VmHWM` is gone after
/// exit, so the child is polled while it runs).
fn run_measured(mut c: Command) -> (Output, u64, Duration) {
    let started = Instant::now();
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(st) = std::fs::read_to_string(&status) {
            for l in st.lines() {
                if let Some(v) = l.strip_prefix("VmHWM:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kib);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), peak, started.elapsed())
}

/// A 2 GB (sparse) `config`, key file and index object are refused from the
/// size the backend reports, before their bodies are read.
#[test]
fn oversized_objects_are_refused_before_download() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let a = s.path("a");
    make_dir(&a, 10, 2, 5000);
    backup(&s, &a);
    let repo = Path::new(&s.repo);

    // An index object of 300 MB: skipped with a size warning.
    let big_index = repo.join("index").join("ef".repeat(32));
    std::fs::File::create(&big_index)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let fresh = s.path("fresh-cache");
    let (o, peak, took) = run_measured(cmd_with(&s, &fresh, ["snapshots"]));
    ok(&o);
    assert!(text(&o.stderr).contains("bytes allowed"), "{o:?}");
    assert!(
        peak < 150 << 10,
        "peak RSS {peak} KiB reading a 300 MB index"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    std::fs::remove_file(&big_index).unwrap();

    // A forged 1 GB key file: skipped.
    let big_key = repo.join("keys").join("0".repeat(64));
    std::fs::File::create(&big_key)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (o, peak, _) = run_measured(cmd_with(&s, &s.path("fresh2"), ["snapshots"]));
    ok(&o);
    assert!(peak < 150 << 10, "peak RSS {peak} KiB with a 1 GB key file");
    std::fs::remove_file(&big_key).unwrap();

    // A 2 GB config: a clear error, fast, small.
    let config = repo.join("config");
    let orig = std::fs::read(&config).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&config)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (o, peak, took) = run_measured(cmd_with(&s, &s.cache, ["snapshots"]));
    let all = failed(&o);
    assert!(
        all.contains("config") && all.contains("bytes allowed"),
        "{all}"
    );
    assert!(
        peak < 150 << 10,
        "peak RSS {peak} KiB reading a 2 GB config"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    std::fs::write(&config, orig).unwrap();
    ok(&run(&s, ["snapshots"]));
}

/// Forged key files with expensive Argon2 parameters (accepted by the old
/// 4 GiB / 100-pass bounds), named to be tried first: skipped without
/// running Argon2.
#[test]
fn forged_key_files_with_huge_argon2_parameters_cost_little() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let keys = Path::new(&s.repo).join("keys");
    let real = name(&objects(&s, "keys")[0]);
    let mut kf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys.join(&real)).unwrap()).unwrap();
    kf["kdf"]["m_cost_kib"] = (1u32 << 19).into(); // 512 MiB
    kf["kdf"]["t_cost"] = 8.into();
    for i in 0..4 {
        let mut bytes = serde_json::to_vec_pretty(&kf).unwrap();
        bytes.push(b'\n');
        std::fs::write(keys.join(format!("{i:064}")), bytes).unwrap();
    }
    let (o, _, took) = run_measured(cmd_with(&s, &s.path("fresh"), ["snapshots"]));
    assert!(took < Duration::from_secs(5), "unlock took {took:?}");
    ok(&o);
    assert!(text(&o.stderr).contains("kdf parameters"), "{o:?}");
}

/// `config` values outside the sane ranges are refused naming the field.
#[test]
fn config_with_absurd_values_is_refused_naming_the_field() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let path = Path::new(&s.repo).join("config");
    let orig = std::fs::read(&path).unwrap();
    for (field, value) in [
        ("open_packs", serde_json::json!(65)),
        ("pack_size", serde_json::json!(2u32 << 30)),
    ] {
        let mut c: serde_json::Value = serde_json::from_slice(&orig).unwrap();
        c[field] = value;
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        let all = failed(&run(&s, ["snapshots"]));
        assert!(all.contains(&format!("field {field}")), "{field}: {all}");
        let all = failed(&run(&s, ["backup", s.path("").to_str().unwrap()]));
        assert!(all.contains(&format!("field {field}")), "{field}: {all}");
    }
    std::fs::write(&path, &orig).unwrap();
    ok(&run(&s, ["snapshots"]));
}

/// A `config` within the ranges an earlier `init` wrote (1 GiB packs, 64
/// open packs; no `key_check`) still opens and takes backups: the writer
/// clamps what it holds in memory instead of refusing the repository.
#[test]
fn config_of_an_earlier_init_with_large_packs_still_opens() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let path = Path::new(&s.repo).join("config");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["pack_size"] = serde_json::json!(1u32 << 30);
    c["open_packs"] = serde_json::json!(64);
    c.as_object_mut().unwrap().remove("key_check");
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let a = s.path("a");
    make_dir(&a, 21, 20, 100_000);
    backup(&s, &a);
    ok(&run_fresh(&s, ["check", "--read-data"]));
}

/// A pack truncated (its header lost): `repair index --read-data` keeps the
/// blobs whose bytes are intact, using what the old index said about it.
#[test]
fn repair_index_read_data_salvages_a_truncated_pack() {
    let s = Snap::new();
    ok(&run(&s, ["init", "--pack-size-mib", "1"]));
    let a = s.path("a");
    make_dir(&a, 11, 100, 50_000);
    backup(&s, &a);
    // The data pack with the most blobs (no tree blobs, so the directory
    // itself survives), cut to 60% of its length.
    let repo = snap::Repository::open(&s.repo, s.password.as_bytes(), &s.cache).unwrap();
    let mut best: Option<(usize, snap::PackId)> = None;
    for l in repo.store().list("index/").unwrap() {
        let idx = repo
            .read_index(&snap::IndexId::from_hex(&l.name).unwrap())
            .unwrap();
        for p in idx.packs {
            let trees = p
                .blobs
                .iter()
                .any(|b| b.kind == snap::format::BlobKind::Tree);
            if !trees && best.is_none_or(|(n, _)| p.blobs.len() > n) {
                best = Some((p.blobs.len(), p.id));
            }
        }
    }
    drop(repo);
    let (n, id) = best.expect("a pack of data blobs only");
    assert!(n >= 10, "the pack holds {n} blobs");
    let pack = &Path::new(&s.repo).join(snap::store::ObjectKind::Pack.key(&id.to_hex()));
    let len = std::fs::metadata(pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len * 6 / 10)
        .unwrap();

    let out = ok(&run(&s, ["--json", "repair", "index", "--read-data"]));
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let salvaged = r["blobs_salvaged"].as_u64().unwrap_or(0);
    let lost = r["blobs_lost"].as_u64().unwrap();
    assert!(salvaged >= 5, "salvaged {salvaged}, lost {lost}: {r}");
    assert!(lost >= 1, "{r}");
    assert!(!pack.exists(), "the truncated pack is still there");

    // The snapshot loses only the files whose blobs were cut off.
    let out = ok(&run(&s, ["--json", "repair", "snapshots"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lost_files = v["snapshots"][0]["lost"].as_array().unwrap().len() as u64;
    assert!(lost_files <= lost && lost_files >= 1, "{v}");
    ok(&run(&s, ["check", "--read-data"]));
    let target = s.path("restore");
    ok(&run(
        &s,
        [
            OsStr::new("restore"),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ));
    let root = restored_path(&target, &a);
    let mut restored = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(a.join(p.file_name().unwrap())).unwrap(),
            "{} restored with wrong content",
            p.display()
        );
        restored += 1;
    }
    assert_eq!(restored + lost_files, 100);
}

/// Names listed from the repository and user durations never panic: a
/// lease object whose name has a multi-byte character across byte 8, and
/// `prune --grace` too long to add to a mark's time.
#[test]
fn odd_lease_names_and_a_huge_grace_do_not_panic() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let a = s.path("a");
    make_dir(&a, 31, 8, 100_000);
    backup(&s, &a);
    make_dir(&a, 32, 8, 100_000);
    backup(&s, &a);
    ok(&run(&s, ["forget", "--keep-last", "1"]));
    ok(&run(&s, ["prune", "--grace", "0s"]));
    let o = run(&s, ["prune", "--grace", "1000000years"]);
    assert!(!text(&o.stderr).contains("panicked"), "{o:?}");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::fs::write(
        Path::new(&s.repo).join("locks").join("aaaaaaaé-lease"),
        b"junk",
    )
    .unwrap();
    let o = run(&s, ["locks"]);
    assert!(!text(&o.stderr).contains("panicked"), "{o:?}");
    assert_ne!(o.status.code(), Some(101), "{o:?}");
}

/// A pack that snapshots need, deleted behind snap's back (by another tool, or hidden by a
/// delete marker in a versioned or Object Lock bucket): prune refuses in one line and
/// deletes nothing, instead of pruning on as if the loss were not there (and, under Object
/// Lock, purging the hidden version for good once its retention ends). Each pack is taken
/// away in turn: one holding trees stops prune at the unreadable tree; one holding only data
/// is named by the new refusal. With the pack back, prune runs. Failed before: with a
/// data-only pack gone prune exited 0.
#[test]
fn prune_refuses_when_a_referenced_pack_is_missing() {
    let s = Snap::new();
    ok(&run(&s, ["init"]));
    let a = s.path("a");
    make_dir(&a, 41, 12, 3 << 20);
    let id = backup(&s, &a);
    let packs = pack_files(&s);
    let aside = s.path("aside");
    let mut named = 0;
    for pack in &packs {
        std::fs::rename(pack, &aside).unwrap();
        let err = failed(&run(&s, ["prune", "--grace", "0s"]));
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        if lines[0].contains("refusing to prune: pack") {
            assert!(lines[0].contains(&name(pack)[..16]), "{err}");
            named += 1;
        } else {
            assert!(lines[0].contains("is unreadable"), "{err}");
        }
        let mut left = packs.clone();
        left.retain(|p| p != pack);
        assert_eq!(
            pack_files(&s),
            left,
            "prune changed packs while {pack:?} was missing"
        );
        std::fs::rename(&aside, pack).unwrap();
    }
    assert!(named > 0, "no pack held only data: {packs:?}");
    ok(&run(&s, ["prune", "--grace", "0s"]));
    restores_intact(&s, &id, &a);
}
