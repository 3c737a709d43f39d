//! Prune: remove packs no snapshot needs, repack mostly-unused packs and
//! rewrite the index, safely while backups run (two-phase deletion with
//! marks and leases, format-spec §19, §20).
//!
//! One run of [`prune`]:
//! 1. lists leases, then snapshots, then indexes, so that every backup
//!    whose lease has gone has its snapshot, and every listed snapshot its
//!    index objects, visible; this view is prune's own, never the catalog
//!    (which concurrent processes reset, reload and extend meanwhile);
//! 2. computes the referenced blobs by walking every snapshot's trees, read
//!    from the packs that view names;
//! 3. deletes the packs of *ripe* marks (grace over, no blocker lease live)
//!    that are still unneeded; packs that became needed are unmarked;
//! 4. marks packs that hold no referenced blob, and repacks packs whose
//!    unused share exceeds `max_unused` (the old pack is marked);
//! 5. writes the mark (pending), lists the live leases and completes the
//!    mark with them as blockers;
//! 6. writes one index superseding every index it read, deletes those
//!    indexes, then deletes the ripe packs and their marks;
//! 7. with S3 Object Lock, purges deleted objects whose retention is over
//!    and extends that of live ones ([`crate::ops::object_lock`]).

use crate::error::{Error, ErrorKind, Result};
use crate::events::{run_op, Event, Op};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::snapshot::Snapshot;
use crate::format::tree::EntryKind;
use crate::format::{BlobId, BlobKind, IndexId, PackId, SnapshotId};
use crate::index_view::{IndexView, ViewPack};
use crate::lease::{self, Mark};
use crate::repo::Repository;
use crate::session::{Operation, Session};
use crate::store::ObjectKind;
use bytes::Bytes;
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Options for [`prune`].
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack a pack when more than this fraction (0..=1) of its bytes is
    /// unused.
    pub max_unused: f64,
    /// Minimum age of a mark before its packs are deleted.
    pub grace: Duration,
    /// Compute and report only; write and delete nothing.
    pub dry_run: bool,
}

/// What a prune did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Distinct blobs referenced by them.
    pub blobs_referenced: u64,
    /// Packs deleted (from ripe marks).
    pub packs_deleted: u64,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
    /// Packs newly marked for deletion (unused or repacked).
    pub packs_marked: u64,
    /// Bytes of the newly marked packs.
    pub bytes_marked: u64,
    /// Marked packs found needed again and unmarked.
    pub packs_unmarked: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_repacked: u64,
    /// Blobs copied by repacking.
    pub blobs_repacked: u64,
    /// Bytes written by repacking (packs and index objects).
    pub bytes_repacked: u64,
    /// Marks still waiting for their grace period or a blocker lease.
    pub marks_waiting: u64,
    /// Index objects replaced by the new one.
    pub indexes_superseded: u64,
    /// Staging files of killed writes removed (local repositories).
    pub staging_removed: u64,
    /// Bytes of `data/` before the run.
    pub data_bytes_before: u64,
    /// Bytes of `data/` after the run (estimated with `dry_run`).
    pub data_bytes_after: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// S3 Object Lock upkeep (repositories with `object_lock`, format-spec
    /// §25.8): versions purged or still kept, retentions extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::ops::object_lock::LockReport>,
}

/// The location and sealed bytes of blob `id` as `view` locates it (see
/// [`IndexView::locate`]). Fails with [`ErrorKind::NotFound`] if the view
/// does not list it, or a store error.
pub fn fetch_located_blob(
    repo: &Repository,
    view: &IndexView,
    id: &BlobId,
) -> Result<(crate::catalog::BlobLocation, Bytes)> {
    let loc = view.locate(id)?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("blob {} is not in any index object", id.short()),
        )
    })?;
    let sealed = repo.store().get_range(
        &ObjectKind::Pack.key(&loc.pack.to_hex()),
        loc.offset as u64..loc.offset as u64 + loc.length as u64,
    )?;
    Ok((loc, sealed))
}

