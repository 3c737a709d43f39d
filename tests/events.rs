//! The library reports through [`snap::Events`]: a backup, a restore and a
//! check, in process, deliver the expected events to a recording sink
//! (counts of files and bytes equal to what was stored and restored, a
//! warning for an unreadable file, one event per pack stored).

use snap::events::{Event, Events, Op, WarningKind};
use snap::ops::backup::BackupOptions;
use snap::read::restore::RestoreOptions;
use snap::repo::InitOptions;
use snap::session::Operation;
use snap::store::StoreOptions;
use snap::{Repository, Session};
use std::path::Path;
use std::sync::{Arc, Mutex};

const PASSWORD: &[u8] = b"events-test";

/// Keeps every event, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Events for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    /// The events so far, leaving none.
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn bytes_of(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            Event::Bytes { bytes } => *bytes,
            _ => 0,
        })
        .sum()
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// Pseudo-random bytes (xorshift), so zstd cannot shrink them away.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sizes of the files under `dir`, recursively (bytes).
fn file_sizes(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if md.is_dir() {
            out.extend(file_sizes(&e.path()));
        } else {
            out.push(md.len());
        }
    }
    out
}

#[test]
fn backup_and_restore_report_their_work_as_events() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let cache = tmp.path().join("cache");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.bin", noise(1, 700_000)),
        ("b.txt", b"hello events\n".to_vec()),
        ("sub/c.bin", noise(2, 1_300_000)),
        ("sub/empty", Vec::new()),
    ];
    for (name, bytes) in &files {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let loc = repo_dir.to_str().unwrap();
    Repository::init(loc, PASSWORD, &InitOptions::default()).unwrap();

    // Backup: the data folder and /proc/self/mem, which reads as an I/O
    // error at offset 0 (also for root).
    let rec = Arc::new(Recorder::default());
    let mut repo =
        Repository::open_unsynced(loc, PASSWORD, &cache, &StoreOptions::default()).unwrap();
    repo.set_events(rec.clone());
    let session = Session::start(repo, Operation::Backup).unwrap();
    let out = snap::ops::backup::backup(
        &session,
        BackupOptions {
            paths: vec![data.clone(), "/proc/self/mem".into()],
            ..BackupOptions::default()
        },
    )
    .unwrap();
    let repo = session.finish();
    let ev = rec.take();
    assert_eq!(
        ev.first(),
        Some(&Event::Started { op: Op::Backup }),
        "{ev:?}"
    );
    assert!(
        matches!(
            ev.last(),
            Some(Event::Finished {
                op: Op::Backup,
                ok: true,
                ..
            })
        ),
        "{ev:?}"
    );
    // Four files and the unreadable one were to be read.
    assert!(
        ev.contains(&Event::Totals {
            op: Op::Backup,
            files: 5,
            bytes: Some(total)
        }),
        "{ev:?}"
    );
    assert_eq!(count(&ev, |e| *e == Event::FileDone), 5, "{ev:?}");
    assert_eq!(bytes_of(&ev), out.snapshot.summary.bytes_read);
    assert_eq!(bytes_of(&ev), total);
    let warnings: Vec<&Event> = ev
        .iter()
        .filter(|e| matches!(e, Event::Warning { .. }))
        .collect();
    assert_eq!(warnings.len(), 1, "{ev:?}");
    match warnings[0] {
        Event::Warning { kind, path, .. } => {
            assert_eq!(*kind, WarningKind::Unreadable);
            assert_eq!(path.as_deref(), Some("/proc/self/mem"));
        }
        _ => unreachable!(),
    }
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    // One event per pack stored, adding up to what the repository holds.
    let packs: Vec<u64> = ev
        .iter()
        .filter_map(|e| match e {
            Event::PackUploaded { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .collect();
    let stored = file_sizes(&repo_dir.join("data"));
    assert_eq!(packs.len(), stored.len(), "{ev:?}");
    assert_eq!(packs.iter().sum::<u64>(), stored.iter().sum::<u64>());
    let saved = Event::SnapshotSaved {
        snapshot: out.id.to_hex(),
    };
    assert_eq!(count(&ev, |e| *e == saved), 1, "{ev:?}");

    // Restore: every file and byte of the data folder, no warning.
    let target = tmp.path().join("target");
    let sum = snap::read::restore::restore(
        &repo,
        &out.snapshot.tree,
        &target,
        &RestoreOptions::default(),
    )
    .unwrap();
    let ev = rec.take();
    assert_eq!(
        ev.first(),
        Some(&Event::Started { op: Op::Restore }),
        "{ev:?}"
    );
    assert!(
        matches!(
            ev.last(),
            Some(Event::Finished {
                op: Op::Restore,
                ok: true,
                ..
            })
        ),
        "{ev:?}"
    );
    assert!(
        ev.contains(&Event::Totals {
            op: Op::Restore,
            files: 4,
            bytes: Some(total)
        }),
        "{ev:?}"
    );
    assert_eq!(count(&ev, |e| *e == Event::FileDone), 4, "{ev:?}");
    assert_eq!(bytes_of(&ev), total);
    assert_eq!(sum.bytes, total);
    assert_eq!(
        count(&ev, |e| matches!(e, Event::Warning { .. })),
        0,
        "{ev:?}"
    );
    let restored = target.join(data.strip_prefix("/").unwrap());
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(restored.join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }

    // Check: its steps, in order.
    let rep = snap::ops::check::check(&repo, None).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    let ev = rec.take();
    let phases: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Phase {
                op: Op::Check,
                phase,
            } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(phases, ["index", "trees", "dictionaries"], "{ev:?}");
    assert!(
        matches!(
            ev.last(),
            Some(Event::Finished {
                op: Op::Check,
                ok: true,
                ..
            })
        ),
        "{ev:?}"
    );
}

/// A failed operation still ends with `Finished { ok: false }`.
#[test]
fn a_failed_backup_reports_finished_not_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = tmp.path().join("repo");
    let loc = loc.to_str().unwrap();
    Repository::init(loc, PASSWORD, &InitOptions::default()).unwrap();
    let rec = Arc::new(Recorder::default());
    let mut repo = Repository::open_unsynced(
        loc,
        PASSWORD,
        &tmp.path().join("cache"),
        &StoreOptions::default(),
    )
    .unwrap();
    repo.set_events(rec.clone());
    let session = Session::start(repo, Operation::Backup).unwrap();
    let missing = tmp.path().join("no-such-folder");
    let err = snap::ops::backup::backup(
        &session,
        BackupOptions {
            paths: vec![missing],
            ..BackupOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), snap::ErrorKind::NotFound, "{err:#}");
    let ev = rec.take();
    assert_eq!(
        ev.first(),
        Some(&Event::Started { op: Op::Backup }),
        "{ev:?}"
    );
    assert!(
        matches!(
            ev.last(),
            Some(Event::Finished {
                op: Op::Backup,
                ok: false,
                ..
            })
        ),
        "{ev:?}"
    );
    assert_eq!(
        count(&ev, |e| matches!(e, Event::SnapshotSaved { .. })),
        0,
        "{ev:?}"
    );
}
