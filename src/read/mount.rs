//! The repository as a read-only file system: the inode table and the read
//! logic behind `snap mount` (the FUSE glue lives in the binary,
//! `src/cli/mount.rs`; nothing here depends on FUSE, so it is tested
//! directly).
//!
//! Layout (names are bytes; host and tag names have `/` and NUL replaced by
//! `_`; two snapshots of one host started in the same second get the second
//! one's short id appended, `…T23:18:00-9fb26fbd`; two snapshots whose short
//! ids collide are named by their full ids):
//!
//! ```text
//! /snapshots/<short-id>/…           each snapshot's tree (streams under @streams/)
//! /snapshots/latest                 symlink to the newest snapshot's folder
//! /hosts/<host>/<YYYY-MM-DDTHH:MM:SS>/…   the same trees by host and start time (UTC)
//! /hosts/<host>/latest              symlink to that host's newest snapshot
//! /tags/<tag>/<short-id>/…          the same trees by tag
//! ```
//!
//! The snapshot list is read once, when the file system is built; trees are
//! read on the first lookup or listing of their folder and kept for the life
//! of the mount. A file opened for reading gets its content blobs' locations
//! and cumulative plaintext end offsets ([`FileLayout`]); a read of
//! `(offset, size)` decodes only the blobs covering that range, through a
//! byte-bounded LRU cache of decoded blobs shared by all open files.
//!
//! No lease is held: like `restore`, `ls` and `dump`, reads need none
//! (`session.rs`). A prune run while a snapshot is mounted removes only data
//! that no remaining snapshot needs; a file of a snapshot forgotten and pruned
//! meanwhile then fails to read with EIO.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{EntryKind, Tree, TreeEntry, MAX_DEPTH};
use crate::format::{BlobId, SnapshotId};
use crate::read::fetch;
use crate::Repository;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Inode number of the mount's root folder.
pub const ROOT_INO: u64 = 1;

/// Default size of the decoded-blob cache, bytes (64 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Knobs of [`MountFs`].
#[derive(Debug, Clone, Copy)]
pub struct MountOptions {
    /// Most bytes of decoded blob plaintext kept in memory (LRU). A blob
    /// larger than this is decoded for each read and not kept.
    pub cache_bytes: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Why a file system call failed; [`FsError::errno`] gives the errno.
#[derive(Debug)]
pub enum FsError {
    /// No such inode or name (ENOENT).
    NotFound,
    /// A folder operation on something else (ENOTDIR).
    NotDir,
    /// A file read on a folder (EISDIR).
    IsDir,
    /// Not a symlink, or not a regular file for open (EINVAL).
    Invalid,
    /// Open file handle unknown (EBADF).
    BadHandle,
    /// The repository could not give the data (EIO); the error says why.
    Repo(Error),
}

impl FsError {
    /// The errno a file system should answer with.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Invalid => libc::EINVAL,
            FsError::BadHandle => libc::EBADF,
            FsError::Repo(_) => libc::EIO,
        }
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Repo(e)
    }
}

/// Result of a file system call.
pub type FsResult<T> = std::result::Result<T, FsError>;

/// Attributes of one inode, in the units of `stat(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number (1 = root).
    pub ino: u64,
    /// File type.
    pub kind: EntryKind,
    /// Bytes: content length for files, target length for symlinks, 0 for folders.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub perm: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch (UTC).
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch (UTC).
    pub ctime_ns: i64,
    /// Link count reported (1 for non-folders, 2 for folders).
    pub nlink: u32,
    /// Device number of character and block devices, else 0.
    pub rdev: u64,
}

/// What an inode is.
enum NodeKind {
    /// A folder made by the mount (root, snapshots/, a host, a tag):
    /// children fixed at build time, sorted by name.
    Virtual(BTreeMap<Vec<u8>, u64>),
    /// A symlink made by the mount (`snapshots/latest`).
    Link(Vec<u8>),
    /// A folder of a snapshot: `tree` is read on first use into `children`.
    Tree {
        tree: BlobId,
        depth: usize,
        children: Option<BTreeMap<Vec<u8>, u64>>,
    },
    /// Any non-folder entry of a snapshot.
    Entry(Box<TreeEntry>),
}

struct Node {
    parent: u64,
    attr: Attr,
    kind: NodeKind,
}