/// Reads and verifies blob `id` located through `view`, including the base
/// of a delta blob. Fails with [`ErrorKind::NotFound`] if the view does not
/// list it (or its base), [`ErrorKind::Corrupt`] if it does not
/// authenticate or decode, or a store error.
pub fn read_located_blob(repo: &Repository, view: &IndexView, id: &BlobId) -> Result<Vec<u8>> {
    let (loc, sealed) = fetch_located_blob(repo, view, id)?;
    let base = loc
        .base
        .map(|b| fetch_located_blob(repo, view, &b))
        .transpose()?;
    repo.decode_blob_with_base(id, &loc, &sealed, base.as_ref().map(|(l, s)| (l, &s[..])))
}

/// Records in `view` every blob (tree and data) reachable from the given
/// snapshot root trees, reading the trees from the packs the view names,
/// not through the catalog; then closes the set
/// ([`IndexView::close_refs`]) and returns its size. Memory: one tree at a
/// time plus the stack of unvisited subtree ids. Fails
/// ([`ErrorKind::Corrupt`] / [`ErrorKind::NotFound`]) if a tree cannot be
/// read: then the set would be incomplete and deleting anything unsafe.
pub fn mark_referenced(repo: &Repository, view: &mut IndexView, roots: &[BlobId]) -> Result<u64> {
    let mut stack: Vec<BlobId> = Vec::new();
    view.begin()?;
    let walk: Result<()> = (|| {
        for r in roots {
            if view.see_tree(r)? {
                view.add_ref(r)?;
                stack.push(*r);
            }
        }
        while let Some(t) = stack.pop() {
            let tree = read_located_blob(repo, view, &t)
                .and_then(|plain| crate::repo::decode_tree(&t, &plain))
                .map_err(|e| {
                    e.context(format!(
                        "tree {} is unreadable; run `snap check` and `snap repair snapshots` before pruning",
                        t.short()
                    ))
                })?;
            for e in &tree.entries {
                for c in &e.content {
                    view.add_ref(c)?;
                }
                if let (EntryKind::Dir, Some(s)) = (e.kind, e.subtree) {
                    if view.see_tree(&s)? {
                        view.add_ref(&s)?;
                        stack.push(s);
                    }
                }
            }
        }
        Ok(())
    })();
    view.commit()?;
    walk?;
    view.close_refs()
}

/// The snapshot objects listed under `snapshots/` now, oldest first, and
/// those that do not authenticate or decode: (id, reason), ordered by id
/// (their trees would look unused). The listing is the caller's own; only
/// the decoded contents of ids the catalog already holds are taken from it
/// (snapshot objects never change). A snapshot deleted between listing and
/// reading is left out. Fails only on store errors other than NotFound.
pub fn list_snapshots(repo: &Repository) -> Result<ListedSnapshots> {
    let listed: Vec<SnapshotId> = crate::repo::list_sealed(repo.store())?;
    let mut known: HashMap<SnapshotId, Snapshot> = repo.snapshots()?.into_iter().collect();
    let mut out = Vec::with_capacity(listed.len());
    let mut bad = Vec::new();
    for id in listed {
        match known.remove(&id) {
            Some(s) => out.push((id, s)),
            None => match repo.read_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    bad.push((id, crate::repo::reason(ObjectKind::Snapshot, &id, &e)))
                }
                Err(e) => return Err(e),
            },
        }
    }
    out.sort_by_key(|(id, s)| (s.time_ms(), *id));
    Ok((out, bad))
}

/// What [`list_snapshots`] read: the readable snapshots, oldest first, and
/// the unreadable ones with the reason.
pub type ListedSnapshots = (Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, String)>);

/// Writes one index object naming `packs` and superseding `old`; returns its
/// id and stored size in bytes.
pub fn write_index(
    repo: &Repository,
    packs: Vec<IndexPack>,
    old: Vec<IndexId>,
) -> Result<(IndexId, u64)> {
    let idx = IndexFile {
        supersedes: old,
        packs,
    };
    let (id, sealed) =
        crate::repo::write_sealed::<IndexId>(repo.store(), repo.key(), &idx.encode())?;
    Ok((id, sealed.len() as u64))
}

