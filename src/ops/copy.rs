//! `snap copy`: transfer snapshots from one repository to another, sending
//! only the blobs the destination lacks and re-encrypting them under the
//! destination's key.
//!
//! Per snapshot:
//! 1. Skip it if the destination already holds a copy: a snapshot whose
//!    `original` (or own id) equals the source snapshot's `original`, or its
//!    id when it has none.
//! 2. Walk the source trees (every tree blob is read once), collecting the
//!    content blobs in order.
//! 3. Fetch the content blobs the destination needs, grouped by source pack
//!    (coalesced byte ranges, a few packs in flight), re-seal them under the
//!    destination key and save them through a [`BlobSaver`] that writes an
//!    index object every [`COPY_INDEX_EVERY`] packs.
//! 4. Store the trees bottom-up, then the snapshot with `original` set.
//!
//! Blob ids are keyed (format-spec §3). When both repositories share the id
//! key (`snap init --copy-chunker-params-from`), ids are equal: blobs the
//! destination has are skipped without reading them, and trees are copied
//! unchanged. Otherwise every content blob is read and decrypted to compute
//! its destination id, and trees are re-encoded with those ids; the copy
//! still deduplicates blob by blob, but chunk boundaries stay those of the
//! source chunker, so later backups in the destination (cut with its own
//! chunker) share little with copied data.
//!
//! A blob compressed with a source dictionary (format-spec §12.1) keeps its
//! zstd frame when ids are equal: the dictionary is copied first (an equal
//! destination dictionary is reused) and the payload names the destination's
//! dictionary object. Blobs whose ids change are re-compressed without one.
//!
//! Resumable: a killed copy leaves packs and index objects in the
//! destination; the next run finds those blobs in the destination's catalog
//! and skips them. At most the packs uploaded since the last index object
//! are sent again.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{BlobId, BlobKind, DictId, PackId, SnapshotId};
use crate::repo::Repository;
use crate::session::{Operation, Session};
use crate::store::ObjectKind;
use crate::write::compress;
use crate::write::pack::BlobSaver;
use std::collections::{HashMap, HashSet, VecDeque};

/// Packs per index object while copying (64 MiB at the default pack size),
/// so an interrupted copy re-sends little.
pub const COPY_INDEX_EVERY: usize = 4;

/// Ranges of one source pack closer than this many bytes are fetched as one.
const COALESCE_GAP: u64 = 1 << 20;

/// Coalesced source pack reads fetched at once (as one [`crate::store::Store::get_ranges`]
/// batch); one batch is read ahead while the previous one is re-packed.
const FETCH_IN_FLIGHT: usize = 4;

/// One coalesced read: source pack, first byte offset, blobs in the range.
type FetchJob = (PackId, u64, Vec<(BlobId, BlobLocation)>);

/// What one [`copy_snapshot`] call did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Destination snapshot id; `None` when the snapshot was already there.
    pub copied_to: Option<SnapshotId>,
    /// The destination snapshot that already was a copy, when skipped.
    pub existing: Option<SnapshotId>,
    /// Blobs (content and trees) added to the destination.
    pub blobs: u64,
    /// Plaintext bytes of those blobs.
    pub raw_bytes: u64,
    /// Bytes of packs and index objects written to the destination.
    pub stored_bytes: u64,
    /// Packs written to the destination.
    pub packs: u64,
    /// Content blobs read from the source.
    pub blobs_read: u64,
}

/// Identity of the backup a snapshot holds: its `original`, else its id.
pub fn origin_of(id: &SnapshotId, snap: &Snapshot) -> SnapshotId {
    snap.original.unwrap_or(*id)
}

/// The destination snapshot that already is a copy of `origin`, if any.
pub fn find_copy(dst: &Repository, origin: &SnapshotId) -> Result<Option<SnapshotId>> {
    Ok(dst
        .snapshots()?
        .into_iter()
        .find(|(id, s)| id == origin || s.original.as_ref() == Some(origin))
        .map(|(id, _)| id))
}

