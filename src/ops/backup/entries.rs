//! Snapshots built from something other than the file system (an
//! archive): [`EntrySink`] receives entries by path and
//! [`backup_entries`] stores them as one snapshot.

use super::tree::{leaf_mut, store_trees, DirNode, Node};
use super::{BackupOptions, BackupOutcome};
use crate::error::{Error, Result};
use crate::events::{run_op, Event, Events, Op};
use crate::format::snapshot::{Snapshot, SourceInfo, Summary};
use crate::format::tree::{ChunkProfile, EntryKind, TreeEntry, STREAMS_DIR};
use crate::repo::{hostname, now_rfc3339, username, Repository};
use crate::session::{Operation, Session};
use crate::write::ingest::{self, Ingested, Reader};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

/// Path components from the snapshot root to an entry.
type Route = Vec<Vec<u8>>;

/// Receives the entries of a snapshot built from something other than the
/// filesystem (an archive); see [`backup_entries`].
pub struct EntrySink<'a, 'r> {
    reader: &'a mut Reader<'r>,
    events: &'a dyn Events,
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
            self.events.event(&Event::FileDone);
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
/// and `description` are used; events go to the session's
/// [`Events`] as for [`super::backup`] (operation [`Op::Import`]). Files under `@streams/` become
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
    let events = session.events();
    run_op(events, Op::Import, || {
        entries_in(session, opts, events, fill)
    })
}

fn entries_in<F>(
    session: &Session,
    opts: BackupOptions,
    events: &dyn Events,
    fill: F,
) -> Result<BackupOutcome>
where
    F: FnOnce(&mut EntrySink<'_, '_>) -> Result<()>,
{
    let repo: &Repository = session;
    let started = Instant::now();
    let time = now_rfc3339();
    let saver = repo.blob_saver();
    type Filled = (
        DirNode,
        Vec<(Route, usize)>,
        Vec<(Route, Route)>,
        u64,
        (u64, u64),
    );
    let (filled, ingested): (Filled, Ingested) = ingest::run(repo, saver, events, |reader| {
        let mut sink = EntrySink {
            reader,
            events,
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
