//! `snap find / diff / dump / stats / tag / ls / cache rebuild`.

mod common;
use common::cli::Snap;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not one JSON document ({e}): {s}"))
}

fn backup(s: &Snap, src: &Path) -> String {
    let v = s.backup_json([src.as_os_str()]);
    v["snapshot"].as_str().expect("snapshot id").to_string()
}

fn p(src: &Path, rel: &str) -> String {
    format!("{}/{rel}", src.display())
}

/// Paths found per snapshot id by `find --json PATTERN`.
fn find(s: &Snap, pattern: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let v = json(&s.ok(["--json", "find", pattern]));
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for m in v.as_array().expect("array") {
        assert!(m["size"].is_u64() && m["mtime"].is_string() && m["time"].is_string());
        out.entry(m["snapshot"].as_str().unwrap().to_string())
            .or_default()
            .insert(m["path"].as_str().unwrap().to_string());
    }
    out
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[test]
fn find_diff_dump_across_snapshots() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    for d in ["a", "b"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("a/one.txt"), b"one").unwrap();
    std::fs::write(src.join("a/two.md"), b"two").unwrap();
    std::fs::write(src.join("b/three.txt"), b"three").unwrap();
    std::fs::write(src.join("b/big.bin"), &big).unwrap();
    let s1 = backup(&s, &src);

    std::fs::create_dir_all(src.join("c")).unwrap();
    std::fs::write(src.join("c/four.txt"), b"four").unwrap();
    std::fs::remove_file(src.join("a/two.md")).unwrap();
    std::fs::write(src.join("b/three.txt"), b"three, longer now").unwrap();
    // Metadata-only change: same bytes, new mtime.
    filetime::set_file_mtime(
        src.join("a/one.txt"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
    let s2 = backup(&s, &src);

    // find '*.txt' lists the right paths per snapshot.
    let f = find(&s, "*.txt");
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[&s1], set(&[p(&src, "a/one.txt"), p(&src, "b/three.txt")]));
    assert_eq!(
        f[&s2],
        set(&[
            p(&src, "a/one.txt"),
            p(&src, "b/three.txt"),
            p(&src, "c/four.txt")
        ])
    );
    // A path pattern and the --snapshot filter.
    let v = json(&s.ok(["--json", "find", "--snapshot", &s1[..12], "**/a/*"]));
    let got: BTreeSet<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, set(&[p(&src, "a/one.txt"), p(&src, "a/two.md")]));
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["snapshot"] == s1.as_str()));

    // A third snapshot is indexed on the next find, reading only new folders.
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/five.txt"), b"five").unwrap();
    let s3 = backup(&s, &src);
    let out = s.run(["find", "five.txt"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let n: u64 = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("indexed ")
                .and_then(|r| r.split(' ').next())
                .and_then(|x| x.parse().ok())
        })
        .unwrap_or_else(|| panic!("no 'indexed N new folders' line: {stderr}"));
    // New: d, src (changed), and src's ancestors; a, b, c are shared with s2.
    let depth = src.components().count() as u64; // "/" .. "src"
    assert_eq!(n, depth + 1, "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&s3[..8]) && stdout.contains(&p(&src, "d/five.txt")),
        "{stdout}"
    );
    let f = find(&s, "*.txt");
    assert_eq!(f.len(), 3);
    assert_eq!(f[&s3].len(), 4);
    assert_eq!(f[&s1], set(&[p(&src, "a/one.txt"), p(&src, "b/three.txt")]));
    // Nothing new to index now.
    let out = s.run(["find", "*.txt"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("indexed"));

    // diff s1 s2: exactly the changes made.
    let d = json(&s.ok(["--json", "diff", &s1, &s2]));
    let changes = d["changes"].as_array().unwrap();
    let files: BTreeSet<(String, String)> = changes
        .iter()
        .filter(|c| c["type"] != "dir")
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("added", "c/four.txt"),
        ("removed", "a/two.md"),
        ("modified", "b/three.txt"),
        ("metadata", "a/one.txt"),
    ]
    .iter()
    .map(|(c, r)| (c.to_string(), p(&src, r)))
    .collect();
    assert_eq!(files, want);
    let added_dirs: Vec<&str> = changes
        .iter()
        .filter(|c| c["type"] == "dir" && c["change"] == "added")
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(added_dirs, vec![p(&src, "c").as_str()]);
    let m = changes.iter().find(|c| c["change"] == "modified").unwrap();
    assert_eq!(m["size_before"], 5);
    assert_eq!(m["size_after"], 17);
    assert_eq!(d["summary"]["added"], 2);
    assert_eq!(d["summary"]["removed"], 1);
    assert_eq!(d["summary"]["modified"], 1);
    // Text output has markers and a summary line.
    let t = s.ok(["diff", &s1, &s2]);
    assert!(t.contains(&format!("+  {}", p(&src, "c/four.txt"))), "{t}");
    assert!(t.contains(&format!("-  {}", p(&src, "a/two.md"))), "{t}");
    assert!(t.contains(&format!("M  {}", p(&src, "b/three.txt"))), "{t}");
    assert!(t.contains(&format!("U  {}", p(&src, "a/one.txt"))), "{t}");
    assert!(t.lines().last().unwrap().contains("2 added"), "{t}");
    // Identical snapshots: no changes.
    let d = json(&s.ok(["--json", "diff", &s2, &s2]));
    assert_eq!(d["changes"].as_array().unwrap().len(), 0);

    // dump returns the exact bytes.
    let out = s.run(["dump", &s1, &p(&src, "b/big.bin")]);
    assert!(out.status.success());
    assert!(
        out.stdout == big,
        "dumped {} bytes, want {}",
        out.stdout.len(),
        big.len()
    );
    let out = s.run(["dump", &s1, &p(&src, "b/three.txt")]);
    assert_eq!(out.stdout, b"three");
    let out = s.run(["dump", &s2, &p(&src, "b/three.txt")]);
    assert_eq!(out.stdout, b"three, longer now");
    let (code, err) = s.fail(["dump", &s2, &p(&src, "a/two.md")]);
    assert_eq!(code, 1);
    assert!(err.contains("no such path"), "{err}");
    let (_, err) = s.fail(["dump", &s2, &p(&src, "a")]);
    assert!(err.contains("not a file"), "{err}");

    // cache rebuild wipes the path index too; find still answers the same.
    s.ok(["cache", "rebuild"]);
    let out = s.run(["find", "*.txt"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("indexed"));
    assert_eq!(find(&s, "*.txt")[&s2].len(), 3);
}