/// Total size in bytes of the packs under `data/`, summed as the listing
/// arrives (nothing per pack is kept).
pub fn data_bytes(repo: &Repository) -> Result<u64> {
    let mut total = 0u64;
    repo.store()
        .list_each(ObjectKind::Pack.list_prefix(), |l| {
            if PackId::from_hex(&l.name).is_some() {
                total = total.saturating_add(l.size);
            }
            Ok(())
        })?;
    Ok(total)
}

/// Runs one prune; see the module documentation for the steps. `session`
/// must be opened for [`Operation::Prune`]: its lease keeps a second prune
/// out and is never a blocker of its own marks.
pub fn prune(session: &Session, opts: &PruneOptions) -> Result<PruneReport> {
    session.require(&[Operation::Prune], "prune")?;
    run_op(session.events(), Op::Prune, || {
        prune_without(session, Some(session.lease().name()), opts, &HashSet::new())
    })
}

/// A dry run of [`prune`] without a lease (writes and deletes nothing,
/// whatever `opts.dry_run` says), as if the snapshots `forgotten` were
/// already gone: their trees are not walked, so what only they reference
/// counts as unused. For `prune --dry-run` and the estimate of
/// `forget --prune --dry-run`, which removes nothing.
pub fn estimate(
    repo: &Repository,
    opts: &PruneOptions,
    forgotten: &HashSet<SnapshotId>,
) -> Result<PruneReport> {
    let opts = PruneOptions {
        dry_run: true,
        ..opts.clone()
    };
    run_op(repo.events(), Op::Prune, || {
        prune_without(repo, None, &opts, forgotten)
    })
}

/// Reports that prune step `name` begins.
fn phase(repo: &Repository, name: &'static str) {
    repo.events().event(&Event::Phase {
        op: Op::Prune,
        phase: name,
    });
}

