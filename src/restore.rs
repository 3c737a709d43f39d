//! Restoring snapshots: a file tree into a directory, or a stream to a writer.
//!
//! Files are restored in parallel (rayon); runs of blobs that sit next to each
//! other in one pack are fetched with one ranged read. All-zero chunks become
//! holes, so sparse files come back sparse. Directory metadata is applied
//! last, deepest first.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{EntryKind, Tree, TreeEntry, STREAMS_DIR};
use crate::format::Id;
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backup::Progress;

/// Options for [`restore`].
#[derive(Default)]
pub struct RestoreOptions {
    /// Only restore paths matching one of these globs (or below them).
    pub include: Vec<String>,
    /// Skip paths matching these globs.
    pub exclude: Vec<String>,
    /// Live counters.
    pub progress: Arc<Progress>,
}

/// Totals of a restore.
#[derive(Debug, Default, Clone, Copy)]
pub struct RestoreSummary {
    /// Files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Content bytes written.
    pub bytes: u64,
}

struct FileTask {
    path: PathBuf,
    entry: TreeEntry,
}

/// Sealed bytes read per batch by [`for_each_blob`] (plus coalescing gaps).
const WINDOW: u64 = 16 << 20;

/// Fetches the plaintexts of `ids` in order. Reads go in batches of about
/// [`WINDOW`] bytes through [`crate::fetch::fetch`] (neighbours coalesced,
/// concurrent requests on S3), together with the bases of the batch's delta
/// blobs (format-spec §25).
///
/// Errors: [`ErrorKind::NotFound`] for a blob or base no index names, store
/// errors, and [`ErrorKind::Corrupt`] for a blob that does not decode.
pub fn for_each_blob(
    repo: &Repository,
    ids: &[Id],
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let missing = |id: &Id| {
        Error::new(
            ErrorKind::NotFound,
            format!("blob {} is not in any index; run `snap check`", id.short()),
        )
    };
    let (locs, bases): (Vec<BlobLocation>, HashMap<Id, BlobLocation>) = {
        let cat = repo.catalog();
        let locs = ids
            .iter()
            .map(|id| cat.lookup(id)?.ok_or_else(|| missing(id)))
            .collect::<Result<Vec<_>>>()?;
        let mut bases = HashMap::new();
        for b in locs.iter().filter_map(|l| l.base) {
            if let std::collections::hash_map::Entry::Vacant(v) = bases.entry(b) {
                v.insert(cat.lookup(&b)?.ok_or_else(|| missing(&b))?);
            }
        }
        (locs, bases)
    };
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        let mut bytes = 0u64;
        while j < ids.len() && (j == i || bytes + locs[j].length as u64 <= WINDOW) {
            bytes += locs[j].length as u64;
            j += 1;
        }
        let mut want: Vec<BlobLocation> = locs[i..j].to_vec();
        want.extend(
            locs[i..j]
                .iter()
                .filter_map(|l| l.base.and_then(|b| bases.get(&b))),
        );
        let fetched = crate::fetch::fetch(repo.store(), &want)?;
        for k in i..j {
            let sealed = fetched.sealed(&locs[k])?;
            let base = match locs[k].base.and_then(|b| bases.get(&b)) {
                Some(bl) => Some((bl, fetched.sealed(bl)?)),
                None => None,
            };
            let plain = repo.decode_blob_with_base(&ids[k], &locs[k], sealed, base)?;
            f(&plain)?;
        }
        i = j;
    }
    Ok(())
}

/// Writes the content of a file entry to `w`.
pub fn write_content(repo: &Repository, entry: &TreeEntry, w: &mut dyn Write) -> Result<u64> {
    let mut n = 0u64;
    for_each_blob(repo, &entry.content, |b| {
        w.write_all(b).map_err(|e| Error::io("writing output", e))?;
        n += b.len() as u64;
        Ok(())
    })?;
    Ok(n)
}

/// Finds the entry at `path` (components separated by `/`) in a snapshot tree.
pub fn find_entry(repo: &Repository, root: &Id, path: &str) -> Result<TreeEntry> {
    let mut tree = repo.read_tree(root)?;
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (last, dirs) = comps
        .split_last()
        .ok_or_else(|| Error::usage("empty path"))?;
    for d in dirs {
        let e = tree.get(d.as_bytes()).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{path}: no such path in the snapshot"),
            )
        })?;
        let sub = e.subtree.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("{path}: {d} is not a folder"))
        })?;
        tree = repo.read_tree(&sub)?;
    }
    tree.get(last.as_bytes()).cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{path}: no such path in the snapshot"),
        )
    })
}

