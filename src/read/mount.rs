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
//! The snapshot list is read when the file system is built and again when
//! one of its folders is listed (at most once a second,
//! [`MountFs::refresh_if_due`]), so a backup made while mounted appears.
//! Trees are read on the first lookup or listing of their folder. The inode
//! table holds only what the kernel references (FUSE lookup counts, given
//! back by `forget`), the folders above it and the folders made by the
//! mount: a folder's entries get inode numbers when it is read, and become
//! nodes only when looked up; a node the kernel forgot is dropped, and a
//! folder whose entries are all dropped drops its listing, so a long walk
//! does not grow the table ([`MountFs::inode_count`]). A file opened for reading gets its content blobs' locations
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
    /// A folder made by the mount (root, snapshots/, a host, a tag), or a
    /// snapshot folder without a tree: children by name.
    Virtual(BTreeMap<Vec<u8>, u64>),
    /// A symlink made by the mount (`snapshots/latest`).
    Link(Vec<u8>),
    /// A folder of a snapshot: `tree` is read on first use.
    Tree {
        tree: BlobId,
        depth: usize,
        loaded: Option<Loaded>,
    },
    /// Any non-folder entry of a snapshot.
    Entry(Box<TreeEntry>),
}

/// A snapshot folder's listing: entry `i` (sorted by name) has inode
/// `base + i`; only the entries the kernel looked up are nodes.
struct Loaded {
    base: u64,
    entries: Vec<TreeEntry>,
}

struct Node {
    parent: u64,
    attr: Attr,
    kind: NodeKind,
    /// References the kernel holds (FUSE lookup count).
    lookups: u64,
    /// Children of this folder that are nodes (`counted`).
    live: usize,
    /// Made by the mount and listed now: kept while unreferenced.
    pinned: bool,
    /// An entry of its parent's tree, counted in the parent's `live`.
    counted: bool,
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
    table: RwLock<Table>,
    cache: Mutex<BlobCache>,
    handles: Mutex<HashMap<u64, Arc<FileLayout>>>,
    next_handle: AtomicU64,
    /// When the snapshot list was last read (for [`MountFs::refresh_if_due`]).
    refreshed: Mutex<std::time::Instant>,
}

/// The inode table: the nodes the kernel may name, by inode number.
struct Table {
    nodes: HashMap<u64, Node>,
    /// The next inode number to hand out (numbers are never reused).
    next: u64,
}

impl Table {
    fn node(&self, ino: u64) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn node_mut(&mut self, ino: u64) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    /// Adds a pinned node (a folder or link made by the mount, or a
    /// snapshot's root folder); returns its inode.
    fn push(&mut self, parent: u64, mtime: i64, kind: NodeKind) -> u64 {
        let ino = self.next;
        self.next += 1;
        let mut attr = dir_attr(ino, mtime);
        if let NodeKind::Link(t) = &kind {
            attr.kind = EntryKind::Symlink;
            attr.size = t.len() as u64;
            attr.perm = 0o777;
            attr.nlink = 1;
        }
        self.nodes.insert(
            ino,
            Node {
                parent: if parent == 0 { ino } else { parent },
                attr,
                kind,
                lookups: 0,
                live: 0,
                pinned: true,
                counted: false,
            },
        );
        ino
    }

