//! The backup driver: walk the sources into an in-memory tree, match it
//! against the parent snapshot, feed changed files and streams through
//! [`crate::write::ingest`], then store the trees bottom-up and the snapshot.
//!
//! ```text
//! walk paths ──► tree of entries ──► parent match (unchanged files keep their content ids)
//!                                          │ new and changed files, streams
//!                                          ▼
//!                         ingest: read → chunk → hash → seen? → zstd → seal → packs
//!                                          │ content ids
//!                                          ▼
//!                    trees bottom-up ──► tree blobs ──► index ──► snapshot object
//! ```
//!
//! Write order follows format-spec §18: packs, then index objects, then the
//! snapshot.

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Snapshot, SourceInfo, Summary};
use crate::format::tree::{ChunkProfile, EntryKind, Tree, TreeEntry, STREAMS_DIR};
use crate::format::Id;
use crate::repo::{hostname, now_rfc3339, username, Repository};
use crate::session::{Operation, Session};
use crate::write::ingest::{self, DeltaRef, Ingested, Reader};
use crate::write::pack::BlobSaver;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Tag added to snapshots recorded with `allow_partial` after a source failed.
pub const PARTIAL_TAG: &str = "partial";

/// Live counters a front end may display; updated as work proceeds.
#[derive(Debug, Default)]
pub struct Progress {
    /// Content bytes processed so far.
    pub bytes: AtomicU64,
    /// Files (or streams) finished so far.
    pub files: AtomicU64,
    /// Total content bytes expected, when known (0 = unknown).
    pub total_bytes: AtomicU64,
    /// Total files expected, when known.
    pub total_files: AtomicU64,
}

/// Where a stream's bytes come from.
pub enum StreamInput {
    /// The process's standard input.
    Stdin,
    /// The standard output of `sh -c COMMAND`.
    Command(String),
    /// A program and its arguments, run directly (no shell).
    Program(Vec<String>),
}

/// One stream to store under `@streams/NAME`.
pub struct StreamSource {
    /// File name under `@streams` (no `/`).
    pub name: String,
    /// Kind recorded in the snapshot ("stdin", "command", "pg", "mongo").
    pub kind: String,
    /// Input.
    pub input: StreamInput,
    /// Facts recorded with the source in the snapshot.
    pub details: BTreeMap<String, String>,
}

/// What to back up and how.
#[derive(Default)]
pub struct BackupOptions {
    /// File trees (absolute or relative; stored under their absolute paths,
    /// made absolute and normalised lexically by [`normalize_path`]).
    pub paths: Vec<PathBuf>,
    /// Streams.
    pub streams: Vec<StreamSource>,
    /// Tags.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Glob patterns to exclude (see [`ExcludeSet`]): without `/` they match
    /// a base name; an absolute pattern matches the whole absolute path; a
    /// relative pattern with `/` matches the trailing components of a path
    /// (as if prefixed with `**/`); one starting with `./` or `../` is
    /// relative to the current directory.
    pub excludes: Vec<String>,
    /// Parent snapshot id; `None` picks the latest with the same host and paths.
    pub parent: Option<Id>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Snapshot description.
    pub description: Option<String>,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Called just before the snapshot object is written; an error aborts
    /// the backup without a snapshot (the CLI checks that its lease is still
    /// valid, format-spec §19, §20).
    pub before_commit: Option<Box<dyn Fn() -> Result<()> + Send + Sync>>,
    /// When a stream source fails, record the snapshot anyway without that
    /// stream, marked `partial` (tag `partial`, `partial: true`, the source
    /// in `failed_sources`) instead of failing the whole backup.
    pub allow_partial: bool,
    /// Sources that already failed before the backup started (e.g. a
    /// database that could not be reached); only meaningful with
    /// `allow_partial`, they make the snapshot partial.
    pub failed_sources: Vec<SourceInfo>,
}

/// Result of a backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Source entries that could not be read (each one line).
    pub warnings: Vec<String>,
    /// Files that changed while they were read (size, mtime or ctime of the
    /// open file differed after the read): the snapshot holds the bytes
    /// read, which may mix two versions. Absolute paths, lossy UTF-8.
    pub changed: Vec<String>,
}

/// An in-memory directory being assembled.
#[derive(Default)]
struct DirNode {
    meta: Option<TreeEntry>,
    children: BTreeMap<Vec<u8>, Node>,
}

enum Node {
    Dir(DirNode),
    Leaf(TreeEntry),
}

