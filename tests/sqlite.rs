//! `snap backup --sqlite` and `snap restore --sqlite` (issue #17): a live
//! SQLite database backed up while another connection writes to it in a
//! loop restores to a file that passes `PRAGMA integrity_check` and holds
//! a state some committed transaction left (the writer's invariants hold).

mod common;
use common::cli::Snap;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ACCOUNTS: i64 = 200;
const START: i64 = 1000;

/// A database of accounts (sum of balances constant) and a ledger (one row
/// per transfer, counted in `meta`), a few MiB so a copy takes a while.
fn create(path: &Path, journal: &str) {
    let c = Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", journal).unwrap();
    c.execute_batch(
        "create table accounts(id integer primary key, balance integer not null);
         create table ledger(id integer primary key, src int, dst int, amount int, note text);
         create table meta(transfers integer not null);
         insert into meta values (0);",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..ACCOUNTS {
        tx.execute("insert into accounts values (?1, ?2)", (i, START))
            .unwrap();
    }
    for i in 0..3000 {
        tx.execute(
            "insert into ledger(src, dst, amount, note) values (-1, -1, 0, ?1)",
            (format!("opening entry {i} {}", "x".repeat(1000)),),
        )
        .unwrap();
    }
    tx.execute("update meta set transfers = 3000", ()).unwrap();
    tx.commit().unwrap();
}

/// Transfers money between accounts in a loop until `stop`, each transfer
/// one transaction that also appends a ledger row and counts it.
fn writer(path: &Path, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let c = Connection::open(&path).unwrap();
        c.busy_timeout(Duration::from_secs(30)).unwrap();
        let mut n: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let (a, b, amt) = (n * 7 % ACCOUNTS, (n * 13 + 1) % ACCOUNTS, n % 50 + 1);
            let tx = c.unchecked_transaction().unwrap();
            tx.execute(
                "update accounts set balance = balance - ?1 where id = ?2",
                (amt, a),
            )
            .unwrap();
            tx.execute(
                "update accounts set balance = balance + ?1 where id = ?2",
                (amt, b),
            )
            .unwrap();
            tx.execute(
                "insert into ledger(src, dst, amount, note) values (?1, ?2, ?3, ?4)",
                (a, b, amt, "y".repeat(500)),
            )
            .unwrap();
            tx.execute("update meta set transfers = transfers + 1", ())
                .unwrap();
            tx.commit().unwrap();
            done.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// The invariants of a consistent state: integrity_check ok, the sum of
/// balances unchanged, one ledger row per counted transfer.
fn assert_consistent(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    let ic: String = c
        .query_row("pragma integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok", "{}", path.display());
    let sum: i64 = c
        .query_row("select sum(balance) from accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum, ACCOUNTS * START, "{}", path.display());
    let (rows, counted): (i64, i64) = c
        .query_row(
            "select (select count(*) from ledger), (select transfers from meta)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, counted, "{}", path.display());
    counted
}

fn backup_while_writing(journal: &str) {
    let s = Snap::new();
    s.init();
    let db = s.path("app.db");
    create(&db, journal);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = writer(&db, stop.clone(), done.clone());
    while done.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let before = done.load(Ordering::Relaxed);
        let v = s.backup_json(["--sqlite", &format!("app={}", db.display())]);
        let after = done.load(Ordering::Relaxed);
        // The writer kept committing while the backup ran.
        assert!(after > before, "no writes during the backup ({journal})");
        ids.push(v["snapshot"].as_str().unwrap().to_string());
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let total = done.load(Ordering::Relaxed);
    let mut seen = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let out = s.path(&format!("restored-{i}.db"));
        s.ok(["restore", id, "--sqlite", out.to_str().unwrap()]);
        let n = assert_consistent(&out);
        assert!(n >= 3000 && n <= 3000 + total as i64, "{n}");
        seen.push(n);
    }
    // Later snapshots hold later states.
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // The snapshot records the source's kind and path.
    let snaps: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    let src = &snaps[0]["sources"][0];
    assert_eq!(src["kind"], "sqlite");
    assert_eq!(src["name"], "app");
    assert_eq!(src["details"]["method"], "online-backup");
}

#[test]
fn backup_while_writing_wal() {
    backup_while_writing("wal");
}

#[test]
fn backup_while_writing_rollback_journal() {
    backup_while_writing("delete");
}

/// Restore refuses an existing file unless --force; with --force it
/// replaces it and removes a stale `-wal` beside it; a snapshot without a
/// SQLite stream and a missing or non-database source are one-line errors.
#[test]
fn restore_refuses_existing_file_and_bad_sources_fail_cleanly() {
    let s = Snap::new();
    s.init();
    let db = s.path("a.db");
    create(&db, "wal");
    s.ok(["backup", "--sqlite", db.to_str().unwrap()]);
    let out = s.path("out.db");
    std::fs::write(&out, b"precious").unwrap();
    let (code, err) = s.fail(["restore", "latest", "--sqlite", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let wal = s.path("out.db-wal");
    std::fs::write(&wal, b"stale log of another database").unwrap();
    s.ok([
        "restore",
        "latest",
        "--sqlite",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert!(!wal.exists());
    assert_consistent(&out);
    // No leftovers of the temporary file beside it.
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("snap-restore"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let junk = s.path("junk.db");
    std::fs::write(&junk, b"this is no database, only text that is long enough").unwrap();
    let (code, err) = s.fail(["backup", "--sqlite", junk.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a SQLite 3 database"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (_, err) = s.fail(["backup", "--sqlite", s.path("missing.db").to_str().unwrap()]);
    assert!(err.contains("missing.db"), "{err}");
    s.ok(["backup", "--stdin-name", "x", "--command", "echo hi"]);
    let (code, err) = s.fail([
        "restore",
        "latest",
        "--sqlite",
        s.path("o2.db").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no sqlite dump"), "{err}");
}
