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
//! [`RestoreSummary::damaged`], and the restore goes on; an existing file
//! being updated in place (`--overwrite if-changed`) is instead put back as
//! it was: before each in-place write the bytes it overwrites are saved
//! ([`Undo`]), and a damaged blob writes them back, restores the file's
//! length and mtime, and drops the saved copy. Directory metadata
//! is applied last, children before parents, also when some files failed.

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{EntryKind, TreeEntry, MAX_DEPTH, STREAMS_DIR};
use crate::format::BlobId;
use crate::read::planner;
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::events::{run_op, Event, Events, Op, WarningKind};

pub mod target;

use target::Target;

/// What [`restore`] does with a file that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (restic's default too).
    #[default]
    Always,
    /// Keep it, unread, when its size and mtime match the snapshot. Else
    /// read it at the snapshot's chunk boundaries and hash each range with
    /// the repository's keyed blob id: when every chunk matches and the
    /// size too, keep it (only its metadata is restored); else update it in
    /// place, writing only the chunks that differ and setting its length
    /// (a file with other hard links, without owner write permission, or
    /// whose chunk sizes the index does not give is replaced whole). A
    /// symlink that already points where the snapshot's does is kept (its
    /// owner and mtime restored).
    IfChanged,
    /// Replace it only if its mtime is older than the snapshot's.
    IfNewer,
    /// Keep whatever exists.
    Never,
}

