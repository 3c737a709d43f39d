//! Finding things in snapshots: the catalog's path index and `find`, tree
//! `diff`, and `stats` (logical vs stored size, dedup and compression).
//!
//! The path index is keyed by tree id (format-spec
//! §23.6): a tree blob is content-addressed, so a subtree shared by many
//! snapshots is indexed once.
//! A tree is marked indexed only after every tree below it, so indexing a
//! new snapshot reads only the trees no earlier snapshot had.

use crate::catalog::IndexedEntry;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{EntryKind, Tree, TreeEntry};
use crate::format::{BlobId, BlobKind, SnapshotId};
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Makes sure tree `root` and every tree below it are in the catalog's path
/// index, reading only trees not indexed yet. Returns how many trees were
/// added.
pub fn ensure_indexed(repo: &Repository, root: &BlobId) -> Result<u64> {
    // Read every tree not indexed yet, a level at a time (concurrently),
    // then index them children first from memory.
    let mut read: HashMap<BlobId, Tree> = HashMap::new();
    let mut level: Vec<BlobId> = vec![*root];
    let mut depth = 1;
    while !level.is_empty() {
        let mut want = Vec::with_capacity(level.len());
        for id in level {
            if !read.contains_key(&id) && !repo.catalog().tree_indexed(&id)? {
                want.push(id);
            }
        }
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            break;
        }
        crate::read::restore::check_depth(depth, || format!("tree {}", want[0].short()))?;
        let mut next = Vec::new();
        for (id, t) in crate::read::trees::read_trees(repo, &want) {
            let t = t?;
            next.extend(t.entries.iter().filter_map(|e| e.subtree));
            read.insert(id, t);
        }
        level = next;
        depth += 1;
    }
    let mut added = 0u64;
    let mut done: HashSet<BlobId> = HashSet::new();
    // (tree, its children pushed?): a tree is indexed after the trees below it.
    let mut stack: Vec<(BlobId, bool)> = vec![(*root, false)];
    while let Some((id, expanded)) = stack.pop() {
        let Some(t) = read.get(&id) else {
            continue; // indexed before this call
        };
        if done.contains(&id) {
            continue;
        }
        if !expanded {
            stack.push((id, true));
            stack.extend(
                t.entries
                    .iter()
                    .filter_map(|e| e.subtree)
                    .filter(|s| !done.contains(s))
                    .map(|s| (s, false)),
            );
            continue;
        }
        let entries: Vec<IndexedEntry> = t
            .entries
            .iter()
            .map(|e| IndexedEntry {
                name: e.name.clone(),
                kind: e.kind.to_byte(),
                size: e.size,
                mtime_ns: e.mtime_ns,
                subtree: e.subtree,
            })
            .collect();
        repo.catalog().index_tree(&id, &entries)?;
        done.insert(id);
        added += 1;
    }
    Ok(added)
}

/// A pattern's literal folder prefix (name components) and, without `**`,
/// its number of components.
type PatternRoot = (Vec<Vec<u8>>, Option<usize>);

/// Glob patterns for [`find`]: a pattern without `/` matches an entry's
/// name; one with `/` matches the whole path (`*` stays within one
/// component, `**` crosses them; a missing leading `/` is added).
pub struct Patterns {
    names: globset::GlobSet,
    paths: globset::GlobSet,
    /// Literal folder prefixes (components) of the patterns when every
    /// pattern is a case-sensitive path pattern: only folders on the way to
    /// or below one of them can hold a match; with the pattern's number of
    /// components when it has no `**` (`*` stays within a component, so a
    /// match is exactly that deep).
    roots: Option<Vec<PatternRoot>>,
}