/// Builds a tree entry from `lstat` metadata.
pub fn entry_from_metadata(name: &[u8], md: &std::fs::Metadata) -> TreeEntry {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() {
        EntryKind::CharDevice
    } else if ft.is_block_device() {
        EntryKind::BlockDevice
    } else if ft.is_socket() {
        EntryKind::Socket
    } else {
        EntryKind::File
    };
    let mut e = TreeEntry::new(name.to_vec(), kind);
    e.mode = md.mode() & 0o7777;
    e.uid = md.uid();
    e.gid = md.gid();
    e.mtime_ns = md
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec());
    e.ctime_ns = md
        .ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.ctime_nsec());
    e.inode = md.ino();
    e.dev = md.dev();
    e.nlink = md.nlink();
    e.size = if kind == EntryKind::File { md.len() } else { 0 };
    if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        e.rdev = md.rdev();
    }
    e
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(names) = xattr::list(path) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(path, &n) {
                out.push((n.as_bytes().to_vec(), v));
            }
        }
    }
    out.sort();
    out
}

struct Walker {
    excludes: ExcludeSet,
    warnings: Vec<String>,
    dirs: u64,
}

impl Walker {
    fn excluded(&self, path: &Path) -> bool {
        self.excludes.is_match(path)
    }

    /// Walks `path` (already lstat'ed as `md`) into a node.
    fn walk(&mut self, path: &Path, md: std::fs::Metadata) -> Option<Node> {
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let mut e = entry_from_metadata(&name, &md);
        match e.kind {
            EntryKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => e.link_target = t.into_os_string().into_vec(),
                Err(err) => {
                    self.warnings.push(format!("{}: {err}", path.display()));
                    return None;
                }
            },
            EntryKind::File | EntryKind::Dir => e.xattrs = read_xattrs(path),
            _ => {}
        }
        if e.kind != EntryKind::Dir {
            return Some(Node::Leaf(e));
        }
        // This recursion (and `plan`, `store_trees`) is bounded by the
        // depth limit: a deeper folder is left out with a warning.
        if path.components().count() > crate::format::tree::MAX_DEPTH {
            self.warnings.push(format!(
                "{}: tree deeper than {} levels, left out",
                path.display(),
                crate::format::tree::MAX_DEPTH
            ));
            return None;
        }
        self.dirs += 1;
        let mut dir = DirNode::default();
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(err) => {
                self.warnings.push(format!("{}: {err}", path.display()));
                return None;
            }
        };
        for de in rd {
            let de = match de {
                Ok(d) => d,
                Err(err) => {
                    self.warnings.push(format!("{}: {err}", path.display()));
                    continue;
                }
            };
            let child = de.path();
            if self.excluded(&child) {
                continue;
            }
            let cmd = match std::fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(err) => {
                    self.warnings.push(format!("{}: {err}", child.display()));
                    continue;
                }
            };
            if let Some(n) = self.walk(&child, cmd) {
                dir.children.insert(de.file_name().as_bytes().to_vec(), n);
            }
        }
        dir.meta = Some(e);
        Some(Node::Dir(dir))
    }
}

use std::os::unix::ffi::OsStringExt;

/// The `--exclude` patterns of a backup, matched against absolute,
/// normalised paths (globset syntax, `*` does not cross `/`):
///
/// - a pattern without `/` matches a base name at any depth (`*.tmp`, `.git`);
/// - an absolute pattern matches the whole path (`/home/*/.cache`);
/// - a pattern starting with `./` or `../` is made absolute against the
///   current directory first (like a path argument);
/// - any other pattern with `/` matches the trailing components of a path,
///   as if prefixed with `**/` (`data/git` excludes `/home/u/data/git` and
///   `/srv/data/git`).
///
/// A trailing `/` is ignored. Everything below an excluded folder is
/// excluded with it.
pub struct ExcludeSet {
    paths: globset::GlobSet,
    names: globset::GlobSet,
}

impl ExcludeSet {
    /// Compiles `patterns`; `cwd` anchors `./` and `../` patterns.
    ///
    /// Errors: [`ErrorKind::Usage`] naming an invalid pattern.
    pub fn new(patterns: &[String], cwd: &Path) -> Result<ExcludeSet> {
        let mut paths = globset::GlobSetBuilder::new();
        let mut names = globset::GlobSetBuilder::new();
        for p in patterns {
            let trimmed = p.trim_end_matches('/');
            let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
            let anchored = if trimmed == "."
                || trimmed == ".."
                || trimmed.starts_with("./")
                || trimmed.starts_with("../")
            {
                // Lexically, like a path argument; glob characters in the
                // current directory's name are escaped.
                let cwd = globset::escape(&normalize_lexically(cwd).to_string_lossy());
                let joined = normalize_lexically(&Path::new(&cwd).join(trimmed));
                joined.to_string_lossy().into_owned()
            } else if trimmed.starts_with('/') {
                trimmed.to_string()
            } else if trimmed.contains('/') {
                format!("**/{trimmed}")
            } else {
                trimmed.to_string()
            };
            let g = globset::GlobBuilder::new(&anchored)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::usage(format!("invalid --exclude pattern {p:?}: {e}")))?;
            if anchored.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        let err = |e: globset::Error| Error::usage(format!("invalid --exclude pattern: {e}"));
        Ok(ExcludeSet {
            paths: paths.build().map_err(err)?,
            names: names.build().map_err(err)?,
        })
    }

