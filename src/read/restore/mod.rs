//! Restoring snapshots: a file tree into a directory, or a stream to a writer.
//!
//! A restore walks the snapshot's trees first (iteratively, at most
//! [`MAX_DEPTH`] levels deep) and plans what the `--include`/`--exclude`
//! filters select: a folder is created only when it is selected or holds a
//! selected entry (its parents are created and, as restic does, get their
//! snapshot metadata too). Folders, symlinks and special files are then
//! created in order, parents first, through [`target`]: every path component
//! is opened relative to its parent without following symlinks. Files are
//! restored in parallel (rayon); runs of blobs that sit next to each other in
//! one pack are fetched with one ranged read. All-zero chunks become holes,
//! so sparse files come back sparse. A file whose content cannot be read from
//! the repository (a damaged or missing blob) is removed, named in
//! [`RestoreSummary::damaged`], and the restore goes on. Directory metadata
//! is applied last, children before parents, also when some files failed.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{EntryKind, TreeEntry, MAX_DEPTH, STREAMS_DIR};
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

use crate::ops::backup::Progress;

pub mod target;

use target::Target;

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

/// A file the restore could not write because its content could not be
/// read from the repository, or a folder whose listing could not be read
/// (its entries are missing from the restore).
#[derive(Debug, Clone)]
pub struct DamagedFile {
    /// Path below the target (a damaged file is not left there).
    pub path: PathBuf,
    /// Why: names the blob and pack (e.g. "blob 3fa2… in pack 9c01… does
    /// not match its id").
    pub error: String,
}

/// Totals of a restore.
#[derive(Debug, Default, Clone)]
pub struct RestoreSummary {
    /// Files written.
    pub files: u64,
    /// Directories created or restored.
    pub dirs: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Files not restored because a blob of theirs is damaged or missing,
    /// in path order; the restore is incomplete when this is not empty.
    pub damaged: Vec<DamagedFile>,
    /// One line each: extended attributes or device nodes that could not
    /// be restored (the restore is otherwise complete).
    pub warnings: Vec<String>,
}

/// Errors with "tree deeper than [`MAX_DEPTH`] levels at PATH"
/// ([`ErrorKind::Corrupt`]) when an entry `depth` levels below a snapshot's
/// root (1 for the root's children) is deeper than the limit. Tree walkers
/// call it before descending, so no recursion or stack depends on input.
pub fn check_depth(depth: usize, path: impl FnOnce() -> String) -> Result<()> {
    if depth <= MAX_DEPTH {
        return Ok(());
    }
    let mut p = path();
    if p.len() > 120 {
        let mut cut = 120;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
        p.push('…');
    }
    Err(Error::corrupt(format!(
        "tree deeper than {MAX_DEPTH} levels at {p}; snap does not read deeper trees"
    )))
}

/// Sealed bytes read per batch by [`for_each_blob`] (plus coalescing gaps).
const WINDOW: u64 = 16 << 20;

/// Fetches the plaintexts of `ids` in order. Reads go in batches of about
/// [`WINDOW`] bytes through [`crate::read::fetch::fetch`] (neighbours coalesced,
/// concurrent requests on S3), together with the bases of the batch's delta
/// blobs (format-spec §13).
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
        let fetched = crate::read::fetch::fetch(repo.store(), &want)?;
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

    /// Whether an entry is selected, given whether its parent folder is:
    /// everything below a selected folder is.
    fn selected(&self, snap_path: &Path, parent_selected: bool) -> bool {
        match &self.include {
            None => true,
            Some(g) => parent_selected || g.is_match(snap_path),
        }
    }
}

/// A folder met by the plan: created when `needed`. Its route is found
/// through `parent` (no path is stored per entry, to keep a plan of
/// millions of files small).
struct PlanDir {
    entry: TreeEntry,
    parent: Option<usize>,
    needed: bool,
}

