//! The restore planner: reads the blobs a restore needs pack by pack, each
//! blob once, and hands each decoded blob to every place that needs it.
//!
//! After restic's `internal/restorer` (`filerestorer.go`): instead of
//! reading file after file, the planner
//!
//! 1. looks up every blob of the selected files in the catalog and records,
//!    per distinct blob, each (file, byte offset) that needs it;
//! 2. groups the blobs by pack, in the order the files first need the packs
//!    (so files complete early and few are open at once), and joins
//!    neighbouring blobs of one pack into one ranged read of at most
//!    [`MAX_READ`] bytes (on a remote store also across gaps of up to
//!    [`REMOTE_GAP`] bytes, since a request costs more than the bytes
//!    between two blobs);
//! 3. runs the reads on a fixed number of threads ([`reads_in_flight`]:
//!    [`REMOTE_READS`] for S3, [`LOCAL_READS`] for a directory), each calling
//!    the synchronous [`Store::get_range`], decoding the blobs of its read and
//!    writing each to all its destinations through a [`FileSink`].
//!
//! Memory is bounded by the reads in flight (together at most
//! [`READ_BUDGET`] sealed bytes, see [`max_read`], plus one decoded blob
//! each), not by the snapshot; the plan itself
//! holds one small record per distinct blob and per (file, offset).
//!
//! A read or blob that fails with damaged or missing data
//! ([`ErrorKind::Corrupt`], [`ErrorKind::Unauthenticated`],
//! [`ErrorKind::NotFound`]) damages only the files that need those blobs;
//! any other error (the target, the transport) stops the restore.
//!
//! Streams ([`for_each_blob`]) use the same reads, in stream order, with a
//! bounded look-ahead window.

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{BlobId, PackId};
use crate::read::fetch::Fetched;
use crate::repo::Repository;
use crate::store::{ObjectKind, Store};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Largest coalesced read, bytes.
pub const MAX_READ: u64 = 8 << 20;
/// Largest gap between two blobs read with one request on a remote store,
/// bytes (a local store only joins adjacent blobs).
pub const REMOTE_GAP: u64 = 256 << 10;
/// Reads kept in flight on a remote store by default (hides request latency).
pub const REMOTE_READS: usize = 16;
/// Reads kept in flight on a local directory by default (a disk and two to
/// four cores gain nothing from more).
pub const LOCAL_READS: usize = 4;
/// Largest number of reads in flight a caller may ask for.
pub const MAX_READS: usize = 64;
/// Sealed bytes a file restore holds in its reads in flight at most: each
/// read is at most this divided by the reads in flight (and at most
/// [`MAX_READ`]), so 16 reads on S3 read 4 MiB each, 4 local reads 8 MiB.
pub const READ_BUDGET: u64 = 64 << 20;

/// The largest read, bytes, with `threads` reads in flight: [`MAX_READ`],
/// less when [`READ_BUDGET`] would be exceeded, at least 1 MiB.
pub fn max_read(threads: usize) -> u64 {
    (READ_BUDGET / threads.max(1) as u64).clamp(1 << 20, MAX_READ)
}
/// Decoded bytes a stream read may hold (the look-ahead window of
/// [`for_each_blob`] holds at most this many per read in flight), bytes.
const STREAM_READ_RAW: u64 = 4 << 20;

/// The number of reads to keep in flight: `knob` when it is not 0 (capped
/// at [`MAX_READS`]), else [`LOCAL_READS`] for a local directory and
/// [`REMOTE_READS`] for a remote store.
pub fn reads_in_flight(store: &Store, knob: usize) -> usize {
    match knob {
        0 if !store.is_remote() => LOCAL_READS,
        0 => REMOTE_READS,
        n => n.min(MAX_READS),
    }
}

/// The largest gap, bytes, worth reading over to join two blobs of one pack
/// on this store.
fn gap_for(store: &Store) -> u64 {
    if !store.is_remote() {
        0
    } else {
        REMOTE_GAP
    }
}