    /// Whether the absolute, normalised `path` is excluded.
    pub fn is_match(&self, path: &Path) -> bool {
        self.paths.is_match(path) || path.file_name().is_some_and(|n| self.names.is_match(n))
    }
}

/// The absolute `path` without `.` components, with each `..` removing the
/// component before it (never above the root), and without a trailing `/`.
/// Purely lexical: no symlink is resolved (as Go's `filepath.Clean`).
fn normalize_lexically(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// A backup path as recorded in a snapshot: made absolute against the
/// current directory, then normalised lexically (`.` dropped, `..` removes
/// the component before it, no trailing `/`), so `data/`, `./data` and
/// `../here/data` name the same path. Symlinks are not resolved, the last
/// component's included (a symlink given as a path is stored as a link).
///
/// Errors: [`ErrorKind::Io`] when the current directory cannot be read.
pub fn normalize_path(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    Ok(normalize_lexically(&abs))
}

/// A file whose content must be read: its absolute path, whose components
/// are also its route from the root of the in-memory tree.
struct FileJob {
    path: PathBuf,
    /// Size when walked, bytes (the progress total).
    size: u64,
}

impl FileJob {
    fn route(&self) -> Vec<&[u8]> {
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
fn plan(
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

fn leaf_mut<'a, R: AsRef<[u8]>>(root: &'a mut DirNode, route: &[R]) -> Option<&'a mut TreeEntry> {
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
fn store_trees(
    repo: &Repository,
    saver: &mut BlobSaver,
    dir: DirNode,
    total: &mut u64,
) -> Result<Id> {
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

/// Runs one `sh -c` command or program in its own process group, without
/// snap's secrets in its environment ([`crate::write::sources::scrub_env`]);
/// returns its child process, registered to be stopped on SIGINT/SIGTERM.
fn spawn_source(
    input: &StreamInput,
) -> Result<Option<(std::process::Child, crate::interrupt::ChildGuard)>> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = match input {
        StreamInput::Stdin => return Ok(None),
        StreamInput::Command(c) => {
            let mut cmd = crate::write::sources::command("sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        StreamInput::Program(argv) => {
            let (p, args) = argv
                .split_first()
                .ok_or_else(|| Error::usage("empty command"))?;
            let mut cmd = crate::write::sources::command(p);
            cmd.args(args);
            cmd
        }
    };
    // Its own process group: an interrupt stops the command and everything
    // it started (a shell's children), not only the shell.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().map_err(|e| {
        Error::with_source(
            ErrorKind::Source,
            format!("cannot run {}", describe(input)),
            e,
        )
    })?;
    let guard = crate::interrupt::watch_child(child.id(), true);
    Ok(Some((child, guard)))
}

fn describe(input: &StreamInput) -> String {
    match input {
        StreamInput::Stdin => "standard input".into(),
        StreamInput::Command(c) => format!("command `{c}`"),
        StreamInput::Program(a) => format!("`{}`", a.join(" ")),
    }
}

/// Backs up `opts`' paths and streams into one snapshot.
///
/// Errors: [`ErrorKind::Source`] when a stream's command fails (no snapshot
/// is written), [`ErrorKind::Usage`] for bad options, backend and I/O errors.
/// Unreadable files are skipped and listed in `warnings`; the snapshot is
/// committed only while the session's lease is valid ([`ErrorKind::Locked`]
/// otherwise). `session` must be opened for [`Operation::Backup`].
pub fn backup(session: &Session, opts: BackupOptions) -> Result<BackupOutcome> {
    session.require(&[Operation::Backup], "a backup")?;
    let repo: &Repository = session;
    let started = Instant::now();
    let time = now_rfc3339();
    if opts.paths.is_empty() && opts.streams.is_empty() && opts.failed_sources.is_empty() {
        return Err(Error::usage(
            "nothing to back up: give paths, --stdin, --command, --pg or --mongo",
        ));
    }
    let cwd = if opts.excludes.is_empty() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?
    };
    let mut walker = Walker {
        excludes: ExcludeSet::new(&opts.excludes, &cwd)?,
        warnings: Vec::new(),
        dirs: 0,
    };
    // 1. Walk every path into one in-memory tree rooted at "/".
    let mut root = DirNode::default();
    let mut abs_paths: Vec<String> = Vec::new();
    for p in &opts.paths {
        let abs = normalize_path(p)?;
        let md = std::fs::symlink_metadata(&abs).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Io
            };
            Error::with_source(kind, format!("cannot back up {}", p.display()), e)
        })?;
        let comps: Vec<Vec<u8>> = abs
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.first().is_some_and(|c| c == STREAMS_DIR.as_bytes()) {
            return Err(Error::usage(format!(
                "{} collides with the reserved folder /{STREAMS_DIR}",
                abs.display()
            )));
        }
        abs_paths.push(abs.to_string_lossy().into_owned());
        let Some(node) = walker.walk(&abs, md) else {
            continue;
        };
        if comps.is_empty() {
            if let Node::Dir(d) = node {
                for (k, v) in d.children {
                    root.children.insert(k, v);
                }
            }
            continue;
        }
        let mut cur = &mut root;
        let mut prefix = PathBuf::from("/");
        for c in &comps[..comps.len() - 1] {
            prefix.push(OsStr::from_bytes(c));
            let entry = cur.children.entry(c.clone()).or_insert_with(|| {
                // A folder on the way to a path; through a symlink (such as
                // /proc/self) it is recorded as the folder it leads to.
                let meta = std::fs::metadata(&prefix)
                    .ok()
                    .filter(|m| m.is_dir())
                    .map(|m| entry_from_metadata(c, &m));
                Node::Dir(DirNode {
                    meta,
                    children: BTreeMap::new(),
                })
            });
            cur = match entry {
                Node::Dir(d) => d,
                Node::Leaf(_) => {
                    return Err(Error::usage(format!(
                        "{} is both a file and a folder among the paths",
                        prefix.display()
                    )))
                }
            };
        }
        cur.children.insert(comps[comps.len() - 1].clone(), node);
    }
    abs_paths.sort();
    abs_paths.dedup();
    let hostname = opts.host.clone().unwrap_or_else(hostname);

    // 2. Parent snapshot: given, or the latest with the same host and paths.
    let parent_id = match opts.parent {
        Some(id) => Some(id),
        None if !abs_paths.is_empty() => repo
            .snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.hostname == hostname && s.paths == abs_paths)
            .map(|(id, _)| id),
        None => None,
    };
    // Parent trees come from the local tree cache when it has them (no
    // requests to a remote repository for an unchanged tree).
    repo.begin_tree_cache()?;
    let epoch = repo.catalog().blob_epoch()?;
    let mut parent_root = None;
    let parent_tree = match parent_id {
        Some(id) if !opts.force => {
            let s = repo.read_snapshot(&id).or_else(|_| {
                repo.snapshots()?
                    .into_iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, s)| s)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!("parent snapshot {} not found", id.short()),
                        )
                    })
            })?;
            parent_root = Some(s.tree);
            repo.read_tree_cached(&s.tree).ok()
        }
        _ => None,
    };
    let parent_verified = match parent_root {
        Some(t) => repo.catalog().is_verified(&t)?,
        None => false,
    };

    // 3. Plan: which files need reading.
    let mut jobs = Vec::new();
    let mut counts = (0u64, 0u64, 0u64);
    plan(
        repo,
        &mut root,
        Path::new("/"),
        parent_tree.as_ref(),
        parent_verified,
        opts.force,
        &mut jobs,
        &mut counts,
    )?;
    opts.progress
        .total_files
        .store(jobs.len() as u64, Ordering::Relaxed);
    // Streams have no size before they end: with one, the total stays unknown.
    if opts.streams.is_empty() {
        opts.progress
            .total_bytes
            .store(jobs.iter().map(|j| j.size).sum(), Ordering::Relaxed);
    }

    let config = repo.config();
    let saver = BlobSaver::new(
        repo.store().clone(),
        repo.key().clone(),
        config.writer_packs().0,
        config.writer_packs().1,
    );
    // From here on a SIGINT/SIGTERM only sets the interrupt flag: reading
    // stops at the next check, the stored packs are indexed and no snapshot
    // is written.
    let _graceful = crate::interrupt::graceful();
    let mut warnings = std::mem::take(&mut walker.warnings);
    let mut changed = Vec::new();
    let previous = previous_streams(repo, &hostname, &opts.streams);
    let ((bytes_read, job_slots, stream_slots, sources, failed_sources), mut ingested) =
        ingest::run(repo, saver, &opts.progress.bytes, |reader| {
            read_content(reader, &jobs, &opts, &previous, &mut warnings, &mut changed)
        })?;
    // Sizes come from the content ingested, never from `stat`: a file that
    // grew or shrank since the walk is recorded as read.
    for (job, slot) in jobs.iter().zip(job_slots) {
        match slot {
            Some(slot) => {
                let (content, len) = ingested.take(slot);
                if let Some(e) = leaf_mut(&mut root, &job.route()) {
                    e.content = content;
                    e.size = len;
                }
            }
            None => remove_leaf(&mut root, &job.route()),
        }
    }
    if !stream_slots.is_empty() {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let mut sd = DirNode::default();
        let mut meta = TreeEntry::new(STREAMS_DIR.as_bytes().to_vec(), EntryKind::Dir);
        meta.mode = 0o700;
        meta.mtime_ns = now;
        sd.meta = Some(meta);
        for (s, (slot, _)) in sources.iter().zip(stream_slots) {
            let mut e = TreeEntry::new(s.name.as_bytes().to_vec(), EntryKind::File);
            e.mode = 0o600;
            e.mtime_ns = now;
            e.profile = ChunkProfile::Streams;
            (e.content, e.size) = ingested.take(slot);
            sd.children.insert(e.name.clone(), Node::Leaf(e));
        }
        root.children
            .insert(STREAMS_DIR.as_bytes().to_vec(), Node::Dir(sd));
    }
    let mut saver = ingested.saver;
    let mut total_bytes = 0;
    let tree = match crate::interrupt::check()
        .and_then(|_| store_trees(repo, &mut saver, root, &mut total_bytes))
        .and_then(|t| saver.finish().map(|_| t))
    {
        Ok(t) => t,
        Err(e) => {
            // Index the packs already stored so the next backup reuses them.
            saver.salvage();
            let _ = ingest::catalog_written(repo, &mut saver);
            return Err(e);
        }
    };
    ingest::catalog_written(repo, &mut saver)?;
    walker.warnings = warnings;

    let partial = !failed_sources.is_empty();
    let mut tags = opts.tags.clone();
    if partial {
        tags.push(PARTIAL_TAG.into());
    }
    tags.sort();
    tags.dedup();
    let stats = saver.stats;
    let mut snapshot = Snapshot {
        version: 1,
        time,
        hostname,
        username: username(),
        paths: abs_paths,
        streams: sources.iter().map(|s| s.name.clone()).collect(),
        tags,
        parent: parent_id,
        tree,
        description: opts.description.clone(),
        sources,
        partial,
        failed_sources,
        summary: Summary {
            files_new: counts.0,
            files_changed: counts.1,
            files_unchanged: counts.2,
            dirs: walker.dirs,
            bytes_read,
            total_bytes,
            blobs_added: stats.blobs,
            bytes_added_raw: stats.raw_bytes,
            bytes_added_stored: stats.stored_bytes,
            errors: walker.warnings.len() as u64,
            seconds: 0.0,
        },
        original: None,
    };
    snapshot.summary.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    if let Some(check) = &opts.before_commit {
        check()?;
    }
    crate::interrupt::check()?;
    let id = session.save_snapshot(&snapshot)?;
    // Every blob of the new snapshot was stored, or checked, at `epoch`.
    repo.catalog().set_verified(&snapshot.tree, epoch)?;
    Ok(BackupOutcome {
        id,
        snapshot,
        warnings: walker.warnings,
        changed,
    })
}