/// The prune; `own_lease` is the name of the caller's prune lease, `None`
/// only for a dry run.
fn prune_without(
    repo: &Repository,
    own_lease: Option<&str>,
    opts: &PruneOptions,
    forgotten: &HashSet<SnapshotId>,
) -> Result<PruneReport> {
    let started = Instant::now();
    let mut rep = PruneReport::default();
    let store = repo.store().clone();
    let key = repo.key().clone();

    phase(repo, "list");
    // 1. Leases and marks first, then snapshots and indexes.
    let now = Utc::now();
    let leases = lease::list_leases(&store, &key)?;
    let live: HashSet<String> = leases
        .iter()
        .filter(|l| l.is_live(now))
        .map(|l| l.name.clone())
        .collect();
    let marks = lease::list_marks(&store, &key)?;
    // The view is taken from prune's own listings, snapshots before
    // indexes (a writer stores index objects before the snapshot that needs
    // them), never from the catalog: the catalog is shared with concurrent
    // processes, which reset and reload it, or add the snapshot they just
    // wrote to it, at any moment, so it may lack a snapshot or the index of
    // a snapshot it holds.
    let (mut snaps, bad_snaps) = list_snapshots(repo)?;
    let (mut view, index_ids, bad) = IndexView::load(repo)?;
    // A skipped object would make the blobs it names look unused.
    if let Some((id, e)) = bad.first() {
        return Err(Error::corrupt(format!(
            "refusing to prune: index object {} is unreadable ({}), so the blobs it names would look unused; run `snap repair index` first",
            id.to_hex(),
            crate::repo::reason(ObjectKind::Index, id, e)
        )));
    }
    if let Some((id, e)) = bad_snaps.first() {
        return Err(Error::corrupt(format!(
            "refusing to prune: snapshot {} is unreadable ({e:#}); run `snap repair snapshots` to remove it first",
            id.to_hex()
        )));
    }
    snaps.retain(|(id, _)| !forgotten.contains(id));
    // data/ as it is now, into the view (not memory: millions of packs).
    rep.data_bytes_before = view.list_packs(&store)?.1;

    let mut ripe: Vec<(String, Mark)> = Vec::new();
    let mut waiting: Vec<(String, Mark)> = Vec::new();
    for (name, m) in marks {
        // A grace too long to add (`--grace 1000000years`) is never over.
        let grace_over = chrono::Duration::from_std(opts.grace)
            .ok()
            .and_then(|g| m.time().checked_add_signed(g))
            .is_some_and(|end| now >= end);
        let blocked = match &m.blockers {
            None => true,
            Some(b) => b.iter().any(|n| live.contains(n)),
        };
        if grace_over && !blocked {
            ripe.push((name, m));
        } else {
            waiting.push((name, m));
        }
    }

    phase(repo, "referenced");
    // 2. Referenced blobs, as a table of prune's own view.
    rep.snapshots = snaps.len() as u64;
    let roots: Vec<BlobId> = snaps.iter().map(|(_, s)| s.tree).collect();
    drop(snaps);
    let ripe_packs: HashSet<PackId> = ripe.iter().flat_map(|(_, m)| m.pack_ids()).collect();
    let waiting_packs: HashSet<PackId> = waiting.iter().flat_map(|(_, m)| m.pack_ids()).collect();
    view.set_marked(ripe_packs.iter().chain(waiting_packs.iter()))?;
    rep.blobs_referenced = mark_referenced(repo, &mut view, &roots)?;

    phase(repo, "plan");
    // 3. Ripe marks: delete what is still unneeded. A ripe pack is needed
    //    if it holds a referenced blob no covering pack (not ripe, or ripe
    //    and found needed before it, in id order) holds.
    let mut ripe_sorted: Vec<PackId> = ripe_packs.iter().copied().collect();
    ripe_sorted.sort();
    view.begin()?;
    for x in &ripe_sorted {
        view.set_flags(x, false, true)?;
    }
    view.commit()?;
    let mut delete: HashSet<PackId> = HashSet::new();
    for x in &ripe_sorted {
        let vp = view.pack(x)?;
        let needed = match &vp {
            Some(p) => view.needs_uncovered(p)?,
            None => false,
        };
        if needed {
            rep.packs_unmarked += 1;
            view.set_flags(x, true, true)?;
        } else if let Some(size) = view.listed_size(x)?.or_else(|| vp.map(|p| p.size)) {
            delete.insert(*x);
            rep.packs_deleted += 1;
            rep.bytes_freed += size;
        }
    }

    // 4. Classify the other packs. Each referenced blob is owned by the first
    //    candidate pack (load order) holding it.
    view.begin()?;
    for x in delete.iter().chain(waiting_packs.iter()) {
        view.set_flags(x, true, false)?;
    }
    view.commit()?;
    let mut to_mark: Vec<PackId> = Vec::new();
    let mut to_repack: Vec<ViewPack> = Vec::new();
    // Indexed packs that hold referenced blobs but are not in data/.
    let (mut missing, mut first_missing) = (0u64, None);
    view.for_each_pack(|p| {
        if delete.contains(&p.id) || waiting_packs.contains(&p.id) {
            return Ok(());
        }
        let (mut used, mut all) = (0u64, 0u64);
        for (b, owned) in view.usage(p)? {
            all += b.length as u64;
            if owned {
                used += b.length as u64;
            }
        }
        if used > 0 && view.listed_size(&p.id)?.is_none() {
            missing += 1;
            first_missing.get_or_insert(p.id);
            return Ok(());
        }
        if used == 0 {
            to_mark.push(p.id);
        } else {
            // Unused = blobs no snapshot needs from this pack; the header is
            // overhead every pack has, not waste.
            let unused = (all - used) as f64 / p.size.max(1) as f64;
            if unused > opts.max_unused {
                to_repack.push(*p);
            }
        }
        Ok(())
    })?;
    // A referenced pack that is gone was deleted by someone else (snap
    // removes a pack from the index before deleting it, §20.1). Pruning on
    // would forget the loss, and under Object Lock step 7 would purge the
    // hidden version for good once its retention ends: refuse instead.
    if let Some(id) = first_missing {
        return Err(Error::corrupt(format!(
            "refusing to prune: pack {} ({missing} in all) holds data snapshots need but is not in the store; nothing was deleted. Run `snap check`; if the bucket keeps versions (Object Lock), remove the delete marker someone made to bring it back, else `snap repair index` and a new backup",
            id.to_hex()
        )));
    }
    // Packs in data/ that no index names (left by an interrupted backup, or
    // being written right now: the mark protocol makes marking them safe).
    let mut unindexed: Vec<PackId> = Vec::new();
    view.for_each_listed(true, |id, _| {
        if !ripe_packs.contains(id) && !waiting_packs.contains(id) {
            unindexed.push(*id);
        }
        Ok(())
    })?;
    to_mark.extend(unindexed);
    rep.marks_waiting = waiting.len() as u64;

    if opts.dry_run {
        rep.packs_repacked = to_repack.len() as u64;
        rep.packs_marked = (to_mark.len() + to_repack.len()) as u64;
        for id in to_mark.iter().chain(to_repack.iter().map(|p| &p.id)) {
            rep.bytes_marked += view.listed_size(id)?.unwrap_or(0);
        }
        rep.data_bytes_after = rep.data_bytes_before - rep.bytes_freed.min(rep.data_bytes_before);
        if let Some(lock) = &repo.config().object_lock {
            rep.object_lock = Some(crate::ops::object_lock::maintain(&store, lock, true)?);
        }
        rep.seconds = started.elapsed().as_secs_f64();
        return Ok(rep);
    }

    phase(repo, "repack");
    // Repack: copy owned blobs (verified) into new packs.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let mut new_index_ids: Vec<IndexId> = Vec::new();
    if !to_repack.is_empty() {
        let mut saver = repo.blob_saver_with(repo.config().writer_packs().0, 1);
        for p in &to_repack {
            let raw = store.get(&ObjectKind::Pack.key(&p.id.to_hex()))?;
            for (b, _) in view.usage(p)?.into_iter().filter(|(_, owned)| *owned) {
                let (s, e) = (b.offset as usize, b.offset as usize + b.length as usize);
                let sealed = raw.get(s..e).ok_or_else(|| {
                    Error::corrupt(format!(
                        "pack {} is shorter than its index says; run `snap check`",
                        p.id.short()
                    ))
                })?;
                let loc = crate::catalog::BlobLocation::of_entry(p.id, &b);
                // A delta's base is located through prune's own index view.
                let base = b
                    .base
                    .map(|base| fetch_located_blob(repo, &view, &base))
                    .transpose()?;
                repo.decode_blob_with_base(
                    &b.id,
                    &loc,
                    sealed,
                    base.as_ref().map(|(l, s)| (l, &s[..])),
                )?;
                saver.add_with_base(b.kind, b.id, sealed, b.raw_len, b.base)?;
                rep.blobs_repacked += 1;
            }
            rep.packs_repacked += 1;
            to_mark.push(p.id);
        }
        saver.finish()?;
        rep.bytes_repacked = saver.stats.stored_bytes;
        for (id, idx) in saver.take_written() {
            new_index_ids.push(id);
            new_packs.extend(idx.packs);
        }
    }

    phase(repo, "mark");
    // 5. New mark: pending, then completed with the live leases.
    if !to_mark.is_empty() {
        let name = lease::new_mark_name();
        let mut m = Mark {
            version: 1,
            time: lease::now(),
            packs: to_mark.iter().map(|p| p.to_hex()).collect(),
            blockers: None,
        };
        lease::store_mark(&store, &key, &name, &m)?;
        let now = Utc::now();
        let blockers: Vec<String> = lease::list_leases(&store, &key)?
            .into_iter()
            .filter(|l| l.is_live(now) && Some(l.name.as_str()) != own_lease)
            .map(|l| l.name)
            .collect();
        m.blockers = Some(blockers);
        lease::store_mark(&store, &key, &name, &m)?;
        rep.packs_marked = to_mark.len() as u64;
        for id in &to_mark {
            rep.bytes_marked += view.listed_size(id)?.unwrap_or(0);
        }
    }
    // Pending marks left by an interrupted prune: complete them now (any
    // lease not listed now was written after the mark became visible).
    for (name, m) in &waiting {
        if m.blockers.is_none() {
            let now = Utc::now();
            let blockers: Vec<String> = lease::list_leases(&store, &key)?
                .into_iter()
                .filter(|l| l.is_live(now) && Some(l.name.as_str()) != own_lease)
                .map(|l| l.name)
                .collect();
            let mut m = m.clone();
            m.blockers = Some(blockers);
            lease::store_mark(&store, &key, name, &m)?;
        }
    }

    phase(repo, "delete");
    // 6. New index objects, then deletions. Rewritten only when packs go or
    //    come, or when there are more index objects than the blob count
    //    needs at [`MAX_INDEX_BLOBS`] each (consolidation).
    let needed = view.blob_count()?.div_ceil(MAX_INDEX_BLOBS).max(1);
    if !delete.is_empty() || !new_packs.is_empty() || index_ids.len() as u64 > needed {
        let mut old = index_ids.clone();
        old.extend(new_index_ids.iter().copied());
        rep.indexes_superseded = old.len() as u64;
        // Every object but the last supersedes nothing, so a crash before
        // the last leaves the old ones in force (packs named twice count
        // once); the last supersedes them all.
        let mut batch: Vec<IndexPack> = Vec::new();
        let mut batch_blobs = 0u64;
        view.for_each_pack(|p| {
            if delete.contains(&p.id) {
                return Ok(());
            }
            if batch_blobs > 0 && batch_blobs + p.count > MAX_INDEX_BLOBS {
                write_index(repo, std::mem::take(&mut batch), Vec::new())?;
                batch_blobs = 0;
            }
            batch.push(IndexPack {
                id: p.id,
                size: p.size,
                blobs: view.pack_blobs(p)?,
            });
            batch_blobs += p.count;
            Ok(())
        })?;
        batch.extend(new_packs);
        write_index(repo, batch, old.clone())?;
        for id in &old {
            store.delete(&ObjectKind::Index.key(&id.to_hex()))?;
        }
    }
    drop(view);
    for id in &delete {
        store.delete(&ObjectKind::Pack.key(&id.to_hex()))?;
    }
    for (name, _) in &ripe {
        store.delete(&ObjectKind::Mark.key(name))?;
    }
    rep.staging_removed = remove_stale_staging(repo, STAGING_MIN_AGE)?;
    if let Some(lock) = &repo.config().object_lock {
        phase(repo, "object lock");
        rep.object_lock = Some(crate::ops::object_lock::maintain(&store, lock, false)?);
    }
    repo.sync_catalog()?;
    rep.data_bytes_after = data_bytes(repo)?;
    rep.seconds = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// Most blobs one index object written by prune lists (about 25 MiB of
/// plaintext at 45–77 bytes per entry, far under the 256 MiB object limit),
/// so rewriting the index needs memory for one such object, not the index.
pub const MAX_INDEX_BLOBS: u64 = 500_000;

/// Age after which a staging file is taken to be left by a killed write.
pub const STAGING_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes the staging files (`NAME#N`, written before the rename that makes
/// an object visible) that object_store's local backend leaves behind when a
/// process is killed mid-write, if they are older than `min_age` (a write in
/// progress is younger; 15 minutes is far beyond any one object's write).
/// They are never objects of the repository (§2: names are ids or lease and
/// mark names, which never contain `#`). Returns how many were removed;
/// S3 repositories have none (an interrupted upload is not visible).
///
/// Errors: [`ErrorKind::Io`] if a folder cannot be listed or a file removed.
pub fn remove_stale_staging(repo: &Repository, min_age: std::time::Duration) -> Result<u64> {
    repo.store().remove_stale_staging(min_age)
}

/// Kind name for messages.
pub fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Data => "data",
        BlobKind::Tree => "tree",
    }
}
