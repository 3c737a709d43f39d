//! The write path, in stage order: a source's bytes are cut into chunks,
//! each chunk is named, looked up, compressed, sealed and added to a pack.
//!
//! ```text
//! sources  (file reads, child-process streams, their scrubbed environment;
//!           sqlite: consistent copies of SQLite files)
//!   → chunker  (FastCDC: bytes → chunk boundaries)
//!   → ingest   (keyed BLAKE3 id → catalog: seen? → compress → seal)
//!   → pack     (PackBuilder: sealed blobs → pack bytes; BlobSaver: upload, index)
//!   → store
//! ```
//!
//! `sources` and `mysql` start the database dump programs whose output becomes
//! a stream (and the restore programs that read it back).
//!
//! `base_cache` keeps a put-only host's stream chunks locally as delta bases
//! (format-spec §13.1).
//!
//! `compress` holds the blob payload encodings (raw, zstd, delta) and their
//! inverse, used by the read path too. `ops::backup` drives these stages for
//! a snapshot; `ops::copy`, `ops::repair` and `ops::archive` feed them too.

pub mod base_cache;
pub mod chunker;
pub mod compress;
pub mod ingest;
pub mod mysql;
pub mod pack;
pub mod sources;
pub mod sqlite;
