//! The read path: from a snapshot's trees to bytes on a target.
//!
//! ```text
//! find     (trees → paths: ls, find, diff, stats, the catalog path index)
//! restore  (trees → plan of folders and files → planner → write)
//!   planner (file contents → blobs by pack → concurrent ranged reads →
//!            decode once → pwrite to every file and offset)
//!   fetch  (blob locations → coalesced ranged pack reads, for backup's delta bases)
//! ```

pub mod fetch;
pub mod find;
pub mod planner;
pub mod restore;