/// Writes one stream of a snapshot to `w`. With `name = None` the snapshot
/// must hold exactly one stream.
pub fn restore_stream(
    repo: &Repository,
    tree: &Id,
    streams: &[String],
    name: Option<&str>,
    w: &mut dyn Write,
) -> Result<u64> {
    let name = match name {
        Some(n) => n.to_string(),
        None => match streams {
            [one] => one.clone(),
            [] => {
                return Err(Error::usage(
                    "this snapshot holds no stream; restore it with --target DIR",
                ))
            }
            _ => {
                return Err(Error::usage(format!(
                    "this snapshot holds several streams ({}); pick one with --stream NAME",
                    streams.join(", ")
                )))
            }
        },
    };
    let e = find_entry(repo, tree, &format!("{STREAMS_DIR}/{name}"))?;
    let n = write_content(repo, &e, w)?;
    w.flush().map_err(|e| Error::io("writing output", e))?;
    Ok(n)
}

struct Filter {
    include: Option<globset::GlobSet>,
    exclude: globset::GlobSet,
}

impl Filter {
    fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        let build = |ps: &[String]| -> Result<globset::GlobSet> {
            let mut b = globset::GlobSetBuilder::new();
            for p in ps {
                let p = if p.starts_with('/') || !p.contains('/') {
                    p.clone()
                } else {
                    format!("/{p}")
                };
                b.add(
                    globset::GlobBuilder::new(&p)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| Error::usage(format!("invalid pattern {p:?}: {e}")))?,
                );
            }
            b.build()
                .map_err(|e| Error::usage(format!("invalid pattern: {e}")))
        };
        Ok(Filter {
            include: if include.is_empty() {
                None
            } else {
                Some(build(include)?)
            },
            exclude: build(exclude)?,
        })
    }

    fn excluded(&self, snap_path: &Path) -> bool {
        self.exclude.is_match(snap_path)
            || snap_path
                .file_name()
                .is_some_and(|n| self.exclude.is_match(n))
    }

    /// Whether a path or something below it may be included.
    fn included(&self, snap_path: &Path, is_dir: bool) -> bool {
        match &self.include {
            None => true,
            Some(g) => {
                // A directory is walked if it is a match or could contain one.
                if g.is_match(snap_path)
                    || snap_path
                        .ancestors()
                        .any(|a| g.is_match(a) && a != Path::new("/"))
                {
                    return true;
                }
                is_dir
            }
        }
    }
}

