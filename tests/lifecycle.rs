//! Snapshot lifecycle: forget, prune (two-phase, concurrent with backups),
//! leases, check and repair, through the built binary.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn copy_dir(a: &Path, b: &Path) {
    std::fs::create_dir_all(b).unwrap();
    for e in std::fs::read_dir(a).unwrap() {
        let e = e.unwrap();
        let t = b.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Version `v` of a changing tree: some files stay, some change, some come
/// and go.
fn write_version(src: &Path, v: u64) {
    std::fs::create_dir_all(src.join("stable")).unwrap();
    std::fs::write(src.join("stable/a.bin"), noise(1, 200_000)).unwrap();
    std::fs::create_dir_all(src.join("var")).unwrap();
    std::fs::write(src.join("var/changing.bin"), noise(1000 + v, 150_000)).unwrap();
    let old = src.join(format!("var/gen{}.bin", v.wrapping_sub(2)));
    let _ = std::fs::remove_file(old);
    std::fs::write(src.join(format!("var/gen{v}.bin")), noise(5000 + v, 80_000)).unwrap();
    std::fs::write(src.join("small.txt"), format!("version {v}\n")).unwrap();
}

fn args(v: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    v.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn restore_and_compare(s: &Snap, id: &str, saved: &Path, src: &Path, tag: &str) {
    let target = s.path(&format!("restore-{tag}-{}", &id[..8]));
    s.ok(args(&[&"restore", &id, &"--target", &target]));
    let d = tree_diff(saved, &restored_path(&target, src));
    assert!(d.is_empty(), "snapshot {id}: {d:?}");
    std::fs::remove_dir_all(&target).unwrap();
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().expect("output")).expect("json")
}

#[test]
fn forget_prune_keeps_restorable_snapshots_and_frees_space() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    let mut saved: Vec<(String, PathBuf)> = Vec::new();
    for v in 0..20u64 {
        write_version(&src, v);
        let copy = s.path(&format!("saved{v}"));
        copy_dir(&src, &copy);
        // Same mtimes as the source for tree_diff.
        for e in walk(&src) {
            let rel = e.strip_prefix(&src).unwrap();
            let m = std::fs::symlink_metadata(&e).unwrap();
            filetime::set_file_mtime(
                copy.join(rel),
                filetime::FileTime::from_last_modification_time(&m),
            )
            .unwrap();
        }
        let out = s.backup_json([src.as_os_str()]);
        saved.push((out["snapshot"].as_str().unwrap().to_string(), copy));
    }
    let before = dir_bytes(Path::new(&s.repo));
    // Dry run changes nothing and explains the kept ones.
    let out = s.ok(["forget", "--keep-last", "5", "--dry-run"]);
    assert_eq!(out.matches("last snapshot").count(), 5, "{out}");
    assert_eq!(s.snapshot_ids().len(), 20);
    let out = s.ok([
        "--json",
        "forget",
        "--keep-last",
        "5",
        "--prune",
        "--grace",
        "0s",
    ]);
    let removed = serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).unwrap();
    assert_eq!(removed["removed"].as_array().unwrap().len(), 15);
    let p1 = json(&out);
    assert!(p1["packs_marked"].as_u64().unwrap() > 0, "{p1}");
    // Second prune deletes what the first one marked.
    let p2 = json(&s.ok(["--json", "prune", "--grace", "0s"]));
    assert!(p2["packs_deleted"].as_u64().unwrap() > 0, "{p2}");
    assert!(p2["bytes_freed"].as_u64().unwrap() > 0, "{p2}");
    let after = dir_bytes(Path::new(&s.repo));
    assert!(
        after < before * 2 / 3,
        "repository {before} -> {after} bytes"
    );
    let ids = s.snapshot_ids();
    let kept: Vec<&(String, PathBuf)> = saved[15..].iter().collect();
    assert_eq!(ids, kept.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>());
    for (id, copy) in kept {
        restore_and_compare(&s, id, copy, &src, "fp");
    }
    let c = json(&s.ok(["--json", "check", "--read-data"]));
    assert_eq!(c["ok"], true, "{c}");
    // A third prune has nothing left to do.
    let p3 = json(&s.ok(["--json", "prune", "--grace", "0s"]));
    assert_eq!(p3["packs_deleted"], 0, "{p3}");
    assert_eq!(p3["packs_marked"], 0, "{p3}");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Backups of separate source trees run while `forget --prune --grace 0s`
/// runs in a loop. Each round: snapshots created in earlier rounds are
/// forgotten except the newest per source, prune marks their packs, and the
/// next round's prune deletes them while new backups (that may have been
/// deduplicating against those packs) are running.
#[test]
fn backups_and_prune_run_concurrently() {
    backups_and_prune_concurrently(Snap::new(), 5);
}

