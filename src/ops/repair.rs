//! `snap repair index` and `snap repair snapshots` (run under an exclusive
//! lease by the CLI).

use crate::error::{ErrorKind, Result};
use crate::events::{run_op, Op};
use crate::format::index::IndexPack;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{EntryKind, Tree};
use crate::format::{BlobId, BlobKind, IndexId, PackId, SnapshotId};
use crate::index_view::IndexView;
use crate::ops::check::{read_pack_header, verify_pack};
use crate::ops::prune::{write_index, MAX_INDEX_BLOBS};
use crate::repo::Repository;
use crate::session::{Operation, Session};
use crate::store::ObjectKind;
use crate::write::pack::BlobSaver;
use std::collections::HashSet;

/// What `repair index` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct IndexRepair {
    /// Packs listed in `data/`.
    pub packs: u64,
    /// Packs indexed in the new index.
    pub packs_indexed: u64,
    /// Packs whose header could not be read (left in place, unindexed).
    pub packs_unreadable: Vec<String>,
    /// Damaged packs (with `read_data`) whose good blobs were copied into new
    /// packs; the damaged pack was deleted.
    pub packs_salvaged: Vec<String>,
    /// Blobs lost in damaged packs.
    pub blobs_lost: u64,
    /// Index objects replaced.
    pub indexes_replaced: u64,
    /// Index objects that did not authenticate or decode (hex ids); dropped
    /// (replaced like the others).
    pub indexes_unreadable: Vec<String>,
    /// Blobs of damaged packs copied into new packs.
    pub blobs_salvaged: u64,
}

/// Rebuilds the index from the pack headers and replaces every index object,
/// including ones that do not authenticate or decode. With `read_data`,
/// every pack is downloaded and verified; damaged packs are salvaged (good
/// blobs copied, pack deleted after the new index is stored). A pack whose
/// header is lost (truncated) is salvaged from the entries the readable old
/// index objects list for it: each blob whose bytes are still there and
/// authenticate is kept. Warnings go to [`Repository::warn`]. `session`
/// must be opened for [`Operation::RepairIndex`] (an exclusive lease).
///
/// Memory does not grow with the repository: the old index and the listing
/// of `data/` are read into a temporary [`IndexView`], packs are visited in
/// id order a page at a time, and the new index is written in objects of at
/// most [`MAX_INDEX_BLOBS`] blobs as headers are read (the last one
/// supersedes every old object, so a crash before it leaves the old index
/// in force beside the new objects; a pack named twice counts once).
pub fn repair_index(session: &Session, read_data: bool) -> Result<IndexRepair> {
    session.require(&[Operation::RepairIndex], "repair index")?;
    run_op(session.events(), Op::RepairIndex, || {
        repair_index_in(session, read_data)
    })
}