/// Bytes read, per-job slots (`None`: unreadable, skipped), per-stream
/// (slot, bytes) of the streams that were read, their sources, and the
/// sources that failed (with `allow_partial`).
type ContentResult = (
    u64,
    Vec<Option<usize>>,
    Vec<(usize, u64)>,
    Vec<SourceInfo>,
    Vec<SourceInfo>,
);

/// The previous version of each stream about to be read: the content of the
/// stream of the same name in the newest snapshot of this host that holds
/// one (for delta blobs, format-spec §13). Best effort: a stream whose
/// previous version cannot be read simply gets no delta bases.
fn previous_streams(
    repo: &Repository,
    hostname: &str,
    streams: &[StreamSource],
) -> HashMap<String, Arc<DeltaRef>> {
    let mut out = HashMap::new();
    if streams.is_empty() {
        return out;
    }
    let Ok(snaps) = repo.snapshots() else {
        return out;
    };
    let content = |tree: &Id, name: &str| -> Option<Vec<Id>> {
        let root = repo.read_tree_cached(tree).ok()?;
        let sub = repo
            .read_tree_cached(&root.get(STREAMS_DIR.as_bytes())?.subtree?)
            .ok()?;
        let e = sub.get(name.as_bytes())?;
        (e.profile == ChunkProfile::Streams).then(|| e.content.clone())
    };
    for s in streams {
        let prev = snaps
            .iter()
            .rev()
            .find(|(_, snap)| snap.hostname == hostname && snap.streams.contains(&s.name));
        if let Some(c) = prev.and_then(|(_, snap)| content(&snap.tree, &s.name)) {
            // Chunk lengths from the catalog place each chunk by offset; a
            // chunk no index names ends the usable part of the list.
            let cat = repo.catalog();
            let mut sized = Vec::with_capacity(c.len());
            for id in c {
                match cat.lookup(&id) {
                    Ok(Some(l)) => sized.push((id, l.raw_len)),
                    _ => break,
                }
            }
            if !sized.is_empty() {
                out.insert(s.name.clone(), Arc::new(DeltaRef::new(sized)));
            }
        }
    }
    out
}