/// Whether an error is about the repository's data for the blobs concerned
/// (reported per file), not about the target or the backend (fatal).
pub fn is_damage(e: &Error) -> bool {
    e.kind().is_damaged_data() || e.kind() == ErrorKind::NotFound
}

fn pack_key(p: &PackId) -> String {
    ObjectKind::Pack.key(&p.to_hex())
}

fn short_pack(pack: &PackId) -> Error {
    Error::corrupt(format!(
        "pack {} is shorter than its index says; run `snap check`",
        pack.short()
    ))
}

fn not_indexed(id: &BlobId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("blob {} is not in any index; run `snap check`", id.short()),
    )
}

/// One ranged read of a pack: bytes `start..end`, holding the blobs `blobs`
/// (indices into the caller's blob list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The pack.
    pub pack: PackId,
    /// First byte read.
    pub start: u64,
    /// One past the last byte read.
    pub end: u64,
    /// The blobs served by this read, by index, in offset order.
    pub blobs: Vec<usize>,
}

/// Joins blobs of one pack into ranged reads: `want` holds (pack, start,
/// end, blob index), in any order. Two blobs share a read when they are in
/// the same pack, at most `gap` bytes apart, and the read stays at most
/// `max` bytes long (a blob longer than `max` gets a read of its own).
/// Overlapping or repeated ranges share a read.
pub fn coalesce(mut want: Vec<(PackId, u64, u64, usize)>, gap: u64, max: u64) -> Vec<Read> {
    want.sort_unstable_by_key(|w| (w.0, w.1, w.2));
    let mut out: Vec<Read> = Vec::new();
    for (pack, s, e, b) in want {
        match out.last_mut() {
            Some(r)
                if r.pack == pack
                    && s <= r.end.saturating_add(gap)
                    && e.max(r.end) - r.start <= max =>
            {
                r.end = r.end.max(e);
                r.blobs.push(b);
            }
            _ => out.push(Read {
                pack,
                start: s,
                end: e,
                blobs: vec![b],
            }),
        }
    }
    out
}

/// Reads `r` from the store; a read shorter than asked is
/// [`ErrorKind::Corrupt`].
fn read_range(store: &Store, r: &Read) -> Result<Bytes> {
    let b = store.get_range(&pack_key(&r.pack), r.start..r.end)?;
    if (b.len() as u64) < r.end - r.start {
        return Err(short_pack(&r.pack));
    }
    Ok(b)
}

/// The sealed bytes of `loc` within the bytes `buf` read from `r`, if `r`
/// covers them.
fn slice_of<'a>(r: &Read, buf: &'a [u8], loc: &BlobLocation) -> Option<&'a [u8]> {
    if loc.pack != r.pack {
        return None;
    }
    let from = (loc.offset as u64).checked_sub(r.start)? as usize;
    buf.get(from..from.checked_add(loc.length as usize)?)
}

/// The delta bases of a read's blobs that the read itself does not cover,
/// fetched in one batch of coalesced reads (so a stream of delta blobs costs
/// a few requests per read, not one per blob). Errors: the store's.
fn fetch_bases<'a>(
    repo: &Repository,
    r: &Read,
    bases: impl Iterator<Item = Option<&'a BlobLocation>>,
) -> Result<Option<Fetched>> {
    let missing: Vec<BlobLocation> = bases
        .flatten()
        .filter(|bl| {
            !(bl.pack == r.pack
                && bl.offset as u64 >= r.start
                && bl.offset as u64 + bl.length as u64 <= r.end)
        })
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    crate::read::fetch::fetch(repo.store(), &missing).map(Some)
}