impl Patterns {
    /// Compiles the patterns; [`crate::ErrorKind::Usage`] for an invalid one.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Patterns> {
        let mut names = globset::GlobSetBuilder::new();
        let mut paths = globset::GlobSetBuilder::new();
        for p in patterns {
            let (b, pat) = if p.contains('/') {
                let pat = if p.starts_with('/') {
                    p.clone()
                } else {
                    format!("/{p}")
                };
                (&mut paths, pat)
            } else {
                (&mut names, p.clone())
            };
            b.add(
                globset::GlobBuilder::new(&pat)
                    .literal_separator(true)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| Error::usage(format!("invalid pattern {p:?}: {e}")))?,
            );
        }
        let build = |b: globset::GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::usage(format!("invalid pattern: {e}")))
        };
        let roots = if ignore_case {
            None
        } else {
            patterns
                .iter()
                .map(|p| {
                    let depth =
                        (!p.contains("**")).then(|| p.split('/').filter(|c| !c.is_empty()).count());
                    crate::read::restore::literal_root(p).map(|r| (r, depth))
                })
                .collect()
        };
        Ok(Patterns {
            names: build(names)?,
            paths: build(paths)?,
            roots,
        })
    }

    fn matches(&self, name: &str, path: &str) -> bool {
        self.names.is_match(name) || self.paths.is_match(path)
    }

    /// Whether the folder with these name components (from the snapshot
    /// root) can hold a match.
    fn may_hold(&self, comps: &[&[u8]]) -> bool {
        self.roots.as_ref().is_none_or(|roots| {
            roots.iter().any(|(r, depth)| {
                depth.is_none_or(|d| comps.len() < d)
                    && r.iter().zip(comps).all(|(a, b)| a.as_slice() == *b)
            })
        })
    }
}

/// One entry found by [`find`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// Absolute path inside the snapshot.
    pub path: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size, bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// The matches of one snapshot: its id and the entries found, in path order.
pub type SnapshotMatches = (SnapshotId, Vec<Found>);

/// Searches the given snapshots for entries matching `patterns`, answered
/// from the catalog's path index (indexing any snapshot not yet indexed
/// first). Returns the matches per snapshot, in path order, and the number
/// of trees newly indexed.
pub fn find(
    repo: &Repository,
    snaps: &[(SnapshotId, Snapshot)],
    patterns: &Patterns,
) -> Result<(Vec<SnapshotMatches>, u64)> {
    let mut indexed = 0;
    // Snapshots not in the path index yet are walked directly when the
    // patterns prune the walk (only the trees on the way are read);
    // otherwise they are indexed first.
    let pruned = patterns.roots.is_some();
    let mut walked: HashMap<BlobId, Vec<Found>> = HashMap::new();
    for (_, s) in snaps {
        if pruned && !repo.catalog().tree_indexed(&s.tree)? {
            if let std::collections::hash_map::Entry::Vacant(v) = walked.entry(s.tree) {
                v.insert(walk_pruned(repo, &s.tree, patterns)?);
            }
        } else {
            indexed += ensure_indexed(repo, &s.tree)?;
        }
    }
    // Memo by (tree, path prefix): the same subtree at the same place in
    // successive snapshots is searched once.
    let mut memo: HashMap<(BlobId, String), Rc<Vec<Found>>> = HashMap::new();
    let mut out = Vec::with_capacity(snaps.len());
    for (id, s) in snaps {
        if let Some(found) = walked.get(&s.tree) {
            out.push((*id, found.clone()));
            continue;
        }
        let found = search(repo, &s.tree, "", 1, patterns, &mut memo)?;
        out.push((*id, found.as_ref().clone()));
    }
    Ok((out, indexed))
}