/// One open file: where its content blobs are and where each ends.
#[derive(Debug, Clone)]
pub struct FileLayout {
    /// (blob id, location) in content order.
    blobs: Vec<(BlobId, BlobLocation)>,
    /// `ends[i]` = bytes of content up to and including blob `i`.
    ends: Vec<u64>,
}

impl FileLayout {
    /// The layout of `entry`'s content: each blob located in the catalog,
    /// plaintext lengths summed.
    ///
    /// Errors: [`ErrorKind::NotFound`] for a blob no index names,
    /// [`ErrorKind::Corrupt`] when the lengths do not add up to the entry's
    /// size.
    pub fn of_entry(repo: &Repository, entry: &TreeEntry) -> Result<FileLayout> {
        let mut blobs = Vec::with_capacity(entry.content.len());
        let mut ends = Vec::with_capacity(entry.content.len());
        let mut end = 0u64;
        for id in &entry.content {
            let loc = repo.locate(id)?;
            end += u64::from(loc.raw_len);
            ends.push(end);
            blobs.push((*id, loc));
        }
        if end != entry.size {
            return Err(Error::corrupt(format!(
                "{}: its {} content blobs hold {end} bytes, the tree says {}; run `snap check`",
                String::from_utf8_lossy(&entry.name),
                entry.content.len(),
                entry.size
            )));
        }
        Ok(FileLayout { blobs, ends })
    }

    /// Content length, bytes.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
}

/// Indexes of the blobs (in a content whose blob `i` ends at `ends[i]`,
/// cumulative bytes, non-decreasing) that hold bytes of
/// `offset..offset + len`, clipped at the end of the content. Empty when the
/// range is empty or starts at or past the end. Empty blobs inside the range
/// are included (they add no bytes).
pub fn covering(ends: &[u64], offset: u64, len: u64) -> Range<usize> {
    let size = ends.last().copied().unwrap_or(0);
    if len == 0 || offset >= size {
        return 0..0;
    }
    let last = offset.saturating_add(len).min(size) - 1;
    // First blob whose end is past `offset`; last blob whose end is past `last`.
    let first = ends.partition_point(|&e| e <= offset);
    let stop = ends.partition_point(|&e| e <= last) + 1;
    first..stop.min(ends.len())
}

/// Decoded blob plaintexts, least recently used dropped first once the
/// total exceeds the capacity, bytes.
pub struct BlobCache {
    cap: u64,
    used: u64,
    tick: u64,
    map: HashMap<BlobId, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, BlobId>,
}