    /// Drops node `ino` if nothing holds it any more (not pinned, no
    /// kernel reference, no child in the table), then its parent folder
    /// the same way; a pinned snapshot folder nothing holds drops its
    /// listing only.
    fn evict(&mut self, mut ino: u64) {
        loop {
            let Some(n) = self.nodes.get_mut(&ino) else {
                return;
            };
            if n.lookups > 0 || n.live > 0 {
                return;
            }
            if n.pinned {
                if let NodeKind::Tree { loaded, .. } = &mut n.kind {
                    *loaded = None;
                }
                return;
            }
            let (parent, counted) = (n.parent, n.counted);
            self.nodes.remove(&ino);
            if !counted {
                return;
            }
            match self.nodes.get_mut(&parent) {
                Some(p) => p.live = p.live.saturating_sub(1),
                None => return,
            }
            ino = parent;
        }
    }
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

/// Least time between two reads of the snapshot list prompted by listings
/// ([`MountFs::refresh_if_due`]), seconds.
pub const REFRESH_SECS: u64 = 1;

/// What a node made by [`MountFs::build`] should be.
enum Want {
    Virtual,
    Link(Vec<u8>),
    Tree(BlobId),
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
            table: RwLock::new(Table {
                nodes: HashMap::new(),
                next: ROOT_INO,
            }),
            cache: Mutex::new(BlobCache::new(opts.cache_bytes)),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            refreshed: Mutex::new(std::time::Instant::now()),
        };
        fs.build(&snaps);
        Ok(fs)
    }

    /// The repository served.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Syncs the catalog with the repository and rebuilds the snapshot
    /// folders (`snapshots/`, `hosts/`, `tags/`): new snapshots appear,
    /// forgotten ones disappear (their inodes stay valid until the kernel
    /// forgets them), unchanged ones keep their inode numbers. Returns the
    /// number of snapshots. Errors: the store's and the catalog's.
    pub fn refresh(&self) -> Result<usize> {
        *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        self.repo.sync_catalog()?;
        let snaps = self.repo.snapshots()?;
        self.build(&snaps);
        Ok(snaps.len())
    }

    /// [`MountFs::refresh`] when `ino` is the root or one of the snapshot
    /// folders (`snapshots/`, `hosts/`, `tags/`, a host's or a tag's) and
    /// the list was last read more than [`REFRESH_SECS`] ago: the FUSE
    /// layer calls it when such a folder is listed, so a backup made
    /// while mounted shows up. Errors: as [`MountFs::refresh`].
    pub fn refresh_if_due(&self, ino: u64) -> Result<bool> {
        let top = {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            matches!(t.nodes.get(&ino), Some(n) if n.pinned && matches!(n.kind, NodeKind::Virtual(_)))
        };
        let due = self
            .refreshed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= std::time::Duration::from_secs(REFRESH_SECS);
        if !top || !due {
            return Ok(false);
        }
        self.refresh()?;
        Ok(true)
    }

    /// Number of inodes in the table now (the kernel's references, their
    /// parent folders, and the folders made by the mount): a debug counter
    /// that shows forgotten inodes are dropped.
    pub fn inode_count(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .len()
    }

    /// The kernel dropped `n` references to `ino` (FUSE `forget`): once
    /// none is left and no child of it is in the table, the inode is
    /// dropped (a snapshot folder's listing too). Unknown inodes are
    /// ignored.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut t = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = t.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            t.evict(ino);
        }
    }

    /// (Re)builds the pinned part of the table for `snaps`: nodes that
    /// stay what they were (same name in the same folder, same kind, same
    /// tree) keep their inode; the others are unpinned and dropped once
    /// nothing holds them.
    fn build(&self, snaps: &[(SnapshotId, Snapshot)]) {
        let newest = snaps.iter().map(|(_, s)| time_ns(s)).max().unwrap_or(0);
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let t = &mut *guard;
        let mut stale: std::collections::HashSet<u64> = t
            .nodes
            .iter()
            .filter(|(_, n)| n.pinned)
            .map(|(i, _)| *i)
            .collect();
        // The node named `name` in the old listing `old` of `parent`,
        // reused if it is what is wanted, else a new one.
        let place = |t: &mut Table,
                     stale: &mut std::collections::HashSet<u64>,
                     parent: u64,
                     old: &BTreeMap<Vec<u8>, u64>,
                     name: &[u8],
                     mtime: i64,
                     want: Want|
         -> u64 {
            if let Some(&ino) = old.get(name) {
                if let Some(n) = t.nodes.get_mut(&ino) {
                    let same = match (&mut n.kind, &want) {
                        (NodeKind::Virtual(_), Want::Virtual) => true,
                        (NodeKind::Link(l), Want::Link(w)) => {
                            l.clone_from(w);
                            n.attr.size = w.len() as u64;
                            true
                        }
                        (NodeKind::Tree { tree, .. }, Want::Tree(w)) => tree == w,
                        _ => false,
                    };
                    if same && n.pinned && stale.remove(&ino) {
                        n.attr.mtime_ns = mtime;
                        n.attr.ctime_ns = mtime;
                        n.parent = parent;
                        return ino;
                    }
                }
            }
            let kind = match want {
                Want::Virtual => NodeKind::Virtual(BTreeMap::new()),
                Want::Link(l) => NodeKind::Link(l),
                Want::Tree(tree) => NodeKind::Tree {
                    tree,
                    depth: 0,
                    loaded: None,
                },
            };
            t.push(parent, mtime, kind)
        };
        let listing = |t: &Table, ino: u64| -> BTreeMap<Vec<u8>, u64> {
            match t.nodes.get(&ino).map(|n| &n.kind) {
                Some(NodeKind::Virtual(m)) => m.clone(),
                _ => BTreeMap::new(),
            }
        };
        let root = if t.nodes.contains_key(&ROOT_INO) {
            stale.remove(&ROOT_INO);
            ROOT_INO
        } else {
            t.push(ROOT_INO, newest, NodeKind::Virtual(BTreeMap::new()))
        };
        if let Ok(n) = t.node_mut(root) {
            n.attr.mtime_ns = newest;
            n.attr.ctime_ns = newest;
        }
        let old_top = listing(t, root);
        let mut top = BTreeMap::new();
        for name in ["snapshots", "hosts", "tags"] {
            let n = name.as_bytes();
            let ino = place(t, &mut stale, root, &old_top, n, newest, Want::Virtual);
            top.insert(n.to_vec(), ino);
        }
        let (snap_dir, host_dir, tag_dir) = (
            top[&b"snapshots"[..]],
            top[&b"hosts"[..]],
            top[&b"tags"[..]],
        );
        let (old_snaps, old_hosts, old_tags) = (
            listing(t, snap_dir),
            listing(t, host_dir),
            listing(t, tag_dir),
        );
        if let Ok(n) = t.node_mut(root) {
            n.kind = NodeKind::Virtual(top);
        }

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

        let mut by_id = BTreeMap::new();
        // Per host (tag): its members as (name, time, snapshot).
        let mut by_host: BTreeMap<Vec<u8>, Vec<(Vec<u8>, &Snapshot)>> = BTreeMap::new();
        let mut by_tag: BTreeMap<Vec<u8>, Vec<(Vec<u8>, &Snapshot)>> = BTreeMap::new();
        let mut latest: Option<(i64, Vec<u8>)> = None;
        let mut host_latest: BTreeMap<Vec<u8>, (i64, Vec<u8>)> = BTreeMap::new();
        for (id, s) in snaps {
            let name = name_of(id).into_bytes();
            let ino = place(
                t,
                &mut stale,
                snap_dir,
                &old_snaps,
                &name,
                time_ns(s),
                Want::Tree(s.tree),
            );
            by_id.insert(name.clone(), ino);
            if latest.as_ref().is_none_or(|(lt, _)| time_ns(s) >= *lt) {
                latest = Some((time_ns(s), name.clone()));
            }
            let when = chrono::DateTime::from_timestamp_millis(s.time_ms())
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_else(|| name_of(id));
            let hkey = component(&s.hostname);
            let host = by_host.entry(hkey.clone()).or_default();
            let mut hname = when.into_bytes();
            if host.iter().any(|(n, _)| *n == hname) {
                hname.push(b'-');
                hname.extend_from_slice(&name);
            }
            host.push((hname.clone(), s));
            let l = host_latest.entry(hkey).or_insert((i64::MIN, Vec::new()));
            if time_ns(s) >= l.0 {
                *l = (time_ns(s), hname);
            }
            for tag in &s.tags {
                by_tag
                    .entry(component(tag))
                    .or_default()
                    .push((name.clone(), s));
            }
        }
        if let Some((_, name)) = latest {
            let ino = place(
                t,
                &mut stale,
                snap_dir,
                &old_snaps,
                b"latest",
                newest,
                Want::Link(name),
            );
            by_id.insert(b"latest".to_vec(), ino);
        }
        if let Ok(n) = t.node_mut(snap_dir) {
            n.kind = NodeKind::Virtual(by_id);
        }
        for (dir, old_groups, groups, latest) in [
            (host_dir, old_hosts, by_host, Some(host_latest)),
            (tag_dir, old_tags, by_tag, None),
        ] {
            let mut names = BTreeMap::new();
            for (gname, members) in groups {
                let g = place(
                    t,
                    &mut stale,
                    dir,
                    &old_groups,
                    &gname,
                    newest,
                    Want::Virtual,
                );
                let old = listing(t, g);
                let mut m = BTreeMap::new();
                for (name, s) in members {
                    let ino = place(
                        t,
                        &mut stale,
                        g,
                        &old,
                        &name,
                        time_ns(s),
                        Want::Tree(s.tree),
                    );
                    m.insert(name, ino);
                }
                if let Some(target) = latest.as_ref().and_then(|l| l.get(&gname)) {
                    let ino = place(
                        t,
                        &mut stale,
                        g,
                        &old,
                        b"latest",
                        newest,
                        Want::Link(target.1.clone()),
                    );
                    m.insert(b"latest".to_vec(), ino);
                }
                if let Ok(n) = t.node_mut(g) {
                    n.kind = NodeKind::Virtual(m);
                }
                names.insert(gname, g);
            }
            if let Ok(n) = t.node_mut(dir) {
                n.kind = NodeKind::Virtual(names);
            }
        }
        // What the list no longer has: dropped once the kernel lets go.
        for ino in stale {
            if let Some(n) = t.nodes.get_mut(&ino) {
                n.pinned = false;
                if let NodeKind::Virtual(m) = &mut n.kind {
                    m.clear();
                }
            }
            t.evict(ino);
        }
    }

    /// Attributes of inode `ino`. Errors: [`FsError::NotFound`].
    pub fn attr(&self, ino: u64) -> FsResult<Attr> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        Ok(t.node(ino)?.attr.clone())
    }

    /// The parent folder's inode (the root's parent is the root).
    pub fn parent(&self, ino: u64) -> FsResult<u64> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        Ok(t.node(ino)?.parent)
    }

    /// The children of folder `ino` as (name, inode), sorted by name; reads
    /// the folder's tree on first use. The inodes are those a
    /// [`MountFs::lookup`] of the names gives while the folder stays in the
    /// table.
    ///
    /// Errors: [`FsError::NotFound`], [`FsError::NotDir`], [`FsError::Repo`]
    /// when the tree cannot be read or decoded (or lies deeper than
    /// [`MAX_DEPTH`]).
    pub fn children(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        self.for_children(ino, 0, |name, a| {
            out.push((name.to_vec(), a.ino));
            false
        })?;
        Ok(out)
    }

    /// Calls `f(name, attributes)` for the children of folder `ino` in name
    /// order, from the `skip`-th on, until `f` returns `true` ("full"); reads
    /// the folder's tree on first use. For listing a large folder in pages
    /// without copying it for each page. Adds nothing to the inode table.
    ///
    /// Errors: as [`MountFs::children`].
    pub fn for_children(
        &self,
        ino: u64,
        skip: usize,
        mut f: impl FnMut(&[u8], &Attr) -> bool,
    ) -> FsResult<()> {
        self.load(ino)?;
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        match &t.node(ino)?.kind {
            NodeKind::Virtual(c) => {
                for (name, child) in c.iter().skip(skip) {
                    if f(name, &t.node(*child)?.attr) {
                        break;
                    }
                }
            }
            NodeKind::Tree {
                loaded: Some(l), ..
            } => {
                for (i, e) in l.entries.iter().enumerate().skip(skip) {
                    let cino = l.base + i as u64;
                    let attr = match t.nodes.get(&cino) {
                        Some(n) => n.attr.clone(),
                        None => entry_attr(cino, e),
                    };
                    if f(&e.name, &attr) {
                        break;
                    }
                }
            }
            _ => return Err(FsError::NotDir),
        }
        Ok(())
    }

    /// The child `name` of folder `parent`, with its attributes; counts one
    /// kernel reference to it (FUSE `lookup`), which [`MountFs::forget`]
    /// gives back.
    ///
    /// Errors: [`FsError::NotFound`] when there is none; else as
    /// [`MountFs::children`].
    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        self.load(parent)?;
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let t = &mut *guard;
        let (child, new) = match &t.node(parent)?.kind {
            NodeKind::Virtual(c) => (*c.get(name).ok_or(FsError::NotFound)?, None),
            NodeKind::Tree {
                loaded: Some(l),
                depth,
                ..
            } => {
                let i = l
                    .entries
                    .binary_search_by(|e| e.name.as_slice().cmp(name))
                    .map_err(|_| FsError::NotFound)?;
                let cino = l.base + i as u64;
                if t.nodes.contains_key(&cino) {
                    (cino, None)
                } else {
                    (cino, Some((l.entries[i].clone(), depth + 1)))
                }
            }
            NodeKind::Tree { loaded: None, .. } => return Err(FsError::NotFound),
            _ => return Err(FsError::NotDir),
        };
        if let Some((e, depth)) = new {
            let attr = entry_attr(child, &e);
            let kind = match (e.kind, e.subtree) {
                (EntryKind::Dir, Some(sub)) => NodeKind::Tree {
                    tree: sub,
                    depth,
                    loaded: None,
                },
                (EntryKind::Dir, None) => NodeKind::Virtual(BTreeMap::new()),
                _ => NodeKind::Entry(Box::new(e)),
            };
            t.nodes.insert(
                child,
                Node {
                    parent,
                    attr,
                    kind,
                    lookups: 0,
                    live: 0,
                    pinned: false,
                    counted: true,
                },
            );
            t.node_mut(parent)?.live += 1;
        }
        let n = t.node_mut(child)?;
        n.lookups += 1;
        Ok(n.attr.clone())
    }

    /// Reads the tree of folder `ino` into the table if not done yet: its
    /// entries sorted by name, and a range of inode numbers for them.
    fn load(&self, ino: u64) -> FsResult<()> {
        let (tree, depth) = {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            match &t.node(ino)?.kind {
                NodeKind::Tree {
                    tree,
                    depth,
                    loaded: None,
                } => (*tree, *depth),
                NodeKind::Entry(_) | NodeKind::Link(_) => return Err(FsError::NotDir),
                _ => return Ok(()),
            }
        };
        if depth >= MAX_DEPTH {
            return Err(Error::corrupt(format!("tree deeper than {MAX_DEPTH} levels")).into());
        }
        // Read outside the lock: a slow store must not stall other calls.
        let tr: Tree = self.repo.read_tree(&tree)?;
        let mut entries = tr.entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let t = &mut *guard;
        let base = t.next;
        match &mut t.node_mut(ino)?.kind {
            NodeKind::Tree {
                loaded: l @ None, ..
            } => {
                *l = Some(Loaded { base, entries });
            }
            _ => return Ok(()), // another thread loaded it meanwhile
        }
        t.next += t.node(ino).map_or(0, |n| match &n.kind {
            NodeKind::Tree {
                loaded: Some(l), ..
            } => l.entries.len() as u64,
            _ => 0,
        });
        Ok(())
    }

    /// The target bytes of symlink `ino`. Errors: [`FsError::NotFound`],
    /// [`FsError::Invalid`] for anything but a symlink.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        match &t.node(ino)?.kind {
            NodeKind::Link(t) => Ok(t.clone()),
            NodeKind::Entry(e) if e.kind == EntryKind::Symlink => Ok(e.link_target.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Extended attributes recorded for `ino`, as (name, value) sorted by name.
    pub fn xattrs(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.table.read().unwrap_or_else(|p| p.into_inner());
        match &t.node(ino)?.kind {
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
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            match &t.node(ino)?.kind {
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