fn repair_index_in(session: &Session, read_data: bool) -> Result<IndexRepair> {
    let repo: &Repository = session;
    let mut rep = IndexRepair::default();
    let store = repo.store().clone();
    let old: Vec<IndexId> = crate::repo::list_sealed(&store)?.into_iter().collect();
    // What the old index objects said about each pack (the fallback for
    // packs whose header is lost), in a temporary on-disk view: memory
    // stays bounded whatever the number of blobs.
    let (mut view, _, unreadable) = IndexView::load(repo)?;
    for (id, e) in &unreadable {
        repo.warn(format!(
            "index object {} is unreadable and will be replaced: {}",
            id.short(),
            crate::repo::reason(ObjectKind::Index, id, e)
        ));
        rep.indexes_unreadable.push(id.to_hex());
    }
    rep.packs = view.list_packs(&store)?.0;
    // The new index, written in objects of at most MAX_INDEX_BLOBS blobs as
    // the headers are read. Each but the last supersedes nothing, so a crash
    // before the last leaves the old objects in force (a pack named twice
    // counts once); the last supersedes every old one.
    let mut batch: Vec<IndexPack> = Vec::new();
    let mut batch_blobs = 0u64;
    let mut push = |rep: &mut IndexRepair, p: IndexPack| -> Result<()> {
        let n = p.blobs.len() as u64;
        if batch_blobs > 0 && batch_blobs + n > MAX_INDEX_BLOBS {
            write_index(repo, std::mem::take(&mut batch), Vec::new())?;
            batch_blobs = 0;
        }
        batch.push(p);
        batch_blobs += n;
        rep.packs_indexed += 1;
        Ok(())
    };
    let mut saver = repo.blob_saver_with(repo.config().writer_packs().0, 1);
    let mut damaged: Vec<PackId> = Vec::new();
    view.for_each_listed(false, |id, size| {
        crate::interrupt::check()?;
        if !read_data {
            match read_pack_header(repo, id, size) {
                Ok(entries) => push(
                    &mut rep,
                    IndexPack {
                        id: *id,
                        size,
                        blobs: entries,
                    },
                )?,
                Err(e) => {
                    let hint = if view.pack(id)?.is_some() {
                        "; `snap repair index --read-data` can salvage its intact blobs"
                    } else {
                        ""
                    };
                    repo.warn(format!("{e:#}; left out of the index{hint}"));
                    rep.packs_unreadable.push(id.to_hex());
                }
            }
            return Ok(());
        }
        let bytes = store.get(&ObjectKind::Pack.key(&id.to_hex()))?;
        let (entries, bad, msgs) = verify_pack(repo, id, &bytes);
        match entries {
            None => {
                // Header lost: salvage by the entries the old index lists.
                let known = match view.pack(id)? {
                    Some(p) => view.pack_blobs(&p)?,
                    None => Vec::new(),
                };
                let mut kept = 0u64;
                for e in &known {
                    let loc = crate::catalog::BlobLocation::of_entry(*id, e);
                    let s = e.offset as usize;
                    let intact = bytes
                        .get(s..s + e.length as usize)
                        .filter(|sealed| repo.decode_blob(&e.id, &loc, sealed).is_ok());
                    match intact {
                        Some(sealed) => {
                            saver.add_with_base(e.kind, e.id, sealed, e.raw_len, e.base)?;
                            kept += 1;
                        }
                        None => rep.blobs_lost += 1,
                    }
                }
                if kept == 0 {
                    repo.warn(format!("{}; left out of the index", msgs.join("; ")));
                    rep.packs_unreadable.push(id.to_hex());
                } else {
                    repo.warn(format!(
                        "{}; salvaged {kept} of {} blobs the old index listed for it",
                        msgs.join("; "),
                        known.len()
                    ));
                    rep.blobs_salvaged += kept;
                    damaged.push(*id);
                    rep.packs_salvaged.push(id.to_hex());
                }
            }
            Some(entries) if msgs.is_empty() => push(
                &mut rep,
                IndexPack {
                    id: *id,
                    size,
                    blobs: entries,
                },
            )?,
            Some(entries) => {
                repo.warn(msgs.join("; "));
                let bad: HashSet<BlobId> = bad.into_iter().collect();
                rep.blobs_lost += bad.len() as u64;
                for e in entries.iter().filter(|e| !bad.contains(&e.id)) {
                    let s = e.offset as usize;
                    if let Some(sealed) = bytes.get(s..s + e.length as usize) {
                        saver.add_with_base(e.kind, e.id, sealed, e.raw_len, e.base)?;
                        rep.blobs_salvaged += 1;
                    }
                }
                damaged.push(*id);
                rep.packs_salvaged.push(id.to_hex());
            }
        }
        Ok(())
    })?;
    drop(view);
    saver.finish()?;
    // The salvaged packs go into the last object, which supersedes the
    // saver's own index objects too.
    let mut written = Vec::new();
    for (wid, idx) in saver.take_written() {
        written.push(wid);
        for p in idx.packs {
            push(&mut rep, p)?;
        }
    }
    let mut supersede = old.clone();
    supersede.extend(written.iter().copied());
    rep.indexes_replaced = old.len() as u64;
    write_index(repo, batch, supersede.clone())?;
    for id in &supersede {
        store.delete(&ObjectKind::Index.key(&id.to_hex()))?;
    }
    for id in &damaged {
        store.delete(&ObjectKind::Pack.key(&id.to_hex()))?;
    }
    repo.catalog().reset()?;
    repo.sync_catalog()?;
    Ok(rep)
}

/// One repaired snapshot.
#[derive(Debug, serde::Serialize)]
pub struct SnapshotRepair {
    /// Old snapshot id (hex), removed.
    pub old: String,
    /// New snapshot id (hex).
    pub new: String,
    /// Paths dropped because their data is lost.
    pub lost: Vec<String>,
    /// Set when the snapshot object itself does not authenticate or decode:
    /// the error; the object is removed (`new` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    saver: BlobSaver,
    lost: Vec<String>,
}

