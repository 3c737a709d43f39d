//! Operations on a repository, each built from the write and read paths:
//! backup (walk, parent matching, trees, snapshot), copy between
//! repositories, check, prune, repair, retention (`forget` policies), and
//! archives (tar/zip export, tar import).

pub mod archive;
pub mod backup;
pub mod check;
pub mod copy;
pub mod prune;
pub mod repair;
pub mod retention;