/// Decodes blob `id` at `loc` from the bytes of read `r`; the base of a
/// delta blob is taken from the same read when it holds it, else from
/// `fetched` (see [`fetch_bases`]), else read by the repository.
fn decode_in(
    repo: &Repository,
    r: &Read,
    buf: &[u8],
    id: &BlobId,
    loc: &BlobLocation,
    base: Option<&BlobLocation>,
    fetched: Option<&Fetched>,
) -> Result<Vec<u8>> {
    let sealed = slice_of(r, buf, loc).ok_or_else(|| short_pack(&loc.pack))?;
    let base = base.and_then(|bl| {
        slice_of(r, buf, bl)
            .or_else(|| fetched.and_then(|f| f.get(bl)))
            .map(|s| (bl, s))
    });
    let plain = repo.decode_blob_with_base(id, loc, sealed, base)?;
    check_len(id, loc, &plain)?;
    Ok(plain)
}

/// [`ErrorKind::Corrupt`] unless `plain` has the length the index gives
/// for blob `id`.
fn check_len(id: &BlobId, loc: &BlobLocation, plain: &[u8]) -> Result<()> {
    if plain.len() as u64 != loc.raw_len as u64 {
        return Err(Error::corrupt(format!(
            "blob {} in pack {} decodes to {} bytes, its index says {}; run `snap check`",
            id.short(),
            loc.pack.short(),
            plain.len(),
            loc.raw_len
        )));
    }
    Ok(())
}

/// Runs `work(i)` for `i` in `0..count` on up to `threads` threads, in
/// order of `i` (each thread takes the next index). Stops handing out
/// indices once `work` returns an error; returns the first error.
fn run_workers(
    threads: usize,
    count: usize,
    work: impl Fn(usize) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let body = || loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            break;
        }
        if let Err(e) = work(i) {
            stop.store(true, Ordering::Relaxed);
            first_err
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
            break;
        }
    };
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        body();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(body);
            }
        });
    }
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reads the given ranges of packs on up to `threads` threads; the bytes
/// come back in the order of `ranges`. Errors: the first store error (a
/// short read is [`ErrorKind::Corrupt`]).
pub fn read_ranges(
    store: &Store,
    ranges: &[(PackId, std::ops::Range<u64>)],
    threads: usize,
) -> Result<Vec<Bytes>> {
    let out: Vec<Mutex<Option<Bytes>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
    run_workers(threads, ranges.len(), |i| {
        let (p, r) = &ranges[i];
        let read = Read {
            pack: *p,
            start: r.start,
            end: r.end,
            blobs: Vec::new(),
        };
        let b = read_range(store, &read)?;
        *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
        Ok(())
    })?;
    Ok(out
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_default()
        })
        .collect())
}

/// Where a file restore writes: files numbered `0..n` by the caller. The
/// planner calls these from several threads at once, for different files
/// and for the same file (at different offsets).
pub trait FileSink: Sync {
    /// Writes decoded bytes `data` at byte `offset` of `file`; `zero` when
    /// they are all zero (the sink may leave a hole). A file marked damaged
    /// is not written. Errors are fatal to the restore.
    fn write(&self, file: usize, offset: u64, data: &[u8], zero: bool) -> Result<()>;
    /// Every blob of `file` was handed to [`FileSink::write`] (or it has
    /// none): finish it (length, metadata), unless it was marked damaged.
    /// Errors are fatal to the restore.
    fn finish(&self, file: usize) -> Result<()>;
    /// `file` cannot be restored because of `err` (damaged or missing
    /// data); it gets no more writes and its `finish` must not create it.
    /// May be called more than once for a file: the sink keeps the first.
    fn damaged(&self, file: usize, err: &Error);
}

/// One file to restore: its blob ids in content order and its size, bytes.
pub struct FileContent<'a> {
    /// Blob ids in content order.
    pub content: &'a [BlobId],
    /// Size the snapshot records, bytes.
    pub size: u64,
    /// For a file updated in place: `only[i]` is whether blob `i` of
    /// `content` is written (the others are already right on disk and are
    /// neither read nor written). `None`: every blob. A slice shorter than
    /// `content` counts as `false` past its end.
    pub only: Option<&'a [bool]>,
}