/// The same on the S3 test server (fewer rounds: each request crosses HTTP).
#[test]
fn backups_and_prune_run_concurrently_on_s3() {
    let Some(s3) = common::services::s3() else {
        return;
    };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&common::services::unique_name("prune_"));
    s.env = s3.env();
    backups_and_prune_concurrently(s, 3);
}

fn backups_and_prune_concurrently(s: Snap, rounds: u64) {
    s.init();
    let sources = 3u64;
    let mut saved: std::collections::HashMap<String, (PathBuf, PathBuf)> = Default::default();
    for r in 0..rounds {
        let mut kids = Vec::new();
        for k in 0..sources {
            let src = s.path(&format!("src{k}"));
            // Most content is shared between rounds, so new backups dedup
            // against packs that prune is marking and deleting.
            write_version(&src, r * 10 + k);
            let copy = s.path(&format!("saved-{r}-{k}"));
            copy_dir(&src, &copy);
            for e in walk(&src) {
                let rel = e.strip_prefix(&src).unwrap();
                let m = std::fs::symlink_metadata(&e).unwrap();
                filetime::set_file_mtime(
                    copy.join(rel),
                    filetime::FileTime::from_last_modification_time(&m),
                )
                .unwrap();
            }
            let child = s
                .cmd(args(&[&"--json", &"backup", &src]))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            kids.push((child, src, copy));
        }
        // Prune twice while the backups run: the first run's marks become
        // ripe for the second (grace 0s) unless a backup blocks them.
        for _ in 0..2 {
            s.ok([
                "forget",
                "--keep-last",
                "1",
                "--group-by",
                "paths",
                "--prune",
                "--grace",
                "0s",
            ]);
        }
        for (child, src, copy) in kids {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "backup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v = json(&String::from_utf8_lossy(&out.stdout));
            saved.insert(v["snapshot"].as_str().unwrap().to_string(), (copy, src));
        }
        s.ok(["prune", "--grace", "0s"]);
        let ids = s.snapshot_ids();
        assert!(!ids.is_empty());
        for id in &ids {
            let (copy, src) = &saved[id];
            restore_and_compare(&s, id, copy, src, &format!("r{r}"));
        }
        let c = json(&s.ok(["--json", "check", "--read-data"]));
        assert_eq!(c["ok"], true, "round {r}: {c}");
    }
    // Something was actually deleted along the way.
    let c = json(&s.ok(["--json", "prune", "--grace", "0s"]));
    assert!(
        c["data_bytes_after"].as_u64().unwrap() < 3 * 2_000_000,
        "{c}"
    );
}