fn read_content(
    reader: &mut Reader<'_>,
    jobs: &[FileJob],
    opts: &BackupOptions,
    previous: &HashMap<String, Arc<DeltaRef>>,
    warnings: &mut Vec<String>,
    changed: &mut Vec<String>,
) -> Result<ContentResult> {
    let mut bytes_read = 0u64;
    let mut slots = Vec::with_capacity(jobs.len());
    for job in jobs {
        crate::interrupt::check()?;
        let slot = reader.new_slot();
        match reader.read_file(slot, &job.path) {
            Ok(r) => {
                bytes_read += r.bytes;
                if r.changed {
                    changed.push(job.path.to_string_lossy().into_owned());
                }
                slots.push(Some(slot));
            }
            Err(err) => {
                // A failure of the pipeline itself (not of this file) aborts.
                if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                    return Err(Error::new(inner.kind(), format!("{inner:#}")));
                }
                if err.raw_os_error() == Some(libc::ENOSPC) {
                    return Err(Error::io(format!("reading {}", job.path.display()), err));
                }
                warnings.push(format!("{}: {err}", job.path.display()));
                slots.push(None);
            }
        }
        opts.progress.files.fetch_add(1, Ordering::Relaxed);
    }
    let mut stream_slots = Vec::new();
    let mut sources = Vec::new();
    let mut failed_sources = opts.failed_sources.clone();
    for s in &opts.streams {
        if s.name.is_empty()
            || s.name.contains(['/', '\0'])
            || s.name.len() > crate::format::tree::MAX_NAME_LEN
            || s.name == "."
            || s.name == ".."
        {
            return Err(Error::usage(format!("invalid stream name {:?}", s.name)));
        }
        let slot = reader.new_slot();
        if let Some(prev) = previous.get(&s.name) {
            reader.set_delta_ref(slot, prev.clone());
        }
        let n = match read_source(reader, slot, s) {
            Ok(n) => n,
            Err(e) if opts.allow_partial && e.kind() == ErrorKind::Source => {
                let mut details = s.details.clone();
                details.insert("error".into(), format!("{e:#}"));
                failed_sources.push(SourceInfo {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    command: command_line(&s.input),
                    details,
                });
                opts.progress.files.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Source => {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "{e:#}; no snapshot was recorded (--allow-partial records one without it)"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        bytes_read += n;
        stream_slots.push((slot, n));
        sources.push(SourceInfo {
            name: s.name.clone(),
            kind: s.kind.clone(),
            command: command_line(&s.input),
            details: s.details.clone(),
        });
        opts.progress.files.fetch_add(1, Ordering::Relaxed);
    }
    Ok((bytes_read, slots, stream_slots, sources, failed_sources))
}

/// The command line recorded for a source, if it ran one.
fn command_line(input: &StreamInput) -> Option<String> {
    match input {
        StreamInput::Stdin => None,
        StreamInput::Command(c) => Some(c.clone()),
        StreamInput::Program(a) => Some(a.join(" ")),
    }
}

/// Reads one stream source into `slot`; returns its length in bytes.
///
/// Errors: [`ErrorKind::Source`] naming the source, the program, its exit
/// code and the last lines of its stderr when it cannot be run, exits
/// unsuccessfully (even after writing output) or its output cannot be read.
fn read_source(reader: &mut Reader<'_>, slot: usize, s: &StreamSource) -> Result<u64> {
    let child = spawn_source(&s.input).map_err(|e| e.context(format!("source {:?}", s.name)))?;
    let Some((mut child, guard)) = child else {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        let n = reader.read_stream(slot, &mut lock, ChunkProfile::Streams)?;
        // Ctrl-C also ends the program writing into the pipe: its output
        // ended early and must not be recorded as the whole stream.
        crate::interrupt::check()?;
        return Ok(n);
    };
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Source, "no stdout"))?;
    let mut stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let r = reader.read_stream(slot, &mut stdout, ChunkProfile::Streams);
    drop(stdout);
    if r.as_ref().is_err_and(|e| e.kind() != ErrorKind::Io) {
        // The pipeline failed, not the source: stop the source and whatever
        // it started (they would hold its stderr open).
        guard.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for source command", e))?;
    let err_out = err_thread.join().unwrap_or_default();
    drop(guard);
    // Stopped by our own SIGTERM: interrupted, not a failed source.
    crate::interrupt::check()?;
    if !status.success() {
        if let Err(e) = &r {
            if e.kind() != ErrorKind::Io {
                return r;
            }
        }
        let text = String::from_utf8_lossy(&err_out);
        let tail: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = &tail[tail.len().saturating_sub(5)..];
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        let mut msg = format!(
            "source {:?}: {} failed with {code}",
            s.name,
            describe(&s.input)
        );
        if !tail.is_empty() {
            msg.push_str(&format!(": {}", tail.join(" / ")));
        }
        return Err(Error::new(ErrorKind::Source, msg));
    }
    r.map_err(|e| match e.kind() {
        ErrorKind::Io => Error::new(
            ErrorKind::Source,
            format!("source {:?}: reading its output: {e:#}", s.name),
        ),
        _ => e,
    })
}

fn remove_leaf<R: AsRef<[u8]>>(root: &mut DirNode, route: &[R]) {
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

/// Path components from the snapshot root to an entry.
type Route = Vec<Vec<u8>>;

/// Receives the entries of a snapshot built from something other than the
/// filesystem (an archive); see [`backup_entries`].
pub struct EntrySink<'a, 'r> {
    reader: &'a mut Reader<'r>,
    progress: Arc<Progress>,
    root: DirNode,
    /// (route, slot) of every file with content.
    files: Vec<(Route, usize)>,
    /// (route, target route) of hard links, resolved at the end.
    links: Vec<(Route, Route)>,
    bytes_read: u64,
    counts: (u64, u64),
}

/// The usage error for an archive entry deeper than the folder nesting
/// limit (format-spec §14.2).
fn too_deep(path: &[u8]) -> Error {
    let mut shown: String = String::from_utf8_lossy(path).chars().take(120).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    Error::usage(format!(
        "tree deeper than {} levels at {shown}: entry not accepted",
        crate::format::tree::MAX_DEPTH
    ))
}

/// Splits a relative `/`-separated path into components, rejecting empty
/// paths, `..` and NUL; `.` components and a leading `/` are dropped.
fn split_route(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::usage(format!(
                    "entry {:?} leaves the archive with `..`",
                    String::from_utf8_lossy(path)
                )))
            }
            c if c.contains(&0) || c.len() > crate::format::tree::MAX_NAME_LEN => {
                return Err(Error::usage(format!(
                    "entry {:?} has an invalid name",
                    String::from_utf8_lossy(path)
                )))
            }
            c => out.push(c.to_vec()),
        }
    }
    // The tree built from the routes is walked recursively (`store_trees`,
    // dropping `DirNode`s); the depth limit bounds that recursion.
    if out.len() > crate::format::tree::MAX_DEPTH {
        return Err(too_deep(path));
    }
    Ok(out)
}