/// Searches the snapshot tree `root` without the path index, reading only
/// the folders [`Patterns::may_hold`] admits, a level at a time. Matches
/// come in the order [`search`] gives (depth first, entries in tree order).
fn walk_pruned(repo: &Repository, root: &BlobId, patterns: &Patterns) -> Result<Vec<Found>> {
    let mut read: HashMap<BlobId, Tree> = HashMap::new();
    // (tree, name components of its folder)
    let mut level: Vec<(BlobId, Vec<Vec<u8>>)> = vec![(*root, Vec::new())];
    let mut depth = 1;
    while !level.is_empty() {
        crate::read::restore::check_depth(depth, || "a searched folder".to_string())?;
        let want: Vec<BlobId> = level
            .iter()
            .map(|l| l.0)
            .filter(|id| !read.contains_key(id))
            .collect();
        for (id, t) in crate::read::trees::read_trees(repo, &want) {
            read.insert(id, t?);
        }
        let mut next = Vec::new();
        for (id, comps) in level {
            let Some(t) = read.get(&id) else { continue };
            for e in &t.entries {
                if let Some(sub) = e.subtree {
                    let mut c = comps.clone();
                    c.push(e.name.clone());
                    let cs: Vec<&[u8]> = c.iter().map(|x| x.as_slice()).collect();
                    if patterns.may_hold(&cs) {
                        next.push((sub, c));
                    }
                }
            }
        }
        level = next;
        depth += 1;
    }
    // Depth first from memory, entries in tree order, as `search` does.
    let mut out = Vec::new();
    let Some(top) = read.get(root) else {
        return Ok(out);
    };
    let mut stack: Vec<(&Tree, String, usize)> = vec![(top, String::new(), 0)];
    while let Some((t, prefix, i)) = stack.last_mut() {
        let Some(e) = t.entries.get(*i) else {
            stack.pop();
            continue;
        };
        *i += 1;
        let name = String::from_utf8_lossy(&e.name);
        let path = format!("{prefix}/{name}");
        if patterns.matches(&name, &path) {
            out.push(Found {
                path: path.clone(),
                kind: e.kind,
                size: e.size,
                mtime_ns: e.mtime_ns,
            });
        }
        if let Some(sub) = e.subtree.and_then(|s| read.get(&s)) {
            stack.push((sub, path, 0));
        }
    }
    Ok(out)
}

fn search(
    repo: &Repository,
    tree: &BlobId,
    prefix: &str,
    depth: usize,
    patterns: &Patterns,
    memo: &mut HashMap<(BlobId, String), Rc<Vec<Found>>>,
) -> Result<Rc<Vec<Found>>> {
    if let Some(r) = memo.get(&(*tree, prefix.to_string())) {
        return Ok(r.clone());
    }
    // Recursion is bounded by the depth limit, checked before descending.
    crate::read::restore::check_depth(depth, || prefix.to_string())?;
    let entries = repo.catalog().tree_entries(tree)?;
    let mut out = Vec::new();
    for e in entries {
        let name = String::from_utf8_lossy(&e.name);
        let path = format!("{prefix}/{name}");
        let kind = EntryKind::from_byte(e.kind).ok_or_else(|| {
            Error::new(
                crate::ErrorKind::Catalog,
                "catalog path index holds an unknown entry kind; run `snap cache rebuild`",
            )
        })?;
        if patterns.matches(&name, &path) {
            out.push(Found {
                path: path.clone(),
                kind,
                size: e.size,
                mtime_ns: e.mtime_ns,
            });
        }
        if let Some(sub) = e.subtree {
            let below = search(repo, &sub, &path, depth + 1, patterns, memo)?;
            out.extend(below.iter().cloned());
        }
    }
    let r = Rc::new(out);
    memo.insert((*tree, prefix.to_string()), r.clone());
    Ok(r)
}

/// Kind of a difference between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the second snapshot (`+`).
    Added,
    /// Only in the first snapshot (`-`).
    Removed,
    /// Content differs: other data blob ids, or another symlink target (`M`).
    Modified,
    /// Same content, other mode, owner, mtime or extended attributes (`U`).
    Metadata,
}

impl Change {
    /// One-character marker: `+ - M U`.
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
        }
    }
}

/// One difference found by [`diff`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffItem {
    /// What changed.
    pub change: Change,
    /// Absolute path inside the snapshots.
    pub path: String,
    /// Entry type (in the second snapshot, if present there).
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in the first snapshot, bytes.
    pub size_before: Option<u64>,
    /// Size in the second snapshot, bytes.
    pub size_after: Option<u64>,
}

/// Lists the differences between trees `a` and `b`, in path order. Subtrees
/// with equal ids are skipped without being read.
pub fn diff(repo: &Repository, a: &BlobId, b: &BlobId) -> Result<Vec<DiffItem>> {
    let mut out = Vec::new();
    diff_trees(repo, a, b, "", 1, &mut out)?;
    Ok(out)
}