#[test]
fn killed_backup_lease_does_not_block_and_locks_are_listed() {
    let s = Snap::new();
    s.init();
    let src = s.path("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i}")), noise(i, 400_000)).unwrap();
    }
    let mut child = s
        .cmd(args(&[&"backup", &src]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until its lease exists, then SIGKILL it.
    let locks = Path::new(&s.repo).join("locks");
    let t0 = std::time::Instant::now();
    // A complete lease object: not the `NAME#N` staging file of its put.
    let leases = |dir: &Path| {
        std::fs::read_dir(dir).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().contains('#'))
                .count()
        })
    };
    while leases(&locks) == 0 {
        assert!(t0.elapsed().as_secs() < 60, "no lease appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let l: serde_json::Value = serde_json::from_str(&s.ok(["--json", "locks"])).unwrap();
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["lease"]["operation"], "backup");
    assert_eq!(l[0]["live"], true);
    // The next backup is not blocked by the dead process's lease.
    let small = s.path("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("x"), b"x").unwrap();
    s.backup_json([small.as_os_str()]);
    // An exclusive operation refuses while the (still unexpired) lease lives,
    // naming the holder, with exit code 11.
    let (code, err) = s.fail(["repair", "index"]);
    assert_eq!(code, 11, "{err}");
    assert!(err.contains("backup by pid"), "{err}");
    // unlock (expired only) keeps it; --all removes it.
    s.ok(["unlock"]);
    assert_eq!(leases(&locks), 1);
    s.ok(["unlock", "--all"]);
    assert_eq!(leases(&locks), 0);
    s.ok(["repair", "index"]);
    let c = json(&s.ok(["--json", "check", "--read-data"]));
    assert_eq!(c["ok"], true, "{c}");
}

#[test]
fn corrupt_pack_is_named_and_repaired() {
    let s = Snap::new();
    s.init();
    let a = s.path("a");
    let b = s.path("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("one.bin"), noise(7, 300_000)).unwrap();
    std::fs::write(b.join("two.bin"), noise(8, 300_000)).unwrap();
    let sa = s.backup_json([a.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let sb = s.backup_json([b.as_os_str()])["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    // The largest pack holds file content of one snapshot.
    let mut packs = walk(&Path::new(&s.repo).join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap().clone();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();

    let out = s.run(["--json", "check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let c = json(&String::from_utf8_lossy(&out.stdout));
    let probs = c["problems"].as_array().unwrap();
    assert_eq!(probs.len(), 1, "{c}");
    assert_eq!(probs[0]["pack"], name.as_str());
    let affected: Vec<&str> = probs[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(affected.len(), 1, "{c}");
    let (hit, hit_dir, other, other_dir) = if affected[0] == sa {
        (&sa, &a, &sb, &b)
    } else {
        (&sb, &b, &sa, &a)
    };
    assert_eq!(affected[0], hit.as_str());
    let path = probs[0]["paths"][0].as_str().unwrap();
    assert!(
        path.starts_with(&hit[..8]) && path.ends_with(".bin"),
        "{path}"
    );
    // Structure-only check does not read data: clean.
    s.ok(["check"]);

    s.ok(["repair", "index", "--read-data"]);
    assert!(!victim.exists(), "damaged pack deleted after salvage");
    let out = s.ok(["--json", "repair", "snapshots"]);
    let r = json(&out);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["snapshots"][0]["old"], hit.as_str());
    let c = json(&s.ok(["--json", "check", "--read-data"]));
    assert_eq!(c["ok"], true, "{c}");
    // The undamaged snapshot still restores byte-identically; the repaired
    // one is tagged and lacks the lost file.
    restore_and_compare(&s, other, other_dir, other_dir, "ok");
    let snaps: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    let rep = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] != other.as_str())
        .unwrap();
    assert!(
        rep["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "repaired"),
        "{rep}"
    );
    let _ = hit_dir;
}

#[test]
fn prune_removes_old_staging_files_of_killed_writes_only() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    write_version(&src, 1);
    s.ok(args(&[&"backup", &src]));
    let repo = PathBuf::from(&s.repo);
    // What object_store's local backend leaves when a put is killed before
    // its rename: NAME#N next to where the object would go.
    let hex = "ab".repeat(32);
    std::fs::create_dir_all(repo.join("data/ab")).unwrap();
    let old = repo.join(format!("data/ab/{hex}#3"));
    let young = repo.join(format!("index/{hex}#1"));
    std::fs::write(&old, b"half a pack").unwrap();
    std::fs::write(&young, b"half an index").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let out = s.ok(args(&[&"prune", &"--grace", &"0s"]));
    assert!(out.contains("removed 1 staging files"), "{out}");
    assert!(!old.exists(), "an hour-old staging file survived prune");
    assert!(
        young.exists(),
        "a staging file of a write that may be in progress was removed"
    );
    assert!(s.ok(["check", "--read-data"]).contains("no errors"));
    let id = s.snapshot_ids().pop().expect("a snapshot");
    restore_and_compare(&s, &id, &src, &src, "r-staging");
}

#[test]
fn backup_after_repair_rereads_files_whose_blobs_were_lost() {
    // The parent of the second backup was verified (its blobs all stored)
    // when it was written; `repair index` then loses some of them, and the
    // next backup must notice instead of reusing the parent's content.
    let s = Snap::new();
    s.init();
    let a = s.path("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("one.bin"), noise(11, 300_000)).unwrap();
    std::fs::write(a.join("two.bin"), noise(12, 300_000)).unwrap();
    s.backup_json([a.as_os_str()]);
    let mut packs = walk(&Path::new(&s.repo).join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap().clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    s.ok(["repair", "index", "--read-data"]);
    let j = s.backup_json([a.as_os_str()]);
    assert!(
        j["summary"]["files_unchanged"].as_u64().unwrap() < 2,
        "a file whose blobs were lost counted as unchanged: {j}"
    );
    let id = j["snapshot"].as_str().unwrap().to_string();
    restore_and_compare(&s, &id, &a, &a, "after-repair");
}

#[test]
fn damaged_tree_cache_entries_are_ignored() {
    // The catalog's tree cache holds tree plaintexts for the next backup; an
    // entry that does not match its id is read from the repository instead.
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    write_version(&src, 1);
    s.ok(args(&[&"backup", &src]));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&s.repo).join("config")).unwrap()).unwrap();
    let db = s
        .cache
        .join(config["id"].as_str().unwrap())
        .join("catalog.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n = conn
        .execute("UPDATE tree_cache SET plain = x'0102030405'", [])
        .unwrap();
    assert!(n > 0, "the first backup cached no trees");
    drop(conn);
    write_version(&src, 2);
    let j = s.backup_json([src.as_os_str()]);
    assert!(
        j["summary"]["files_unchanged"].as_u64().unwrap() >= 1,
        "the parent was not used: {j}"
    );
    let id = j["snapshot"].as_str().unwrap().to_string();
    restore_and_compare(&s, &id, &src, &src, "tree-cache");
    assert!(s.ok(["check", "--read-data"]).contains("no errors"));
}