impl BlobCache {
    /// An empty cache holding at most `cap` bytes.
    pub fn new(cap: u64) -> BlobCache {
        BlobCache {
            cap,
            used: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The plaintext of `id` if held (and marks it most recently used).
    pub fn get(&mut self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let t = self.tick;
        let (b, old) = self.map.get_mut(id)?;
        self.order.remove(old);
        *old = t;
        self.order.insert(t, *id);
        Some(b.clone())
    }

    /// Keeps `plain` as the plaintext of `id`, dropping the least recently
    /// used blobs to stay within the capacity; a blob larger than the whole
    /// capacity is not kept.
    pub fn put(&mut self, id: BlobId, plain: Arc<Vec<u8>>) {
        let n = plain.len() as u64;
        if n > self.cap || self.map.contains_key(&id) {
            return;
        }
        while self.used + n > self.cap {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = self.map.remove(&old) {
                self.used -= b.len() as u64;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, id);
        self.map.insert(id, (plain, self.tick));
        self.used += n;
    }
}

/// The read-only file system of one repository (see the module docs).
/// All methods take `&self` and may be called from several threads.
pub struct MountFs {
    repo: Repository,
    nodes: RwLock<Vec<Node>>,
    cache: Mutex<BlobCache>,
    handles: Mutex<HashMap<u64, Arc<FileLayout>>>,
    next_handle: AtomicU64,
}

/// A name safe as one path component: `/` and NUL become `_`; empty, `.`
/// and `..` become `_`.
fn component(s: &str) -> Vec<u8> {
    let v: Vec<u8> = s
        .bytes()
        .map(|b| if b == b'/' || b == 0 { b'_' } else { b })
        .collect();
    if v.is_empty() || v == b"." || v == b".." {
        b"_".to_vec()
    } else {
        v
    }
}

fn time_ns(snap: &Snapshot) -> i64 {
    snap.time_ms().saturating_mul(1_000_000)
}

fn dir_attr(ino: u64, mtime_ns: i64) -> Attr {
    Attr {
        ino,
        kind: EntryKind::Dir,
        size: 0,
        perm: 0o555,
        uid: 0,
        gid: 0,
        mtime_ns,
        ctime_ns: mtime_ns,
        nlink: 2,
        rdev: 0,
    }
}

fn entry_attr(ino: u64, e: &TreeEntry) -> Attr {
    let size = match e.kind {
        EntryKind::File => e.size,
        EntryKind::Symlink => e.link_target.len() as u64,
        _ => 0,
    };
    Attr {
        ino,
        kind: e.kind,
        size,
        perm: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        mtime_ns: e.mtime_ns,
        ctime_ns: e.ctime_ns,
        nlink: if e.kind == EntryKind::Dir { 2 } else { 1 },
        rdev: e.rdev,
    }
}

impl MountFs {
    /// Builds the top of the file system from the repository's snapshots
    /// (read from the catalog, which the caller has synced). Trees are read
    /// later, on demand.
    ///
    /// Errors: the catalog's.
    pub fn new(repo: Repository, opts: MountOptions) -> Result<MountFs> {
        let snaps = repo.snapshots()?;
        let fs = MountFs {
            repo,
            nodes: RwLock::new(Vec::new()),
            cache: Mutex::new(BlobCache::new(opts.cache_bytes)),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        };
        fs.build(&snaps);
        Ok(fs)
    }

    /// The repository served.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    fn build(&self, snaps: &[(SnapshotId, Snapshot)]) {
        let newest = snaps.iter().map(|(_, s)| time_ns(s)).max().unwrap_or(0);
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.clear();
        let push = |nodes: &mut Vec<Node>, parent: u64, mtime: i64, kind: NodeKind| -> u64 {
            let ino = nodes.len() as u64 + 1;
            let mut attr = dir_attr(ino, mtime);
            if let NodeKind::Link(t) = &kind {
                attr.kind = EntryKind::Symlink;
                attr.size = t.len() as u64;
                attr.perm = 0o777;
                attr.nlink = 1;
            }
            nodes.push(Node { parent, attr, kind });
            ino
        };
        let root = push(
            &mut nodes,
            ROOT_INO,
            newest,
            NodeKind::Virtual(BTreeMap::new()),
        );
        let mut top = BTreeMap::new();
        for name in ["snapshots", "hosts", "tags"] {
            let ino = push(&mut nodes, root, newest, NodeKind::Virtual(BTreeMap::new()));
            top.insert(name.as_bytes().to_vec(), ino);
        }
        let (snap_dir, host_dir, tag_dir) = (
            top[&b"snapshots"[..]],
            top[&b"hosts"[..]],
            top[&b"tags"[..]],
        );
        nodes[root as usize - 1].kind = NodeKind::Virtual(top);

        // A snapshot's folder name: its short id, the full id if two share one.
        let mut short_count: HashMap<String, usize> = HashMap::new();
        for (id, _) in snaps {
            *short_count.entry(id.short()).or_default() += 1;
        }
        let name_of = |id: &SnapshotId| {
            let s = id.short();
            if short_count[&s] > 1 {
                id.to_hex()
            } else {
                s
            }
        };
        let tree_node = |nodes: &mut Vec<Node>, parent: u64, s: &Snapshot| {
            push(
                nodes,
                parent,
                time_ns(s),
                NodeKind::Tree {
                    tree: s.tree,
                    depth: 0,
                    children: None,
                },
            )
        };

        let mut by_id = BTreeMap::new();
        let mut by_host: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
        let mut by_tag: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
        let mut latest: Option<(i64, Vec<u8>)> = None;
        let mut host_latest: BTreeMap<Vec<u8>, (i64, Vec<u8>)> = BTreeMap::new();
        for (id, s) in snaps {
            let name = name_of(id).into_bytes();
            let ino = tree_node(&mut nodes, snap_dir, s);
            by_id.insert(name.clone(), ino);
            if latest.as_ref().is_none_or(|(t, _)| time_ns(s) >= *t) {
                latest = Some((time_ns(s), name.clone()));
            }
            let when = chrono::DateTime::from_timestamp_millis(s.time_ms())
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_else(|| name_of(id));
            let hkey = component(&s.hostname);
            let host = by_host.entry(hkey.clone()).or_default();
            let mut hname = when.into_bytes();
            if host.contains_key(&hname) {
                hname.push(b'-');
                hname.extend_from_slice(&name);
            }
            let ino = tree_node(&mut nodes, 0, s);
            host.insert(hname.clone(), ino);
            let l = host_latest.entry(hkey).or_insert((i64::MIN, Vec::new()));
            if time_ns(s) >= l.0 {
                *l = (time_ns(s), hname);
            }
            for t in &s.tags {
                let ino = tree_node(&mut nodes, 0, s);
                by_tag
                    .entry(component(t))
                    .or_default()
                    .insert(name.clone(), ino);
            }
        }
        if let Some((_, name)) = latest {
            let ino = push(&mut nodes, snap_dir, newest, NodeKind::Link(name));
            by_id.insert(b"latest".to_vec(), ino);
        }
        nodes[snap_dir as usize - 1].kind = NodeKind::Virtual(by_id);
        for (h, (_, target)) in host_latest {
            let ino = push(&mut nodes, 0, newest, NodeKind::Link(target));
            by_host
                .entry(h)
                .or_default()
                .insert(b"latest".to_vec(), ino);
        }
        for (dir, groups) in [(host_dir, by_host), (tag_dir, by_tag)] {
            let mut names = BTreeMap::new();
            for (gname, members) in groups {
                let g = push(&mut nodes, dir, newest, NodeKind::Virtual(BTreeMap::new()));
                for ino in members.values() {
                    nodes[*ino as usize - 1].parent = g;
                }
                nodes[g as usize - 1].kind = NodeKind::Virtual(members);
                names.insert(gname, g);
            }
            nodes[dir as usize - 1].kind = NodeKind::Virtual(names);
        }
    }

    /// Attributes of inode `ino`. Errors: [`FsError::NotFound`].
    pub fn attr(&self, ino: u64) -> FsResult<Attr> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        Ok(node(&nodes, ino)?.attr.clone())
    }

    /// The parent folder's inode (the root's parent is the root).
    pub fn parent(&self, ino: u64) -> FsResult<u64> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        Ok(node(&nodes, ino)?.parent)
    }