impl EntrySink<'_, '_> {
    /// Adds one entry at `path` (relative, `/`-separated; `.` components
    /// ignored; `..` is an error). `entry.name` is replaced by the last
    /// component. Missing parent folders are created (mode 0o755, time 0);
    /// a later folder entry for the same path sets its metadata, a later
    /// non-folder entry replaces an earlier one (archive semantics).
    ///
    /// For [`EntryKind::File`], `content` is read to its end (its length
    /// becomes `entry.size`), chunked with the streams profile under
    /// `@streams/` and the files profile elsewhere, so that content already
    /// stored by `snap backup` deduplicates. Errors: usage errors for bad
    /// paths, I/O errors from `content`, backend errors.
    pub fn add(
        &mut self,
        path: &[u8],
        mut entry: TreeEntry,
        content: Option<&mut dyn Read>,
    ) -> Result<()> {
        let route = split_route(path)?;
        if entry.kind == EntryKind::Dir && route.len() >= crate::format::tree::MAX_DEPTH {
            // Its own entries would be deeper than the limit.
            return Err(too_deep(path));
        }
        let Some((last, dirs)) = route.split_last() else {
            // The archive's root folder itself: nothing to record.
            return Ok(());
        };
        entry.name = last.clone();
        let mut cur = &mut self.root;
        for d in dirs {
            let node = cur.children.entry(d.clone()).or_insert_with(|| {
                let mut meta = TreeEntry::new(d.clone(), EntryKind::Dir);
                meta.mode = 0o755;
                Node::Dir(DirNode {
                    meta: Some(meta),
                    children: BTreeMap::new(),
                })
            });
            if let Node::Leaf(_) = node {
                let mut meta = TreeEntry::new(d.clone(), EntryKind::Dir);
                meta.mode = 0o755;
                *node = Node::Dir(DirNode {
                    meta: Some(meta),
                    children: BTreeMap::new(),
                });
            }
            let Node::Dir(dn) = node else {
                unreachable!("replaced by a folder above")
            };
            cur = dn;
        }
        if entry.kind == EntryKind::Dir {
            self.counts.1 += 1;
            match cur.children.get_mut(last) {
                Some(Node::Dir(dn)) => dn.meta = Some(entry),
                _ => {
                    cur.children.insert(
                        last.clone(),
                        Node::Dir(DirNode {
                            meta: Some(entry),
                            children: BTreeMap::new(),
                        }),
                    );
                }
            }
            return Ok(());
        }
        if entry.kind == EntryKind::File {
            self.counts.0 += 1;
            let stream = route.len() == 2 && route[0] == STREAMS_DIR.as_bytes();
            entry.profile = if stream {
                ChunkProfile::Streams
            } else {
                ChunkProfile::Files
            };
            let slot = self.reader.new_slot();
            let n = match content {
                Some(r) => self.reader.read_stream(slot, r, entry.profile)?,
                None => 0,
            };
            entry.size = n;
            self.bytes_read += n;
            self.files.push((route.clone(), slot));
            self.progress.files.fetch_add(1, Ordering::Relaxed);
        }
        cur.children.insert(last.clone(), Node::Leaf(entry));
        Ok(())
    }

