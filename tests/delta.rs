//! Delta blobs (format-spec §13) through the built binary: the second of two
//! nightly dumps, with a few rows changed, is stored as deltas against the
//! first; it restores byte-identical, survives forgetting and pruning the
//! snapshot that holds the bases, copies whole to another repository, and
//! `check --read-data` stays clean throughout.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use common::services;
use std::process::Output;

/// A table of `n` rows of words, as `pg_dump` prints a COPY block.
fn table(rng: &mut Rng, n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "alpha", "backup", "chunk", "delta", "engine", "forget", "gear", "hash", "index", "jump",
        "key", "lease", "mark", "nonce", "object", "pack", "query", "restore", "snapshot", "tree",
    ];
    (0..n).map(|i| row(rng, i, WORDS)).collect()
}

fn row(rng: &mut Rng, id: usize, words: &[&str]) -> String {
    let mut s = format!("{id}\t/srv/app/data/file_{}.txt\t", id % 97);
    for _ in 0..rng.range(8, 20) {
        s.push_str(words[rng.range(0, words.len() as u64) as usize]);
        s.push(' ');
    }
    s.push_str(&format!("{}\n", rng.next() % 1_000_000));
    s
}

fn dump(rows: &[String]) -> Vec<u8> {
    let mut v = b"COPY public.lines (id, path, text) FROM stdin;\n".to_vec();
    for r in rows {
        v.extend_from_slice(r.as_bytes());
    }
    v.extend_from_slice(b"\\.\n");
    v
}

/// The next night: 0.25% of rows updated, 0.1% deleted, 0.1% appended.
fn next_night(rng: &mut Rng, rows: &[String]) -> Vec<String> {
    let words = &["changed", "updated", "row", "value"];
    let n = rows.len();
    let mut out: Vec<String> = Vec::with_capacity(n);
    for (i, r) in rows.iter().enumerate() {
        match rng.range(0, 10_000) {
            0..=24 => out.push(row(rng, i, words)),
            25..=34 => {}
            _ => out.push(r.clone()),
        }
    }
    for k in 0..n / 1000 {
        out.push(row(rng, n + k, words));
    }
    out
}

fn stdin_backup(s: &Snap, name: &str, data: &[u8], extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "backup", "--stdin", "--stdin-name", name];
    args.extend_from_slice(extra);
    let out = s.run_stdin(&args, data);
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
    serde_json::from_str(&line).expect("summary is JSON")
}

fn added(j: &serde_json::Value) -> u64 {
    j["summary"]["bytes_added_stored"]
        .as_u64()
        .unwrap_or_else(|| panic!("no bytes_added_stored in {j}"))
}