impl<'a> FileContent<'a> {
    /// A file written whole.
    pub fn whole(content: &'a [BlobId], size: u64) -> FileContent<'a> {
        FileContent {
            content,
            size,
            only: None,
        }
    }

    fn wanted(&self, i: usize) -> bool {
        self.only.is_none_or(|o| o.get(i).copied().unwrap_or(false))
    }
}

/// A place a blob goes: file number and byte offset.
#[derive(Debug, Clone, Copy)]
struct Dest {
    file: u32,
    offset: u64,
}

/// A distinct blob of the plan.
struct PlanBlob {
    id: BlobId,
    loc: BlobLocation,
    base: Option<BlobLocation>,
    dests: Vec<Dest>,
}

/// What [`restore_files`] did, for tests and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PlanStats {
    /// Distinct blobs read.
    pub blobs: u64,
    /// Ranged reads planned.
    pub reads: u64,
    /// Packs read from.
    pub packs: u64,
    /// Sealed bytes read from the store (ranged reads and the delta bases
    /// they needed), bytes.
    pub bytes_read: u64,
    /// Seconds spent planning (catalog look-ups, grouping by pack) before
    /// the first read.
    pub plan_seconds: f64,
    /// Whether the plan read every blob location in one catalog scan
    /// ([`scan_catalog`]) instead of one look-up per blob.
    pub scanned: bool,
}

/// Whether a plan that looks up `needed` blob ids (repeats counted) in a
/// catalog of `known` blobs should read all locations in one scan
/// ([`crate::catalog::Catalog::all_locations`]): when it needs at least a
/// quarter of them, since a scan costs a fraction of an indexed look-up a
/// row and its map is then at most a few times the plan's own id list.
pub fn scan_catalog(needed: u64, known: u64) -> bool {
    needed > 0 && needed.saturating_mul(4) >= known
}