struct Copier<'a> {
    src: &'a Repository,
    dst: &'a Repository,
    same_ids: bool,
    saver: BlobSaver,
    /// Source id → destination id (content and trees done so far).
    map: HashMap<BlobId, BlobId>,
    /// Source trees, decoded, with their plaintext.
    trees: HashMap<BlobId, (Tree, Vec<u8>)>,
    /// Source tree ids, children before parents.
    tree_order: Vec<BlobId>,
    /// Source content blob ids, first-seen order.
    content: Vec<BlobId>,
    /// Source dictionary id → destination dictionary id (format-spec §12.1).
    dicts: HashMap<DictId, DictId>,
    report: CopyReport,
}

impl Copier<'_> {
    /// The destination's dictionary object with the same zstd dictionary as
    /// source dictionary `src_dict`, copied there first if needed.
    fn dst_dictionary(&mut self, src_dict: &DictId) -> Result<DictId> {
        if let Some(d) = self.dicts.get(src_dict) {
            return Ok(*d);
        }
        let d = self.src.dictionary(src_dict)?;
        let id = self.dst.import_dictionary(d.bytes())?;
        self.dicts.insert(*src_dict, id);
        Ok(id)
    }

    fn dst_has(&self, id: &BlobId) -> Result<bool> {
        Ok(self.saver.is_pending(id) || self.dst.catalog().contains(id)?)
    }

    /// Depth-first walk of the source trees below `root`.
    fn walk(&mut self, root: BlobId) -> Result<()> {
        let mut seen_content: HashSet<BlobId> = self.content.iter().copied().collect();
        // Explicit stack: (tree id, children pushed?).
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                self.tree_order.push(id);
                continue;
            }
            if self.trees.contains_key(&id) {
                continue;
            }
            crate::interrupt::check()?;
            let plain = self.src.read_blob(&id)?;
            let tree = Tree::decode(&plain).map_err(|e| {
                Error::with_source(ErrorKind::Corrupt, format!("tree {}", id.short()), e)
            })?;
            stack.push((id, true));
            for e in &tree.entries {
                for c in &e.content {
                    if seen_content.insert(*c) {
                        self.content.push(*c);
                    }
                }
                if let Some(sub) = e.subtree {
                    if !self.trees.contains_key(&sub) {
                        stack.push((sub, false));
                    }
                }
            }
            self.trees.insert(id, (tree, plain));
        }
        Ok(())
    }

    fn add(&mut self, kind: BlobKind, id: BlobId, sealed: &[u8], raw_len: u32) -> Result<()> {
        self.saver.add(kind, id, sealed, raw_len)?;
        let written = self.saver.take_written();
        if !written.is_empty() {
            let mut cat = self.dst.catalog();
            for (iid, idx) in &written {
                cat.add_index(iid, idx)?;
            }
        }
        Ok(())
    }

    /// Copies the content blobs the destination needs.
    fn copy_content(&mut self) -> Result<()> {
        // Which blobs to read, grouped by source pack.
        let mut by_pack: HashMap<PackId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
        let mut pack_order = Vec::new();
        for id in &self.content {
            if self.same_ids {
                if self.dst_has(id)? {
                    self.map.insert(*id, *id);
                    continue;
                }
            } else if self.map.contains_key(id) {
                continue;
            }
            let loc = self.src.locate(id)?;
            if loc.kind != BlobKind::Data {
                return Err(Error::corrupt(format!(
                    "blob {} is used as file content but indexed as a tree",
                    id.short()
                )));
            }
            let v = by_pack.entry(loc.pack).or_default();
            if v.is_empty() {
                pack_order.push(loc.pack);
            }
            v.push((*id, loc));
        }
        // Coalesced range reads, a few in flight, processed in order.
        let mut jobs: VecDeque<FetchJob> = VecDeque::new();
        for pack in pack_order {
            let mut blobs = by_pack.remove(&pack).unwrap_or_default();
            blobs.sort_by_key(|(_, l)| l.offset);
            let mut group: Vec<(BlobId, BlobLocation)> = Vec::new();
            let mut start = 0u64;
            let mut end = 0u64;
            for (id, loc) in blobs {
                let (o, e) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
                if !group.is_empty() && o > end + COALESCE_GAP {
                    jobs.push_back((pack, start, std::mem::take(&mut group)));
                }
                if group.is_empty() {
                    start = o;
                    end = e;
                }
                end = end.max(e);
                group.push((id, loc));
            }
            if !group.is_empty() {
                jobs.push_back((pack, start, group));
            }
        }
        let store = self.src.store().clone();
        let level = self.dst.config().compression_level;
        let mut batches: Vec<Vec<FetchJob>> = Vec::new();
        while !jobs.is_empty() {
            batches.push(
                (0..FETCH_IN_FLIGHT)
                    .map_while(|_| jobs.pop_front())
                    .collect(),
            );
        }
        // A reader thread fetches one batch of coalesced reads ahead
        // (concurrently inside the store) while this thread decodes and
        // re-packs the previous one, in order.
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<(Vec<FetchJob>, Result<Vec<bytes::Bytes>>)>(1);
            s.spawn(move || {
                for batch in batches {
                    let reqs: Vec<(String, std::ops::Range<u64>)> = batch
                        .iter()
                        .map(|(pack, start, group)| {
                            let end = group
                                .iter()
                                .map(|(_, l)| l.offset as u64 + l.length as u64)
                                .max()
                                .unwrap_or(*start);
                            (ObjectKind::Pack.key(&pack.to_hex()), *start..end)
                        })
                        .collect();
                    let got = store.get_ranges(&reqs);
                    let failed = got.is_err();
                    // A closed channel: the copy stopped on an error.
                    if tx.send((batch, got)).is_err() || failed {
                        break;
                    }
                }
            });
            for (batch, got) in rx {
                crate::interrupt::check()?;
                for ((_, start, group), bytes) in batch.into_iter().zip(got?) {
                    self.copy_group(start, group, &bytes, level)?;
                }
            }
            Ok(())
        })
    }

    /// Re-keys (or moves) the blobs `group` of one coalesced read whose
    /// bytes, starting at pack offset `start`, are `bytes`.
    fn copy_group(
        &mut self,
        start: u64,
        group: Vec<(BlobId, BlobLocation)>,
        bytes: &[u8],
        level: i32,
    ) -> Result<()> {
        for (id, loc) in group {
            let o = (loc.offset as u64 - start) as usize;
            let sealed = bytes
                .get(o..o + loc.length as usize)
                .ok_or_else(|| Error::corrupt(format!("pack {} is short", loc.pack.short())))?;
            self.report.blobs_read += 1;
            if self.same_ids {
                // Same ids: move the compressed bytes to the new key. A
                // delta blob is stored whole instead (its base may not be
                // in the destination).
                let mut enc = self
                    .src
                    .key()
                    .open_blob(BlobKind::Data, &id, sealed)
                    .map_err(|e| e.context(format!("pack {}", loc.pack.short())))?;
                if loc.base.is_some() {
                    let plain = self.src.decode_blob(&id, &loc, sealed)?;
                    compress::encode(&plain, level, &mut enc);
                } else if let Some(src_dict) = compress::dict_of(&enc) {
                    // The same zstd frame, naming the destination's copy
                    // of the dictionary (stored before the blob).
                    let dst_dict = self.dst_dictionary(&src_dict)?;
                    enc[1..33].copy_from_slice(&dst_dict.0);
                }
                let resealed = self.dst.key().seal_blob(BlobKind::Data, &id, &enc);
                self.add(BlobKind::Data, id, &resealed, loc.raw_len)?;
                self.map.insert(id, id);
            } else {
                let plain = self.src.decode_blob(&id, &loc, sealed)?;
                let new_id = self.dst.key().blob_id(&plain);
                self.map.insert(id, new_id);
                if self.dst_has(&new_id)? {
                    continue;
                }
                let mut enc = Vec::new();
                compress::encode(&plain, level, &mut enc);
                let resealed = self.dst.key().seal_blob(BlobKind::Data, &new_id, &enc);
                self.add(BlobKind::Data, new_id, &resealed, plain.len() as u32)?;
            }
        }
        Ok(())
    }

    /// Stores the trees, children first; returns the destination root id.
    fn copy_trees(&mut self, root: BlobId) -> Result<BlobId> {
        let level = self.dst.config().compression_level;
        for id in std::mem::take(&mut self.tree_order) {
            if self.map.contains_key(&id) {
                continue;
            }
            crate::interrupt::check()?;
            let (mut tree, orig_plain) = self
                .trees
                .remove(&id)
                .ok_or_else(|| Error::new(ErrorKind::Corrupt, "tree walked twice"))?;
            let missing = |what: &BlobId| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("blob {} was not copied", what.short()),
                )
            };
            // Same ids: the plaintext is copied unchanged. Otherwise the
            // tree is re-encoded with the destination's ids.
            let plain = if self.same_ids {
                orig_plain
            } else {
                for e in &mut tree.entries {
                    for c in &mut e.content {
                        *c = *self.map.get(c).ok_or_else(|| missing(c))?;
                    }
                    if let Some(s) = &mut e.subtree {
                        *s = *self.map.get(s).ok_or_else(|| missing(s))?;
                    }
                }
                tree.encode()
            };
            let new_id = self.dst.key().blob_id(&plain);
            self.map.insert(id, new_id);
            if self.dst_has(&new_id)? {
                continue;
            }
            let mut enc = Vec::new();
            compress::encode(&plain, level, &mut enc);
            let sealed = self.dst.key().seal_blob(BlobKind::Tree, &new_id, &enc);
            self.add(BlobKind::Tree, new_id, &sealed, plain.len() as u32)?;
        }
        self.map.get(&root).copied().ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("root tree {} was not copied", root.short()),
            )
        })
    }
}