/// A non-folder entry selected for restore; `parent` indexes `Plan::dirs`
/// (`None`: the target itself).
struct PlanItem {
    entry: TreeEntry,
    parent: Option<usize>,
    /// For a hard link: the index in `Plan::items` of the file it links to.
    link_to: Option<usize>,
}

/// What a restore will create, parents before children.
#[derive(Default)]
struct Plan {
    dirs: Vec<PlanDir>,
    items: Vec<PlanItem>,
    /// Folders (by index in `dirs`) whose tree could not be read from the
    /// repository, with the error: created, but empty.
    unreadable: Vec<(usize, String)>,
}

impl Plan {
    /// Marks folder `d` and its parents as needed.
    fn need(&mut self, mut d: Option<usize>) {
        while let Some(i) = d {
            if self.dirs[i].needed {
                break;
            }
            self.dirs[i].needed = true;
            d = self.dirs[i].parent;
        }
    }

    /// Walks the trees below `root` (explicit stack, depth checked).
    fn build(repo: &Repository, root: &Id, filter: &Filter) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
        // (tree, its folder in `dirs`, the level of its entries, its
        // snapshot path, selected?)
        let mut stack: Vec<(Id, Option<usize>, usize, PathBuf, bool)> =
            vec![(*root, None, 1, PathBuf::from("/"), filter.include.is_none())];
        while let Some((tid, dir, depth, snap_dir, dir_selected)) = stack.pop() {
            check_depth(depth, || snap_dir.display().to_string())?;
            let tree = match (repo.read_tree(&tid), dir) {
                (Ok(t), _) => t,
                // A damaged folder listing below the root: report it, restore the rest.
                (Err(e), Some(d)) if is_damage(&e) => {
                    plan.unreadable.push((d, format!("{e:#}")));
                    continue;
                }
                (Err(e), _) => return Err(e),
            };
            for e in tree.entries {
                let snap_path = snap_dir.join(OsStr::from_bytes(&e.name));
                if filter.excluded(&snap_path) {
                    continue;
                }
                let selected = filter.selected(&snap_path, dir_selected);
                match e.kind {
                    EntryKind::Dir => {
                        let sub = e
                            .subtree
                            .ok_or_else(|| Error::corrupt("directory entry without subtree"))?;
                        let idx = plan.dirs.len();
                        plan.dirs.push(PlanDir {
                            entry: e,
                            parent: dir,
                            needed: false,
                        });
                        if selected {
                            plan.need(Some(idx));
                        }
                        stack.push((sub, Some(idx), depth + 1, snap_path, selected));
                    }
                    EntryKind::Socket => {}
                    _ if !selected => {}
                    _ => {
                        let mut link_to = None;
                        if e.kind == EntryKind::File && e.nlink > 1 && e.inode != 0 {
                            match inodes.get(&(e.dev, e.inode)) {
                                Some(&i) => link_to = Some(i),
                                None => {
                                    inodes.insert((e.dev, e.inode), plan.items.len());
                                }
                            }
                        }
                        plan.items.push(PlanItem {
                            entry: e,
                            parent: dir,
                            link_to,
                        });
                        plan.need(dir);
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Names from the target to folder `d` (empty for the target itself).
    fn dir_route(&self, mut d: Option<usize>) -> Vec<Vec<u8>> {
        let mut route = Vec::new();
        while let Some(i) = d {
            route.push(self.dirs[i].entry.name.clone());
            d = self.dirs[i].parent;
        }
        route.reverse();
        route
    }

    /// Names from the target to `it`.
    fn item_route(&self, it: &PlanItem) -> Vec<Vec<u8>> {
        let mut route = self.dir_route(it.parent);
        route.push(it.entry.name.clone());
        route
    }
}

/// Whether a restore error is about the repository's data for one file
/// (reported per file), not about the target or the backend (fatal).
fn is_damage(e: &Error) -> bool {
    e.kind().is_damaged_data() || e.kind() == ErrorKind::NotFound
}

/// Restores the snapshot tree `root` below `target` (created if missing;
/// symlinks inside it are never followed, see [`target`]).
///
/// Returns the totals; files whose content could not be read are listed in
/// [`RestoreSummary::damaged`] (the restore is then incomplete but every
/// other entry is restored). Errors: [`ErrorKind::Usage`] for a bad
/// pattern, I/O errors of the target (fatal, the restore stops), repository
/// errors reading trees, [`ErrorKind::Corrupt`] for a tree deeper than
/// [`MAX_DEPTH`].
pub fn restore(
    repo: &Repository,
    root: &Id,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    let plan = Plan::build(repo, root, &filter)?;
    let tgt =
        Target::open(target).map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let mut summary = RestoreSummary::default();
    let at = |route: &[Vec<u8>]| tgt.display(route).display().to_string();
    for (d, error) in &plan.unreadable {
        summary.damaged.push(DamagedFile {
            path: tgt.display(&plan.dir_route(Some(*d))),
            error: format!("folder listing unreadable, its entries are not restored: {error}"),
        });
    }

    // Folders, parents first.
    for (i, _) in plan.dirs.iter().enumerate().filter(|(_, d)| d.needed) {
        let route = plan.dir_route(Some(i));
        tgt.dir(&route, true)
            .map_err(|e| Error::io(format!("creating {}", at(&route)), e))?;
        summary.dirs += 1;
    }
    // Symlinks and special files.
    for it in plan
        .items
        .iter()
        .filter(|i| i.entry.kind != EntryKind::File)
    {
        let e = &it.entry;
        let dir = tgt.dir(&plan.dir_route(it.parent), false).map_err(|err| {
            Error::io(
                format!("opening the folder of {}", at(&plan.item_route(it))),
                err,
            )
        })?;
        let made = match e.kind {
            EntryKind::Symlink => target::create_symlink(&dir, &e.name, &e.link_target),
            _ => target::create_special(&dir, &e.name, e.kind, e.mode, e.rdev),
        };
        if let Err(err) = made {
            // Device nodes need privileges; FIFOs do not.
            if e.kind != EntryKind::Symlink
                && e.kind != EntryKind::Fifo
                && err.raw_os_error() == Some(libc::EPERM)
            {
                summary.warnings.push(format!(
                    "cannot create device {}: {err}",
                    at(&plan.item_route(it))
                ));
                continue;
            }
            return Err(Error::io(
                format!("creating {}", at(&plan.item_route(it))),
                err,
            ));
        }
        target::apply_metadata_at(&dir, &e.name, e).map_err(|err| {
            Error::io(
                format!("setting metadata of {}", at(&plan.item_route(it))),
                err,
            )
        })?;
        summary.files += 1;
    }
    // Files, in parallel, largest first so the long ones start early.
    let mut files: Vec<&PlanItem> = plan
        .items
        .iter()
        .filter(|i| i.entry.kind == EntryKind::File && i.link_to.is_none())
        .collect();
    let total: u64 = files.iter().map(|f| f.entry.size).sum();
    opts.progress.total_bytes.store(total, Ordering::Relaxed);
    opts.progress
        .total_files
        .store(files.len() as u64, Ordering::Relaxed);
    files.sort_by_key(|f| std::cmp::Reverse(f.entry.size));
    type FileResult<'p> = (&'p PlanItem, Result<(u64, Vec<String>)>);
    let results: Vec<FileResult> = files
        .par_iter()
        .map(|it| {
            let r = restore_file(repo, &tgt, &plan, it);
            if let Ok((n, _)) = &r {
                opts.progress.bytes.fetch_add(*n, Ordering::Relaxed);
                opts.progress.files.fetch_add(1, Ordering::Relaxed);
            }
            (*it, r)
        })
        .collect();
    let mut fatal = None;
    for (it, r) in results {
        match r {
            Ok((n, w)) => {
                summary.bytes += n;
                summary.files += 1;
                summary.warnings.extend(
                    w.into_iter()
                        .map(|w| format!("{}: {w}", at(&plan.item_route(it)))),
                );
            }
            Err(e) if is_damage(&e) => summary.damaged.push(DamagedFile {
                path: tgt.display(&plan.item_route(it)),
                error: format!("{e:#}"),
            }),
            Err(e) => {
                fatal.get_or_insert(e);
            }
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    // Hard links to files restored above.
    for it in plan.items.iter() {
        let Some(orig) = it.link_to.map(|i| &plan.items[i]) else {
            continue;
        };
        let from = tgt.display(&plan.item_route(orig));
        if let Some(d) = summary.damaged.iter().find(|d| d.path == from) {
            let error = format!("hard link to {}: {}", from.display(), d.error);
            summary.damaged.push(DamagedFile {
                path: tgt.display(&plan.item_route(it)),
                error,
            });
            continue;
        }
        let linked = (|| {
            let from_dir = tgt.dir(&plan.dir_route(orig.parent), false)?;
            let dir = tgt.dir(&plan.dir_route(it.parent), false)?;
            target::link(&from_dir, &orig.entry.name, &dir, &it.entry.name)
        })();
        linked.map_err(|e| Error::io(format!("linking {}", at(&plan.item_route(it))), e))?;
        summary.files += 1;
    }
    summary.damaged.sort_by(|a, b| a.path.cmp(&b.path));
    // Folder metadata, children before parents, after their content.
    for (i, d) in plan.dirs.iter().enumerate().rev().filter(|(_, d)| d.needed) {
        let route = plan.dir_route(Some(i));
        let fd = tgt
            .dir(&route, false)
            .map_err(|e| Error::io(format!("opening {}", at(&route)), e))?;
        let mut w = Vec::new();
        target::apply_metadata_fd(&fd, &d.entry, &mut w)
            .map_err(|e| Error::io(format!("setting metadata of {}", at(&route)), e))?;
        summary
            .warnings
            .extend(w.into_iter().map(|w| format!("{}: {w}", at(&route))));
    }
    Ok(summary)
}

/// Writes one file; returns its size and warnings. On a repository error
/// the partial file is removed.
fn restore_file(
    repo: &Repository,
    tgt: &Target,
    plan: &Plan,
    it: &PlanItem,
) -> Result<(u64, Vec<String>)> {
    let shown = || tgt.display(&plan.item_route(it)).display().to_string();
    let io = |e| Error::io(format!("writing {}", shown()), e);
    let dir = tgt
        .dir(&plan.dir_route(it.parent), false)
        .map_err(|e| Error::io(format!("opening the folder of {}", shown()), e))?;
    let mut f = target::create_file(&dir, &it.entry.name).map_err(io)?;
    let written = write_file(repo, &mut f, &it.entry, &shown);
    let pos = match written {
        Ok(p) => p,
        Err(e) => {
            drop(f);
            let _ = rustix::fs::unlinkat(
                &dir,
                OsStr::from_bytes(&it.entry.name),
                rustix::fs::AtFlags::empty(),
            );
            return Err(e);
        }
    };
    let mut warnings = Vec::new();
    target::apply_metadata_fd(&f, &it.entry, &mut warnings)
        .map_err(|e| Error::io(format!("setting metadata of {}", shown()), e))?;
    Ok((pos, warnings))
}

/// Writes the content of `entry` into the new file `f`, leaving holes for
/// all-zero chunks; returns the size written.
fn write_file(
    repo: &Repository,
    f: &mut std::fs::File,
    entry: &TreeEntry,
    shown: &dyn Fn() -> String,
) -> Result<u64> {
    let io = |e| Error::io(format!("writing {}", shown()), e);
    let mut pos = 0u64;
    let mut hole = false;
    for_each_blob(repo, &entry.content, |b| {
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
    if hole || pos != entry.size {
        f.set_len(pos).map_err(io)?;
    }
    if pos != entry.size {
        return Err(Error::corrupt(format!(
            "restored {pos} bytes but the snapshot records {}",
            entry.size
        )));
    }
    Ok(pos)
}
