//! Stream dictionaries (format-spec §12.1) through the built binary: the first
//! long stream trains and stores a zstd dictionary, its chunks and later
//! ones are compressed with it, and everything restores byte-identical; a
//! repository whose streams were stored without one still reads; a missing,
//! corrupt or oversized dictionary object is named by `check` and by the
//! restore that needs it while other data restores; `copy` carries
//! dictionary blobs to another repository.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use std::path::PathBuf;

/// A dump-like stream of about `mib` MiB: numbered rows of words.
fn dump(seed: u64, mib: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "alpha", "backup", "chunk", "delta", "engine", "forget", "gear", "hash", "index", "jump",
        "key", "lease", "mark", "nonce", "object", "pack", "query", "restore", "snapshot", "tree",
    ];
    let mut rng = Rng::new(seed);
    let mut v = b"COPY public.lines (id, path, text) FROM stdin;\n".to_vec();
    let mut i = 0u64;
    while v.len() < mib << 20 {
        v.extend_from_slice(format!("{i}\t/srv/app/data/file_{}.txt\t", i % 97).as_bytes());
        for _ in 0..rng.range(8, 20) {
            v.extend_from_slice(WORDS[rng.range(0, WORDS.len() as u64) as usize].as_bytes());
            v.push(b' ');
        }
        v.extend_from_slice(format!("{}\n", rng.next() % 1_000_000).as_bytes());
        i += 1;
    }
    v.extend_from_slice(b"\\.\n");
    v
}

/// Backs up `data` as stream `name`; returns (snapshot id, bytes added).
fn stdin_backup(s: &Snap, name: &str, data: &[u8]) -> (String, u64) {
    let out = s.run_stdin(["--json", "backup", "--stdin", "--stdin-name", name], data);
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("summary")
        .to_string();
    let j: serde_json::Value = serde_json::from_str(&line).expect("summary is JSON");
    (
        common::verify::backup_id(&j),
        j["summary"]["bytes_added_stored"].as_u64().unwrap(),
    )
}

