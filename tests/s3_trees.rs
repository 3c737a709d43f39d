//! Issue #14 (recovery engine, part 2): from an empty cache, a single-file
//! `restore --include`, `dump` and `ls PATH` on S3 read only the trees on
//! the way to what was asked for, counted with the store's request
//! statistics (`SNAP_STATS=1`).

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services::{self, S3};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn s3_snap(s3: &S3, prefix: &str) -> Snap {
    let mut s = Snap::new();
    s.repo = s3.repo_url(prefix);
    s.env = s3.env();
    s
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Runs snap with SNAP_STATS=1 and returns (stdout, request counters of the repo).
fn with_stats(s: &Snap, args: &[OsString]) -> (Vec<u8>, Value) {
    let out = s.cmd(args).env("SNAP_STATS", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "snap {args:?} failed: {stderr}");
    let req = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "store_stats" && v["location"] == s.repo.as_str())
        .unwrap_or_else(|| panic!("no store_stats for {} in {stderr}", s.repo))["requests"]
        .clone();
    (out.stdout, req)
}

fn kind(req: &Value, kind: &str, field: &str) -> u64 {
    req["by_kind"][kind][field].as_u64().unwrap_or(0)
}

/// A chain of `depth` folders `l0/l1/…`, each with `siblings` side folders
/// holding a small file and a sub-folder; the deepest folder holds
/// `leaf.txt`. Returns the path of `leaf.txt`.
fn deep_tree(root: &Path, depth: usize, siblings: usize) -> PathBuf {
    let mut dir = root.to_path_buf();
    for level in 0..depth {
        dir = dir.join(format!("l{level}"));
        for s in 0..siblings {
            let side = dir.join(format!("side{s}")).join("below");
            std::fs::create_dir_all(&side).unwrap();
            std::fs::write(side.join("x.txt"), format!("side {level} {s}\n")).unwrap();
            std::fs::write(
                dir.join(format!("side{s}")).join("y.txt"),
                format!("y {level} {s}\n"),
            )
            .unwrap();
        }
    }
    let leaf = dir.join("leaf.txt");
    std::fs::write(&leaf, b"the one file wanted\n").unwrap();
    leaf
}

/// Folders from the snapshot root to `p`'s parent, inclusive: the trees a
/// reader must read to reach `p` (the root tree is the first).
fn trees_on_the_way(p: &Path) -> u64 {
    p.components().count() as u64 - 1
}

#[test]
fn one_file_from_an_empty_cache_reads_only_the_trees_on_its_way() {
    let Some(s3) = services::s3() else { return };
    let s = s3_snap(&s3, &services::unique_name("trees_"));
    let src = s.path("src");
    let leaf = deep_tree(&src, 8, 4);
    s.init();
    let j = s.backup_json([&src]);
    let id = j["snapshot"].as_str().unwrap().to_string();
    let depth = trees_on_the_way(&leaf);
    let leaf_s = leaf.to_str().unwrap().to_string();

    // restore --include of one file, empty cache.
    std::fs::remove_dir_all(&s.cache).unwrap();
    let target = s.path("r1");
    let (_, req) = with_stats(
        &s,
        &os(&[&"restore", &id, &"--target", &target, &"--include", &leaf_s]),
    );
    eprintln!("restore --include one file (depth {depth}): {req}");
    let got = std::fs::read(restored_path(&target, &leaf)).unwrap();
    assert_eq!(got, b"the one file wanted\n");
    // Only the leaf's parents were created: no side folder.
    assert!(!restored_path(&target, &leaf.parent().unwrap().join("side0")).exists());
    // Pack reads: one per tree on the way plus one for the content.
    let packs = kind(&req, "data", "get");
    assert!(
        packs <= depth + 1,
        "{packs} pack reads for depth {depth}: {req}"
    );
    // All requests: config, key, the index and snapshot objects, plus those.
    let gets = req["get"].as_u64().unwrap();
    assert!(
        gets <= depth + 5 + 1,
        "{gets} GETs for depth {depth}: {req}"
    );
    assert_eq!(req["head"].as_u64().unwrap(), 0, "{req}");

    // dump of the same file.
    std::fs::remove_dir_all(&s.cache).unwrap();
    let (out, req) = with_stats(&s, &os(&[&"dump", &id, &leaf_s]));
    eprintln!("dump (depth {depth}): {req}");
    assert_eq!(out, b"the one file wanted\n");
    assert!(kind(&req, "data", "get") <= depth + 1, "{req}");
    assert!(req["get"].as_u64().unwrap() <= depth + 5 + 1, "{req}");

    // ls of the deepest folder: its tree too, but nothing beside the way.
    std::fs::remove_dir_all(&s.cache).unwrap();
    let dir_s = leaf.parent().unwrap().to_str().unwrap().to_string();
    let (out, req) = with_stats(&s, &os(&[&"ls", &id, &dir_s]));
    eprintln!("ls (depth {depth}): {req}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("leaf.txt"), "{out}");
    // leaf folder: 4 side folders with a file and a folder each, leaf.txt.
    assert_eq!(out.lines().count(), 1 + 4 * 4, "{out}");
    // The leaf folder's tree, its side folders' and their `below` folders'.
    let listed_trees = 1 + 4 + 4;
    assert!(kind(&req, "data", "get") <= depth + listed_trees, "{req}");

    // find with a path pattern: only the folders on the way to its literal
    // root are read (the catalog's path index is not built).
    std::fs::remove_dir_all(&s.cache).unwrap();
    let pat = format!("{dir_s}/*.txt");
    let (out, req) = with_stats(&s, &os(&[&"find", &pat]));
    eprintln!("find (depth {depth}): {req}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(&leaf_s), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(kind(&req, "data", "get") <= depth, "{req}");

    // A full restore still restores everything (trees read level by level).
    std::fs::remove_dir_all(&s.cache).unwrap();
    let all = s.path("all");
    let (_, req) = with_stats(&s, &os(&[&"restore", &id, &"--target", &all]));
    eprintln!("full restore: {req}");
    let d = tree_diff(&src, &restored_path(&all, &src));
    assert!(d.is_empty(), "full restore differs: {d:?}");
}