fn restore_stdout(s: &Snap, id: &str) -> Vec<u8> {
    let out: Output = s.run(["restore", id, "--stdout"]);
    assert!(
        out.status.success(),
        "restore {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn second_dump_is_stored_as_deltas_and_stays_restorable() {
    let mut rng = Rng::new(2026);
    let rows1 = table(&mut rng, 60_000);
    let rows2 = next_night(&mut rng, &rows1);
    let (d1, d2) = (dump(&rows1), dump(&rows2));
    assert!(d1.len() > 6 << 20, "dump is {} bytes", d1.len());

    // Repository with delta blobs.
    let s = Snap::new();
    s.init();
    let j1 = stdin_backup(&s, "db.sql", &d1, &[]);
    let j2 = stdin_backup(&s, "db.sql", &d2, &[]);
    let (first, delta) = (added(&j1), added(&j2));
    eprintln!("first dump added {first} bytes, second {delta}");

    // Same chunker and ids, but the second dump under another host name has
    // no previous version: plain zstd for the same new chunks.
    let plain = Snap::new();
    plain.ok_from(["init", "--copy-chunker-params-from", &s.repo], &s.password);
    stdin_backup(&plain, "db.sql", &d1, &[]);
    let p2 = added(&stdin_backup(
        &plain,
        "db.sql",
        &d2,
        &["--host", "elsewhere"],
    ));
    eprintln!("second dump without a previous version added {p2} bytes");
    assert!(
        delta * 8 < p2,
        "second dump added {delta} bytes with deltas vs {p2} without (first dump {first})"
    );
    assert!(
        delta * 10 < first,
        "second dump added {delta}, first {first}"
    );

    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 2);
    assert!(restore_stdout(&s, &ids[0]) == d1, "first dump differs");
    assert!(restore_stdout(&s, &ids[1]) == d2, "second dump differs");
    let check = s.ok(["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");

    // Copy: delta blobs arrive whole; the copy restores on its own.
    let dst = Snap::new();
    dst.init();
    dst.ok_from(["copy", "--from", &s.repo, "--latest"], &s.password);
    assert!(restore_stdout(&dst, "latest") == d2, "copied dump differs");
    assert!(dst.ok(["check", "--read-data"]).contains("no errors"));

    // Forget the first snapshot (the bases' only user) and prune twice (mark,
    // then delete): the bases stay, the second dump still restores.
    s.ok(["forget", "--keep-last", "1", "--prune", "--grace", "0s"]);
    s.ok(["prune", "--grace", "0s", "--max-unused", "0"]);
    assert_eq!(s.snapshot_ids(), vec![ids[1].clone()]);
    assert!(
        restore_stdout(&s, &ids[1]) == d2,
        "second dump differs after prune"
    );
    let check = s.ok(["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
    // A fresh catalog learns the bases from the index again.
    s.ok(["cache", "rebuild"]);
    assert!(restore_stdout(&s, "latest") == d2);

    // A third night against the second: candidates that are deltas are
    // replaced by their bases (no chains), and it restores.
    let rows3 = next_night(&mut rng, &rows2);
    let d3 = dump(&rows3);
    let j3 = stdin_backup(&s, "db.sql", &d3, &[]);
    eprintln!(
        "third dump added {} (plain second {p2}, delta second {delta})",
        added(&j3)
    );
    // Against the first night's bases, two nights of changes: still far
    // below the plain encoding.
    assert!(added(&j3) * 8 < p2, "third dump added {}", added(&j3));
    assert!(restore_stdout(&s, "latest") == d3, "third dump differs");
    assert!(s.ok(["check", "--read-data"]).contains("no errors"));
}

#[test]
fn deltas_on_s3_restore_and_check() {
    let Some(s3) = services::s3() else { return };
    let mut rng = Rng::new(99);
    let rows1 = table(&mut rng, 25_000);
    let rows2 = next_night(&mut rng, &rows1);
    let (d1, d2) = (dump(&rows1), dump(&rows2));
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("delta_"));
    s.env = s3.env();
    s.init();
    let j1 = stdin_backup(&s, "db.sql", &d1, &[]);
    let first = added(&j1);
    let second = added(&stdin_backup(&s, "db.sql", &d2, &[]));
    assert!(
        second * 10 < first,
        "second dump added {second}, first {first}"
    );
    // Restoring reads coalesced ranges, not one request per blob (plus one
    // per delta base).
    let out = s
        .cmd(["restore", "latest", "--stdout"])
        .env("SNAP_STATS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == d2, "second dump differs");
    let stats: serde_json::Value = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "store_stats")
        .expect("store_stats line");
    let gets = stats["requests"]["by_kind"]["data"]["get"]
        .as_u64()
        .unwrap_or(0);
    let blobs = j1["summary"]["blobs_added"].as_u64().unwrap();
    assert!(
        gets > 0 && gets * 4 < blobs,
        "restore made {gets} data GETs for a stream of about {blobs} blobs: {stats}"
    );
    assert!(restore_stdout(&s, "latest~1") == d1, "first dump differs");
    let check = s.ok(["check", "--read-data"]);
    assert!(check.contains("no errors"), "{check}");
}
