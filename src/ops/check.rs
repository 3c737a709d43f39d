//! `snap check`: repository structure and (optionally) data verification.
//!
//! Structure: every snapshot's trees decode, every blob they reference is in
//! the index, every indexed pack exists with its indexed size. Data
//! (`read_data`): each selected pack is downloaded; its name must equal the
//! BLAKE3 of its bytes, its header must open and match the index, and every
//! blob must open, decompress and hash to its keyed id. Damaged packs are
//! reported with the snapshots and paths that depend on them.

use crate::catalog::BlobLocation;
use crate::error::{Error, Result};
use crate::events::{run_op, Event, Op};
use crate::format::pack::{split_pack, PackEntry, PackHeader, HEADER_LEN_SIZE};
use crate::format::snapshot::Snapshot;
use crate::format::tree::EntryKind;
use crate::format::{BlobId, DictId, IndexId, PackId, SnapshotId, MAX_METADATA_SIZE};
use crate::index_view::{IndexView, ViewPack};
use crate::repo::Repository;
use crate::store::ObjectKind;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Which packs `read_data` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Part `n` (1-based) of `m`: packs whose id's first 4 bytes (u32 LE)
    /// modulo `m` equal `n - 1`.
    Part(u32, u32),
}

impl Subset {
    /// Whether pack `id` is in the subset.
    pub fn contains(&self, id: &PackId) -> bool {
        match *self {
            Subset::All => true,
            Subset::Part(n, m) => {
                let v = u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
                v % m == n - 1
            }
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// The damaged or missing pack, if the problem is about one (hex).
    pub pack: Option<String>,
    /// One-line description.
    pub message: String,
    /// Snapshots (hex ids) that depend on the damaged data.
    pub snapshots: Vec<String>,
    /// Paths (inside those snapshots) that depend on it, "<snapshot short>:/path".
    pub paths: Vec<String>,
}

/// Result of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees read.
    pub trees: u64,
    /// Indexed packs.
    pub packs: u64,
    /// Packs whose data was read.
    pub packs_read: u64,
    /// Bytes of packs read.
    pub bytes_read: u64,
    /// Blobs verified by reading.
    pub blobs_read: u64,
    /// The subset read, e.g. "3/10" (empty: no data read).
    pub subset: String,
    /// Problems found (empty: clean).
    pub problems: Vec<Problem>,
    /// With S3 Object Lock (format-spec §25.8): objects still in use whose
    /// retention has lapsed (a warning, not a problem: `prune` extends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock_lapsed: Option<u64>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Reads a pack's header with two ranged reads (length field, then header)
/// and validates it against the pack `size` in bytes.
pub fn read_pack_header(repo: &Repository, id: &PackId, size: u64) -> Result<Vec<PackEntry>> {
    let key = ObjectKind::Pack.key(&id.to_hex());
    if size < HEADER_LEN_SIZE as u64 {
        return Err(Error::corrupt(format!("pack {} is too short", id.short())));
    }
    let lb = repo
        .store()
        .get_range(&key, size - HEADER_LEN_SIZE as u64..size)?;
    let hlen = u32::from_le_bytes([lb[0], lb[1], lb[2], lb[3]]) as u64;
    if hlen + HEADER_LEN_SIZE as u64 > size || hlen as usize > MAX_METADATA_SIZE {
        return Err(Error::corrupt(format!(
            "pack {} has an impossible header length {hlen}",
            id.short()
        )));
    }
    let start = size - HEADER_LEN_SIZE as u64 - hlen;
    let sealed = repo
        .store()
        .get_range(&key, start..size - HEADER_LEN_SIZE as u64)?;
    let plain = repo.key().open(
        crate::crypto::AAD_PACK_HEADER,
        &sealed,
        &format!("header of pack {}", id.short()),
    )?;
    Ok(PackHeader::decode(&plain, start)?.entries)
}

/// What [`verify_pack`] found: (entries from its header, if it opened; ids
/// of blobs that failed; problems as messages).
pub type PackVerdict = (Option<Vec<PackEntry>>, Vec<BlobId>, Vec<String>);

/// Verifies a whole downloaded pack; see [`PackVerdict`]. A blob that is
/// intact but names a dictionary that is missing or unreadable (format-spec
/// §12.1) is not counted as failed (repair must keep it); it is recorded in
/// `dict_problems` as (dictionary id, blob id, the error).
pub fn verify_pack(repo: &Repository, id: &PackId, bytes: &[u8]) -> PackVerdict {
    verify_pack_dicts(repo, id, bytes, &mut Vec::new())
}

/// [`verify_pack`] that also hands back the blobs whose dictionary is
/// missing or unreadable.
pub fn verify_pack_dicts(
    repo: &Repository,
    id: &PackId,
    bytes: &[u8],
    dict_problems: &mut Vec<(DictId, BlobId, String)>,
) -> PackVerdict {
    let mut msgs = Vec::new();
    let mut bad = Vec::new();
    if PackId::of_object(bytes) != *id {
        msgs.push(format!(
            "pack {} does not match its name (BLAKE3 of its bytes differs)",
            id.short()
        ));
    }
    let entries = match split_pack(bytes)
        .map_err(Error::from)
        .and_then(|(data_len, sealed)| {
            let plain = repo.key().open(
                crate::crypto::AAD_PACK_HEADER,
                sealed,
                &format!("header of pack {}", id.short()),
            )?;
            Ok(PackHeader::decode(&plain, data_len as u64)?.entries)
        }) {
        Ok(e) => e,
        Err(e) => {
            msgs.push(format!("pack {}: {e:#}", id.short()));
            return (None, bad, msgs);
        }
    };
    for e in &entries {
        let loc = BlobLocation::of_entry(*id, e);
        let s = e.offset as usize;
        let r = bytes
            .get(s..s + e.length as usize)
            .ok_or_else(|| Error::corrupt("blob outside the pack"))
            .and_then(|sealed| repo.decode_blob(&e.id, &loc, sealed));
        // A delta blob whose base no index names is intact itself; the
        // missing base is reported by the index checks, and repair must not
        // treat this pack as damaged because of it.
        if matches!(&r, Err(err) if err.kind() == crate::error::ErrorKind::NotFound && e.base.is_some())
        {
            continue;
        }
        if let Err(err) = r {
            // The blob opens but its dictionary does not: the dictionary is
            // the problem, reported once by the caller.
            let dict = bytes
                .get(s..s + e.length as usize)
                .and_then(|sealed| repo.key().open_blob(e.kind, &e.id, sealed).ok())
                .and_then(|enc| crate::write::compress::dict_of(&enc));
            if let Some(d) = dict {
                if let Err(de) = repo.dictionary(&d) {
                    dict_problems.push((d, e.id, format!("{de:#}")));
                    continue;
                }
            }
            msgs.push(format!(
                "pack {}: blob {}: {err:#}",
                id.short(),
                e.id.short()
            ));
            bad.push(e.id);
        }
    }
    (Some(entries), bad, msgs)
}

/// For each damaged blob set, the snapshots and paths that use them.
/// Returns (snapshot hex ids, "<short>:/path" list).
pub fn dependents(repo: &Repository, bad: &HashSet<BlobId>) -> Result<(Vec<String>, Vec<String>)> {
    let snaps = repo.snapshots()?;
    let mut memo: HashMap<BlobId, bool> = HashMap::new();
    // Both walks recurse at most MAX_DEPTH levels (format-spec §17); a
    // deeper tree counts as affected.
    fn affected(
        repo: &Repository,
        t: BlobId,
        depth: usize,
        bad: &HashSet<BlobId>,
        memo: &mut HashMap<BlobId, bool>,
    ) -> bool {
        if let Some(v) = memo.get(&t) {
            return *v;
        }
        let v = if bad.contains(&t) || depth > crate::format::tree::MAX_DEPTH {
            true
        } else {
            match repo.read_tree(&t) {
                Err(_) => true,
                Ok(tree) => {
                    let mut any = false;
                    for e in &tree.entries {
                        if e.content.iter().any(|c| bad.contains(c)) {
                            any = true;
                        }
                        if let (EntryKind::Dir, Some(s)) = (e.kind, e.subtree) {
                            if affected(repo, s, depth + 1, bad, memo) {
                                any = true;
                            }
                        }
                    }
                    any
                }
            }
        };
        memo.insert(t, v);
        v
    }
    #[allow(clippy::too_many_arguments)]
    fn collect(
        repo: &Repository,
        t: BlobId,
        path: &str,
        depth: usize,
        short: &str,
        bad: &HashSet<BlobId>,
        memo: &mut HashMap<BlobId, bool>,
        out: &mut Vec<String>,
    ) {
        if bad.contains(&t) || depth > crate::format::tree::MAX_DEPTH {
            out.push(format!("{short}:{}/ (directory listing)", path));
            return;
        }
        let Ok(tree) = repo.read_tree(&t) else {
            out.push(format!("{short}:{}/ (directory listing)", path));
            return;
        };
        for e in &tree.entries {
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            if e.content.iter().any(|c| bad.contains(c)) {
                out.push(format!("{short}:{p}"));
            }
            if let (EntryKind::Dir, Some(s)) = (e.kind, e.subtree) {
                if affected(repo, s, depth + 1, bad, memo) {
                    collect(repo, s, &p, depth + 1, short, bad, memo, out);
                }
            }
        }
    }
    let mut ids = Vec::new();
    let mut paths = Vec::new();
    for (id, s) in &snaps {
        if affected(repo, s.tree, 1, bad, &mut memo) {
            ids.push(id.to_hex());
            collect(repo, s.tree, "", 1, &id.short(), bad, &mut memo, &mut paths);
        }
    }
    Ok((ids, paths))
}

/// A problem that concerns no pack.
fn problem(message: String) -> Problem {
    Problem {
        pack: None,
        message,
        snapshots: Vec::new(),
        paths: Vec::new(),
    }
}

/// Reads every listed snapshot object from the repository (name, envelope
/// and encoding verified) and compares the catalog's snapshot list with
/// them. Unreadable objects and disagreements become problems in `out`.
/// Returns the readable snapshots, ordered like the catalog (time, id).
fn reread_snapshots(
    repo: &Repository,
    out: &mut Vec<Problem>,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let listed: Vec<SnapshotId> = crate::repo::list_sealed(repo.store())?;
    let mut snaps = Vec::new();
    for id in listed {
        match repo.read_snapshot(&id) {
            Ok(s) => snaps.push((id, s)),
            // Forgotten by a concurrent operation after listing.
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {}
            Err(e) if e.kind().is_damaged_data() => {
                let mut p = problem(format!(
                    "snapshot object {} is unreadable: {}; run `snap repair snapshots` to remove it",
                    id.to_hex(),
                    crate::repo::reason(ObjectKind::Snapshot, &id, &e)
                ));
                p.snapshots.push(id.to_hex());
                out.push(p);
            }
            Err(e) => return Err(e),
        }
    }
    let cached: HashMap<SnapshotId, Snapshot> = repo.snapshots()?.into_iter().collect();
    let mut stale = Vec::new();
    for (id, s) in &snaps {
        match cached.get(id) {
            Some(c) if c == s => {}
            Some(_) => stale.push(format!("snapshot {} differs", id.short())),
            None => stale.push(format!("snapshot {} is missing", id.short())),
        }
    }
    let read: HashSet<SnapshotId> = snaps.iter().map(|(i, _)| *i).collect();
    let unreadable: HashSet<SnapshotId> = repo
        .unreadable_snapshots()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    for id in cached.keys() {
        if !read.contains(id) && !unreadable.contains(id) {
            stale.push(format!(
                "snapshot {} has no readable snapshot object",
                id.short()
            ));
        }
    }
    if !stale.is_empty() {
        stale.sort();
        out.push(problem(format!(
            "the catalog disagrees with the repository ({}); run `snap cache rebuild`",
            stale.join(", ")
        )));
    }
    snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(snaps)
}

/// Runs a check; `read_data` selects the packs whose data is verified.
/// Reports `Started`, a `Phase` per step ("index", "trees",
/// "dictionaries", "read-data") and `Finished` to the repository's
/// [`crate::Events`]; problems are in the report.
pub fn check(repo: &Repository, read_data: Option<Subset>) -> Result<CheckReport> {
    run_op(repo.events(), Op::Check, || check_in(repo, read_data))
}

/// Reports that check step `name` begins.
fn phase(repo: &Repository, name: &'static str) {
    repo.events().event(&Event::Phase {
        op: Op::Check,
        phase: name,
    });
}

fn check_in(repo: &Repository, read_data: Option<Subset>) -> Result<CheckReport> {
    let started = Instant::now();
    phase(repo, "index");
    let mut rep = CheckReport::default();
    // Index objects are read before the catalog sync, so the catalog holds
    // at least what they name when the two are compared below.
    let (mut view, index_ids, bad_indexes) = IndexView::load(repo)?;
    repo.sync_catalog()?;
    // data/, into the view (not memory: millions of packs).
    view.list_packs(repo.store())?;
    let mut other: Vec<Problem> = Vec::new();
    for (id, e) in &bad_indexes {
        other.push(problem(format!(
            "index object {} is unreadable: {}; run `snap repair index`",
            id.to_hex(),
            crate::repo::reason(ObjectKind::Index, id, e)
        )));
    }
    if bad_indexes.is_empty() {
        // Every indexed blob must be in the catalog at one of its indexed
        // locations; if the catalog loaded exactly these index objects it
        // must hold no other blob. Compared in SQL against the catalog
        // file, attached read-only.
        let cat_ids = repo.catalog().index_ids()?;
        let read: HashSet<IndexId> = index_ids.iter().copied().collect();
        view.attach_catalog(&repo.catalog_path())?;
        let (examples, total) = view.compare_catalog(cat_ids == read, 5)?;
        // Reported only if no index object came or went meanwhile (check
        // takes no lease; a concurrent prune or backup changes the index).
        let now: HashSet<IndexId> = crate::repo::list_sealed::<IndexId>(repo.store())?
            .into_iter()
            .collect();
        if now == read && total > 0 {
            other.push(problem(format!(
                "the catalog disagrees with the index objects in {total} place(s) ({}); run `snap cache rebuild`",
                examples.join(", ")
            )));
        }
    }
    rep.packs = view.pack_count()?;
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    let mut pack_problems: Vec<(PackId, String, HashSet<BlobId>)> = Vec::new();
    // Indexed packs exist with their size.
    view.for_each_pack(|p| {
        let msg = match view.listed_size(&p.id)? {
            None => format!("pack {} is in the index but missing", p.id.short()),
            Some(sz) if sz != p.size => format!(
                "pack {} has {sz} bytes but the index says {}",
                p.id.short(),
                p.size
            ),
            _ => return Ok(()),
        };
        let blobs = view.pack_blobs(p)?.iter().map(|b| b.id).collect();
        pack_problems.push((p.id, msg, blobs));
        Ok(())
    })?;
    // Trees and references, from the snapshot objects re-read and
    // re-authenticated (the catalog is only compared with them).
    phase(repo, "trees");
    let snaps = reread_snapshots(repo, &mut other)?;
    rep.snapshots = snaps.len() as u64;
    // Trees seen are a table of the view, not a set in memory.
    for (sid, s) in &snaps {
        let mut stack = vec![(s.tree, String::new())];
        while let Some((t, path)) = stack.pop() {
            if !view.see_tree(&t)? {
                continue;
            }
            rep.trees += 1;
            // Restore and the other walkers refuse deeper trees.
            if let Err(e) =
                crate::read::restore::check_depth(path.matches('/').count() + 1, || path.clone())
            {
                other.push(Problem {
                    pack: None,
                    message: format!("snapshot {}: {e:#}", sid.short()),
                    snapshots: vec![sid.to_hex()],
                    paths: vec![format!("{}:{}/", sid.short(), path)],
                });
                continue;
            }
            let tree = match repo.read_tree(&t) {
                Ok(tr) => tr,
                Err(e) => {
                    other.push(Problem {
                        pack: repo.catalog().lookup(&t)?.map(|l| l.pack.to_hex()),
                        message: format!(
                            "snapshot {}: directory {}/ (tree {}): {e:#}",
                            sid.short(),
                            path,
                            t.short()
                        ),
                        snapshots: vec![sid.to_hex()],
                        paths: vec![format!("{}:{}/", sid.short(), path)],
                    });
                    continue;
                }
            };
            let cat = repo.catalog();
            for e in &tree.entries {
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                for c in &e.content {
                    // A delta blob needs its base too (format-spec §13).
                    let missing = match cat.lookup(c)? {
                        None => Some(format!("blob {}", c.short())),
                        Some(l) => match l.base {
                            Some(b) if cat.lookup(&b)?.is_none() => {
                                Some(format!("blob {} (base of {})", b.short(), c.short()))
                            }
                            _ => None,
                        },
                    };
                    if let Some(what) = missing {
                        other.push(Problem {
                            pack: None,
                            message: format!(
                                "snapshot {}: {p}: {what} is not in the index",
                                sid.short(),
                            ),
                            snapshots: vec![sid.to_hex()],
                            paths: vec![format!("{}:{p}", sid.short())],
                        });
                        break;
                    }
                }
                if let (EntryKind::Dir, Some(st)) = (e.kind, e.subtree) {
                    stack.push((st, p));
                }
            }
        }
    }
    phase(repo, "dictionaries");
    // Dictionary objects (format-spec §12.1): each must open and be a zstd
    // dictionary. Which blobs use one is known only from reading them.
    // Read from the store, not the local cache.
    repo.forget_cached_dictionaries();
    for d in crate::repo::list_sealed::<DictId>(repo.store())? {
        if let Err(e) = repo.dictionary(&d) {
            other.push(problem(format!(
                "dictionary object {} is unreadable: {e:#}; the stream chunks compressed with it cannot be restored",
                d.to_hex()
            )));
        }
    }
    // Data.
    let mut dict_problems: Vec<(DictId, BlobId, String)> = Vec::new();
    if let Some(sub) = read_data {
        phase(repo, "read-data");
        rep.subset = match sub {
            Subset::All => "all".into(),
            Subset::Part(n, m) => format!("{n}/{m}"),
        };
        let mut selected: Vec<ViewPack> = Vec::new();
        view.for_each_pack(|p| {
            if sub.contains(&p.id) && view.listed_size(&p.id)?.is_some() {
                selected.push(*p);
            }
            Ok(())
        })?;
        for p in &selected {
            let indexed = view.pack_blobs(p)?;
            let bytes = repo.store().get(&ObjectKind::Pack.key(&p.id.to_hex()))?;
            rep.packs_read += 1;
            rep.bytes_read += bytes.len() as u64;
            let (entries, bad, mut msgs) =
                verify_pack_dicts(repo, &p.id, &bytes, &mut dict_problems);
            rep.blobs_read += entries.as_ref().map_or(0, |e| e.len() as u64);
            let mut affected: HashSet<BlobId> = bad.into_iter().collect();
            match &entries {
                None => affected.extend(indexed.iter().map(|b| b.id)),
                Some(e) => {
                    let mut a = e.clone();
                    let mut b = indexed;
                    a.sort_by_key(|x| x.offset);
                    b.sort_by_key(|x| x.offset);
                    if a != b {
                        msgs.push(format!(
                            "pack {}: header does not match the index; run `snap repair index`",
                            p.id.short()
                        ));
                    }
                }
            }
            if !msgs.is_empty() {
                pack_problems.push((p.id, msgs.join("; "), affected));
            }
        }
    }
    // Blobs whose dictionary is missing or unreadable: one problem per
    // dictionary, naming it and what depends on it.
    let mut by_dict: std::collections::BTreeMap<DictId, (String, HashSet<BlobId>)> =
        Default::default();
    for (d, blob, msg) in dict_problems {
        by_dict
            .entry(d)
            .or_insert_with(|| (msg, HashSet::new()))
            .1
            .insert(blob);
    }
    for (d, (msg, blobs)) in by_dict {
        bad_blobs.extend(blobs.iter().copied());
        let (snaps, paths) = dependents(repo, &blobs)?;
        rep.problems.push(Problem {
            pack: None,
            message: format!(
                "{} blobs are compressed with dictionary {}, which cannot be used: {msg}",
                blobs.len(),
                d.short()
            ),
            snapshots: snaps,
            paths,
        });
    }
    for (pid, msg, blobs) in pack_problems {
        bad_blobs.extend(blobs.iter().copied());
        let (snaps, paths) = dependents(repo, &blobs)?;
        rep.problems.push(Problem {
            pack: Some(pid.to_hex()),
            message: msg,
            snapshots: snaps,
            paths,
        });
    }
    rep.problems.extend(other);
    if let Some(lock) = &repo.config().object_lock {
        // A warning only, and never fatal: an append-only credential may not
        // be allowed to list versions (s3:ListBucketVersions).
        match crate::ops::object_lock::lapsed(repo.store(), lock) {
            Ok(l) => {
                if let Some((key, until)) = l.first() {
                    repo.store().warn(format!(
                        "object lock: {} objects still in use are no longer protected (e.g. {key}, retention {}); run prune from the trusted machine to extend it",
                        l.len(),
                        until.map_or("none".to_string(), |u| format!("ended {}", u.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                    ));
                }
                rep.object_lock_lapsed = Some(l.len() as u64);
            }
            Err(e) => repo.store().warn(format!(
                "object lock: could not read the retention of the objects: {e}"
            )),
        }
    }
    rep.seconds = started.elapsed().as_secs_f64();
    Ok(rep)
}