fn same_metadata(x: &TreeEntry, y: &TreeEntry) -> bool {
    x.mode == y.mode
        && x.uid == y.uid
        && x.gid == y.gid
        && x.mtime_ns == y.mtime_ns
        && x.xattrs == y.xattrs
}

fn diff_trees(
    repo: &Repository,
    a: &BlobId,
    b: &BlobId,
    prefix: &str,
    depth: usize,
    out: &mut Vec<DiffItem>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    crate::read::restore::check_depth(depth, || prefix.to_string())?;
    let ta = repo.read_tree(a)?;
    let tb = repo.read_tree(b)?;
    let (mut i, mut j) = (0, 0);
    while i < ta.entries.len() || j < tb.entries.len() {
        let ea = ta.entries.get(i);
        let eb = tb.entries.get(j);
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match (ord, ea, eb) {
            (std::cmp::Ordering::Less, Some(x), _) => {
                whole(repo, x, prefix, depth, Change::Removed, out)?;
                i += 1;
            }
            (std::cmp::Ordering::Greater, _, Some(y)) => {
                whole(repo, y, prefix, depth, Change::Added, out)?;
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                let path = format!("{prefix}/{}", String::from_utf8_lossy(&x.name));
                if x.kind != y.kind {
                    whole(repo, x, prefix, depth, Change::Removed, out)?;
                    whole(repo, y, prefix, depth, Change::Added, out)?;
                } else {
                    let content_differs = x.content != y.content
                        || x.link_target != y.link_target
                        || x.rdev != y.rdev;
                    let change = if content_differs && x.kind != EntryKind::Dir {
                        Some(Change::Modified)
                    } else if !same_metadata(x, y) {
                        Some(Change::Metadata)
                    } else {
                        None
                    };
                    if let Some(change) = change {
                        out.push(DiffItem {
                            change,
                            path: path.clone(),
                            kind: y.kind,
                            size_before: Some(x.size),
                            size_after: Some(y.size),
                        });
                    }
                    if let (Some(sa), Some(sb)) = (x.subtree, y.subtree) {
                        diff_trees(repo, &sa, &sb, &path, depth + 1, out)?;
                    }
                }
                i += 1;
                j += 1;
            }
            _ => break,
        }
    }
    Ok(())
}

/// Reports `e` and, for a directory, everything below it as `change`.
fn whole(
    repo: &Repository,
    e: &TreeEntry,
    prefix: &str,
    depth: usize,
    change: Change,
    out: &mut Vec<DiffItem>,
) -> Result<()> {
    let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
    let size = Some(e.size);
    out.push(DiffItem {
        change,
        path: path.clone(),
        kind: e.kind,
        size_before: if change == Change::Removed {
            size
        } else {
            None
        },
        size_after: if change == Change::Added { size } else { None },
    });
    if let Some(sub) = e.subtree {
        crate::read::restore::check_depth(depth + 1, || path.clone())?;
        let t = repo.read_tree(&sub)?;
        for c in &t.entries {
            whole(repo, c, &path, depth + 1, change, out)?;
        }
    }
    Ok(())
}

/// Sizes of a set of snapshots (see [`Stats::compute`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Files (including streams) counted once per snapshot they appear in.
    pub files: u64,
    /// Logical size: sum of those files' sizes, bytes.
    pub logical_size: u64,
    /// Distinct blobs (data and tree) the snapshots reference.
    pub blobs: u64,
    /// Distinct data blobs.
    pub data_blobs: u64,
    /// Distinct tree blobs.
    pub tree_blobs: u64,
    /// Sum of the plaintext lengths of the distinct blobs, bytes.
    pub raw_size: u64,
    /// Sum of the sealed (compressed and encrypted) lengths of the distinct
    /// blobs as stored in packs, bytes.
    pub stored_size: u64,
    /// Referenced blobs no index names (a damaged repository).
    pub missing_blobs: u64,
    /// `logical_size / raw_size` (0 if `raw_size` is 0).
    pub dedup_ratio: f64,
    /// `raw_size / stored_size` (0 if `stored_size` is 0).
    pub compression_ratio: f64,
}