/// Restores the snapshot tree `root` below `target`.
pub fn restore(
    repo: &Repository,
    root: &Id,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    let mut files = Vec::new();
    let mut dirs: Vec<(PathBuf, TreeEntry)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut summary = RestoreSummary::default();
    let tree = repo.read_tree(root)?;
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk_restore(
        repo,
        &tree,
        target,
        Path::new("/"),
        &filter,
        &mut files,
        &mut dirs,
        &mut links,
        &mut inodes,
        &mut summary,
    )?;
    let total: u64 = files.iter().map(|f: &FileTask| f.entry.size).sum();
    opts.progress.total_bytes.store(total, Ordering::Relaxed);
    opts.progress
        .total_files
        .store(files.len() as u64, Ordering::Relaxed);
    // Largest files first so the long ones start early.
    files.sort_by_key(|f| std::cmp::Reverse(f.entry.size));
    let results: Vec<Result<u64>> = files
        .par_iter()
        .map(|t| {
            let n = restore_file(repo, t)?;
            opts.progress.bytes.fetch_add(n, Ordering::Relaxed);
            opts.progress.files.fetch_add(1, Ordering::Relaxed);
            Ok(n)
        })
        .collect();
    for r in results {
        summary.bytes += r?;
        summary.files += 1;
    }
    for (link, orig) in links {
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&orig, &link)
            .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
        summary.files += 1;
    }
    // Directory metadata deepest first, after their content is in place.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, e) in &dirs {
        apply_metadata(p, e)?;
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn walk_restore(
    repo: &Repository,
    tree: &Tree,
    dir: &Path,
    snap_dir: &Path,
    filter: &Filter,
    files: &mut Vec<FileTask>,
    dirs: &mut Vec<(PathBuf, TreeEntry)>,
    links: &mut Vec<(PathBuf, PathBuf)>,
    inodes: &mut HashMap<(u64, u64), PathBuf>,
    summary: &mut RestoreSummary,
) -> Result<()> {
    for e in &tree.entries {
        let name = OsStr::from_bytes(&e.name);
        let path = dir.join(name);
        let snap_path = snap_dir.join(name);
        if filter.excluded(&snap_path) || !filter.included(&snap_path, e.kind == EntryKind::Dir) {
            continue;
        }
        match e.kind {
            EntryKind::Dir => {
                let sub = e
                    .subtree
                    .ok_or_else(|| Error::corrupt("directory entry without subtree"))?;
                let t = repo.read_tree(&sub)?;
                std::fs::create_dir_all(&path)
                    .map_err(|err| Error::io(format!("creating {}", path.display()), err))?;
                walk_restore(
                    repo, &t, &path, &snap_path, filter, files, dirs, links, inodes, summary,
                )?;
                summary.dirs += 1;
                dirs.push((path, e.clone()));
            }
            EntryKind::File => {
                if e.nlink > 1 && e.inode != 0 {
                    if let Some(orig) = inodes.get(&(e.dev, e.inode)) {
                        links.push((path, orig.clone()));
                        continue;
                    }
                    inodes.insert((e.dev, e.inode), path.clone());
                }
                files.push(FileTask {
                    path,
                    entry: e.clone(),
                });
            }
            EntryKind::Symlink => {
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(OsStr::from_bytes(&e.link_target), &path).map_err(
                    |err| Error::io(format!("creating symlink {}", path.display()), err),
                )?;
                apply_metadata(&path, e)?;
                summary.files += 1;
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                let _ = std::fs::remove_file(&path);
                let kind = match e.kind {
                    EntryKind::Fifo => libc::S_IFIFO,
                    EntryKind::CharDevice => libc::S_IFCHR,
                    _ => libc::S_IFBLK,
                };
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| Error::usage("path contains NUL"))?;
                // SAFETY: c is a valid NUL-terminated path; mknod only reads it.
                #[allow(unsafe_code)]
                let r = unsafe {
                    libc::mknod(c.as_ptr(), kind | (e.mode & 0o7777), e.rdev as libc::dev_t)
                };
                if r != 0 {
                    let err = std::io::Error::last_os_error();
                    // Device nodes need privileges; fifos do not.
                    if e.kind == EntryKind::Fifo || err.raw_os_error() != Some(libc::EPERM) {
                        return Err(Error::io(format!("creating {}", path.display()), err));
                    }
                    eprintln!("warning: cannot create device {}: {err}", path.display());
                    continue;
                }
                apply_metadata(&path, e)?;
                summary.files += 1;
            }
            EntryKind::Socket => {}
        }
    }
    Ok(())
}

fn restore_file(repo: &Repository, t: &FileTask) -> Result<u64> {
    let io = |e| Error::io(format!("writing {}", t.path.display()), e);
    // A new file, never an existing one opened for writing: that could be a
    // hard link to, or a symlink at, something else.
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&t.path)
    };
    let mut f = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&t.path);
            create().map_err(io)?
        }
        r => r.map_err(io)?,
    };
    let mut pos = 0u64;
    let mut hole = false;
    for_each_blob(repo, &t.entry.content, |b| {
        if b.iter().all(|&x| x == 0) {
            // Leave a hole: the file stays sparse.
            f.seek(SeekFrom::Current(b.len() as i64)).map_err(io)?;
            hole = true;
        } else {
            f.write_all(b).map_err(io)?;
            hole = false;
        }
        pos += b.len() as u64;
        Ok(())
    })?;
    if hole || pos != t.entry.size {
        f.set_len(pos).map_err(io)?;
    }
    if pos != t.entry.size {
        return Err(Error::corrupt(format!(
            "{}: restored {pos} bytes but the snapshot records {}",
            t.path.display(),
            t.entry.size
        )));
    }
    drop(f);
    apply_metadata(&t.path, &t.entry)?;
    Ok(pos)
}

/// Applies ownership (when permitted), mode, extended attributes and mtime.
fn apply_metadata(path: &Path, e: &TreeEntry) -> Result<()> {
    let is_link = e.kind == EntryKind::Symlink;
    let _ = std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid));
    if !is_link {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| Error::io(format!("setting mode of {}", path.display()), err))?;
        for (k, v) in &e.xattrs {
            if let Err(err) = xattr::set(path, OsStr::from_bytes(k), v) {
                eprintln!(
                    "warning: cannot set extended attribute on {}: {err}",
                    path.display()
                );
            }
        }
    }
    let mt = filetime::FileTime::from_unix_time(
        e.mtime_ns.div_euclid(1_000_000_000),
        e.mtime_ns.rem_euclid(1_000_000_000) as u32,
    );
    filetime::set_symlink_file_times(path, mt, mt)
        .map_err(|err| Error::io(format!("setting times of {}", path.display()), err))?;
    Ok(())
}