/// Options for [`restore`].
#[derive(Default)]
pub struct RestoreOptions {
    /// Only restore paths matching one of these globs (or below them).
    pub include: Vec<String>,
    /// Skip paths matching these globs.
    pub exclude: Vec<String>,
    /// Existing files in the target.
    pub overwrite: Overwrite,
    /// Remove what the target holds beside the snapshot's entries, in every
    /// folder restored whole (not following symlinks).
    pub delete: bool,
    /// Decide and report ([`RestoreSummary::actions`]), write nothing.
    pub dry_run: bool,
    /// Read every selected file back (written or kept) and compare its
    /// chunk ids with the snapshot's ([`RestoreSummary::verify_failed`]).
    pub verify: bool,
    /// Pack reads kept in flight (1..=64); 0 picks by store kind
    /// ([`crate::read::planner::reads_in_flight`]: 4 local, 16 remote).
    pub reads_in_flight: usize,
    /// Most files held open for writing at once; 0 means
    /// [`MAX_OPEN_FILES`]. Past it, a file is closed after each write and
    /// opened again for the next. Lowered by tests to exercise that path
    /// (`SNAP_TEST_MAX_OPEN_FILES` in the CLI).
    pub max_open_files: usize,
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
    /// Files written (whole, or updated in place: see [`Self::updated`]).
    pub files: u64,
    /// Directories created or restored.
    pub dirs: u64,
    /// Content bytes written to files: whole files, and the differing
    /// chunks of files updated in place (all-zero chunks of new files,
    /// left as holes, count too).
    pub bytes: u64,
    /// Of [`Self::files`]: existing files updated in place by
    /// `--overwrite if-changed` (only their differing chunks written).
    pub updated: u64,
    /// Sealed bytes of file content read from the repository, bytes (with
    /// `dry_run`: not read, 0).
    pub bytes_read: u64,
    /// Files not restored because a blob of theirs is damaged or missing,
    /// in path order; the restore is incomplete when this is not empty.
    pub damaged: Vec<DamagedFile>,
    /// One line each: extended attributes or device nodes that could not
    /// be restored (the restore is otherwise complete).
    pub warnings: Vec<String>,
    /// Existing files kept as they were (`--overwrite` other than always).
    pub kept: u64,
    /// Bytes of existing files read to compare them (`if-changed`, `--verify`).
    pub bytes_compared: u64,
    /// Entries removed by `--delete`.
    pub deleted: u64,
    /// With `dry_run`: what would be done, "write PATH", "update PATH"
    /// (only differing chunks rewritten), "keep PATH", "blocked PATH" (a
    /// folder in the way, see [`Self::blocked`]), "delete PATH", in that
    /// order; decided by the same code as the real run.
    pub actions: Vec<String>,
    /// With `verify`: files whose content on disk does not give the
    /// snapshot's chunk ids, with why.
    pub verify_failed: Vec<DamagedFile>,
    /// Files, symlinks and special files not restored because a folder is
    /// in their place in the target (it is never removed), in path order;
    /// the restore is incomplete when this is not empty.
    pub blocked: Vec<DamagedFile>,
    /// Most files the restore held open for writing at once (at most
    /// [`RestoreOptions::max_open_files`] plus the reads in flight).
    pub peak_open_files: u64,
    /// Seconds spent planning the content reads (catalog look-ups) before
    /// the first pack read ([`planner::PlanStats::plan_seconds`]).
    pub plan_seconds: f64,
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

pub use crate::read::planner::for_each_blob;

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
pub fn find_entry(repo: &Repository, root: &BlobId, path: &str) -> Result<TreeEntry> {
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
    tree: &BlobId,
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
    /// The literal folder prefixes of the include patterns (components),
    /// when every include pattern is anchored at `/`: a folder that is on
    /// none of their ways holds no match and is not read.
    roots: Option<Vec<Vec<Vec<u8>>>>,
}

/// The leading components of an anchored glob that hold no glob syntax
/// (`*?[]{}\`); `None` for a pattern matched against names (no `/`).
/// With `literal_separator(false)` a `*` may cross `/`, but only after the
/// literal components, so a match lies at or below them.
pub(crate) fn literal_root(p: &str) -> Option<Vec<Vec<u8>>> {
    if !p.contains('/') {
        return None;
    }
    Some(
        p.split('/')
            .filter(|c| !c.is_empty())
            .take_while(|c| !c.contains(['*', '?', '[', ']', '{', '}', '\\']))
            .map(|c| c.as_bytes().to_vec())
            .collect(),
    )
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
        let roots = if include.is_empty() {
            None
        } else {
            include.iter().map(|p| literal_root(p)).collect()
        };
        Ok(Filter {
            include: if include.is_empty() {
                None
            } else {
                Some(build(include)?)
            },
            exclude: build(exclude)?,
            roots,
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

    /// Whether the folder at `snap_path` (not selected itself) may hold a
    /// selected entry: it lies on the way to, or below, the literal root
    /// of an include pattern.
    fn may_hold(&self, snap_path: &Path) -> bool {
        let Some(roots) = &self.roots else {
            return true;
        };
        let comps: Vec<&[u8]> = snap_path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect();
        roots
            .iter()
            .any(|r| r.iter().zip(&comps).all(|(a, b)| a.as_slice() == *b))
    }
}

/// A folder met by the plan: created when `needed`. Its route is found
/// through `parent` (no path is stored per entry, to keep a plan of
/// millions of files small).
struct PlanDir {
    entry: TreeEntry,
    parent: Option<usize>,
    needed: bool,
    /// With `--delete`, for a folder restored whole: every name its tree
    /// holds (what else the target folder holds is removed).
    names: Option<std::collections::HashSet<Vec<u8>>>,
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
    /// With `--delete` and no include pattern: the names of the root tree.
    root_names: Option<std::collections::HashSet<Vec<u8>>>,
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

    /// Walks the trees below `root` breadth-first, one level at a time
    /// (each level's trees read concurrently, [`crate::read::trees`]; depth
    /// checked). Folders that cannot hold a selected entry are not read.
    fn build(repo: &Repository, root: &BlobId, filter: &Filter, delete: bool) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
        // (tree, its folder in `dirs`, its snapshot path, selected?)
        type Level = Vec<(BlobId, Option<usize>, PathBuf, bool)>;
        let mut level: Level = vec![(*root, None, PathBuf::from("/"), filter.include.is_none())];
        let mut depth = 1;
        while !level.is_empty() {
            for (_, _, snap_dir, _) in &level {
                check_depth(depth, || snap_dir.display().to_string())?;
            }
            let ids: Vec<BlobId> = level.iter().map(|l| l.0).collect();
            let mut trees = crate::read::trees::read_trees(repo, &ids);
            // Uses left per tree: the last use takes the tree, earlier ones clone it.
            let mut uses: HashMap<BlobId, usize> = HashMap::new();
            for id in &ids {
                *uses.entry(*id).or_default() += 1;
            }
            let mut next: Level = Vec::new();
            for (tid, dir, snap_dir, dir_selected) in level {
                let left = uses.get_mut(&tid).map(|n| {
                    *n -= 1;
                    *n
                });
                let read = if left == Some(0) {
                    trees.remove(&tid)
                } else {
                    match trees.get(&tid) {
                        Some(Ok(t)) => Some(Ok(t.clone())),
                        Some(Err(e)) => Some(Err(Error::new(e.kind(), format!("{e:#}")))),
                        None => None,
                    }
                };
                let tree = match (read, dir) {
                    (Some(Ok(t)), _) => t,
                    // A damaged folder listing below the root: report it, restore the rest.
                    (Some(Err(e)), Some(d)) if is_damage(&e) => {
                        plan.unreadable.push((d, format!("{e:#}")));
                        continue;
                    }
                    (Some(Err(e)), _) => return Err(e),
                    (None, _) => {
                        return Err(Error::corrupt(format!("tree {} was not read", tid.short())))
                    }
                };
                if delete && dir_selected {
                    let names = tree.entries.iter().map(|e| e.name.clone()).collect();
                    match dir {
                        Some(d) => plan.dirs[d].names = Some(names),
                        None => plan.root_names = Some(names),
                    }
                }
                for e in tree.entries {
                    let snap_path = snap_dir.join(OsStr::from_bytes(&e.name));
                    if filter.excluded(&snap_path) {
                        continue;
                    }
                    let selected = filter.selected(&snap_path, dir_selected);
                    match e.kind {
                        EntryKind::Dir => {
                            if !selected && !filter.may_hold(&snap_path) {
                                continue;
                            }
                            let sub = e
                                .subtree
                                .ok_or_else(|| Error::corrupt("directory entry without subtree"))?;
                            let idx = plan.dirs.len();
                            plan.dirs.push(PlanDir {
                                entry: e,
                                parent: dir,
                                needed: false,
                                names: None,
                            });
                            if selected {
                                plan.need(Some(idx));
                            }
                            next.push((sub, Some(idx), snap_path, selected));
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
            level = next;
            depth += 1;
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

use crate::read::planner::is_damage;

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
    root: &BlobId,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let events = repo.events();
    run_op(events, Op::Restore, || {
        restore_in(repo, root, target, opts, events)
    })
}

fn restore_in(
    repo: &Repository,
    root: &BlobId,
    target: &Path,
    opts: &RestoreOptions,
    events: &dyn Events,
) -> Result<RestoreSummary> {
    let filter = Filter::new(&opts.include, &opts.exclude)?;
    let plan = Plan::build(repo, root, &filter, opts.delete)?;
    if opts.dry_run {
        return dry_run(repo, &plan, target, opts);
    }
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

    let dirs = DirFds::new(&tgt, &plan);
    // Folders, parents first.
    for (i, _) in plan.dirs.iter().enumerate().filter(|(_, d)| d.needed) {
        dirs.get(Some(i), true)
            .map_err(|e| Error::io(format!("creating {}", at(&plan.dir_route(Some(i)))), e))?;
        summary.dirs += 1;
    }
    // Symlinks and special files.
    for it in plan
        .items
        .iter()
        .filter(|i| i.entry.kind != EntryKind::File)
    {
        let e = &it.entry;
        let dir = dirs.get(it.parent, false).map_err(|err| {
            Error::io(
                format!("opening the folder of {}", at(&plan.item_route(it))),
                err,
            )
        })?;
        if let Some(error) = blocked(&tgt, &plan, it) {
            summary.blocked.push(DamagedFile {
                path: tgt.display(&plan.item_route(it)),
                error,
            });
            continue;
        }
        if let Decision::Keep = decide_special(&tgt, &plan, it, opts.overwrite, true)? {
            summary.kept += 1;
            continue;
        }
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
                let path = at(&plan.item_route(it));
                events.event(&Event::warning(
                    WarningKind::Special,
                    Some(path.clone()),
                    err.to_string(),
                ));
                summary
                    .warnings
                    .push(format!("cannot create device {path}: {err}"));
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
    events.event(&Event::Totals {
        op: Op::Restore,
        files: files.len() as u64,
        bytes: Some(total),
    });
    files.sort_by_key(|f| std::cmp::Reverse(f.entry.size));
    // A folder where a file goes is never removed: that file is named and
    // skipped, the rest of the restore goes on.
    files.retain(|it| match blocked(&tgt, &plan, it) {
        Some(error) => {
            summary.blocked.push(DamagedFile {
                path: tgt.display(&plan.item_route(it)),
                error,
            });
            false
        }
        None => true,
    });
    let all_files = files.clone();
    // What to do with each file: written whole unless decided otherwise.
    let mut updates: Vec<Option<Update>> = Vec::new();
    if opts.overwrite != Overwrite::Always {
        let decided: Vec<Result<(Decision, u64)>> = files
            .par_iter()
            .map(|it| decide(repo, &tgt, &plan, it, opts.overwrite, true))
            .collect();
        let mut keep = Vec::with_capacity(files.len());
        for d in decided {
            let (d, n) = d?;
            summary.bytes_compared += n;
            match d {
                Decision::Keep => {
                    summary.kept += 1;
                    keep.push(true);
                }
                // Not from `decide`: blocked files were taken out above.
                Decision::Blocked(_) => keep.push(true),
                Decision::Write => {
                    keep.push(false);
                    updates.push(None);
                }
                Decision::Update(u) => {
                    keep.push(false);
                    updates.push(Some(u));
                }
            }
        }
        let mut k = keep.into_iter();
        files.retain(|_| !k.next().unwrap_or(false));
    } else {
        updates.resize_with(files.len(), || None);
    }
    let sink = TargetFiles {
        tgt: &tgt,
        dirs: &dirs,
        plan: &plan,
        slots: updates
            .iter()
            .map(|u| {
                Mutex::new(Slot {
                    created: u.as_ref().map(|u| u.dev_ino),
                    update: u.is_some(),
                    ..Slot::default()
                })
            })
            .collect(),
        files: &files,
        open: AtomicUsize::new(0),
        peak_open: AtomicUsize::new(0),
        max_open: if opts.max_open_files == 0 {
            MAX_OPEN_FILES
        } else {
            opts.max_open_files
        },
        events,
        saved: Mutex::new(Saved::None),
    };
    let contents: Vec<planner::FileContent> = files
        .iter()
        .zip(&updates)
        .map(|(it, u)| planner::FileContent {
            content: &it.entry.content,
            size: it.entry.size,
            only: u.as_ref().map(|u| u.differ.as_slice()),
        })
        .collect();
    let threads = planner::reads_in_flight(repo.store(), opts.reads_in_flight);
    let stats = planner::restore_files(repo, &contents, &sink, threads)?;
    summary.bytes_read = stats.bytes_read;
    summary.plan_seconds = stats.plan_seconds;
    summary.peak_open_files = sink.peak_open.load(Ordering::Relaxed) as u64;
    for (it, slot) in files.iter().zip(sink.slots) {
        let slot = slot.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(error) = slot.damaged {
            summary.damaged.push(DamagedFile {
                path: tgt.display(&plan.item_route(it)),
                error,
            });
        } else if slot.finished {
            summary.bytes += slot.written;
            summary.files += 1;
            summary.updated += slot.update as u64;
            for w in slot.warnings {
                metadata_warning(events, &mut summary, at(&plan.item_route(it)), w);
            }
        }
    }
    if opts.verify {
        let damaged: std::collections::HashSet<PathBuf> =
            summary.damaged.iter().map(|d| d.path.clone()).collect();
        // Every selected file, kept ones too: the target is checked against the snapshot.
        let checked: Vec<(PathBuf, Result<(bool, u64)>)> = all_files
            .par_iter()
            .map(|it| (tgt.display(&plan.item_route(it)), it))
            .filter(|(p, _)| !damaged.contains(p))
            .map(|(p, it)| {
                let r = (|| {
                    let dir = tgt.dir(&plan.dir_route(it.parent), false)?;
                    let f = target::open_existing(&dir, &it.entry.name)?;
                    let len = f.metadata()?.len();
                    Ok(match compare_chunks(repo, &f, &it.entry)? {
                        Some(c) => (c.same(len, it.entry.size), c.read),
                        None => (false, 0),
                    })
                })()
                .map_err(|e: std::io::Error| Error::io(format!("verifying {}", p.display()), e));
                (p, r)
            })
            .collect();
        for (path, r) in checked {
            match r {
                Ok((true, n)) => summary.bytes_compared += n,
                Ok((false, n)) => {
                    summary.bytes_compared += n;
                    summary.verify_failed.push(DamagedFile {
                        path,
                        error: "its content on disk does not match the snapshot".into(),
                    });
                }
                Err(e) => summary.verify_failed.push(DamagedFile {
                    path,
                    error: format!("{e:#}"),
                }),
            }
        }
        summary.verify_failed.sort_by(|a, b| a.path.cmp(&b.path));
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
        if let Some(error) = blocked(&tgt, &plan, it) {
            summary.blocked.push(DamagedFile {
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
    summary.blocked.sort_by(|a, b| a.path.cmp(&b.path));
    if opts.delete {
        for (route, names) in deletable(&plan) {
            let fd = tgt
                .dir(&route, false)
                .map_err(|e| Error::io(format!("opening {}", at(&route)), e))?;
            let there =
                target::names(&fd).map_err(|e| Error::io(format!("listing {}", at(&route)), e))?;
            for n in there.into_iter().filter(|n| !names.contains(n)) {
                let mut r = route.clone();
                r.push(n.clone());
                target::remove_at(&fd, &n)
                    .map_err(|e| Error::io(format!("removing {}", at(&r)), e))?;
                summary.deleted += 1;
            }
        }
    }
    // Folder metadata, children before parents, after their content.
    for (i, d) in plan.dirs.iter().enumerate().rev().filter(|(_, d)| d.needed) {
        let route = || plan.dir_route(Some(i));
        let fd = dirs
            .get(Some(i), false)
            .map_err(|e| Error::io(format!("opening {}", at(&route())), e))?;
        let mut w = Vec::new();
        target::apply_metadata_fd(&*fd, &d.entry, &mut w)
            .map_err(|e| Error::io(format!("setting metadata of {}", at(&route())), e))?;
        for w in w {
            metadata_warning(events, &mut summary, at(&route()), w);
        }
    }
    Ok(summary)
}

/// Records that metadata of `path` could not be restored (`why`): an event
/// and a line of the summary's warnings.
fn metadata_warning(events: &dyn Events, summary: &mut RestoreSummary, path: String, why: String) {
    summary.warnings.push(format!("{path}: {why}"));
    events.event(&Event::warning(WarningKind::Metadata, Some(path), why));
}

/// The names of a folder's entries in the snapshot.
type NameSet = std::collections::HashSet<Vec<u8>>;

/// The folders `--delete` cleans: (route from the target, the names the
/// snapshot's tree holds there), for folders restored whole.
fn deletable(plan: &Plan) -> Vec<(Vec<Vec<u8>>, &NameSet)> {
    let mut out = Vec::new();
    if let Some(n) = &plan.root_names {
        out.push((Vec::new(), n));
    }
    for (i, d) in plan.dirs.iter().enumerate() {
        if let (true, Some(n)) = (d.needed, &d.names) {
            out.push((plan.dir_route(Some(i)), n));
        }
    }
    out
}

/// What a restore does with an existing file at a file's place.
enum Decision {
    /// Leave it (its metadata restored when `if-changed` read it).
    Keep,
    /// Replace it by a new file (or create one where there is none).
    Write,
    /// Write only some chunks into it and set its length.
    Update(Update),
    /// Leave it and restore nothing there: a folder is in the way (it is
    /// never removed); why.
    Blocked(String),
}

/// Why plan item `it` cannot be restored at its place in the target: a
/// folder is there (a folder is never removed to make room), or, for a
/// hard link, at its original's place. `None` when nothing blocks it.
/// Used alike by the real run and the dry run.
fn blocked(tgt: &Target, plan: &Plan, it: &PlanItem) -> Option<String> {
    let folder = |it: &PlanItem| {
        tgt.dir(&plan.dir_route(it.parent), false)
            .is_ok_and(|d| target::folder_at(&d, &it.entry.name))
    };
    if folder(it) {
        return Some("a folder is in the way (it is not removed)".into());
    }
    let orig = it.link_to.map(|i| &plan.items[i])?;
    folder(orig).then(|| {
        format!(
            "hard link to {}: a folder is in the way (it is not removed)",
            tgt.display(&plan.item_route(orig)).display()
        )
    })
}

/// What a restore does with the existing entry at the place of symlink,
/// FIFO or device node `it` (not [`blocked`]) under `mode`: `never` keeps
/// whatever is there; `if-changed` keeps a symlink that already points
/// where the snapshot's does (with `apply`, its owner and mtime are set
/// to the snapshot's); else it is made anew ([`Decision::Write`]).
/// Errors: setting a kept symlink's metadata.
fn decide_special(
    tgt: &Target,
    plan: &Plan,
    it: &PlanItem,
    mode: Overwrite,
    apply: bool,
) -> Result<Decision> {
    let e = &it.entry;
    let Ok(dir) = tgt.dir(&plan.dir_route(it.parent), false) else {
        return Ok(Decision::Write);
    };
    let Ok(Some(_)) = target::stat_at(&dir, &e.name) else {
        return Ok(Decision::Write);
    };
    let same_link = || {
        e.kind == EntryKind::Symlink
            && target::read_link_at(&dir, &e.name)
                .is_ok_and(|l| l.as_deref() == Some(&e.link_target[..]))
    };
    match mode {
        Overwrite::Never => Ok(Decision::Keep),
        Overwrite::IfChanged if same_link() => {
            if apply {
                target::apply_metadata_at(&dir, &e.name, e).map_err(|err| {
                    Error::io(
                        format!(
                            "setting metadata of {}",
                            tgt.display(&plan.item_route(it)).display()
                        ),
                        err,
                    )
                })?;
            }
            Ok(Decision::Keep)
        }
        _ => Ok(Decision::Write),
    }
}

/// An existing file updated in place.
struct Update {
    /// (dev, ino) of the file compared: the one written.
    dev_ino: (u64, u64),
    /// Per chunk of the snapshot's content: whether it differs on disk.
    differ: Vec<bool>,
}

/// Decides what to do with the existing file at `it`'s place under `mode`;
/// returns the decision and the bytes of the file read to make it. With
/// `apply`, a file kept by `if-changed` after reading it gets the
/// snapshot's metadata.
fn decide(
    repo: &Repository,
    tgt: &Target,
    plan: &Plan,
    it: &PlanItem,
    mode: Overwrite,
    apply: bool,
) -> Result<(Decision, u64)> {
    let shown = || tgt.display(&plan.item_route(it)).display().to_string();
    let io = |e| Error::io(format!("comparing {}", shown()), e);
    if mode == Overwrite::Always {
        return Ok((Decision::Write, 0));
    }
    let Ok(dir) = tgt.dir(&plan.dir_route(it.parent), false) else {
        return Ok((Decision::Write, 0));
    };
    let e = &it.entry;
    let Some(st) = target::stat_at(&dir, &e.name).map_err(io)? else {
        return Ok((Decision::Write, 0));
    };
    #[allow(clippy::unnecessary_cast)] // i32 on some targets
    let mtime = (st.st_mtime as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64);
    let keep = |k: bool| if k { Decision::Keep } else { Decision::Write };
    match mode {
        Overwrite::Never => Ok((Decision::Keep, 0)),
        Overwrite::IfNewer => Ok((keep(mtime >= e.mtime_ns), 0)),
        _ => {
            if !target::is_file(&st) {
                return Ok((Decision::Write, 0));
            }
            if st.st_size as u64 == e.size && mtime == e.mtime_ns {
                return Ok((Decision::Keep, 0));
            }
            let f = target::open_existing(&dir, &e.name).map_err(io)?;
            // The file compared is the file at the name (not swapped meanwhile).
            let md = f.metadata().map_err(io)?;
            {
                use std::os::unix::fs::MetadataExt;
                #[allow(clippy::unnecessary_cast)]
                if (md.dev(), md.ino()) != (st.st_dev as u64, st.st_ino as u64) || !md.is_file() {
                    return Ok((Decision::Write, 0));
                }
            }
            let Some(c) = compare_chunks(repo, &f, e).map_err(io)? else {
                return Ok((Decision::Write, 0));
            };
            if c.same(md.len(), e.size) {
                if apply {
                    let mut w = Vec::new();
                    target::apply_metadata_fd(&f, e, &mut w).map_err(|err| {
                        Error::io(format!("setting metadata of {}", shown()), err)
                    })?;
                }
                return Ok((Decision::Keep, c.read));
            }
            // Written in place only when that touches this file alone and
            // needs no permission change: one link, owner may write.
            {
                use std::os::unix::fs::MetadataExt;
                if md.nlink() != 1 || md.mode() & 0o200 == 0 {
                    return Ok((Decision::Write, c.read));
                }
                Ok((
                    Decision::Update(Update {
                        dev_ino: (md.dev(), md.ino()),
                        differ: c.differ,
                    }),
                    c.read,
                ))
            }
        }
    }
}

/// An existing file compared with a snapshot's file chunk by chunk.
struct Compared {
    /// Per chunk of the snapshot's content: whether the file's bytes at
    /// that chunk's place differ (or the file ends before the chunk does).
    differ: Vec<bool>,
    /// Bytes of the file read.
    read: u64,
}

impl Compared {
    /// Whether the file, `len` bytes long, holds exactly `size` bytes of
    /// matching chunks.
    fn same(&self, len: u64, size: u64) -> bool {
        len == size && !self.differ.iter().any(|&d| d)
    }
}

/// Compares file `f` with `e`'s content at the snapshot's chunk
/// boundaries: the bytes at each chunk's place (sizes from the index) are
/// hashed with the repository's keyed BLAKE3 blob id, as a backup names a
/// chunk, and compared with `e.content`. Chunks past the file's end
/// differ without being read. `None` when the index does not give every
/// chunk's size (the file is then written whole). Errors: reading `f`.
fn compare_chunks(
    repo: &Repository,
    f: &std::fs::File,
    e: &TreeEntry,
) -> std::io::Result<Option<Compared>> {
    use std::os::unix::fs::FileExt;
    let mut sizes = Vec::with_capacity(e.content.len());
    {
        let cat = repo.catalog();
        for id in &e.content {
            match cat.lookup(id) {
                Ok(Some(l)) => sizes.push(l.raw_len as u64),
                _ => return Ok(None),
            }
        }
    }
    let len = f.metadata()?.len();
    let mut buf = Vec::new();
    let (mut off, mut read) = (0u64, 0u64);
    let mut differ = Vec::with_capacity(sizes.len());
    for (id, &n) in e.content.iter().zip(&sizes) {
        let end = off.saturating_add(n);
        if end > len {
            differ.push(true);
        } else {
            buf.resize(n as usize, 0);
            match f.read_exact_at(&mut buf, off) {
                Ok(()) => {
                    read += n;
                    differ.push(repo.key().blob_id(&buf) != *id);
                }
                // Shrunk while read: differs.
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => differ.push(true),
                Err(err) => return Err(err),
            }
        }
        off = end;
    }
    Ok(Some(Compared { differ, read }))
}

/// Bytes of `e`'s chunks marked in `differ` (sizes from the index).
/// Errors: the catalog's.
fn changed_bytes(repo: &Repository, e: &TreeEntry, differ: &[bool]) -> Result<u64> {
    let cat = repo.catalog();
    let mut n = 0;
    for (id, _) in e.content.iter().zip(differ).filter(|(_, &d)| d) {
        n += cat.lookup(id)?.map_or(0, |l| l.raw_len as u64);
    }
    Ok(n)
}

/// [`restore`] with `dry_run`: decides as a restore would and lists the
/// actions in [`RestoreSummary::actions`]; nothing is created or changed.
fn dry_run(
    repo: &Repository,
    plan: &Plan,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    let mut summary = RestoreSummary::default();
    let tgt = if target.is_dir() {
        Some(
            Target::open(target)
                .map_err(|e| Error::io(format!("opening {}", target.display()), e))?,
        )
    } else {
        None
    };
    let shown = |route: &[Vec<u8>]| {
        let mut p = target.to_path_buf();
        for c in route {
            p.push(OsStr::from_bytes(c));
        }
        p.display().to_string()
    };
    let (mut writes, mut updates, mut keeps, mut blocks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    summary.dirs = plan.dirs.iter().filter(|d| d.needed).count() as u64;
    for it in plan.items.iter() {
        let route = plan.item_route(it);
        let file = it.entry.kind == EntryKind::File && it.link_to.is_none();
        // The same decisions as the real run, in the same order: blocked
        // first, then by kind.
        let d = match &tgt {
            Some(t) => match blocked(t, plan, it) {
                Some(why) => Decision::Blocked(why),
                None if file => {
                    let (d, n) = decide(repo, t, plan, it, opts.overwrite, false)?;
                    summary.bytes_compared += n;
                    d
                }
                None if it.link_to.is_some() => Decision::Write,
                None => decide_special(t, plan, it, opts.overwrite, false)?,
            },
            None => Decision::Write,
        };
        match d {
            Decision::Keep => {
                summary.kept += 1;
                keeps.push(format!("keep {}", shown(&route)));
            }
            Decision::Write => {
                summary.files += 1;
                if file {
                    summary.bytes += it.entry.size;
                }
                writes.push(format!("write {}", shown(&route)));
            }
            Decision::Update(u) => {
                summary.files += 1;
                summary.updated += 1;
                summary.bytes += changed_bytes(repo, &it.entry, &u.differ)?;
                updates.push(format!("update {}", shown(&route)));
            }
            Decision::Blocked(error) => {
                blocks.push(format!("blocked {}", shown(&route)));
                summary.blocked.push(DamagedFile {
                    path: PathBuf::from(shown(&route)),
                    error,
                });
            }
        }
    }
    summary.blocked.sort_by(|a, b| a.path.cmp(&b.path));
    summary.actions = writes;
    summary.actions.extend(updates);
    summary.actions.extend(keeps);
    summary.actions.extend(blocks);
    if let (true, Some(t)) = (opts.delete, &tgt) {
        for (route, names) in deletable(plan) {
            let Ok(fd) = t.dir(&route, false) else {
                continue;
            };
            let there = target::names(&fd)
                .map_err(|e| Error::io(format!("listing {}", shown(&route)), e))?;
            for n in there.into_iter().filter(|n| !names.contains(n)) {
                let mut r = route.clone();
                r.push(n);
                summary.deleted += 1;
                summary.actions.push(format!("delete {}", shown(&r)));
            }
        }
    }
    Ok(summary)
}

/// Folder handles kept open by a restore at most (each plan folder's handle
/// is kept once opened, up to this many, or fewer when the process may open
/// few files: see [`DirFds::new`]).
const MAX_DIR_FDS: usize = 4096;

/// Open handles of a plan's folders below a [`Target`]: folder `i` is
/// opened once, relative to its parent's handle (so a file costs one
/// `openat` instead of one per component of its path), and kept until the
/// restore ends. Past the cap, a folder is opened from its nearest kept
/// ancestor each time it is asked for and closed after use.
struct DirFds<'a> {
    tgt: &'a Target,
    plan: &'a Plan,
    /// One per folder of `plan.dirs`, then the target itself.
    fds: Vec<std::sync::OnceLock<OwnedFd>>,
    kept: AtomicUsize,
    cap: usize,
}

/// A folder handle from [`DirFds::get`]: kept by the cache or owned.
enum DirFd<'a> {
    Kept(&'a OwnedFd),
    Owned(OwnedFd),
}

impl std::ops::Deref for DirFd<'_> {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        match self {
            DirFd::Kept(f) => f,
            DirFd::Owned(f) => f,
        }
    }
}

impl<'a> DirFds<'a> {
    /// A cache for `plan`'s folders below `tgt`, keeping at most
    /// [`MAX_DIR_FDS`] handles and at most a quarter of the process's open
    /// file limit (`RLIMIT_NOFILE`, soft), so files, sockets and the
    /// catalog keep room.
    fn new(tgt: &'a Target, plan: &'a Plan) -> DirFds<'a> {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let cap = usize::try_from(limit / 4)
            .unwrap_or(usize::MAX)
            .min(MAX_DIR_FDS);
        DirFds {
            tgt,
            plan,
            fds: (0..=plan.dirs.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            kept: AtomicUsize::new(0),
            cap,
        }
    }

    /// The handle of folder `d` (`None`: the target itself), opened with
    /// `create` as [`Target::dir`] does when not kept yet. Errors: those of
    /// [`target::child_dir`].
    fn get(&self, d: Option<usize>, create: bool) -> std::io::Result<DirFd<'_>> {
        let slot = &self.fds[d.unwrap_or(self.plan.dirs.len())];
        if let Some(f) = slot.get() {
            return Ok(DirFd::Kept(f));
        }
        let fd = match d {
            None => self.tgt.dir(&[], false)?,
            Some(i) => {
                let dir = &self.plan.dirs[i];
                let parent = self.get(dir.parent, create)?;
                target::child_dir(parent.as_fd(), &dir.entry.name, create)?
            }
        };
        if self.kept.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.kept.fetch_sub(1, Ordering::Relaxed);
            return Ok(DirFd::Owned(fd));
        }
        match slot.set(fd) {
            Ok(()) => Ok(DirFd::Kept(slot.get().expect("set above"))),
            Err(fd) => {
                self.kept.fetch_sub(1, Ordering::Relaxed);
                Ok(DirFd::Owned(fd))
            }
        }
    }
}

/// Most files held open at once by a restore by default; past this, a file
/// is closed after each write and opened again for the next.
pub const MAX_OPEN_FILES: usize = 128;

/// The state of one file being restored.
#[derive(Default)]
struct Slot {
    /// Open for writing.
    fd: Option<std::fs::File>,
    /// (dev, ino) of the file created, once it is.
    created: Option<(u64, u64)>,
    /// Why it cannot be restored (it is removed).
    damaged: Option<String>,
    /// Content, length and metadata done.
    finished: bool,
    /// From applying its metadata.
    warnings: Vec<String>,
    /// An existing file updated in place (`created` holds its dev/ino):
    /// opened, never created, and all-zero chunks are written, not skipped.
    update: bool,
    /// Content bytes handed to it.
    written: u64,
    /// One past the last byte written, bytes (the length of a new file).
    end: u64,
    /// For an update: what its in-place writes overwrote, made on the first.
    undo: Option<Undo>,
}

/// The bytes an in-place update overwrote, to put an existing file back as
/// it was when a blob it needs turns out damaged (the user's copy is not
/// lost to a failing restore). The bytes themselves are in the restore's
/// [`Saved`] store.
struct Undo {
    /// Length of the file before the first write, bytes.
    len: u64,
    /// Its mtime then.
    mtime: Option<std::time::SystemTime>,
    /// (offset in the file, length, offset in the store) of each saved range.
    ranges: Vec<(u64, u64, u64)>,
}

/// Bytes the undo store keeps in memory at most when the target's file
/// system has no `O_TMPFILE`; past them it spills to a named temporary
/// file (see [`Saved`]).
const UNDO_MEMORY_MAX: u64 = 64 << 20;

/// Where a restore saves the bytes its in-place updates overwrite: one
/// unnamed temporary file in the target folder (`O_TMPFILE`, gone with the
/// process, on the target's file system). Where the file system has no
/// `O_TMPFILE`, memory up to a bound ([`UNDO_MEMORY_MAX`]), then a named
/// file `.snap-undo-PID-N` made exclusively (`O_EXCL`) in the target
/// folder and unlinked at once, so it too is gone with the process. Made
/// on the first in-place write; append only.
#[derive(Default)]
enum Saved {
    #[default]
    None,
    File(std::fs::File, u64),
    Memory(Vec<u8>),
}

/// How a [`Saved`] store is made: whether to try `O_TMPFILE`, and the
/// memory bound of the fallback, bytes.
#[derive(Clone, Copy)]
struct SavedPolicy {
    tmpfile: bool,
    memory_max: u64,
}

impl SavedPolicy {
    /// `O_TMPFILE` and [`UNDO_MEMORY_MAX`]; for tests, `SNAP_TEST_UNDO_MEMORY`
    /// (bytes) forces the fallback with that bound.
    fn from_env() -> SavedPolicy {
        match std::env::var("SNAP_TEST_UNDO_MEMORY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            Some(memory_max) => SavedPolicy {
                tmpfile: false,
                memory_max,
            },
            None => SavedPolicy {
                tmpfile: true,
                memory_max: UNDO_MEMORY_MAX,
            },
        }
    }
}

/// Creates `.snap-undo-PID-N` exclusively in folder `d` (read/write, mode
/// 0600) and unlinks it at once: an unnamed file where `O_TMPFILE` is not
/// available. Errors: creating or unlinking it (after 100 names taken).
fn named_tmpfile(d: &OwnedFd) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    for n in 0..100u32 {
        let name = format!(".snap-undo-{}-{n}", std::process::id());
        match rustix::fs::openat(
            d,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                rustix::fs::unlinkat(d, name.as_str(), rustix::fs::AtFlags::empty())?;
                return Ok(std::fs::File::from(fd));
            }
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other(
        "no free name for the undo file (.snap-undo-*)",
    ))
}

impl Saved {
    /// Appends `buf`; returns its offset in the store.
    fn append(&mut self, tgt: &Target, buf: &[u8]) -> std::io::Result<u64> {
        self.append_with(tgt, buf, SavedPolicy::from_env())
    }

    /// [`Saved::append`] under `policy`. Errors: the target folder cannot
    /// be opened or the temporary file made or written (the in-place
    /// update then fails and its file is put back).
    fn append_with(
        &mut self,
        tgt: &Target,
        buf: &[u8],
        policy: SavedPolicy,
    ) -> std::io::Result<u64> {
        use rustix::fs::{Mode, OFlags};
        use std::os::unix::fs::FileExt;
        if let Saved::None = self {
            let tmp = policy
                .tmpfile
                .then(|| tgt.dir(&[], false).ok())
                .flatten()
                .and_then(|d| {
                    rustix::fs::openat(
                        &d,
                        ".",
                        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .ok()
                });
            *self = match tmp {
                Some(fd) => Saved::File(std::fs::File::from(fd), 0),
                None => Saved::Memory(Vec::new()),
            };
        }
        if let Saved::Memory(m) = self {
            if m.len() as u64 + buf.len() as u64 > policy.memory_max {
                let f = named_tmpfile(&tgt.dir(&[], false)?)?;
                f.write_all_at(m, 0)?;
                *self = Saved::File(f, m.len() as u64);
            }
        }
        match self {
            Saved::File(f, size) => {
                let at = *size;
                f.write_all_at(buf, at)?;
                *size += buf.len() as u64;
                Ok(at)
            }
            Saved::Memory(m) => {
                m.extend_from_slice(buf);
                Ok((m.len() - buf.len()) as u64)
            }
            Saved::None => Err(std::io::Error::other("no undo store")),
        }
    }

    /// Reads `buf.len()` saved bytes from offset `at` of the store.
    /// Errors: reading the file, a range past what was saved.
    fn read(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        match self {
            Saved::File(f, _) => f.read_exact_at(buf, at),
            Saved::Memory(m) => {
                let saved = usize::try_from(at)
                    .ok()
                    .and_then(|a| m.get(a..a.checked_add(buf.len())?))
                    .ok_or_else(|| std::io::Error::other("undo range past the saved bytes"))?;
                buf.copy_from_slice(saved);
                Ok(())
            }
            Saved::None => Err(std::io::Error::other("nothing was saved")),
        }
    }
}

impl Undo {
    /// Starts an undo log for `f`: its length and mtime now.
    fn new(f: &std::fs::File) -> std::io::Result<Undo> {
        let md = f.metadata()?;
        Ok(Undo {
            len: md.len(),
            mtime: md.modified().ok(),
            ranges: Vec::new(),
        })
    }

    /// Saves bytes `offset..offset + len` of `f` (open for reading; clipped
    /// to its old length) into `saved` before they are overwritten.
    fn save(
        &mut self,
        tgt: &Target,
        saved: &Mutex<Saved>,
        f: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = (offset + len).min(self.len);
        if end <= offset {
            return Ok(());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        f.read_exact_at(&mut buf, offset)?;
        let at = saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(tgt, &buf)?;
        self.ranges.push((offset, buf.len() as u64, at));
        Ok(())
    }

    /// Writes the saved bytes back into `f`, sets its old length and mtime.
    fn roll_back(self, saved: &Mutex<Saved>, f: &std::fs::File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        for &(offset, len, at) in self.ranges.iter().rev() {
            let mut buf = vec![0u8; len as usize];
            saved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(at, &mut buf)?;
            f.write_all_at(&buf, offset)?;
        }
        f.set_len(self.len)?;
        if let Some(t) = self.mtime {
            f.set_modified(t)?;
        }
        Ok(())
    }
}

/// The planner's [`planner::FileSink`] for a directory restore: file `i`
/// is `files[i]`, created through [`Target`] on its first non-zero write
/// (or at its finish), written with `pwrite`, all-zero blobs left as holes.
struct TargetFiles<'a> {
    tgt: &'a Target,
    dirs: &'a DirFds<'a>,
    plan: &'a Plan,
    files: &'a [&'a PlanItem],
    slots: Vec<Mutex<Slot>>,
    /// Files open now.
    open: AtomicUsize,
    /// Most files open at once so far.
    peak_open: AtomicUsize,
    /// Past this many open files, a file is closed after each write.
    max_open: usize,
    events: &'a dyn Events,
    /// What in-place updates overwrote (see [`Undo`]).
    saved: Mutex<Saved>,
}

impl TargetFiles<'_> {
    fn shown(&self, it: &PlanItem) -> String {
        self.tgt
            .display(&self.plan.item_route(it))
            .display()
            .to_string()
    }

    fn lock(&self, file: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[file].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens file `i` (creating it the first time); errors are the target's.
    fn open<'s>(&self, i: usize, slot: &'s mut Slot) -> Result<&'s std::fs::File> {
        if slot.fd.is_none() {
            use std::os::unix::fs::MetadataExt;
            let it = self.files[i];
            let dir = self
                .dirs
                .get(it.parent, false)
                .map_err(|e| Error::io(format!("opening the folder of {}", self.shown(it)), e))?;
            let io = |e| Error::io(format!("writing {}", self.shown(it)), e);
            let f = match slot.created {
                None => {
                    let f = target::create_file(&dir, &it.entry.name).map_err(io)?;
                    let md = f.metadata().map_err(io)?;
                    slot.created = Some((md.dev(), md.ino()));
                    f
                }
                Some(di) => {
                    let f =
                        target::reopen_file(&dir, &it.entry.name, di, slot.update).map_err(io)?;
                    if slot.update && slot.undo.is_none() {
                        slot.undo = Some(Undo::new(&f).map_err(io)?);
                    }
                    f
                }
            };
            let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak_open.fetch_max(now, Ordering::Relaxed);
            slot.fd = Some(f);
        }
        Ok(slot.fd.as_ref().expect("opened above"))
    }

    fn close(&self, slot: &mut Slot) {
        if slot.fd.take().is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl planner::FileSink for TargetFiles<'_> {
    fn write(&self, file: usize, offset: u64, data: &[u8], zero: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let mut slot = self.lock(file);
        if slot.damaged.is_some() {
            return Ok(());
        }
        // A new file gets a hole for an all-zero chunk (finish sets the
        // length, the file stays sparse); a file updated in place gets the zeros.
        if !zero || slot.update {
            let io = |e| Error::io(format!("writing {}", self.shown(self.files[file])), e);
            self.open(file, &mut slot)?;
            {
                let s = &mut *slot;
                let f = s.fd.as_ref().expect("opened above");
                if let Some(u) = s.undo.as_mut() {
                    u.save(self.tgt, &self.saved, f, offset, data.len() as u64)
                        .map_err(io)?;
                }
                f.write_all_at(data, offset).map_err(io)?;
            }
            if self.open.load(Ordering::Relaxed) > self.max_open {
                self.close(&mut slot);
            }
            slot.end = slot.end.max(offset + data.len() as u64);
        }
        slot.written += data.len() as u64;
        self.events.event(&Event::Bytes {
            bytes: data.len() as u64,
        });
        Ok(())
    }

    fn finish(&self, file: usize) -> Result<()> {
        let mut slot = self.lock(file);
        if slot.damaged.is_some() || slot.finished {
            return Ok(());
        }
        let it = self.files[file];
        // A new file whose writes end at its size needs no truncate.
        let sized = !slot.update && slot.end == it.entry.size;
        let f = self.open(file, &mut slot)?;
        if !sized {
            f.set_len(it.entry.size)
                .map_err(|e| Error::io(format!("writing {}", self.shown(it)), e))?;
        }
        let mut warnings = Vec::new();
        target::apply_metadata_fd(f, &it.entry, &mut warnings)
            .map_err(|e| Error::io(format!("setting metadata of {}", self.shown(it)), e))?;
        self.close(&mut slot);
        slot.undo = None;
        slot.warnings = warnings;
        slot.finished = true;
        self.events.event(&Event::FileDone);
        Ok(())
    }

    fn damaged(&self, file: usize, err: &Error) {
        let mut slot = self.lock(file);
        if slot.damaged.is_some() {
            return;
        }
        slot.damaged = Some(format!("{err:#}"));
        if slot.update {
            // The user's file: put back what was overwritten, never remove it.
            let it = self.files[file];
            let put_back = match slot.undo.take() {
                None => Ok(()),
                Some(u) => self
                    .open(file, &mut slot)
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))
                    .and_then(|f| u.roll_back(&self.saved, f)),
            };
            self.close(&mut slot);
            let note = match put_back {
                Ok(()) => "the existing file was left as it was".to_string(),
                Err(e) => format!(
                    "the existing file could not be put back as it was ({e}); {} is partly updated",
                    self.shown(it)
                ),
            };
            slot.damaged = Some(format!("{err:#}; {note}"));
            return;
        }
        self.close(&mut slot);
        if slot.created.is_some() {
            let it = self.files[file];
            if let Ok(dir) = self.dirs.get(it.parent, false) {
                let _ = rustix::fs::unlinkat(
                    &*dir,
                    OsStr::from_bytes(&it.entry.name),
                    rustix::fs::AtFlags::empty(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The undo store's fallback (no `O_TMPFILE`) keeps at most its memory
    /// bound in memory, then spills everything to an unlinked named file in
    /// the target folder; every saved range reads back.
    #[test]
    fn undo_fallback_is_bounded_and_spills_to_an_unlinked_file() {
        let dir = tempfile::tempdir().unwrap();
        let tgt = Target::open(dir.path()).unwrap();
        let policy = SavedPolicy {
            tmpfile: false,
            memory_max: 100,
        };
        let mut saved = Saved::None;
        let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
        let mut at = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            at.push(saved.append_with(&tgt, p, policy).unwrap());
            match (&saved, i) {
                (Saved::Memory(m), 0 | 1) => assert!(m.len() <= 100),
                (Saved::File(..), 2..) => {}
                _ => panic!("part {i}: not spilled past the bound"),
            }
        }
        assert_eq!(at, [0, 40, 80, 120, 160]);
        for (p, &a) in parts.iter().zip(&at) {
            let mut buf = vec![0; p.len()];
            saved.read(a, &mut buf).unwrap();
            assert_eq!(&buf, p);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(names.is_empty(), "the spill file has a name: {names:?}");
        // A range past what memory holds is an error, not a panic.
        let mut m = Saved::Memory(vec![1; 10]);
        let mut buf = [0u8; 4];
        assert!(m.read(8, &mut buf).is_err());
        assert!(m.read(u64::MAX, &mut buf).is_err());
        m = Saved::None;
        assert!(m.read(0, &mut buf).is_err());
    }

    #[test]
    fn include_roots_prune_only_folders_off_the_way() {
        let f = Filter::new(&["/a/b/*.txt".into(), "c/d".into()], &[]).unwrap();
        for on_the_way in ["/", "/a", "/a/b", "/a/b/deeper", "/c", "/c/d", "/c/d/e"] {
            assert!(f.may_hold(Path::new(on_the_way)), "{on_the_way}");
        }
        for off in ["/b", "/a/c", "/c/e", "/ab"] {
            assert!(!f.may_hold(Path::new(off)), "{off}");
        }
        // A name pattern matches anywhere: nothing can be pruned.
        let f = Filter::new(&["/a/b".into(), "*.txt".into()], &[]).unwrap();
        assert!(f.may_hold(Path::new("/z/y")));
        // Glob syntax ends the literal root.
        assert_eq!(literal_root("/x/y*/z").unwrap(), vec![b"x".to_vec()],);
    }
}
