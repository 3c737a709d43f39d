//! Matching the walked tree against the parent snapshot: a file whose size,
//! mtime, ctime and inode are unchanged keeps the parent's content ids (if
//! its blobs are still stored); every other file becomes a [`FileJob`].

use super::tree::{DirNode, Node};
use crate::error::Result;
use crate::format::tree::{ChunkProfile, EntryKind, Tree};
use crate::repo::Repository;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A file whose content must be read: its absolute path, whose components
/// are also its route from the root of the in-memory tree.
pub(super) struct FileJob {
    pub(super) path: PathBuf,
    /// Size when walked, bytes (the progress total).
    pub(super) size: u64,
}

impl FileJob {
    pub(super) fn route(&self) -> Vec<&[u8]> {
        self.path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect()
    }
}

/// Matches nodes against the parent tree; unchanged files take the parent's
/// content, others become jobs. Returns counts (new, changed, unchanged).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    repo: &Repository,
    dir: &mut DirNode,
    fs_path: &Path,
    parent: Option<&Tree>,
    parent_verified: bool,
    force: bool,
    jobs: &mut Vec<FileJob>,
    counts: &mut (u64, u64, u64),
) -> Result<()> {
    for (name, node) in dir.children.iter_mut() {
        let pe = parent.and_then(|t| t.get(name));
        let child_path = fs_path.join(OsStr::from_bytes(name));
        match node {
            Node::Dir(d) => {
                let sub = match pe.and_then(|e| e.subtree) {
                    Some(id) if !force => repo.read_tree_cached(&id).ok(),
                    _ => None,
                };
                plan(
                    repo,
                    d,
                    &child_path,
                    sub.as_ref(),
                    parent_verified,
                    force,
                    jobs,
                    counts,
                )?;
            }
            Node::Leaf(e) if e.kind == EntryKind::File => {
                let unchanged = !force
                    && pe.is_some_and(|p| {
                        p.kind == EntryKind::File
                            && p.size == e.size
                            && p.mtime_ns == e.mtime_ns
                            && p.ctime_ns == e.ctime_ns
                            && p.inode == e.inode
                            && p.profile == ChunkProfile::Files
                    });
                // The parent's blobs must still be stored (not lost to a
                // repair, not in a pack marked by prune); a parent verified
                // at the current blob epoch needs no per-blob lookups.
                let reusable = unchanged
                    && (parent_verified || {
                        let cat = repo.catalog();
                        let p = pe.map(|p| p.content.as_slice()).unwrap_or_default();
                        let mut ok = true;
                        for id in p {
                            if !cat.contains(id)? {
                                ok = false;
                                break;
                            }
                        }
                        ok
                    });
                if reusable {
                    e.content = pe.map(|p| p.content.clone()).unwrap_or_default();
                    counts.2 += 1;
                } else {
                    if pe.is_some() {
                        counts.1 += 1;
                    } else {
                        counts.0 += 1;
                    }
                    // Read even when `stat` says 0 bytes: `/proc` files do,
                    // and the size recorded is what the read returns (the
                    // `stat` size only feeds the progress total).
                    jobs.push(FileJob {
                        path: child_path,
                        size: e.size,
                    });
                }
            }
            Node::Leaf(_) => {}
        }
    }
    Ok(())
}
