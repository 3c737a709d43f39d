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
//! Its parts, in the order a backup uses them: `walk` (file system → the
//! in-memory `tree`, `--exclude`), `parent` (unchanged files keep the
//! parent's content), `streams` (child processes, delta bases), `content`
//! (files and streams through ingest), `tree` (trees stored bottom-up);
//! `entries` builds a snapshot from an archive instead of the file system.
//!
//! Write order follows format-spec §18: packs, then index objects, then the
//! snapshot.

use crate::error::{Error, ErrorKind, Result};
use crate::events::{run_op, Event, Events, Op, WarningKind};
use crate::format::snapshot::{Snapshot, SourceInfo, Summary};
use crate::format::tree::{ChunkProfile, EntryKind, TreeEntry, STREAMS_DIR};
use crate::format::SnapshotId;
use crate::repo::{hostname, now_rfc3339, username, Repository};
use crate::session::{Operation, Session};
use crate::write::ingest::{self};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod content;
mod entries;
mod parent;
mod streams;
mod tree;
mod walk;

use content::read_content;
pub use entries::{backup_entries, EntrySink};
use parent::plan;
use streams::previous_streams;
use tree::{leaf_mut, remove_leaf, store_trees, DirNode, Node};
use walk::Walker;
pub use walk::{entry_from_metadata, normalize_path, ExcludeSet};

/// Tag added to snapshots recorded with `allow_partial` after a source failed.
pub const PARTIAL_TAG: &str = "partial";

/// Where a stream's bytes come from.
pub enum StreamInput {
    /// The process's standard input.
    Stdin,
    /// The standard output of `sh -c COMMAND`.
    Command(String),
    /// A program and its arguments, run directly (no shell).
    Program(Vec<String>),
    /// A SQLite database file, copied consistently with the online backup
    /// API when the stream is read ([`crate::write::sqlite::consistent_copy`]).
    Sqlite(std::path::PathBuf),
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
    pub parent: Option<SnapshotId>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Snapshot description.
    pub description: Option<String>,
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
    pub id: SnapshotId,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Source entries that could not be read (each one line).
    pub warnings: Vec<String>,
    /// Files that changed while they were read (size, mtime or ctime of the
    /// open file differed after the read): the snapshot holds the bytes
    /// read, which may mix two versions. Absolute paths, lossy UTF-8.
    pub changed: Vec<String>,
}

/// Backs up `opts`' paths and streams into one snapshot.
///
/// Errors: [`ErrorKind::Source`] when a stream's command fails (no snapshot
/// is written), [`ErrorKind::Usage`] for bad options, backend and I/O errors.
/// Unreadable files are skipped and listed in `warnings`; the snapshot is
/// committed only while the session's lease is valid ([`ErrorKind::Locked`]
/// otherwise). `session` must be opened for [`Operation::Backup`].
///
/// Reports to the session's [`Events`] (`Started`, `Totals`, `Bytes`,
/// `FileDone` per file and stream, a `Warning` per entry left out, file
/// changed while read or source failed, `PackUploaded`, `SnapshotSaved`,
/// `Finished`); the outcome lists the same warnings.
pub fn backup(session: &Session, opts: BackupOptions) -> Result<BackupOutcome> {
    session.require(&[Operation::Backup], "a backup")?;
    let events = session.events();
    run_op(events, Op::Backup, || backup_in(session, opts, events))
}

/// Records that `path` was left out (`why`): an event and a line of `warnings`.
pub(super) fn skipped(events: &dyn Events, warnings: &mut Vec<String>, path: &Path, why: String) {
    warnings.push(format!("{}: {why}", path.display()));
    events.event(&Event::warning(
        WarningKind::Unreadable,
        Some(path.to_string_lossy().into_owned()),
        why,
    ));
}

fn backup_in(session: &Session, opts: BackupOptions, events: &dyn Events) -> Result<BackupOutcome> {
    let repo: &Repository = session;
    for f in &opts.failed_sources {
        let why = f.details.get("error").cloned();
        events.event(&Event::warning(
            WarningKind::SourceFailed,
            None,
            why.unwrap_or_else(|| "source failed".into()),
        ));
    }
    let started = Instant::now();
    let time = now_rfc3339();
    if opts.paths.is_empty() && opts.streams.is_empty() && opts.failed_sources.is_empty() {
        return Err(Error::usage(
            "nothing to back up: give paths, --stdin, --command, --pg or --mongo",
        ));
    }
    let mut walker = Walker {
        excludes: ExcludeSet::from_args(&opts.excludes)?,
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
    let mut warnings = Vec::new();
    for (path, why) in std::mem::take(&mut walker.warnings) {
        skipped(events, &mut warnings, &path, why);
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
            // A put-only key cannot open the snapshot object: only the
            // catalog's record of its own snapshots (format-spec §25.9).
            let read = match repo.role() {
                crate::crypto::KeyRole::Full => repo.read_snapshot(&id),
                crate::crypto::KeyRole::PutOnly => Err(crate::crypto::put_only_error()),
            };
            let s = read.or_else(|_| {
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
    // Streams have no size before they end: with one, the total stays unknown.
    events.event(&Event::Totals {
        op: Op::Backup,
        files: jobs.len() as u64,
        bytes: opts
            .streams
            .is_empty()
            .then(|| jobs.iter().map(|j| j.size).sum()),
    });
    let saver = repo.blob_saver();
    // From here on a SIGINT/SIGTERM only sets the interrupt flag: reading
    // stops at the next check, the stored packs are indexed and no snapshot
    // is written.
    let _graceful = crate::interrupt::graceful();
    let mut changed = Vec::new();
    let previous = previous_streams(repo, &hostname, &opts.streams);
    let ((bytes_read, job_slots, stream_slots, sources, failed_sources), mut ingested) =
        ingest::run(repo, saver, events, |reader| {
            read_content(
                reader,
                &jobs,
                &opts,
                &previous,
                events,
                &mut warnings,
                &mut changed,
            )
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
            errors: warnings.len() as u64,
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
    if let (Some(dir), false) = (repo.stream_base_cache(), opts.streams.is_empty()) {
        crate::write::base_cache::evict(&dir);
    }
    Ok(BackupOutcome {
        id,
        snapshot,
        warnings,
        changed,
    })
}
