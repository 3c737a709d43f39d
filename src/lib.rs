//! snap: a content-addressed, deduplicating, encrypted snapshot store.
//!
//! # Code map
//!
//! ```text
//! cli/        (binary) clap front end; one file per subcommand; progress
//!             display; profile: snap.toml, the child argument lists of `snap run`
//! repo        Repository façade: init/open, keys, catalog sync, blob/tree reads
//! session     Session: the one way to write — open, take the Operation's
//!             lease, sync the catalog; write entry points take a &Session
//! lease       lease and prune-mark objects, the lease refresh thread
//! write/      the write path in stage order:
//!   sources     file reads, child-process streams (scrubbed environment)
//!   chunker     FastCDC 2020 with a keyed gear table
//!   ingest      read → chunk → hash → seen? → compress → seal → pack
//!   compress    zstd / raw / delta blob payloads and their inverse
//!   pack        PackBuilder (pure) and BlobSaver (open packs, upload thread, index)
//! read/       the read path:
//!   find        ls, find, diff, stats; the catalog path index
//!   restore     tree walk → plan → ranged pack reads → open → write files;
//!               restore/target opens the target path by path component,
//!               never following symlinks
//!   fetch       batched sealed-blob reads: coalesced ranges, concurrent on S3
//! ops/        operations: backup (walk, parent, trees, snapshot), copy, check,
//!             prune, repair, retention, archive (tar/zip export, tar import)
//! crypto      master key, keyed BLAKE3 ids, XChaCha20-Poly1305 envelope, Argon2id
//! keys        key files: add, remove, change password
//! error       snap::Error (kind, message, source() chain), the exit-code mapping
//! format/     byte layouts (format-spec.md), pure, no I/O
//! catalog     SQLite cache of index + snapshots (derived, rebuildable)
//! store/      synchronous object_store facade (local directory, S3, any
//!             ObjectStore), rate limits, statistics; fault.rs: FaultStore (tests)
//! interrupt   SIGINT/SIGTERM: the interrupted flag, children stopped, leases released
//! ```
//!
//! # Architecture invariants
//!
//! - `format/` does no I/O and no crypto.
//! - Nothing reaches the backend unsealed except `config` and key files
//!   (whose secret part is sealed under the password-derived key).
//! - Write order: packs, then index objects naming them, then snapshots.
//!   A snapshot never names a blob that is not in a stored, indexed pack.
//! - Every write to a repository (packs, snapshots, key files) happens in a
//!   `Session`, i.e. under a live lease taken before the catalog sync.
//! - The catalog is a cache: deleting it loses no data.
//! - Only `write::ingest` and `read::restore` spawn rayon work.
//! - Bytes read from the repository are authenticated before use and never
//!   cause a panic; lengths are bounded before allocation.
//! - The library never prints: warnings go to `Repository::warn` /
//!   `Store::warn` and from there to the sink the program installed; store
//!   statistics and the graceful-stop notice go to hooks the binary sets
//!   (`store::set_stats_report`, `interrupt::install`).
//! - Tokio stays inside `store/`: the `Store` API is synchronous, and
//!   nothing outside `store/` knows whether a repository is a local folder
//!   (reads, deletes and staging cleanup of a folder happen in the store).
//!   Held by tests/backends.rs (one suite over memory, local and S3 stores).
//! - A crash at any store call leaves a repository that checks clean, keeps
//!   every earlier snapshot, and accepts the same operation again
//!   (tests/crash_inprocess.rs, for backup, prune and copy).
//! - An authentication failure is `ErrorKind::Unauthenticated`, malformed
//!   data `ErrorKind::Corrupt`; exit codes come from `ErrorKind::exit_code`
//!   only.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod catalog;
pub mod crypto;
pub mod error;
pub mod format;
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
pub use format::Id;
pub use repo::Repository;
pub use session::Session;