#[test]
fn dump_stream() {
    let s = Snap::new();
    s.init();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let out = s.run_stdin(["backup", "--stdin", "--stdin-name", "db.sql"], &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.run(["dump", "latest", "@streams/db.sql"]);
    assert!(out.status.success());
    assert!(out.stdout == data);
}

#[test]
fn stats_dedup_and_tags_and_ls() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    let noise: Vec<u8> = (0..500_000u32)
        .map(|i| (i.wrapping_mul(2246822519) >> 11) as u8)
        .collect();
    std::fs::write(src.join("x/noise.bin"), &noise).unwrap();
    std::fs::write(src.join("zeros.bin"), vec![0u8; 400_000]).unwrap();
    let a = backup(&s, &src);
    let b = backup(&s, &src);

    let v = json(&s.ok(["--json", "stats"]));
    let per = v["snapshots"].as_array().unwrap();
    assert_eq!(per.len(), 2);
    let logical = per[0]["logical_size"].as_u64().unwrap();
    assert_eq!(logical, 900_000);
    assert_eq!(per[0]["files"], 2);
    let total = &v["total"];
    assert_eq!(total["logical_size"].as_u64().unwrap(), 2 * logical);
    assert_eq!(total["files"], 4);
    // Same content: no new data blobs. Only the trees on the way to `src`
    // may differ, because other processes touch /tmp (its mtime is recorded).
    let depth = src.components().count() as u64;
    let (tb, pb) = (
        total["blobs"].as_u64().unwrap(),
        per[0]["blobs"].as_u64().unwrap(),
    );
    assert!(
        tb >= pb && tb <= pb + depth,
        "same tree: {tb} blobs in total, {pb} in one snapshot"
    );
    let dedup = total["dedup_ratio"].as_f64().unwrap();
    assert!(dedup > 1.9 && dedup < 2.0, "dedup {dedup}");
    assert!(per[0]["dedup_ratio"].as_f64().unwrap() <= 1.0 + 1e-9);
    // Zeros compress: unique raw > stored.
    assert!(
        total["compression_ratio"].as_f64().unwrap() > 1.2,
        "{total}"
    );
    assert!(total["stored_size"].as_u64().unwrap() < total["raw_size"].as_u64().unwrap());
    assert_eq!(total["missing_blobs"], 0);
    // One snapshot by id.
    let v1 = json(&s.ok(["--json", "stats", &a[..10]]));
    assert_eq!(v1["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(v1["total"]["logical_size"].as_u64().unwrap(), logical);

    // Tags: add, remove, set; visible in snapshots --json; objects rewritten.
    let tags_of = |s: &Snap| -> Vec<Vec<String>> {
        let v = json(&s.ok(["--json", "snapshots"]));
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    let t = json(&s.ok(["--json", "tag", &a, "--add", "daily", "--add", "keep"]));
    let new_a = t[0]["new"].as_str().unwrap().to_string();
    assert_ne!(new_a, a);
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&new_a) && !ids.contains(&a) && ids.contains(&b));
    assert!(!Path::new(&s.repo).join("snapshots").join(&a).exists());
    assert_eq!(
        tags_of(&s),
        vec![vec!["daily".to_string(), "keep".to_string()], vec![]]
    );
    s.ok(["tag", &new_a[..8], "--remove", "daily"]);
    assert_eq!(tags_of(&s), vec![vec!["keep".to_string()], vec![]]);
    s.ok(["tag", "latest", "latest~1", "--set", "weekly"]);
    assert_eq!(
        tags_of(&s),
        vec![vec!["weekly".to_string()], vec!["weekly".to_string()]]
    );
    let (code, _) = s.fail(["tag", "latest", "--set", "x", "--add", "y"]);
    // Conflicting tag options: a usage error, exit 2.
    assert_eq!(code, 2);
    // Tag changes survive a catalog rebuild (they are in the objects).
    s.ok(["cache", "rebuild"]);
    assert_eq!(
        tags_of(&s),
        vec![vec!["weekly".to_string()], vec!["weekly".to_string()]]
    );

    // ls --json is one array; --long adds owner and mtime.
    let v = json(&s.ok(["--json", "ls", "latest"]));
    let paths: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&p(&src, "x/noise.bin").as_str()),
        "{paths:?}"
    );
    let v = json(&s.ok(["--json", "ls", "--long", "latest", &p(&src, "x")]));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["size"], 500_000);
    assert!(arr[0]["uid"].is_u64() && arr[0]["mtime"].is_string());
    let long = s.ok(["ls", "-l", "latest", &p(&src, "x")]);
    assert!(long.starts_with("-rw"), "{long}");
    assert!(
        long.contains("500000") && long.contains(&p(&src, "x/noise.bin")),
        "{long}"
    );
}