    /// The children of folder `ino` as (name, inode), sorted by name; reads
    /// the folder's tree on first use.
    ///
    /// Errors: [`FsError::NotFound`], [`FsError::NotDir`], [`FsError::Repo`]
    /// when the tree cannot be read or decoded (or lies deeper than
    /// [`MAX_DEPTH`]).
    pub fn children(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, u64)>> {
        self.load(ino)?;
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        match &node(&nodes, ino)?.kind {
            NodeKind::Virtual(c)
            | NodeKind::Tree {
                children: Some(c), ..
            } => Ok(c.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            _ => Err(FsError::NotDir),
        }
    }

    /// Calls `f(name, attributes)` for the children of folder `ino` in name
    /// order, from the `skip`-th on, until `f` returns `true` ("full"); reads
    /// the folder's tree on first use. For listing a large folder in pages
    /// without copying it for each page.
    ///
    /// Errors: as [`MountFs::children`].
    pub fn for_children(
        &self,
        ino: u64,
        skip: usize,
        mut f: impl FnMut(&[u8], &Attr) -> bool,
    ) -> FsResult<()> {
        self.load(ino)?;
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let c = match &node(&nodes, ino)?.kind {
            NodeKind::Virtual(c)
            | NodeKind::Tree {
                children: Some(c), ..
            } => c,
            _ => return Err(FsError::NotDir),
        };
        for (name, child) in c.iter().skip(skip) {
            if f(name, &node(&nodes, *child)?.attr) {
                break;
            }
        }
        Ok(())
    }

    /// The child `name` of folder `parent`, with its attributes.
    ///
    /// Errors: [`FsError::NotFound`] when there is none; else as
    /// [`MountFs::children`].
    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        self.load(parent)?;
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let child = match &node(&nodes, parent)?.kind {
            NodeKind::Virtual(c)
            | NodeKind::Tree {
                children: Some(c), ..
            } => *c.get(name).ok_or(FsError::NotFound)?,
            _ => return Err(FsError::NotDir),
        };
        Ok(node(&nodes, child)?.attr.clone())
    }