fn restore_stdout(s: &Snap, id: &str) -> Vec<u8> {
    let out = s.run(["restore", id, "--stdout"]);
    assert!(
        out.status.success(),
        "restore {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The repository's dictionary objects (paths under `dicts/`).
fn dicts(s: &Snap) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(&s.repo).join("dicts"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn short(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy()[..8].to_string()
}

fn check_clean(s: &Snap) {
    let out = s.ok(["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
}

#[test]
fn first_stream_trains_a_dictionary_and_everything_restores() {
    let s = Snap::new();
    s.init();
    // A short stream trains nothing: stored with plain zstd, as before
    // dictionaries existed.
    let small = dump(1, 1);
    let (small_id, _) = stdin_backup(&s, "small.sql", &small);
    assert!(dicts(&s).is_empty(), "a 1 MiB stream trained a dictionary");
    // A long one trains a dictionary of at most 1 MiB and uses it.
    let d1 = dump(2, 10);
    let (id1, first) = stdin_backup(&s, "db.sql", &d1);
    let ds = dicts(&s);
    assert_eq!(ds.len(), 1, "{ds:?}");
    let size = std::fs::metadata(&ds[0]).unwrap().len();
    assert!(
        size > 1000 && size <= (1 << 20) + 40,
        "dictionary is {size} bytes"
    );
    eprintln!("first dump: {first} bytes with a dictionary");
    // Second night: one row changed every few hundred; deltas still work.
    let mut d2 = d1.clone();
    for k in (1000..d2.len() - 10).step_by(300_000) {
        d2[k..k + 5].copy_from_slice(b"XXXXX");
    }
    let (id2, second) = stdin_backup(&s, "db.sql", &d2);
    assert!(
        second * 10 < first,
        "second night added {second}, first {first}"
    );
    assert!(
        restore_stdout(&s, &small_id) == small,
        "small stream differs"
    );
    assert!(restore_stdout(&s, &id1) == d1, "first dump differs");
    assert!(restore_stdout(&s, &id2) == d2, "second dump differs");
    check_clean(&s);
    // A fresh cache reads the dictionary from the repository again.
    std::fs::remove_dir_all(&s.cache).unwrap();
    assert!(
        restore_stdout(&s, &id1) == d1,
        "first dump differs, fresh cache"
    );
}

#[test]
fn dictionary_compresses_stream_chunks_smaller() {
    // Two repositories with the same chunker: one whose first stream trains
    // a dictionary, one whose dictionary-training stream was too short.
    let d = dump(7, 12);
    let a = Snap::new();
    a.init();
    let (_, with) = stdin_backup(&a, "db.sql", &d);
    assert_eq!(dicts(&a).len(), 1);
    let b = Snap::new();
    b.ok_from(["init", "--copy-chunker-params-from", &a.repo], &a.password);
    // Same content as a file: the files profile never uses a dictionary,
    // and here gives the plain-zstd figure for the same rows.
    std::fs::write(b.path("db.sql"), &d).unwrap();
    let j = b.backup_json([b.path("db.sql")]);
    let without = j["summary"]["bytes_added_stored"].as_u64().unwrap();
    eprintln!("with a dictionary {with} bytes, files profile without {without}");
    assert!(dicts(&b).is_empty());
    assert!(with < without, "with {with}, without {without}");
}

#[test]
fn missing_or_corrupt_dictionary_is_named_and_other_data_restores() {
    let s = Snap::new();
    s.init();
    let d1 = dump(4, 10);
    let (dump_id, _) = stdin_backup(&s, "db.sql", &d1);
    std::fs::create_dir_all(s.path("src")).unwrap();
    std::fs::write(s.path("src/a.txt"), b"plain file content\n".repeat(1000)).unwrap();
    let files_id = common::verify::backup_id(&s.backup_json([s.path("src")]));
    let ds = dicts(&s);
    assert_eq!(ds.len(), 1);
    let dict_short = short(&ds[0]);
    let saved = std::fs::read(&ds[0]).unwrap();

    // Missing: check --read-data names it once; the dump's restore fails
    // naming it; the file snapshot restores.
    std::fs::remove_file(&ds[0]).unwrap();
    std::fs::remove_dir_all(&s.cache).unwrap();
    let out = s.run(["check", "--read-data"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "check passed without the dictionary: {text}"
    );
    assert!(text.contains(&format!("dictionary {dict_short}")), "{text}");
    assert!(text.contains("missing"), "{text}");
    let (_, err) = s.fail(["restore", &dump_id, "--stdout"]);
    assert!(err.contains(&format!("dicts/{dict_short}")), "{err}");
    assert!(err.lines().count() <= 3, "{err}");
    let target = s.path("restored");
    s.ok(["restore", &files_id, "--target", target.to_str().unwrap()]);
    let restored = common::cli::restored_path(&target, &s.path("src"));
    assert_eq!(
        std::fs::read(restored.join("a.txt")).unwrap(),
        b"plain file content\n".repeat(1000)
    );
    // A repair must not drop the intact blobs that name it: once the
    // dictionary is back (below), the dump restores.
    s.ok(["repair", "index", "--read-data"]);
    // Corrupt: the object is there but does not open; check names it even
    // without reading data.
    let mut bad = saved.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&ds[0], &bad).unwrap();
    let out = s.run(["check"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("dictionary object") && text.contains(&dict_short),
        "{text}"
    );
    let (_, err) = s.fail(["restore", &dump_id, "--stdout"]);
    assert!(err.contains(&dict_short), "{err}");
    // Oversized: refused by its size before it is downloaded.
    std::fs::write(&ds[0], vec![0u8; 2 << 20]).unwrap();
    let (_, err) = s.fail(["restore", &dump_id, "--stdout"]);
    assert!(
        err.contains("bytes allowed") && err.contains(&dict_short),
        "{err}"
    );
    // Put back: everything reads again.
    std::fs::write(&ds[0], &saved).unwrap();
    assert!(restore_stdout(&s, &dump_id) == d1);
    check_clean(&s);
}

#[test]
fn copy_carries_dictionary_blobs() {
    let s = Snap::new();
    s.init();
    let d1 = dump(5, 10);
    stdin_backup(&s, "db.sql", &d1);
    assert_eq!(dicts(&s).len(), 1);
    // Same ids: the frames move unchanged, the dictionary is copied.
    let same = Snap::new();
    same.ok_from(["init", "--copy-chunker-params-from", &s.repo], &s.password);
    same.ok_from(["copy", "--from", &s.repo, "--latest"], &s.password);
    assert_eq!(dicts(&same).len(), 1);
    assert_ne!(
        short(&dicts(&same)[0]),
        short(&dicts(&s)[0]),
        "sealed under another key"
    );
    // Only the copy's repository: the source cannot help it.
    let moved = PathBuf::from(&s.repo).with_extension("gone");
    std::fs::rename(&s.repo, &moved).unwrap();
    assert!(restore_stdout(&same, "latest") == d1, "copied dump differs");
    check_clean(&same);
    std::fs::rename(&moved, &s.repo).unwrap();
    // A second copy run reuses the destination's dictionary.
    let j = same.ok_from(["copy", "--from", &s.repo, "--latest"], &s.password);
    assert_eq!(dicts(&same).len(), 1, "{j}");
    // Other ids: re-compressed, restores on its own.
    let other = Snap::new();
    other.init();
    other.ok_from(["copy", "--from", &s.repo, "--latest"], &s.password);
    assert!(
        restore_stdout(&other, "latest") == d1,
        "copied dump differs"
    );
    check_clean(&other);
}

#[test]
fn dictionary_on_s3_is_read_back_with_a_fresh_cache() {
    let Some(s3) = common::services::s3() else {
        return;
    };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&common::services::unique_name("dict_"));
    s.env = s3.env();
    s.init();
    let d1 = dump(6, 10);
    let (id, _) = stdin_backup(&s, "db.sql", &d1);
    // A fresh cache: the dictionary comes from the bucket (one GET of
    // `dicts/`), and the dump restores byte-identical.
    std::fs::remove_dir_all(&s.cache).unwrap();
    let out = s
        .cmd(["restore", &id, "--stdout"])
        .env("SNAP_STATS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == d1, "dump differs");
    let stats: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "store_stats")
        .expect("store_stats line");
    assert_eq!(
        stats["requests"]["by_kind"]["dicts"]["get"].as_u64(),
        Some(1),
        "{stats}"
    );
    check_clean(&s);
}
