//! Walking the file system into the in-memory tree: `lstat` metadata,
//! symlink targets, extended attributes, `--exclude` patterns, and the
//! lexical normalisation of backup paths.

use super::tree::{DirNode, Node};
use crate::error::{Error, Result};
use crate::format::tree::{EntryKind, TreeEntry};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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

pub(super) struct Walker {
    pub(super) excludes: ExcludeSet,
    /// Entries left out: (path, why).
    pub(super) warnings: Vec<(PathBuf, String)>,
    pub(super) dirs: u64,
}

impl Walker {
    pub(super) fn excluded(&self, path: &Path) -> bool {
        self.excludes.is_match(path)
    }

    /// Walks `path` (already lstat'ed as `md`) into a node.
    pub(super) fn walk(&mut self, path: &Path, md: std::fs::Metadata) -> Option<Node> {
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let mut e = entry_from_metadata(&name, &md);
        match e.kind {
            EntryKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => e.link_target = t.into_os_string().into_vec(),
                Err(err) => {
                    self.warnings.push((path.to_path_buf(), err.to_string()));
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
            self.warnings.push((
                path.to_path_buf(),
                format!(
                    "tree deeper than {} levels, left out",
                    crate::format::tree::MAX_DEPTH
                ),
            ));
            return None;
        }
        self.dirs += 1;
        let mut dir = DirNode::default();
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(err) => {
                self.warnings.push((path.to_path_buf(), err.to_string()));
                return None;
            }
        };
        for de in rd {
            let de = match de {
                Ok(d) => d,
                Err(err) => {
                    self.warnings.push((path.to_path_buf(), err.to_string()));
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
                    self.warnings.push((child.to_path_buf(), err.to_string()));
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

    /// Compiles `patterns` as `snap backup --exclude` does: `./` and `../`
    /// patterns are anchored at the process's current directory (read only
    /// when there are patterns).
    ///
    /// Errors: [`ErrorKind::Usage`] naming an invalid pattern; the current
    /// directory cannot be read.
    pub fn from_args(patterns: &[String]) -> Result<ExcludeSet> {
        let cwd = if patterns.is_empty() {
            PathBuf::from("/")
        } else {
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?
        };
        ExcludeSet::new(patterns, &cwd)
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