    /// Reads the tree of folder `ino` into the table if not done yet.
    fn load(&self, ino: u64) -> FsResult<()> {
        let (tree, depth) = {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            match &node(&nodes, ino)?.kind {
                NodeKind::Tree {
                    tree,
                    depth,
                    children: None,
                } => (*tree, *depth),
                NodeKind::Entry(_) | NodeKind::Link(_) => return Err(FsError::NotDir),
                _ => return Ok(()),
            }
        };
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(format!("tree deeper than {MAX_DEPTH} levels")).into());
        }
        // Read outside the lock: a slow store must not stall other calls.
        let t: Tree = self.repo.read_tree(&tree)?;
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let NodeKind::Tree {
            children: Some(_), ..
        } = &node(&nodes, ino)?.kind
        {
            return Ok(()); // another thread loaded it meanwhile
        }
        let mut children = BTreeMap::new();
        for e in t.entries {
            let cino = nodes.len() as u64 + 1;
            let attr = entry_attr(cino, &e);
            let kind = match (e.kind, e.subtree) {
                (EntryKind::Dir, Some(sub)) => NodeKind::Tree {
                    tree: sub,
                    depth: depth + 1,
                    children: None,
                },
                (EntryKind::Dir, None) => NodeKind::Virtual(BTreeMap::new()),
                _ => NodeKind::Entry(Box::new(e.clone())),
            };
            children.insert(e.name, cino);
            nodes.push(Node {
                parent: ino,
                attr,
                kind,
            });
        }
        if let NodeKind::Tree { children: c, .. } = &mut nodes[ino as usize - 1].kind {
            *c = Some(children);
        }
        Ok(())
    }

    /// The target bytes of symlink `ino`. Errors: [`FsError::NotFound`],
    /// [`FsError::Invalid`] for anything but a symlink.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        match &node(&nodes, ino)?.kind {
            NodeKind::Link(t) => Ok(t.clone()),
            NodeKind::Entry(e) if e.kind == EntryKind::Symlink => Ok(e.link_target.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Extended attributes recorded for `ino`, as (name, value) sorted by name.
    pub fn xattrs(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        match &node(&nodes, ino)?.kind {
            NodeKind::Entry(e) => Ok(e.xattrs.clone()),
            _ => Ok(Vec::new()),
        }
    }

    /// Opens regular file `ino` for reading; returns a handle for
    /// [`MountFs::read`], released with [`MountFs::release`].
    ///
    /// Errors: [`FsError::IsDir`], [`FsError::Invalid`] (not a regular
    /// file), [`FsError::Repo`] when a blob is missing from the index or the
    /// sizes disagree (see [`FileLayout::of_entry`]).
    pub fn open(&self, ino: u64) -> FsResult<u64> {
        let entry = {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            match &node(&nodes, ino)?.kind {
                NodeKind::Entry(e) if e.kind == EntryKind::File => e.clone(),
                NodeKind::Entry(_) | NodeKind::Link(_) => return Err(FsError::Invalid),
                _ => return Err(FsError::IsDir),
            }
        };
        let layout = FileLayout::of_entry(&self.repo, &entry)?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(layout));
        Ok(fh)
    }

    /// Forgets open file `fh`.
    pub fn release(&self, fh: u64) {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
    }

    /// Up to `size` bytes of open file `fh` from byte `offset` (fewer at the
    /// end of the file, none past it).
    ///
    /// Errors: [`FsError::BadHandle`]; [`FsError::Repo`] when a covering
    /// blob cannot be read, opened or verified.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let layout = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        Ok(self.read_layout(&layout, offset, u64::from(size))?)
    }

    /// [`MountFs::read`] on a layout: decodes only the blobs covering the
    /// range, taking decoded blobs from the cache where it holds them.
    pub fn read_layout(&self, layout: &FileLayout, offset: u64, len: u64) -> Result<Vec<u8>> {
        let range = covering(&layout.ends, offset, len);
        let mut plains: Vec<Option<Arc<Vec<u8>>>> = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            range.clone().map(|i| c.get(&layout.blobs[i].0)).collect()
        };
        let missing: Vec<BlobLocation> = range
            .clone()
            .zip(&plains)
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| layout.blobs[i].1)
            .collect();
        if !missing.is_empty() {
            let got = fetch::fetch(self.repo.store(), &missing)?;
            for (i, slot) in range.clone().zip(plains.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                let (id, loc) = &layout.blobs[i];
                let plain = Arc::new(self.repo.decode_blob(id, loc, got.sealed(loc)?)?);
                if plain.len() as u64 != u64::from(loc.raw_len) {
                    return Err(Error::corrupt(format!(
                        "blob {} is {} bytes, its index says {}",
                        id.short(),
                        plain.len(),
                        loc.raw_len
                    )));
                }
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(*id, plain.clone());
                *slot = Some(plain);
            }
        }
        let end = offset.saturating_add(len).min(layout.size());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for (i, p) in range.zip(plains) {
            let Some(p) = p else {
                return Err(Error::new(ErrorKind::Corrupt, "blob not decoded"));
            };
            let start = if i == 0 { 0 } else { layout.ends[i - 1] };
            let from = offset.saturating_sub(start) as usize;
            let to = (end - start).min(p.len() as u64) as usize;
            if from < to {
                out.extend_from_slice(&p[from..to]);
            }
        }
        Ok(out)
    }

    /// Bytes and blobs in the decoded-blob cache.
    pub fn cache_usage(&self) -> (u64, usize) {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.used(), c.len())
    }
}

