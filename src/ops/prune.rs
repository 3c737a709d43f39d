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
//!    indexes, then deletes the ripe packs and their marks.

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::snapshot::Snapshot;
use crate::format::tree::EntryKind;
use crate::format::{BlobKind, Id};
use crate::lease::{self, Mark};
use crate::repo::Repository;
use crate::session::{Operation, Session};
use crate::store::ObjectKind;
use crate::write::pack::BlobSaver;
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
}

/// Where each blob named by `packs` is stored, preferring a copy in a pack
/// outside `marked` (the first such copy, else the first copy).
pub fn blob_locations(
    packs: &[IndexPack],
    marked: &HashSet<Id>,
) -> HashMap<Id, crate::catalog::BlobLocation> {
    let mut locs: HashMap<Id, (crate::catalog::BlobLocation, bool)> = HashMap::new();
    for p in packs {
        let unmarked = !marked.contains(&p.id);
        for b in &p.blobs {
            let loc = crate::catalog::BlobLocation::of_entry(p.id, b);
            match locs.get(&b.id) {
                Some((_, true)) => {}
                Some((_, false)) if !unmarked => {}
                _ => {
                    locs.insert(b.id, (loc, unmarked));
                }
            }
        }
    }
    locs.into_iter().map(|(id, (l, _))| (id, l)).collect()
}