impl Rewriter<'_> {
    /// Indexed, and for a delta blob its base too (format-spec §13).
    fn available(&self, id: &BlobId) -> Result<bool> {
        let cat = self.repo.catalog();
        Ok(match cat.lookup(id)? {
            None => false,
            Some(loc) => match loc.base {
                None => true,
                Some(b) => cat.lookup(&b)?.is_some(),
            },
        })
    }

    /// Rewrites tree `t` at `path`, whose entries are `depth` levels below
    /// the root; `None` if the tree itself is lost. Recursion is bounded by
    /// the depth limit (format-spec §17).
    fn tree(&mut self, t: BlobId, path: &str, depth: usize) -> Result<Option<BlobId>> {
        crate::read::restore::check_depth(depth, || path.to_string())?;
        let tree = match self.repo.read_tree(&t) {
            Ok(tr) => tr,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind().is_damaged_data() => {
                self.lost.push(format!("{path}/"));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut out = Tree::default();
        let mut changed = false;
        for mut e in tree.entries {
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let mut ok = true;
            for c in &e.content {
                if !self.available(c)? {
                    ok = false;
                    break;
                }
            }
            if !ok {
                self.lost.push(p);
                changed = true;
                continue;
            }
            if let (EntryKind::Dir, Some(s)) = (e.kind, e.subtree) {
                match self.tree(s, &p, depth + 1)? {
                    None => {
                        changed = true;
                        continue;
                    }
                    Some(n) if n != s => {
                        e.subtree = Some(n);
                        changed = true;
                    }
                    Some(_) => {}
                }
            }
            out.entries.push(e);
        }
        if !changed {
            return Ok(Some(t));
        }
        let plain = out.encode();
        let key = self.repo.key();
        let id = key.blob_id(&plain);
        if !self.saver.is_pending(&id) && !self.repo.catalog().contains(&id)? {
            let level = self.repo.config().compression_level;
            self.saver.add_plain(BlobKind::Tree, id, &plain, level)?;
        }
        Ok(Some(id))
    }
}

/// Rewrites every snapshot that references lost data (blobs no index names,
/// unreadable trees) without the lost entries; the new snapshot gets the tag
/// `repaired` and a note in its description, the old one is removed.
/// Snapshot objects that do not authenticate or decode are removed.
///
/// Refuses ([`ErrorKind::Corrupt`]) while an index object is unreadable:
/// blobs it names would look lost and be dropped from snapshots. `session`
/// must be opened for [`Operation::RepairSnapshots`] (an exclusive lease).
pub fn repair_snapshots(session: &Session, dry_run: bool) -> Result<Vec<SnapshotRepair>> {
    session.require(&[Operation::RepairSnapshots], "repair snapshots")?;
    run_op(session.events(), Op::RepairSnapshots, || {
        repair_snapshots_in(session, dry_run)
    })
}

fn repair_snapshots_in(session: &Session, dry_run: bool) -> Result<Vec<SnapshotRepair>> {
    let repo: &Repository = session;
    repo.sync_catalog()?;
    repo.require_complete_index("to repair snapshots")?;
    let mut rw = Rewriter {
        repo,
        saver: repo.blob_saver_with(repo.config().writer_packs().0, 1),
        lost: Vec::new(),
    };
    let mut changed: Vec<(SnapshotId, Snapshot, Vec<String>)> = Vec::new();
    for (id, s) in repo.snapshots()? {
        rw.lost.clear();
        let root = rw.tree(s.tree, "", 1)?;
        if rw.lost.is_empty() {
            continue;
        }
        let mut ns = s.clone();
        ns.tree = match root {
            Some(r) => r,
            None => {
                // The root itself is lost: an empty tree.
                let plain = Tree::default().encode();
                let tid = repo.key().blob_id(&plain);
                let level = repo.config().compression_level;
                rw.saver.add_plain(BlobKind::Tree, tid, &plain, level)?;
                tid
            }
        };
        if !ns.tags.iter().any(|t| t == "repaired") {
            ns.tags.push("repaired".into());
            ns.tags.sort();
        }
        let note = format!("repaired: {} lost entries removed", rw.lost.len());
        ns.description = Some(match &s.description {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
        changed.push((id, ns, rw.lost.clone()));
    }
    let mut out = Vec::new();
    for (id, e) in repo.unreadable_snapshots() {
        if !dry_run {
            repo.store()
                .delete(&ObjectKind::Snapshot.key(&id.to_hex()))?;
        }
        out.push(SnapshotRepair {
            old: id.to_hex(),
            new: String::new(),
            lost: Vec::new(),
            unreadable: Some(e),
        });
    }
    if dry_run {
        for (id, _, lost) in changed {
            out.push(SnapshotRepair {
                old: id.to_hex(),
                new: String::new(),
                lost,
                unreadable: None,
            });
        }
        return Ok(out);
    }
    rw.saver.finish()?;
    for (iid, idx) in rw.saver.take_written() {
        repo.catalog().add_index(&iid, &idx)?;
    }
    for (id, ns, lost) in changed {
        let nid = session.save_snapshot(&ns)?;
        session.remove_snapshot(&id)?;
        out.push(SnapshotRepair {
            old: id.to_hex(),
            new: nid.to_hex(),
            lost,
            unreadable: None,
        });
    }
    Ok(out)
}
