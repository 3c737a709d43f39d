//! The in-memory tree a backup assembles before storing it: folders as
//! [`DirNode`]s, files and other entries as leaves; stored bottom-up as tree
//! blobs by [`store_trees`].

use crate::error::Result;
use crate::format::tree::{EntryKind, Tree, TreeEntry};
use crate::format::BlobId;
use crate::repo::Repository;
use crate::write::ingest::{self};
use crate::write::pack::BlobSaver;
use std::collections::BTreeMap;

/// An in-memory directory being assembled.
#[derive(Default)]
pub(super) struct DirNode {
    pub(super) meta: Option<TreeEntry>,
    pub(super) children: BTreeMap<Vec<u8>, Node>,
}

pub(super) enum Node {
    Dir(DirNode),
    Leaf(TreeEntry),
}

pub(super) fn leaf_mut<'a, R: AsRef<[u8]>>(
    root: &'a mut DirNode,
    route: &[R],
) -> Option<&'a mut TreeEntry> {
    let (last, dirs) = route.split_last()?;
    let mut cur = root;
    for d in dirs {
        match cur.children.get_mut(d.as_ref())? {
            Node::Dir(dn) => cur = dn,
            Node::Leaf(_) => return None,
        }
    }
    match cur.children.get_mut(last.as_ref())? {
        Node::Leaf(e) => Some(e),
        Node::Dir(_) => None,
    }
}

/// Stores the trees bottom-up; returns the directory's tree id.
pub(super) fn store_trees(
    repo: &Repository,
    saver: &mut BlobSaver,
    dir: DirNode,
    total: &mut u64,
) -> Result<BlobId> {
    let mut tree = Tree::default();
    for (name, node) in dir.children {
        match node {
            Node::Leaf(e) => {
                *total += e.size;
                tree.entries.push(e);
            }
            Node::Dir(d) => {
                let mut meta = d
                    .meta
                    .clone()
                    .unwrap_or_else(|| TreeEntry::new(name.clone(), EntryKind::Dir));
                meta.name = name;
                let id = store_trees(repo, saver, d, total)?;
                meta.subtree = Some(id);
                tree.entries.push(meta);
            }
        }
    }
    tree.sort();
    ingest::save_tree(repo, saver, &tree)
}

pub(super) fn remove_leaf<R: AsRef<[u8]>>(root: &mut DirNode, route: &[R]) {
    let Some((last, dirs)) = route.split_last() else {
        return;
    };
    let mut cur = root;
    for d in dirs {
        match cur.children.get_mut(d.as_ref()) {
            Some(Node::Dir(dn)) => cur = dn,
            _ => return,
        }
    }
    cur.children.remove(last.as_ref());
}