/// The location and sealed bytes of blob `id` from `locs` (as built by
/// [`blob_locations`]). Fails with [`ErrorKind::NotFound`] if `locs` does
/// not name it, or a store error.
pub fn fetch_located_blob(
    repo: &Repository,
    locs: &HashMap<Id, crate::catalog::BlobLocation>,
    id: &Id,
) -> Result<(crate::catalog::BlobLocation, Bytes)> {
    let loc = *locs.get(id).ok_or_else(|| {
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

/// Reads and verifies blob `id` from `locs` (as built by [`blob_locations`]),
/// including the base of a delta blob. Fails with [`ErrorKind::NotFound`]
/// if `locs` does not name it (or its base), [`ErrorKind::Corrupt`] if it
/// does not authenticate or decode, or a store error.
pub fn read_located_blob(
    repo: &Repository,
    locs: &HashMap<Id, crate::catalog::BlobLocation>,
    id: &Id,
) -> Result<Vec<u8>> {
    let (loc, sealed) = fetch_located_blob(repo, locs, id)?;
    let base = loc
        .base
        .map(|b| fetch_located_blob(repo, locs, &b))
        .transpose()?;
    repo.decode_blob_with_base(id, &loc, &sealed, base.as_ref().map(|(l, s)| (l, &s[..])))
}

/// Every blob (tree and data) reachable from the given snapshot root trees,
/// reading the trees from the packs `locs` names (see [`blob_locations`]),
/// not through the catalog. Fails ([`ErrorKind::Corrupt`] /
/// [`ErrorKind::NotFound`]) if a tree cannot be read: then the set would be
/// incomplete and deleting anything unsafe.
pub fn referenced_blobs(
    repo: &Repository,
    locs: &HashMap<Id, crate::catalog::BlobLocation>,
    roots: &[Id],
) -> Result<HashSet<Id>> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut stack: Vec<Id> = Vec::new();
    for r in roots {
        if seen.insert(*r) {
            stack.push(*r);
        }
    }
    while let Some(t) = stack.pop() {
        let tree = read_located_blob(repo, locs, &t)
            .and_then(|plain| crate::repo::decode_tree(&t, &plain))
            .map_err(|e| {
                e.context(format!(
                    "tree {} is unreadable; run `snap check` and `snap repair snapshots` before pruning",
                    t.short()
                ))
            })?;
        for e in &tree.entries {
            for c in &e.content {
                seen.insert(*c);
            }
            if let (EntryKind::Dir, Some(s)) = (e.kind, e.subtree) {
                if seen.insert(s) {
                    stack.push(s);
                }
            }
        }
    }
    Ok(seen)
}

/// The snapshot objects listed under `snapshots/` now, oldest first, and
/// those that do not authenticate or decode: (id, reason), ordered by id
/// (their trees would look unused). The listing is the caller's own; only
/// the decoded contents of ids the catalog already holds are taken from it
/// (snapshot objects never change). A snapshot deleted between listing and
/// reading is left out. Fails only on store errors other than NotFound.
pub fn list_snapshots(repo: &Repository) -> Result<ListedSnapshots> {
    let listed: Vec<Id> = repo.store().list_ids(ObjectKind::Snapshot.list_prefix())?;
    let mut known: HashMap<Id, Snapshot> = repo.snapshots()?.into_iter().collect();
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
pub type ListedSnapshots = (Vec<(Id, Snapshot)>, Vec<(Id, String)>);

/// All index objects: (listed ids, effective packs by id). An index named in
/// another listed index's `supersedes` is skipped. Fails with
/// [`ErrorKind::Corrupt`] naming the first index object that does not
/// authenticate or decode (telling the user to run `snap repair index`):
/// without it blobs it names would look unused.
pub fn load_indexes(repo: &Repository) -> Result<(Vec<Id>, Vec<IndexPack>)> {
    let (ids, packs, bad) = load_indexes_lenient(repo)?;
    if let Some((id, e)) = bad.into_iter().next() {
        return Err(Error::corrupt(format!(
            "index object {} is unreadable ({}), so the blobs it names would look unused; run `snap repair index` first",
            id.to_hex(),
            crate::repo::reason(ObjectKind::Index, &id, &e)
        )));
    }
    Ok((ids, packs))
}

/// What [`load_indexes_lenient`] read: the readable index ids, the
/// effective packs, and the unreadable index objects with their errors.
pub type LoadedIndexes = (Vec<Id>, Vec<IndexPack>, Vec<(Id, Error)>);

/// [`load_indexes`] that skips index objects that do not authenticate or
/// decode and returns them as a third element: (id, error), ordered by id.
/// Only store errors other than NotFound fail.
pub fn load_indexes_lenient(repo: &Repository) -> Result<LoadedIndexes> {
    let listed: Vec<Id> = repo.store().list_ids(ObjectKind::Index.list_prefix())?;
    let mut files = Vec::new();
    let mut bad = Vec::new();
    for id in &listed {
        match repo.read_index(id) {
            Ok(f) => files.push((*id, f)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind().is_damaged_data() => bad.push((*id, e)),
            Err(e) => return Err(e),
        }
    }
    let superseded: HashSet<Id> = files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect();
    let mut seen = HashSet::new();
    let mut packs = Vec::new();
    let mut ids = Vec::new();
    for (id, f) in files {
        ids.push(id);
        if superseded.contains(&id) {
            continue;
        }
        for p in f.packs {
            if seen.insert(p.id) {
                packs.push(p);
            }
        }
    }
    Ok((ids, packs, bad))
}

/// Writes one index object naming `packs` and superseding `old`; returns its
/// id and stored size in bytes.
pub fn write_index(repo: &Repository, packs: Vec<IndexPack>, old: Vec<Id>) -> Result<(Id, u64)> {
    let idx = IndexFile {
        supersedes: old,
        packs,
    };
    let sealed = repo.key().seal(crate::crypto::AAD_INDEX, &idx.encode());
    let id = Id::of_object(&sealed);
    let n = sealed.len() as u64;
    repo.store()
        .put_new(&ObjectKind::Index.key(&id.to_hex()), Bytes::from(sealed))?;
    Ok((id, n))
}

/// Packs under `data/` with their sizes in bytes.
pub fn list_packs(repo: &Repository) -> Result<HashMap<Id, u64>> {
    Ok(repo
        .store()
        .list(ObjectKind::Pack.list_prefix())?
        .into_iter()
        .filter_map(|l| Some((Id::from_hex(&l.name)?, l.size)))
        .collect())
}

/// Runs one prune; see the module documentation for the steps. `session`
/// must be opened for [`Operation::Prune`]: its lease keeps a second prune
/// out and is never a blocker of its own marks.
pub fn prune(session: &Session, opts: &PruneOptions) -> Result<PruneReport> {
    session.require(&[Operation::Prune], "prune")?;
    prune_without(session, Some(session.lease().name()), opts, &HashSet::new())
}

/// A dry run of [`prune`] without a lease (writes and deletes nothing,
/// whatever `opts.dry_run` says), as if the snapshots `forgotten` were
/// already gone: their trees are not walked, so what only they reference
/// counts as unused. For `prune --dry-run` and the estimate of
/// `forget --prune --dry-run`, which removes nothing.
pub fn estimate(
    repo: &Repository,
    opts: &PruneOptions,
    forgotten: &HashSet<Id>,
) -> Result<PruneReport> {
    let opts = PruneOptions {
        dry_run: true,
        ..opts.clone()
    };
    prune_without(repo, None, &opts, forgotten)
}

/// The prune; `own_lease` is the name of the caller's prune lease, `None`
/// only for a dry run.
fn prune_without(
    repo: &Repository,
    own_lease: Option<&str>,
    opts: &PruneOptions,
    forgotten: &HashSet<Id>,
) -> Result<PruneReport> {
    let started = Instant::now();
    let mut rep = PruneReport::default();
    let store = repo.store().clone();
    let key = repo.key().clone();

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
    let (index_ids, packs, bad) = load_indexes_lenient(repo)?;
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
    let existing = list_packs(repo)?;
    rep.data_bytes_before = existing.values().sum();

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

    // 2. Referenced blobs.
    rep.snapshots = snaps.len() as u64;
    let roots: Vec<Id> = snaps.iter().map(|(_, s)| s.tree).collect();
    let all_marked: HashSet<Id> = ripe
        .iter()
        .chain(waiting.iter())
        .flat_map(|(_, m)| m.pack_ids())
        .collect();
    let locs = blob_locations(&packs, &all_marked);
    let mut referenced = referenced_blobs(repo, &locs, &roots)?;
    // A referenced delta blob needs its base (format-spec §13); bases are
    // never deltas, so one pass closes the set. Every stored copy counts.
    let bases: Vec<Id> = packs
        .iter()
        .flat_map(|p| p.blobs.iter())
        .filter(|b| referenced.contains(&b.id))
        .filter_map(|b| b.base)
        .collect();
    referenced.extend(bases);
    rep.blobs_referenced = referenced.len() as u64;

    // 3. Ripe marks: delete what is still unneeded.
    let ripe_packs: HashSet<Id> = ripe.iter().flat_map(|(_, m)| m.pack_ids()).collect();
    let waiting_packs: HashSet<Id> = waiting.iter().flat_map(|(_, m)| m.pack_ids()).collect();
    let by_id: HashMap<Id, &IndexPack> = packs.iter().map(|p| (p.id, p)).collect();
    let mut covered: HashSet<Id> = HashSet::new();
    for p in &packs {
        if !ripe_packs.contains(&p.id) {
            covered.extend(p.blobs.iter().map(|b| b.id));
        }
    }
    let mut delete: HashSet<Id> = HashSet::new();
    for x in &ripe_packs {
        let needed = by_id.get(x).is_some_and(|p| {
            p.blobs
                .iter()
                .any(|b| referenced.contains(&b.id) && !covered.contains(&b.id))
        });
        if needed {
            rep.packs_unmarked += 1;
            if let Some(p) = by_id.get(x) {
                covered.extend(p.blobs.iter().map(|b| b.id));
            }
        } else if existing.contains_key(x) || by_id.contains_key(x) {
            delete.insert(*x);
            rep.packs_deleted += 1;
            rep.bytes_freed += existing
                .get(x)
                .copied()
                .or_else(|| by_id.get(x).map(|p| p.size))
                .unwrap_or(0);
        }
    }

    // 4. Classify the other packs. Each referenced blob is owned by the first
    //    unmarked pack holding it.
    let candidates: Vec<&IndexPack> = packs
        .iter()
        .filter(|p| !delete.contains(&p.id) && !waiting_packs.contains(&p.id))
        .collect();
    let mut owner: HashMap<Id, Id> = HashMap::new();
    for p in &candidates {
        for b in &p.blobs {
            if referenced.contains(&b.id) {
                owner.entry(b.id).or_insert(p.id);
            }
        }
    }
    let mut to_mark: Vec<Id> = Vec::new();
    let mut to_repack: Vec<&IndexPack> = Vec::new();
    for p in &candidates {
        let used: u64 = p
            .blobs
            .iter()
            .filter(|b| owner.get(&b.id) == Some(&p.id))
            .map(|b| b.length as u64)
            .sum();
        if used == 0 {
            to_mark.push(p.id);
        } else {
            // Unused = blobs no snapshot needs from this pack; the header is
            // overhead every pack has, not waste.
            let all: u64 = p.blobs.iter().map(|b| b.length as u64).sum();
            let unused = (all - used) as f64 / p.size.max(1) as f64;
            if unused > opts.max_unused {
                to_repack.push(p);
            }
        }
    }
    // Packs in data/ that no index names (left by an interrupted backup, or
    // being written right now: the mark protocol makes marking them safe).
    let indexed: HashSet<Id> = packs.iter().map(|p| p.id).collect();
    for id in existing.keys() {
        if !indexed.contains(id) && !ripe_packs.contains(id) && !waiting_packs.contains(id) {
            to_mark.push(*id);
        }
    }
    rep.marks_waiting = waiting.len() as u64;

    if opts.dry_run {
        rep.packs_repacked = to_repack.len() as u64;
        rep.packs_marked = (to_mark.len() + to_repack.len()) as u64;
        rep.bytes_marked = to_mark
            .iter()
            .chain(to_repack.iter().map(|p| &p.id))
            .map(|id| existing.get(id).copied().unwrap_or(0))
            .sum();
        rep.data_bytes_after = rep.data_bytes_before - rep.bytes_freed.min(rep.data_bytes_before);
        rep.seconds = started.elapsed().as_secs_f64();
        return Ok(rep);
    }

    // Repack: copy owned blobs (verified) into new packs.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let mut new_index_ids: Vec<Id> = Vec::new();
    if !to_repack.is_empty() {
        let cfg = repo.config();
        let mut saver = BlobSaver::new(store.clone(), key.clone(), cfg.writer_packs().0, 1);
        for p in &to_repack {
            let raw = store.get(&ObjectKind::Pack.key(&p.id.to_hex()))?;
            for b in p.blobs.iter().filter(|b| owner.get(&b.id) == Some(&p.id)) {
                let (s, e) = (b.offset as usize, b.offset as usize + b.length as usize);
                let sealed = raw.get(s..e).ok_or_else(|| {
                    Error::corrupt(format!(
                        "pack {} is shorter than its index says; run `snap check`",
                        p.id.short()
                    ))
                })?;
                let loc = crate::catalog::BlobLocation::of_entry(p.id, b);
                // A delta's base is located through prune's own index view.
                let base = b
                    .base
                    .map(|base| fetch_located_blob(repo, &locs, &base))
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
        rep.bytes_marked = to_mark
            .iter()
            .map(|id| existing.get(id).copied().unwrap_or(0))
            .sum();
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

    // 6. New index, then deletions.
    if !delete.is_empty() || !new_packs.is_empty() || index_ids.len() > 1 {
        let mut all: Vec<IndexPack> = packs
            .iter()
            .filter(|p| !delete.contains(&p.id))
            .cloned()
            .collect();
        all.extend(new_packs);
        let mut old = index_ids.clone();
        old.extend(new_index_ids.iter().copied());
        rep.indexes_superseded = old.len() as u64;
        write_index(repo, all, old.clone())?;
        for id in &old {
            store.delete(&ObjectKind::Index.key(&id.to_hex()))?;
        }
    }
    for id in &delete {
        store.delete(&ObjectKind::Pack.key(&id.to_hex()))?;
    }
    for (name, _) in &ripe {
        store.delete(&ObjectKind::Mark.key(name))?;
    }
    rep.staging_removed = remove_stale_staging(repo, STAGING_MIN_AGE)?;
    repo.sync_catalog()?;
    rep.data_bytes_after = list_packs(repo)?.values().sum();
    rep.seconds = started.elapsed().as_secs_f64();
    Ok(rep)
}

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
    let Some(root) = repo.store().local_root() else {
        return Ok(0);
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for e in rd {
            let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let ft = e
                .file_type()
                .map_err(|err| Error::io("reading a file type", err))?;
            if ft.is_dir() {
                // data/<2 hex>/ is the deepest level snap writes.
                if depth < 2 {
                    dirs.push((e.path(), depth + 1));
                }
                continue;
            }
            if !ft.is_file() || !e.file_name().as_encoded_bytes().contains(&b'#') {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= min_age);
            if old {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => removed += 1,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(Error::io(format!("removing {}", e.path().display()), err))
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// Kind name for messages.
pub fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Data => "data",
        BlobKind::Tree => "tree",
    }
}