/// Restores the content of `files` into `sink`: each distinct blob is read
/// and decoded once and written at every (file, offset) that needs it;
/// reads go pack by pack (see the module doc) on `threads` threads.
///
/// Files whose blobs are missing from the index, whose blob sizes do not add
/// up to the recorded size, or whose blobs are damaged or missing in the
/// store are handed to [`FileSink::damaged`]; every other file gets its
/// writes and then [`FileSink::finish`]. Errors: the sink's errors and
/// store errors that are not about damaged data (transport, I/O), which
/// stop the restore; catalog errors.
pub fn restore_files(
    repo: &Repository,
    files: &[FileContent<'_>],
    sink: &dyn FileSink,
    threads: usize,
) -> Result<PlanStats> {
    // 1. Distinct blobs and their destinations; packs in order of first need.
    let started = std::time::Instant::now();
    let mut scanned = false;
    let mut blobs: Vec<PlanBlob> = Vec::new();
    let mut pack_order: HashMap<PackId, usize> = HashMap::new();
    let remaining: Vec<AtomicU32> = files.iter().map(|_| AtomicU32::new(0)).collect();
    let mut ready: Vec<usize> = Vec::new();
    {
        let cat = repo.catalog();
        let needed: u64 = files.iter().map(|f| f.content.len() as u64).sum();
        // For tests and measurements: SNAP_TEST_CATALOG_SCAN=always|never.
        let scan = match std::env::var("SNAP_TEST_CATALOG_SCAN").as_deref() {
            Ok("always") => true,
            Ok("never") => false,
            _ => scan_catalog(needed, cat.blob_count()?),
        };
        let all = if scan {
            scanned = true;
            Some(cat.all_locations()?)
        } else {
            None
        };
        let lookup = |id: &BlobId| match &all {
            Some(m) => Ok(m.get(id).copied()),
            None => cat.lookup(id),
        };
        let mut index: HashMap<BlobId, usize> = HashMap::new();
        let mut bases: HashMap<BlobId, Option<BlobLocation>> = HashMap::new();
        let mut locs: Vec<BlobLocation> = Vec::new();
        for (fi, f) in files.iter().enumerate() {
            // Look the whole file up first: a file with a blob no index
            // names is damaged and adds nothing to the plan.
            locs.clear();
            let mut err = None;
            let mut size = 0u64;
            for id in f.content {
                let found = match index.get(id) {
                    Some(&b) => Some(blobs[b].loc),
                    None => lookup(id)?,
                };
                match found {
                    Some(l) => {
                        size += l.raw_len as u64;
                        locs.push(l);
                    }
                    None => {
                        err = Some(not_indexed(id));
                        break;
                    }
                }
            }
            if err.is_none() && size != f.size {
                err = Some(Error::corrupt(format!(
                    "its blobs hold {size} bytes but the snapshot records {}",
                    f.size
                )));
            }
            if let Some(e) = err {
                sink.damaged(fi, &e);
                continue;
            }
            let wanted = (0..f.content.len()).filter(|&i| f.wanted(i)).count();
            if wanted == 0 {
                ready.push(fi);
                continue;
            }
            let mut offset = 0u64;
            for (i, (id, loc)) in f.content.iter().zip(locs.iter()).enumerate() {
                if !f.wanted(i) {
                    offset += loc.raw_len as u64;
                    continue;
                }
                let b = match index.get(id) {
                    Some(&b) => b,
                    None => {
                        let base = match loc.base {
                            None => None,
                            Some(bid) => match bases.get(&bid) {
                                Some(x) => *x,
                                None => {
                                    let x = lookup(&bid)?;
                                    bases.insert(bid, x);
                                    x
                                }
                            },
                        };
                        let n = pack_order.len();
                        pack_order.entry(loc.pack).or_insert(n);
                        index.insert(*id, blobs.len());
                        blobs.push(PlanBlob {
                            id: *id,
                            loc: *loc,
                            base,
                            dests: Vec::new(),
                        });
                        blobs.len() - 1
                    }
                };
                blobs[b].dests.push(Dest {
                    file: fi as u32,
                    offset,
                });
                offset += loc.raw_len as u64;
            }
            remaining[fi].store(wanted as u32, Ordering::Relaxed);
        }
    }
    for fi in ready {
        sink.finish(fi)?;
    }

    // 2. Ranged reads, in the order files first need their packs.
    let gap = gap_for(repo.store());
    let want = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let s = b.loc.offset as u64;
            (b.loc.pack, s, s + b.loc.length as u64, i)
        })
        .collect();
    let mut reads = coalesce(want, gap, max_read(threads));
    reads.sort_by_key(|r| (pack_order.get(&r.pack).copied(), r.start));
    let mut stats = PlanStats {
        blobs: blobs.len() as u64,
        reads: reads.len() as u64,
        packs: pack_order.len() as u64,
        bytes_read: 0,
        plan_seconds: started.elapsed().as_secs_f64(),
        scanned,
    };
    let bytes_read = std::sync::atomic::AtomicU64::new(0);

    // 3. Read, decode, write.
    let done_with = |b: &PlanBlob| -> Result<()> {
        for d in &b.dests {
            if remaining[d.file as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                sink.finish(d.file as usize)?;
            }
        }
        Ok(())
    };
    let damage = |b: &PlanBlob, e: &Error| {
        for d in &b.dests {
            sink.damaged(d.file as usize, e);
        }
    };
    run_workers(threads, reads.len(), |i| {
        let r = &reads[i];
        let buf = match read_range(repo.store(), r) {
            Ok(b) => {
                bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
                b
            }
            Err(e) if is_damage(&e) => {
                for &bi in &r.blobs {
                    damage(&blobs[bi], &e);
                    done_with(&blobs[bi])?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Bases outside this read; a failure leaves them to the repository.
        let fetched = fetch_bases(repo, r, r.blobs.iter().map(|&bi| blobs[bi].base.as_ref()))
            .ok()
            .flatten();
        if let Some(f) = &fetched {
            bytes_read.fetch_add(f.bytes(), Ordering::Relaxed);
        }
        for &bi in &r.blobs {
            let b = &blobs[bi];
            match decode_in(
                repo,
                r,
                &buf,
                &b.id,
                &b.loc,
                b.base.as_ref(),
                fetched.as_ref(),
            ) {
                Ok(plain) => {
                    let zero = plain.iter().all(|&x| x == 0);
                    for d in &b.dests {
                        sink.write(d.file as usize, d.offset, &plain, zero)?;
                    }
                }
                Err(e) if is_damage(&e) => damage(b, &e),
                Err(e) => return Err(e),
            }
            done_with(b)?;
        }
        Ok(())
    })?;
    stats.bytes_read = bytes_read.into_inner();
    Ok(stats)
}

/// Fetches the plaintexts of `ids` and hands them to `f` in order. Blobs
/// that sit together in a pack are read with one ranged read (at most
/// [`MAX_READ`] sealed and about 4 MiB decoded bytes); up to
/// `reads_in_flight(store, 0)` reads run ahead of `f` on worker threads,
/// which also decode.
///
/// Errors: [`ErrorKind::NotFound`] for a blob no index names (before `f` is
/// called at all), store errors, [`ErrorKind::Corrupt`] for a blob that does
/// not decode, and `f`'s errors; the first in stream order is returned.
pub fn for_each_blob(
    repo: &Repository,
    ids: &[BlobId],
    f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    for_each_blob_with(repo, ids, reads_in_flight(repo.store(), 0), f)
}

/// [`for_each_blob`] with `window` reads in flight.
pub fn for_each_blob_with(
    repo: &Repository,
    ids: &[BlobId],
    window: usize,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let (locs, bases) = {
        let cat = repo.catalog();
        let locs = ids
            .iter()
            .map(|id| cat.lookup(id)?.ok_or_else(|| not_indexed(id)))
            .collect::<Result<Vec<_>>>()?;
        let mut bases: HashMap<BlobId, BlobLocation> = HashMap::new();
        for b in locs.iter().filter_map(|l| l.base) {
            if let std::collections::hash_map::Entry::Vacant(v) = bases.entry(b) {
                if let Some(l) = cat.lookup(&b)? {
                    v.insert(l);
                }
            }
        }
        (locs, bases)
    };
    // Windows of consecutive blobs of at most STREAM_READ_RAW plaintext
    // bytes (at least one blob each). A window's blobs and the delta bases
    // they need are read together: sorted by pack, neighbours coalesced,
    // the reads sent at once (`fetch`), so blobs interleaved over a few
    // packs (a second night's dump: deltas in a new pack, the rest in old
    // ones) cost a few requests per window, not one per run.
    let mut reads: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut start, mut raw) = (0usize, 0u64);
    for (i, l) in locs.iter().enumerate() {
        if i > start && raw + l.raw_len as u64 > STREAM_READ_RAW {
            reads.push(start..i);
            (start, raw) = (i, 0);
        }
        raw += l.raw_len as u64;
    }
    if start < locs.len() {
        reads.push(start..locs.len());
    }
    let window = window.clamp(1, MAX_READS);
    // Worker threads fetch and decode reads in order, at most `window`
    // ahead of the consumer; the consumer hands plaintexts to `f` in order.
    struct State {
        next: usize,
        consumed: usize,
        done: HashMap<usize, Result<Vec<Vec<u8>>>>,
        stop: bool,
    }
    let state = Mutex::new(State {
        next: 0,
        consumed: 0,
        done: HashMap::new(),
        stop: false,
    });
    let cv = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let work = |i: usize| -> Result<Vec<Vec<u8>>> {
        let range = reads[i].clone();
        let base_of = |b: usize| locs[b].base.and_then(|x| bases.get(&x));
        let mut want: Vec<BlobLocation> = locs[range.clone()].to_vec();
        want.extend(range.clone().filter_map(|b| base_of(b).copied()));
        // One read at a time per window: `window` bounds the reads in flight.
        let fetched = crate::read::fetch::fetch_in(repo.store(), &want, false)?;
        range
            .map(|b| {
                let (id, loc) = (&ids[b], &locs[b]);
                let sealed = fetched.sealed(loc)?;
                let base = base_of(b).and_then(|bl| fetched.get(bl).map(|s| (bl, s)));
                let plain = repo.decode_blob_with_base(id, loc, sealed, base)?;
                check_len(id, loc, &plain)?;
                Ok(plain)
            })
            .collect()
    };
    let worker = || loop {
        let i = {
            let mut st = lock();
            while !st.stop && st.next < reads.len() && st.next >= st.consumed + window {
                st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop || st.next >= reads.len() {
                return;
            }
            st.next += 1;
            st.next - 1
        };
        let res = work(i);
        let mut st = lock();
        st.done.insert(i, res);
        cv.notify_all();
    };
    let consume = |f: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<()> {
        for i in 0..reads.len() {
            let res = {
                let mut st = lock();
                loop {
                    if let Some(r) = st.done.remove(&i) {
                        st.consumed = i + 1;
                        cv.notify_all();
                        break r;
                    }
                    st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            };
            for plain in res? {
                f(&plain)?;
            }
        }
        Ok(())
    };
    let threads = window.min(reads.len());
    if threads <= 1 {
        for i in 0..reads.len() {
            for plain in work(i)? {
                f(&plain)?;
            }
        }
        return Ok(());
    }
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(worker);
        }
        let r = consume(&mut f);
        lock().stop = true;
        cv.notify_all();
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> PackId {
        PackId([b; 32])
    }

    #[test]
    fn a_plan_scans_the_catalog_when_it_needs_a_quarter_of_it() {
        assert!(scan_catalog(50_000, 48_000));
        assert!(scan_catalog(12_000, 48_000));
        assert!(!scan_catalog(11_999, 48_000));
        assert!(!scan_catalog(1, 1_000_000));
        assert!(!scan_catalog(0, 0));
        assert!(scan_catalog(1, 0));
        assert!(scan_catalog(u64::MAX, u64::MAX));
    }

    #[test]
    fn coalesce_joins_neighbours_within_gap_and_cap() {
        let (a, b) = (id(1), id(2));
        let want = vec![
            (a, 1000, 1100, 2),
            (a, 0, 100, 0),
            (a, 150, 400, 1),
            (b, 0, 50, 3),
            (a, 0, 100, 4), // the same blob needed again
        ];
        // Adjacent only: the 50-byte gap splits.
        let r = coalesce(want.clone(), 0, MAX_READ);
        let spans: Vec<_> = r.iter().map(|r| (r.pack, r.start, r.end)).collect();
        assert_eq!(
            spans,
            vec![(a, 0, 100), (a, 150, 400), (a, 1000, 1100), (b, 0, 50)]
        );
        assert_eq!(r[0].blobs, vec![0, 4]);
        // A 1000-byte gap joins everything of pack a into one read.
        let r = coalesce(want.clone(), 1000, MAX_READ);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].start, r[0].end, r[0].blobs.len()), (0, 1100, 4));
        // The cap splits again, and a blob over the cap has its own read.
        let r = coalesce(want, 1000, 400);
        let spans: Vec<_> = r.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(spans, vec![(0, 400), (1000, 1100), (0, 50)]);
        let r = coalesce(vec![(a, 0, 10, 0), (a, 10, 900, 1)], 0, 100);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn workers_stop_at_the_first_error_and_bound_threads() {
        let running = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let r = run_workers(3, 40, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            if i == 10 {
                return Err(Error::corrupt("boom"));
            }
            Ok(())
        });
        assert!(r.is_err());
        assert!(max.load(Ordering::SeqCst) <= 3);
        assert!(done.load(Ordering::SeqCst) < 40);
    }
}
