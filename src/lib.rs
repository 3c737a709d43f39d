//! snap: a content-addressed, deduplicating, encrypted snapshot store.
//!
//! `ARCHITECTURE.md` (repository root) is the map: the write and read paths
//! as diagrams, what each module may and may not do, and the architecture
//! invariants with the tests that hold them. `format-spec.md` specifies
//! every byte written to a repository.
//!
//! # Code map
//!
//! ```text
//! format/   byte layouts, pure: no I/O, no keys
//! crypto    master key, keyed BLAKE3 ids, sealed envelope, Argon2id
//! keys      key files and the recovery code
//! store/    the only code that talks to a backend (local folder, S3, any
//!           ObjectStore): a synchronous API, Tokio inside; fault.rs for tests
//! repo      Repository: open, unlock, catalog sync, verified reads
//! session   Session: the one way to write (holds the operation's lease)
//! lease     the lease protocol: take, refresh, release; list leases and marks
//! catalog   SQLite cache of index and snapshots (derived, rebuildable)
//! write/    sources → chunker → ingest → compress → pack
//! read/     find (ls, diff, stats), restore (plan → fetch → write), fetch,
//!           mount (inode table and range reads of `snap mount`)
//! ops/      backup, copy, check, prune, repair, retention, archive
//! error     snap::Error, ErrorKind, the exit-code mapping
//! interrupt SIGINT/SIGTERM: flag, children stopped, leases released
//! ```
//!
//! The binary (`src/main.rs`, `src/cli/`) is the only code that prints or
//! uses `anyhow`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod catalog;
pub mod crypto;
pub mod error;
pub mod format;
pub mod index_view;
pub mod interrupt;
pub mod keys;
pub mod lease;
pub mod ops;
pub mod read;
pub mod repo;
pub mod session;
pub mod store;
pub mod write;

pub use error::{Error, ErrorKind, Result};
pub use format::{BlobId, DictId, IndexId, KeyId, ObjectId, PackId, RepoId, SnapshotId, TypedId};
pub use repo::Repository;
pub use session::Session;
