//! How the library reports what it does: every operation sends [`Event`]s
//! to the [`Events`] implementation installed on its repository
//! ([`crate::Repository::set_events`]; [`NoEvents`] by default). The library
//! never prints: a front end turns events into a progress line, warnings
//! or JSON lines (the `snap` binary does, `src/cli/progress.rs`).
//!
//! ```text
//! op ─► Started ─► Totals? ─► (FileDone | Bytes | Warning | PackUploaded | Phase)* ─► SnapshotSaved? ─► Finished
//! ```
//!
//! `Bytes` and `FileDone` come from hot loops (one per ingest batch of up to
//! a few MiB, one per file): an implementation should only add them to
//! counters and let a display thread poll those ([`Counters`] does that).
//! `event` may be called from several threads at once.
//!
//! The shape follows rustic_core's `ProgressBars` trait (a front end
//! supplies the reporting, the library only calls it), reduced to one
//! method and a closed set of events.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Receives the events of library operations. `Send + Sync`: events come
/// from worker threads too (ingest, uploads, restore writers).
pub trait Events: Send + Sync {
    /// Called once per event, in the order it happened on its thread.
    fn event(&self, e: &Event);
}

/// Drops every event (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl Events for NoEvents {
    fn event(&self, _: &Event) {}
}

/// The operation an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// [`crate::ops::backup::backup`].
    Backup,
    /// [`crate::ops::backup::backup_entries`] (`import-tar`).
    Import,
    /// [`crate::read::restore::restore`].
    Restore,
    /// [`crate::ops::copy::copy_snapshot`].
    Copy,
    /// [`crate::ops::prune::prune`].
    Prune,
    /// [`crate::ops::check::check`].
    Check,
    /// [`crate::ops::repair::repair_index`].
    RepairIndex,
    /// [`crate::ops::repair::repair_snapshots`].
    RepairSnapshots,
}

/// What a [`Event::Warning`] is about. The operation goes on after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A source entry could not be read (listed, opened, read); it is left
    /// out of the snapshot.
    Unreadable,
    /// A file changed while it was read: the snapshot holds the bytes read.
    Changed,
    /// A stream source failed and the snapshot is recorded without it
    /// (`allow_partial`).
    SourceFailed,
    /// A special file (device node) could not be created by a restore.
    Special,
    /// Metadata (owner, extended attributes, …) could not be restored.
    Metadata,
    /// Anything else (e.g. a damaged pack left out of a rebuilt index).
    Other,
}

/// One event. Serialized (serde) with an `"event"` tag in snake case, e.g.
/// `{"event":"pack_uploaded","pack":"<64 hex>","bytes":16777216}`; the
/// `snap` binary adds `"type":"event"` (README "Events").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An operation began.
    Started {
        /// Which.
        op: Op,
    },
    /// A named step of an operation began (prune: "list", "mark",
    /// "repack", "delete"; check: "structure", "read-data"; …).
    Phase {
        /// Operation.
        op: Op,
        /// Step name (stable, lowercase).
        phase: &'static str,
    },
    /// What the operation expects to process, once known.
    Totals {
        /// Operation.
        op: Op,
        /// Files to read or write (a backup's streams are not counted
        /// here, though each sends [`Event::FileDone`]).
        files: u64,
        /// Content bytes, `None` while unknown (a backup with streams).
        bytes: Option<u64>,
    },
    /// Content bytes processed (read and stored by a backup, written by a
    /// restore) since the last such event.
    Bytes {
        /// Bytes.
        bytes: u64,
    },
    /// One file (or stream) finished, read or written.
    FileDone,
    /// Something was skipped or is incomplete; the operation goes on.
    Warning {
        /// Kind.
        kind: WarningKind,
        /// The path concerned (absolute for a backup, as shown under the
        /// target for a restore), if any; lossy UTF-8.
        path: Option<String>,
        /// Why, one line.
        message: String,
    },
    /// A pack was stored.
    PackUploaded {
        /// Pack id (64 hex digits).
        pack: String,
        /// Stored size, bytes.
        bytes: u64,
    },
    /// A snapshot object was stored.
    SnapshotSaved {
        /// Snapshot id (64 hex digits).
        snapshot: String,
    },
    /// The operation ended.
    Finished {
        /// Operation.
        op: Op,
        /// Whether it returned `Ok`.
        ok: bool,
        /// Wall time since [`Event::Started`], seconds.
        seconds: f64,
    },
}

impl Event {
    /// A warning event.
    pub fn warning(kind: WarningKind, path: Option<String>, message: impl Into<String>) -> Event {
        Event::Warning {
            kind,
            path,
            message: message.into(),
        }
    }
}

/// Sends [`Event::Started`], runs `f`, sends [`Event::Finished`] with its
/// outcome, and returns what `f` returned.
pub(crate) fn run_op<T>(
    events: &dyn Events,
    op: Op,
    f: impl FnOnce() -> crate::error::Result<T>,
) -> crate::error::Result<T> {
    let started = Instant::now();
    events.event(&Event::Started { op });
    let r = f();
    events.event(&Event::Finished {
        op,
        ok: r.is_ok(),
        seconds: started.elapsed().as_secs_f64(),
    });
    r
}

/// Progress counters a front end can poll: [`Counters::record`] adds the
/// progress events (`Totals`, `Bytes`, `FileDone`) with relaxed atomics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Content bytes processed so far.
    pub bytes: AtomicU64,
    /// Files (or streams) finished so far.
    pub files: AtomicU64,
    /// Total content bytes expected, when known (0 = unknown).
    pub total_bytes: AtomicU64,
    /// Total files expected (0 until known).
    pub total_files: AtomicU64,
}

impl Counters {
    /// Adds `e` if it is a progress event; returns whether it was one.
    pub fn record(&self, e: &Event) -> bool {
        match e {
            Event::Bytes { bytes } => {
                self.bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
            Event::FileDone => {
                self.files.fetch_add(1, Ordering::Relaxed);
            }
            Event::Totals { files, bytes, .. } => {
                self.total_files.store(*files, Ordering::Relaxed);
                self.total_bytes
                    .store(bytes.unwrap_or(0), Ordering::Relaxed);
            }
            _ => return false,
        }
        true
    }
}