/// Walks snapshot trees, caching decoded trees and per-tree totals so that
/// shared subtrees are read once.
pub struct StatsWalker<'a> {
    repo: &'a Repository,
    trees: HashMap<BlobId, Rc<Tree>>,
    totals: HashMap<BlobId, (u64, u64)>,
    /// Catalog answers per blob: (is tree, sealed length, plaintext length),
    /// `None` if no index names the blob.
    sizes: HashMap<BlobId, Option<(bool, u32, u32)>>,
}

impl<'a> StatsWalker<'a> {
    /// A walker over `repo`.
    pub fn new(repo: &'a Repository) -> Self {
        StatsWalker {
            repo,
            trees: HashMap::new(),
            totals: HashMap::new(),
            sizes: HashMap::new(),
        }
    }

    fn tree(&mut self, id: &BlobId) -> Result<Rc<Tree>> {
        if let Some(t) = self.trees.get(id) {
            return Ok(t.clone());
        }
        let t = Rc::new(self.repo.read_tree(id)?);
        self.trees.insert(*id, t.clone());
        Ok(t)
    }

    /// (files, logical bytes) below tree `id`.
    fn totals(&mut self, id: &BlobId, depth: usize) -> Result<(u64, u64)> {
        if let Some(t) = self.totals.get(id) {
            return Ok(*t);
        }
        crate::read::restore::check_depth(depth, || format!("tree {}", id.short()))?;
        let t = self.tree(id)?;
        let (mut files, mut bytes) = (0u64, 0u64);
        for e in &t.entries {
            if e.kind == EntryKind::File {
                files += 1;
                bytes = bytes.saturating_add(e.size);
            }
            if let Some(s) = e.subtree {
                let (f, b) = self.totals(&s, depth + 1)?;
                files += f;
                bytes = bytes.saturating_add(b);
            }
        }
        self.totals.insert(*id, (files, bytes));
        Ok((files, bytes))
    }

    fn blobs(
        &mut self,
        id: &BlobId,
        depth: usize,
        seen: &mut HashSet<BlobId>,
        blobs: &mut HashSet<BlobId>,
    ) -> Result<()> {
        if !seen.insert(*id) {
            return Ok(());
        }
        crate::read::restore::check_depth(depth, || format!("tree {}", id.short()))?;
        blobs.insert(*id);
        let t = self.tree(id)?;
        for e in &t.entries {
            blobs.extend(e.content.iter().copied());
            if let Some(s) = e.subtree {
                self.blobs(&s, depth + 1, seen, blobs)?;
            }
        }
        Ok(())
    }

    /// Statistics of the snapshots with root trees `roots`: logical size
    /// counts every snapshot's files; blob sizes count each distinct blob
    /// once, looked up in the catalog.
    pub fn compute(&mut self, roots: &[BlobId]) -> Result<Stats> {
        let mut s = Stats::default();
        let mut seen = HashSet::new();
        let mut blobs = HashSet::new();
        for r in roots {
            let (f, b) = self.totals(r, 1)?;
            s.files += f;
            s.logical_size = s.logical_size.saturating_add(b);
            self.blobs(r, 1, &mut seen, &mut blobs)?;
        }
        let cat = self.repo.catalog();
        for id in &blobs {
            let size = match self.sizes.get(id) {
                Some(v) => *v,
                None => {
                    let v = cat
                        .lookup(id)?
                        .map(|l| (l.kind == BlobKind::Tree, l.length, l.raw_len));
                    self.sizes.insert(*id, v);
                    v
                }
            };
            match size {
                Some((is_tree, length, raw_len)) => {
                    s.blobs += 1;
                    if is_tree {
                        s.tree_blobs += 1;
                    } else {
                        s.data_blobs += 1;
                    }
                    s.raw_size += raw_len as u64;
                    s.stored_size += length as u64;
                }
                None => s.missing_blobs += 1,
            }
        }
        s.dedup_ratio = ratio(s.logical_size, s.raw_size);
        s.compression_ratio = ratio(s.raw_size, s.stored_size);
        Ok(s)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
