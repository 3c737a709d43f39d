//! The read path: from a snapshot's trees to bytes on a target.
//!
//! ```text
//! find     (trees → paths: ls, find, diff, stats, the catalog path index)
//! restore  (trees → plan of folders and files → planner → write)
//!   planner (file contents → blobs by pack → concurrent ranged reads →
//!            decode once → pwrite to every file and offset)
//!   fetch  (blob locations → coalesced ranged pack reads, for backup's delta bases)
//! trees    (one level of tree ids → trees, read concurrently)
//! mount    (trees → inodes, lazily; read(offset, size) → the covering blobs, LRU-cached)
//! ```

pub mod fetch;
pub mod find;
pub mod mount;
pub mod planner;
pub mod restore;
pub mod trees;