/// Copies snapshot `src_id` of `src` into `dst` (see the module docs).
/// Errors: any read error of the source (a corrupt blob names its pack), any
/// write error of the destination; packs that arrived before an error are
/// indexed so that the next run skips them. `dst` must be a session opened
/// for [`Operation::Copy`]; the copy is committed only while its lease is
/// valid ([`crate::ErrorKind::Locked`] otherwise).
pub fn copy_snapshot(src: &Repository, dst: &Session, src_id: &SnapshotId) -> Result<CopyReport> {
    dst.require(&[Operation::Copy], "a copy")?;
    let snap = src.read_snapshot(src_id)?;
    let origin = origin_of(src_id, &snap);
    if let Some(existing) = find_copy(dst, &origin)? {
        return Ok(CopyReport {
            existing: Some(existing),
            ..Default::default()
        });
    }
    // A SIGINT/SIGTERM stops the copy at the next blob; what arrived is
    // indexed below, so the next run skips it.
    let _graceful = crate::interrupt::graceful();
    let cfg = dst.config();
    let mut saver = BlobSaver::new(
        dst.store().clone(),
        dst.key().clone(),
        cfg.writer_packs().0,
        cfg.writer_packs().1,
    );
    saver.set_index_every(COPY_INDEX_EVERY);
    let mut c = Copier {
        src,
        dst,
        same_ids: src.key().same_ids(dst.key()),
        saver,
        map: HashMap::new(),
        trees: HashMap::new(),
        tree_order: Vec::new(),
        content: Vec::new(),
        dicts: HashMap::new(),
        report: CopyReport::default(),
    };
    let result = c
        .walk(snap.tree)
        .and_then(|_| c.copy_content())
        .and_then(|_| c.copy_trees(snap.tree));
    // Index what arrived, also after an error.
    let fin = c.saver.finish();
    let written = c.saver.take_written();
    {
        let mut cat = dst.catalog();
        for (iid, idx) in &written {
            cat.add_index(iid, idx)?;
        }
    }
    let root = result?;
    fin?;
    crate::interrupt::check()?;
    let stats = c.saver.stats;
    let mut copy = snap.clone();
    copy.tree = root;
    copy.original = Some(origin);
    // `parent` names a snapshot of the source repository; it has no meaning
    // in the destination.
    copy.parent = None;
    let new_id = dst.save_snapshot(&copy)?;
    let mut report = c.report;
    report.copied_to = Some(new_id);
    report.blobs = stats.blobs;
    report.raw_bytes = stats.raw_bytes;
    report.stored_bytes = stats.stored_bytes;
    report.packs = stats.packs;
    Ok(report)
}
