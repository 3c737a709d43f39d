//! snap: a content-addressed, deduplicating, encrypted snapshot store.
//!
//! # Code map
//!
//! ```text
//! cli/      clap front end; one function per subcommand; progress display
//! repo      Repository façade: init/open, keys, catalog sync, blob/tree reads
//! session   Session: the one way to write — open, take the Operation's
//!           lease, sync the catalog; write entry points take a &Session
//! lease     lease and prune-mark objects, the lease refresh thread
//! backup    walk sources, match the parent, assemble trees and the snapshot
//! ingest    content pipeline: read → chunk → hash → seen? → compress → seal → pack
//! restore   read pipeline: tree walk → ranged pack reads → open → write files;
//!           restore/target opens the target path by path component, never
//!           following symlinks
//! fetch     batched sealed-blob reads: coalesced ranges, concurrent on S3
//! pack      PackBuilder (pure) and BlobSaver (open packs, upload thread, index)
//! chunker   FastCDC 2020 with a keyed gear table
//! compress  zstd / raw / delta blob payloads with a cheap incompressibility test
//! crypto    master key, keyed BLAKE3 ids, XChaCha20-Poly1305 envelope, Argon2id
//! error     snap::Error (kind, message, source() chain), the exit-code mapping
//! format/   byte layouts (format-spec.md), pure, no I/O
//! catalog   SQLite cache of index + snapshots (derived, rebuildable)
//! store     object_store facade (local directory, S3)
//! interrupt SIGINT/SIGTERM: the interrupted flag, children stopped, leases released
//! profile   snap.toml profiles: repositories, jobs, the child argument lists of `snap run`
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
//! - Only `ingest` and `restore` spawn rayon work.
//! - Bytes read from the repository are authenticated before use and never
//!   cause a panic; lengths are bounded before allocation.
//! - The library never prints: warnings go to `Repository::warn` /
//!   `Store::warn` and from there to the sink the program installed; store
//!   statistics and the graceful-stop notice go to hooks the binary sets
//!   (`store::set_stats_report`, `interrupt::install`).
//! - An authentication failure is `ErrorKind::Unauthenticated`, malformed
//!   data `ErrorKind::Corrupt`; exit codes come from `ErrorKind::exit_code`
//!   only.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod archive;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod chunker;
pub mod compress;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod fetch;
pub mod find;
pub mod format;
pub mod ingest;
pub mod interrupt;
pub mod keys;
pub mod lease;
pub mod pack;
pub mod profile;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod session;
pub mod sources;
pub mod store;

pub use error::{Error, ErrorKind, Result};
pub use format::Id;
pub use repo::Repository;
pub use session::Session;
