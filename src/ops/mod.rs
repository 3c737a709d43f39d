//! Operations on a repository, each built from the write and read paths:
//! backup (walk, parent matching, trees, snapshot), copy between
//! repositories, check, compare (a snapshot against its live source), prune,
//! repair, retention (`forget` policies), and
//! archives (tar/zip export, tar import).

pub mod archive;
pub mod backup;
pub mod check;
pub mod compare;
pub mod copy;
pub mod object_lock;
pub mod prune;
pub mod repair;
pub mod retention;