    /// Adds a hard link at `path` to the file added earlier at `target`
    /// (both relative): the link gets the target's content and size.
    /// Errors: as [`EntrySink::add`]; a link whose target is not a file
    /// added before is an error when the snapshot is finished.
    pub fn add_hardlink(&mut self, path: &[u8], entry: TreeEntry, target: &[u8]) -> Result<()> {
        let route = split_route(path)?;
        let troute = split_route(target)?;
        let mut e = entry;
        e.kind = EntryKind::File;
        self.add(path, e, None)?;
        self.links.push((route, troute));
        Ok(())
    }
}

/// Backs up a tree supplied entry by entry by `fill` (e.g. from a tar
/// archive) into one snapshot. Of `opts`, only `tags`, `host`,
/// `description` and `progress` are used. Files under `@streams/` become
/// the snapshot's streams (recorded as sources of kind `import`). The
/// snapshot's `paths` is empty.
///
/// Errors: whatever `fill` returns (no snapshot is written then), backend
/// and I/O errors; [`ErrorKind::Locked`] when the session's lease may have
/// lapsed before the commit. `session` must be opened for
/// [`Operation::Backup`] or [`Operation::ImportTar`].
pub fn backup_entries<F>(session: &Session, opts: BackupOptions, fill: F) -> Result<BackupOutcome>
where
    F: FnOnce(&mut EntrySink<'_, '_>) -> Result<()>,
{
    session.require(&[Operation::Backup, Operation::ImportTar], "an import")?;
    let repo: &Repository = session;
    let started = Instant::now();
    let time = now_rfc3339();
    let config = repo.config();
    let saver = BlobSaver::new(
        repo.store().clone(),
        repo.key().clone(),
        config.writer_packs().0,
        config.writer_packs().1,
    );
    type Filled = (
        DirNode,
        Vec<(Route, usize)>,
        Vec<(Route, Route)>,
        u64,
        (u64, u64),
    );
    let (filled, ingested): (Filled, Ingested) =
        ingest::run(repo, saver, &opts.progress.bytes, |reader| {
            let mut sink = EntrySink {
                reader,
                progress: opts.progress.clone(),
                root: DirNode::default(),
                files: Vec::new(),
                links: Vec::new(),
                bytes_read: 0,
                counts: (0, 0),
            };
            fill(&mut sink)?;
            Ok((
                sink.root,
                sink.files,
                sink.links,
                sink.bytes_read,
                sink.counts,
            ))
        })?;
    let (mut root, files, links, bytes_read, counts) = filled;
    let mut ingested = ingested;
    for (route, slot) in &files {
        if let Some(e) = leaf_mut(&mut root, route) {
            (e.content, e.size) = ingested.take(*slot);
        }
    }
    let mut saver = ingested.saver;
    for (route, target) in &links {
        let (content, size) = match leaf_mut(&mut root, target) {
            Some(t) if t.kind == EntryKind::File => (t.content.clone(), t.size),
            _ => {
                return Err(Error::usage(format!(
                    "hard link {:?} points to {:?}, which is not a file earlier in the archive",
                    String::from_utf8_lossy(&route.join(&b'/')),
                    String::from_utf8_lossy(&target.join(&b'/'))
                )))
            }
        };
        if let Some(e) = leaf_mut(&mut root, route) {
            e.content = content;
            e.size = size;
        }
    }
    let mut sources = Vec::new();
    let mut streams = Vec::new();
    if let Some(Node::Dir(sd)) = root.children.get(STREAMS_DIR.as_bytes()) {
        for (name, n) in &sd.children {
            if let Node::Leaf(e) = n {
                if e.kind == EntryKind::File {
                    let name = String::from_utf8_lossy(name).into_owned();
                    streams.push(name.clone());
                    sources.push(SourceInfo {
                        name,
                        kind: "import".into(),
                        command: None,
                        details: BTreeMap::new(),
                    });
                }
            }
        }
    }
    let mut total_bytes = 0;
    let tree = store_trees(repo, &mut saver, root, &mut total_bytes)?;
    saver.finish()?;
    ingest::catalog_written(repo, &mut saver)?;
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let stats = saver.stats;
    let mut snapshot = Snapshot {
        version: 1,
        time,
        hostname: opts.host.clone().unwrap_or_else(hostname),
        username: username(),
        paths: Vec::new(),
        streams,
        tags,
        parent: None,
        tree,
        description: opts.description.clone(),
        sources,
        original: None,
        partial: false,
        failed_sources: Vec::new(),
        summary: Summary {
            files_new: counts.0,
            files_changed: 0,
            files_unchanged: 0,
            dirs: counts.1,
            bytes_read,
            total_bytes,
            blobs_added: stats.blobs,
            bytes_added_raw: stats.raw_bytes,
            bytes_added_stored: stats.stored_bytes,
            errors: 0,
            seconds: 0.0,
        },
    };
    snapshot.summary.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let id = session.save_snapshot(&snapshot)?;
    Ok(BackupOutcome {
        id,
        snapshot,
        warnings: Vec::new(),
        changed: Vec::new(),
    })
}