fn node(nodes: &[Node], ino: u64) -> FsResult<&Node> {
    ino.checked_sub(1)
        .and_then(|i| nodes.get(i as usize))
        .ok_or(FsError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_picks_only_the_blobs_of_the_range() {
        // Blobs of 10, 5, 0 (empty), 20 bytes: ends 10, 15, 15, 35.
        let ends = [10, 15, 15, 35];
        assert_eq!(covering(&ends, 0, 1), 0..1);
        assert_eq!(covering(&ends, 0, 10), 0..1);
        assert_eq!(covering(&ends, 9, 2), 0..2);
        assert_eq!(covering(&ends, 10, 5), 1..2);
        assert_eq!(covering(&ends, 14, 2), 1..4);
        assert_eq!(covering(&ends, 15, 1), 3..4);
        assert_eq!(covering(&ends, 0, 1000), 0..4);
        assert_eq!(covering(&ends, 34, 1000), 3..4);
        assert_eq!(covering(&ends, 35, 1), 0..0);
        assert_eq!(covering(&ends, 100, 1), 0..0);
        assert_eq!(covering(&ends, 3, 0), 0..0);
        assert_eq!(covering(&ends, u64::MAX, u64::MAX), 0..0);
        assert_eq!(covering(&ends, 1, u64::MAX), 0..4);
        assert_eq!(covering(&[], 0, 10), 0..0);
    }

    #[test]
    fn covering_agrees_with_a_byte_by_byte_scan() {
        let sizes = [3u64, 0, 7, 1, 1, 0, 12, 5];
        let ends: Vec<u64> = sizes
            .iter()
            .scan(0, |s, n| {
                *s += n;
                Some(*s)
            })
            .collect();
        let owner = |b: u64| ends.iter().position(|&e| e > b).unwrap();
        for off in 0..32 {
            for len in 0..32 {
                let r = covering(&ends, off, len);
                let bytes: Vec<u64> = (off..(off + len).min(29)).collect();
                if bytes.is_empty() {
                    assert!(r.is_empty(), "off {off} len {len}: {r:?}");
                    continue;
                }
                assert_eq!(r.start, owner(bytes[0]), "off {off} len {len}");
                assert_eq!(
                    r.end,
                    owner(*bytes.last().unwrap()) + 1,
                    "off {off} len {len}"
                );
            }
        }
    }

    #[test]
    fn blob_cache_keeps_the_recently_used_within_its_capacity() {
        let id = |n: u8| BlobId([n; 32]);
        let blob = |n: usize| Arc::new(vec![0u8; n]);
        let mut c = BlobCache::new(100);
        c.put(id(1), blob(40));
        c.put(id(2), blob(40));
        assert!(c.get(&id(1)).is_some()); // 1 is now newer than 2
        c.put(id(3), blob(40)); // evicts 2
        assert!(c.get(&id(2)).is_none());
        assert!(c.get(&id(1)).is_some() && c.get(&id(3)).is_some());
        assert_eq!((c.used(), c.len()), (80, 2));
        c.put(id(4), blob(101)); // larger than the cache: not kept
        assert!(c.get(&id(4)).is_none());
        assert_eq!(c.used(), 80);
        c.put(id(5), blob(100)); // evicts everything else
        assert_eq!((c.used(), c.len()), (100, 1));
        c.put(id(5), blob(100)); // already held: no double count
        assert_eq!(c.used(), 100);
    }

    #[test]
    fn component_makes_one_safe_path_component() {
        assert_eq!(component("web-1"), b"web-1");
        assert_eq!(component("a/b"), b"a_b");
        assert_eq!(component(""), b"_");
        assert_eq!(component(".."), b"_");
        assert_eq!(component("x\0y"), b"x_y");
    }
}
