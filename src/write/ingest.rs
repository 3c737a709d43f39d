//! Content ingestion: bytes of files and streams in, blob ids out.
//!
//! Two stages overlap. The calling thread reads files and streams with
//! `read(2)` into owned buffers (never a memory map: a file truncated while
//! mapped would raise SIGBUS) and puts them into batches of
//! about [`BATCH_BYTES`]; a processor thread takes each batch and, on the
//! rayon pool, cuts it into chunks (FastCDC), hashes them (keyed BLAKE3),
//! drops chunks already stored (saver's pending set, then the catalog),
//! compresses (zstd) and seals (XChaCha20-Poly1305) the new ones, and hands
//! them to the [`BlobSaver`] in order. So reading, chunking and the CPU-heavy
//! stages keep both cores busy, and memory stays bounded by a few batches.
//!
//! A stream read with a [`DeltaRef`] (its previous version's chunk list)
//! stores each new chunk as a delta blob against the previous version's
//! chunk at the same place when that is smaller (format-spec §13): a nightly
//! database dump changes a few rows per chunk, and zstd with the old chunk
//! as its dictionary stores only the change.
//!
//! Stream chunks are small (so that dumps deduplicate night to night), and
//! small zstd frames compress worse than large ones: they are compressed
//! against the repository's zstd dictionary (format-spec §12.1). The first
//! stream backup of a repository without one trains it from the first
//! [`TRAIN_BYTES`] of its stream, cut into stream chunks, before any of
//! them is compressed; as the stream goes on it retrains from a sample
//! spread over all of it read so far ([`Trainer`]), so that the rest of the
//! stream, and later backups, use a dictionary that knows more than its
//! first tables.

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::format::tree::{ChunkProfile, Tree};
use crate::format::{BlobId, BlobKind};
use crate::repo::Repository;
use crate::write::base_cache;
use crate::write::chunker::Chunker;
use crate::write::compress::{self, Bottleneck, Dictionary};
use crate::write::pack::BlobSaver;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;

/// Bytes of content per batch handed to the processor.
pub const BATCH_BYTES: usize = 4 << 20;
/// Files up to this many bytes are handed to the processor whole (it cuts
/// them on the rayon pool); longer files and streams are cut here, window by
/// window.
pub const SMALL_FILE: u64 = 1 << 20;
/// Bytes read per window of a large file or a stream, beyond the uncut tail
/// of the previous window.
pub const STREAM_WINDOW: usize = 8 << 20;
/// Bytes at the start of a repository's first stream that are cut into
/// chunks to train its stream dictionary from (format-spec §12.1): zstd's
/// guide asks for about 100 times the dictionary size in samples.
pub const TRAIN_BYTES: usize = 16 << 20;
/// Sample bytes a [`Trainer`] keeps (a spread sample of the stream so far).
const SAMPLE_CAP: usize = 16 << 20;
/// Retrain when this many times more stream was read than at the last
/// training, at most [`RETRAINS`] times per stream.
const RETRAIN_FACTOR: u64 = 4;
/// Retrainings per stream after the first dictionary.
const RETRAINS: u32 = 3;
/// Fewer sample bytes than this train no dictionary (a small stream gains
/// little from one); a later, longer stream trains it.
pub const MIN_TRAIN_BYTES: usize = 2 << 20;
/// Share of recent time a writer spends waiting for uploads above which it
/// counts as upload-bound (format-spec §12, `auto`).
const UPLOAD_BOUND_SHARE: f64 = 0.1;
/// Weight of the latest batch in the moving share of upload waits.
const WAIT_WEIGHT: f64 = 0.25;

/// Where the writer's time goes, for `compression = "auto"` (format-spec
/// §12): a moving average, over batches, of the share of time the saver
/// waited for a free upload slot. A remote store starts upload-bound and
/// stays so until more packs were sent than uploads run at once (before
/// that its queue cannot have been full); a local one starts CPU-bound.
struct Gauge {
    now: Bottleneck,
    share: f64,
    since: std::time::Instant,
    waited: std::time::Duration,
    /// Packs the saver must have sent before waits are measured.
    warm_up: u64,
}

impl Gauge {
    /// For a writer to a remote store (`remote`) running `uploads` pack
    /// uploads at once, or to a local repository.
    fn new(remote: bool, uploads: u64) -> Gauge {
        Gauge {
            now: if remote {
                Bottleneck::Upload
            } else {
                Bottleneck::Cpu
            },
            share: if remote { 1.0 } else { 0.0 },
            since: std::time::Instant::now(),
            waited: std::time::Duration::ZERO,
            warm_up: if remote { uploads } else { 0 },
        }
    }

    fn of(repo: &Repository) -> Gauge {
        let store = repo.store();
        Gauge::new(store.is_remote(), store.upload_concurrency() as u64)
    }

    /// Takes in, at time `now`, the saver's packs sent and total upload
    /// wait so far ([`BlobSaver::upload_wait`]).
    fn observe(&mut self, now: std::time::Instant, packs: u64, waited: std::time::Duration) {
        let span = now.duration_since(self.since).as_secs_f64();
        let wait = waited.saturating_sub(self.waited).as_secs_f64();
        (self.since, self.waited) = (now, waited);
        if packs <= self.warm_up || span <= 0.0 {
            return;
        }
        let share = (wait / span).min(1.0);
        self.share = (1.0 - WAIT_WEIGHT) * self.share + WAIT_WEIGHT * share;
        self.now = if self.share > UPLOAD_BOUND_SHARE {
            Bottleneck::Upload
        } else {
            Bottleneck::Cpu
        };
    }

    fn update(&mut self, saver: &BlobSaver) {
        self.observe(
            std::time::Instant::now(),
            saver.stats.packs,
            saver.upload_wait(),
        );
    }
}

/// How often an idle processor checks the saver's index timer.
const CHECKPOINT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A run of content for one slot. With `cut` set, the processor cuts it
/// into chunks (it is a whole small file); otherwise it is one chunk.
struct Piece {
    slot: usize,
    buf: Arc<Vec<u8>>,
    start: usize,
    len: usize,
    cut: Option<ChunkProfile>,
    delta: Option<Arc<DeltaRef>>,
    /// Compress against this dictionary (stream chunks, format-spec §12.1).
    dict: Option<Arc<Dictionary>>,
    /// A chunk of a stream read with the streams profile: a put-only key
    /// keeps it as a delta base for the next night (format-spec §13.1).
    stream: bool,
}

/// The chunk list of a stream's previous version, used to pick delta bases
/// (format-spec §13). Chunks are placed by byte offset: a new chunk's
/// candidate base is the previous version's chunk that holds the new chunk's
/// middle, after shifting by the offset difference at the last chunk both
/// versions share. Offsets, unlike chunk counts, do not drift when a change
/// merges or splits chunks.
pub struct DeltaRef {
    chunks: Vec<BlobId>,
    /// Start offset of each chunk in the previous version, bytes.
    starts: Vec<u64>,
    pos: HashMap<BlobId, usize>,
}

impl DeltaRef {
    /// From the previous version's content ids and their plaintext lengths
    /// in bytes, in stream order.
    pub fn new(chunks: Vec<(BlobId, u32)>) -> DeltaRef {
        let mut pos = HashMap::with_capacity(chunks.len());
        let mut starts = Vec::with_capacity(chunks.len());
        let mut at = 0u64;
        for (i, (c, len)) in chunks.iter().enumerate() {
            pos.entry(*c).or_insert(i);
            starts.push(at);
            at += *len as u64;
        }
        DeltaRef {
            chunks: chunks.into_iter().map(|(c, _)| c).collect(),
            starts,
            pos,
        }
    }

    /// Index of the previous version's chunk holding byte `offset` (the last
    /// chunk for offsets past the end).
    fn at_offset(&self, offset: u64) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= offset);
        i.checked_sub(1)
    }
}

/// Where a stream stands against its previous version: bytes of the new
/// stream seen so far, and the offset shift (previous − new) at the last
/// chunk both share.
#[derive(Default, Clone, Copy)]
struct DeltaCursor {
    offset: u64,
    shift: i64,
}

#[derive(Default)]
struct Batch {
    pieces: Vec<Piece>,
    bytes: usize,
}

/// What the processor hands back: the saver and each slot's blob ids.
pub struct Ingested {
    /// The saver, still open (trees go in next).
    pub saver: BlobSaver,
    /// Blob ids per slot, in content order.
    pub contents: Vec<Vec<BlobId>>,
    /// Bytes per slot: the sum of the plaintext lengths of its blobs,
    /// counted from the same pieces the ids come from. A tree entry's size
    /// is set from this, so it always agrees with its content.
    pub lengths: Vec<u64>,
}

impl Ingested {
    /// Takes the content of `slot`: its blob ids and its length in bytes
    /// (empty and 0 for a slot that got no bytes).
    pub fn take(&mut self, slot: usize) -> (Vec<BlobId>, u64) {
        let ids = self
            .contents
            .get_mut(slot)
            .map(std::mem::take)
            .unwrap_or_default();
        let len = self.lengths.get(slot).copied().unwrap_or(0);
        (ids, len)
    }
}

/// The reading side. Create with [`run`].
pub struct Reader<'r> {
    repo: &'r Repository,
    tx: Option<SyncSender<Batch>>,
    batch: Batch,
    next_slot: usize,
    deltas: HashMap<usize, Arc<DeltaRef>>,
    /// The stream dictionary of each stream slot that has one.
    dicts: HashMap<usize, Arc<Dictionary>>,
    /// Stream slots whose dictionary is being retrained as they are read.
    trainers: HashMap<usize, Trainer>,
    /// Slots of streams read with the streams profile.
    streams: HashSet<usize>,
    /// Window buffers the processor is done with, for reuse: their pages
    /// are already mapped, so a reused window costs no page faults.
    spare: Receiver<Vec<u8>>,
}

/// Window buffers kept for reuse.
const SPARE_WINDOWS: usize = 4;

/// Runs `read` with a [`Reader`] while a processor thread saves blobs through
/// `saver`. Returns what `read` returned and the processor's result; if the
/// processor fails, its error wins. Each batch processed is reported to
/// `events` as [`Event::Bytes`] (its content bytes).
pub fn run<T>(
    repo: &Repository,
    saver: BlobSaver,
    events: &dyn Events,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T>,
) -> Result<(T, Ingested)> {
    // The reading loop polls the interrupt flag: a SIGINT/SIGTERM stops it
    // at the next piece, and the packs already stored are indexed below.
    let _graceful = crate::interrupt::graceful();
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Batch>(1);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(SPARE_WINDOWS);
        let handle = std::thread::Builder::new()
            .name("snap-ingest".into())
            .spawn_scoped(scope, move || processor(repo, saver, rx, spare_tx, events))
            .map_err(|e| Error::io("starting the ingest thread", e))?;
        let mut reader = Reader {
            repo,
            tx: Some(tx),
            batch: Batch::default(),
            next_slot: 0,
            deltas: HashMap::new(),
            dicts: HashMap::new(),
            trainers: HashMap::new(),
            streams: HashSet::new(),
            spare,
        };
        let r = read(&mut reader).and_then(|t| reader.flush().map(|_| t));
        drop(reader);
        let processed = handle
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Io, "ingest thread panicked")));
        match (r, processed) {
            (_, Err(e)) => Err(e),
            (Err(e), Ok(mut ing)) => {
                // Index what was already stored so the next backup can reuse
                // it; no snapshot is written. Interrupted: only the packs
                // stored or uploading (quick); else also the open packs.
                if e.kind() == ErrorKind::Interrupted || ing.saver.finish().is_err() {
                    ing.saver.salvage();
                }
                let _ = catalog_written(repo, &mut ing.saver);
                Err(e)
            }
            (Ok(t), Ok(ing)) => Ok((t, ing)),
        }
    })
}

fn stopped() -> Error {
    Error::new(ErrorKind::Backend, "the ingest stage stopped")
}

impl Reader<'_> {
    /// A new content slot (one per file or stream).
    pub fn new_slot(&mut self) -> usize {
        self.next_slot += 1;
        self.next_slot - 1
    }

    /// Chunks of the stream read into `slot` may be stored as deltas against
    /// `prev`, the stream's previous version.
    pub fn set_delta_ref(&mut self, slot: usize, prev: Arc<DeltaRef>) {
        self.deltas.insert(slot, prev);
    }

    fn push(&mut self, p: Piece) -> Result<()> {
        crate::interrupt::check()?;
        self.batch.bytes += p.len;
        self.batch.pieces.push(p);
        if self.batch.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.pieces.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(b)
            .map_err(|_| stopped())
    }

    /// An empty buffer of at least `cap` bytes: a spare window if one is
    /// back from the processor, else a new one.
    fn window(&mut self, cap: usize) -> Vec<u8> {
        let mut v = self.spare.try_recv().unwrap_or_default();
        v.clear();
        v.reserve_exact(cap);
        v
    }

    /// Cuts `buf[start..]` here (for large files and streams, whose windows
    /// must be cut in order); returns bytes consumed.
    fn cut_here(
        &mut self,
        slot: usize,
        chunker: &Chunker,
        buf: &Arc<Vec<u8>>,
        start: usize,
        at_eof: bool,
    ) -> Result<usize> {
        let mut cuts = Vec::new();
        let used = chunker.cuts(&buf[start..], at_eof, &mut cuts);
        let delta = self.deltas.get(&slot).cloned();
        let mut dict = self.dicts.get(&slot).cloned();
        for (off, len) in cuts {
            if let Some(t) = self.trainers.get_mut(&slot) {
                let chunk = &buf[start + off..start + off + len];
                if let Some(d) = t.observe(self.repo, chunk) {
                    self.dicts.insert(slot, d.clone());
                    dict = Some(d);
                }
            }
            self.push(Piece {
                slot,
                buf: buf.clone(),
                start: start + off,
                len,
                cut: None,
                delta: delta.clone(),
                dict: dict.clone(),
                stream: self.streams.contains(&slot),
            })?;
        }
        Ok(used)
    }

    /// Reads `r` to its end into `slot`, window by window into owned
    /// buffers, cut with `chunker`; `first` holds bytes already read from
    /// `r` (counted in the total). Returns bytes read.
    fn read_windows(
        &mut self,
        slot: usize,
        r: &mut dyn Read,
        chunker: &Chunker,
        first: Vec<u8>,
    ) -> std::result::Result<u64, ReadError> {
        let mut total = first.len() as u64;
        let mut v = first;
        // Bytes already read ahead (for training a dictionary) are cut as
        // they are, without waiting for more: a source that pauses (a dump
        // between two tables, a command that sleeps) must not hold them.
        let mut prefilled = v.len() >= STREAM_WINDOW;
        loop {
            // A window holds STREAM_WINDOW bytes, or at least half of that
            // beyond the previous window's uncut tail (shorter than the
            // chunker's max): windows grow until one holds a cut.
            let target = if std::mem::take(&mut prefilled) {
                v.len()
            } else {
                STREAM_WINDOW.max(v.len() + STREAM_WINDOW / 2)
            };
            v.reserve_exact(target - v.len());
            let mut eof = false;
            while v.len() < target {
                let want = (target - v.len()) as u64;
                let n = r.take(want).read_to_end(&mut v).map_err(ReadError::Io)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                total += n as u64;
            }
            if v.is_empty() {
                break;
            }
            let buf = Arc::new(v);
            let used = self
                .cut_here(slot, chunker, &buf, 0, eof)
                .map_err(ReadError::Pipeline)?;
            if eof {
                break;
            }
            let tail = &buf[used..];
            v = self.window(STREAM_WINDOW.max(tail.len() + STREAM_WINDOW / 2));
            v.extend_from_slice(tail);
        }
        Ok(total)
    }

    /// Reads the regular file at `path` to its end into `slot`: whatever
    /// length it has while read (a file growing or shrinking meanwhile, a
    /// `/proc` or `/sys` file whose `stat` size is 0 or 4096), never trusting
    /// its `stat` size. The file is opened with `O_NOFOLLOW | O_NONBLOCK`
    /// and checked with `fstat` before any read, so a path replaced by a
    /// symlink, FIFO, socket or device since the walk neither blocks nor is
    /// followed, and a pseudo-file with nothing to read yet fails with
    /// `WouldBlock` instead of waiting. Content is read with `read(2)` into owned buffers (no memory
    /// map, so a file truncated meanwhile cannot raise SIGBUS).
    ///
    /// Errors: the file's I/O errors (the caller reports and skips it), an
    /// error of kind `InvalidInput` naming the type found when the path is
    /// no longer a regular file; a stopped processor comes back as an
    /// `Other` I/O error wrapping the [`Error`].
    pub fn read_file(&mut self, slot: usize, path: &Path) -> std::io::Result<FileRead> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    not_regular("a symbolic link")
                } else {
                    e
                }
            })?;
        let before = file.metadata()?;
        if !before.file_type().is_file() {
            return Err(not_regular(type_name(&before.file_type())));
        }
        // O_NONBLOCK stays set: Linux ignores it for regular files on disk,
        // and it turns a pseudo-file that would wait forever (/proc/kmsg,
        // a tracing pipe) into an EAGAIN the caller reports and skips.
        // Up to SMALL_FILE bytes go to the processor whole; a longer file
        // continues window by window.
        let mut first = if before.len() > SMALL_FILE {
            self.window(STREAM_WINDOW)
        } else {
            Vec::with_capacity(before.len() as usize + 1)
        };
        (&mut file).take(SMALL_FILE + 1).read_to_end(&mut first)?;
        let bytes = if first.len() as u64 <= SMALL_FILE {
            let n = first.len();
            if n > 0 {
                self.push(Piece {
                    slot,
                    buf: Arc::new(first),
                    start: 0,
                    len: n,
                    cut: Some(ChunkProfile::Files),
                    delta: None,
                    dict: None,
                    stream: false,
                })
                .map_err(std::io::Error::other)?;
            }
            n as u64
        } else {
            let chunker = self.repo.files_chunker().clone();
            self.read_windows(slot, &mut file, &chunker, first)
                .map_err(|e| match e {
                    ReadError::Io(e) => e,
                    ReadError::Pipeline(e) => std::io::Error::other(e),
                })?
        };
        let after = file.metadata()?;
        Ok(FileRead {
            bytes,
            changed: Stamp::of(&before) != Stamp::of(&after),
        })
    }

    /// Reads a stream to its end into `slot`, cut with the chunker of
    /// `profile`; returns bytes read.
    pub fn read_stream(
        &mut self,
        slot: usize,
        r: &mut dyn Read,
        profile: ChunkProfile,
    ) -> Result<u64> {
        let chunker = match profile {
            ChunkProfile::Files => self.repo.files_chunker().clone(),
            ChunkProfile::Streams => self.repo.streams_chunker().clone(),
        };
        let mut first = self.window(STREAM_WINDOW);
        if matches!(profile, ChunkProfile::Streams) {
            self.streams.insert(slot);
            let dict = match self.repo.stream_dictionary()? {
                Some(d) => Some(d),
                None => {
                    // No dictionary yet: read the first TRAIN_BYTES, train
                    // one from their chunks, and compress all of this
                    // stream's chunks with it.
                    first.reserve_exact(TRAIN_BYTES.saturating_sub(first.capacity()));
                    r.take(TRAIN_BYTES as u64)
                        .read_to_end(&mut first)
                        .map_err(|e| Error::io("reading stream", e))?;
                    let at_eof = first.len() < TRAIN_BYTES;
                    let d = train_dictionary(self.repo, &chunker, &first, at_eof);
                    if d.is_some() && !at_eof {
                        self.trainers.insert(slot, Trainer::default());
                    }
                    d
                }
            };
            if let Some(d) = dict {
                self.dicts.insert(slot, d);
            }
        }
        self.read_windows(slot, r, &chunker, first)
            .map_err(|e| match e {
                ReadError::Io(e) => Error::io("reading stream", e),
                ReadError::Pipeline(e) => e,
            })
    }
}

/// Trains a stream dictionary from the chunks `chunker` cuts `data` into
/// (the start of a stream; `at_eof`: all of it) and stores it in `repo`
/// (format-spec §12.1). `None`, after a warning if the store failed, when
/// there are fewer than [`MIN_TRAIN_BYTES`] of samples, zstd learns
/// nothing from them, or the dictionary could not be stored: the stream is
/// then compressed without one.
fn train_dictionary(
    repo: &Repository,
    chunker: &Chunker,
    data: &[u8],
    at_eof: bool,
) -> Option<Arc<Dictionary>> {
    let mut cuts = Vec::new();
    chunker.cuts(data, at_eof, &mut cuts);
    let samples: Vec<&[u8]> = cuts
        .iter()
        .map(|&(o, l)| &data[o..o + l])
        .filter(|s| !compress::looks_incompressible(s))
        .collect();
    if samples.iter().map(|s| s.len()).sum::<usize>() < MIN_TRAIN_BYTES {
        return None;
    }
    store_trained(repo, &samples, data.len() as u64)
}

/// Trains a dictionary from `samples` for a stream of which `read` bytes
/// were seen, and stores it; `None` (after a warning if the store failed)
/// if zstd learns nothing or the store fails.
fn store_trained(repo: &Repository, samples: &[&[u8]], read: u64) -> Option<Arc<Dictionary>> {
    let generation = u32::try_from(read >> 20).unwrap_or(u32::MAX);
    let bytes = Dictionary::train(samples, crate::format::dict::TRAIN_DICT_SIZE, generation)?;
    match repo.store_dictionary(&bytes) {
        Ok(d) => Some(d),
        Err(e) => {
            repo.warn(format!(
                "could not store a stream dictionary ({e:#}); stream chunks are compressed without one"
            ));
            None
        }
    }
}

/// Retrains a stream's dictionary as the stream is read (format-spec §12.1):
/// keeps a systematic sample of its chunks (every `stride`-th, the stride
/// doubling whenever the sample exceeds [`SAMPLE_CAP`] bytes, so the sample
/// stays spread over everything read), and when [`RETRAIN_FACTOR`] times
/// more was read than at the last training, trains and stores a new
/// dictionary from it, at most [`RETRAINS`] times.
struct Trainer {
    samples: Vec<(u64, Vec<u8>)>,
    sample_bytes: usize,
    stride: u64,
    chunks: u64,
    read: u64,
    next_at: u64,
    left: u32,
}

impl Default for Trainer {
    fn default() -> Trainer {
        Trainer {
            samples: Vec::new(),
            sample_bytes: 0,
            stride: 1,
            chunks: 0,
            read: 0,
            next_at: TRAIN_BYTES as u64 * RETRAIN_FACTOR,
            left: RETRAINS,
        }
    }
}

impl Trainer {
    /// Takes in the stream's next chunk; returns the new dictionary when
    /// this chunk completed a retraining.
    fn observe(&mut self, repo: &Repository, chunk: &[u8]) -> Option<Arc<Dictionary>> {
        let i = self.chunks;
        self.chunks += 1;
        self.read += chunk.len() as u64;
        if i % self.stride == 0 && !compress::looks_incompressible(chunk) {
            self.samples.push((i, chunk.to_vec()));
            self.sample_bytes += chunk.len();
            while self.sample_bytes > SAMPLE_CAP && self.stride < 1 << 40 {
                self.stride *= 2;
                let stride = self.stride;
                self.samples.retain(|(k, _)| k % stride == 0);
                self.sample_bytes = self.samples.iter().map(|(_, s)| s.len()).sum();
            }
        }
        if self.left == 0 || self.read < self.next_at {
            return None;
        }
        self.left -= 1;
        self.next_at = self.read.saturating_mul(RETRAIN_FACTOR);
        let samples: Vec<&[u8]> = self.samples.iter().map(|(_, s)| &s[..]).collect();
        store_trained(repo, &samples, self.read)
    }
}

/// Why [`Reader::read_windows`] stopped: the input, or the pipeline.
enum ReadError {
    Io(std::io::Error),
    Pipeline(Error),
}

/// What [`Reader::read_file`] read from one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRead {
    /// Bytes read: the length of the content stored for the file.
    pub bytes: u64,
    /// The file's size, mtime or ctime (`fstat` of the open handle) after
    /// the read differed from before it: the content may mix two versions.
    pub changed: bool,
}

/// The `fstat` fields that change when a file's content changes.
#[derive(PartialEq, Eq)]
struct Stamp(u64, i64, i64, i64, i64);

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
        )
    }
}

/// The error for a path that is no longer a regular file.
fn not_regular(found: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("no longer a regular file (now {found})"),
    )
}

/// "a FIFO", "a directory"... for messages.
pub fn type_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    }
}

fn processor(
    repo: &Repository,
    mut saver: BlobSaver,
    rx: Receiver<Batch>,
    spare: SyncSender<Vec<u8>>,
    events: &dyn Events,
) -> Result<Ingested> {
    let mut contents: Vec<Vec<BlobId>> = Vec::new();
    let mut lengths: Vec<u64> = Vec::new();
    let mut cursors: HashMap<usize, DeltaCursor> = HashMap::new();
    let mut gauge = Gauge::of(repo);
    loop {
        // A slow source may not send a batch for a long time: index the
        // packs uploaded meanwhile on the saver's timer all the same.
        let batch = match rx.recv_timeout(CHECKPOINT_POLL) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = saver.checkpoint() {
                    saver.salvage();
                    let _ = catalog_written(repo, &mut saver);
                    return Err(e);
                }
                catalog_written(repo, &mut saver)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = process(
            repo,
            &mut saver,
            &batch,
            &mut contents,
            &mut lengths,
            &mut cursors,
            gauge.now,
        ) {
            // Keep what was stored (e.g. before the disk filled up) usable.
            saver.salvage();
            let _ = catalog_written(repo, &mut saver);
            return Err(e);
        }
        gauge.update(&saver);
        events.event(&Event::Bytes {
            bytes: batch.bytes as u64,
        });
        catalog_written(repo, &mut saver)?;
        // The last piece of a window hands its buffer back to the reader.
        for p in batch.pieces {
            if let Ok(v) = Arc::try_unwrap(p.buf) {
                if v.capacity() >= STREAM_WINDOW {
                    let _ = spare.try_send(v);
                }
            }
        }
    }
    Ok(Ingested {
        saver,
        contents,
        lengths,
    })
}

/// Adds the index objects the saver wrote to the catalog.
pub fn catalog_written(repo: &Repository, saver: &mut BlobSaver) -> Result<()> {
    let written = saver.take_written();
    if !written.is_empty() {
        let mut cat = repo.catalog();
        for (id, idx) in &written {
            cat.add_index(id, idx)?;
        }
    }
    Ok(())
}

/// A chosen delta base: its id and where it is stored.
type Base = Option<(BlobId, crate::catalog::BlobLocation)>;

/// The base for a new chunk whose previous-version counterpart is `cand`:
/// `cand` itself, or its base if `cand` is a delta (bases are never deltas),
/// provided it is indexed as data and not in a pack marked for deletion.
fn choose_base(cat: &crate::catalog::Catalog, cand: &BlobId, id: &BlobId) -> Result<Base> {
    let Some(loc) = cat.lookup(cand)? else {
        return Ok(None);
    };
    let (root, rloc) = match loc.base {
        None => (*cand, loc),
        Some(b) => match cat.lookup(&b)? {
            Some(l) => (b, l),
            None => return Ok(None),
        },
    };
    if root == *id || rloc.kind != BlobKind::Data || rloc.base.is_some() || !cat.contains(&root)? {
        return Ok(None);
    }
    Ok(Some((root, rloc)))
}

/// Reads the sealed bytes of the chosen bases of a batch with
/// [`crate::read::fetch::fetch`] (coalesced; concurrent on S3, so a batch costs a
/// few round trips rather than one per changed chunk). `None` when nothing
/// needs a base or the reads failed: a base that cannot be read only costs
/// the delta, not the backup.
fn fetch_bases(
    repo: &Repository,
    new: &[(usize, usize, usize, BlobId, Base)],
) -> Option<crate::read::fetch::Fetched> {
    let locs: Vec<crate::catalog::BlobLocation> = new
        .iter()
        .filter_map(|(.., base)| base.as_ref().map(|(_, l)| *l))
        .collect();
    if locs.is_empty() {
        return None;
    }
    crate::read::fetch::fetch(repo.store(), &locs).ok()
}

fn process(
    repo: &Repository,
    saver: &mut BlobSaver,
    batch: &Batch,
    contents: &mut Vec<Vec<BlobId>>,
    lengths: &mut Vec<u64>,
    cursors: &mut HashMap<usize, DeltaCursor>,
    bottleneck: Bottleneck,
) -> Result<()> {
    let key = repo.key();
    // Cut (whole small files) and hash, in parallel; order is kept.
    let chunks: Vec<Vec<(usize, usize, BlobId)>> = batch
        .pieces
        .par_iter()
        .map(|p| {
            let data = &p.buf[p.start..p.start + p.len];
            match p.cut {
                None => vec![(p.start, p.len, key.blob_id(data))],
                Some(profile) => {
                    let chunker = match profile {
                        ChunkProfile::Files => repo.files_chunker(),
                        ChunkProfile::Streams => repo.streams_chunker(),
                    };
                    let mut cuts = Vec::new();
                    chunker.cuts(data, true, &mut cuts);
                    cuts.into_iter()
                        .map(|(o, l)| (p.start + o, l, key.blob_id(&data[o..o + l])))
                        .collect()
                }
            }
        })
        .collect();
    // Which chunks are new: not pending in the saver, not in the catalog,
    // not earlier in this batch. For streams with a previous version, follow
    // it to pick each new chunk's delta base.
    let mut new: Vec<(usize, usize, usize, BlobId, Base)> = Vec::new();
    {
        let cat = repo.catalog();
        let mut seen = HashSet::new();
        for (pi, cs) in chunks.iter().enumerate() {
            let piece = &batch.pieces[pi];
            for &(start, len, id) in cs {
                let is_new = seen.insert(id) && !saver.is_pending(&id) && !cat.contains(&id)?;
                let mut base = None;
                if let Some(d) = &piece.delta {
                    let cur = cursors.entry(piece.slot).or_default();
                    if let Some(&i) = d.pos.get(&id) {
                        cur.shift = d.starts[i] as i64 - cur.offset as i64;
                    } else if is_new {
                        let mid = (cur.offset + len as u64 / 2) as i64 + cur.shift;
                        if let Some(cand) = d.at_offset(mid.max(0) as u64).map(|i| d.chunks[i]) {
                            base = choose_base(&cat, &cand, &id)?;
                        }
                    }
                    cur.offset += len as u64;
                }
                if is_new {
                    new.push((pi, start, len, id, base));
                }
            }
        }
    }
    // A put-only key keeps every stream chunk locally as a delta base for
    // the next night and reads its bases from there (format-spec §13.1).
    let base_cache = repo.stream_base_cache();
    if let Some(dir) = &base_cache {
        chunks
            .par_iter()
            .zip(batch.pieces.par_iter())
            .filter(|(_, p)| p.stream)
            .for_each(|(cs, p)| {
                for &(start, len, id) in cs {
                    base_cache::keep(dir, &id, &p.buf[start..start + len]);
                }
            });
    }
    let policy = compress::Policy::of(repo.config());
    let level = policy.level;
    let fetched = match base_cache {
        None => fetch_bases(repo, &new),
        Some(_) => None,
    };
    let sealed: Vec<(Vec<u8>, Option<BlobId>)> = new
        .par_iter()
        .map_init(Vec::new, |enc, (pi, start, len, id, base)| {
            let data = &batch.pieces[*pi].buf[*start..*start + *len];
            // A base that cannot be read only costs the delta, not the backup.
            let base_plain = match (base, &fetched, &base_cache) {
                (Some((b, loc)), _, Some(dir)) => {
                    base_cache::load(dir, key, b, loc.raw_len).map(|p| (*b, p))
                }
                (Some((b, loc)), Some(f), None) => f
                    .get(loc)
                    .and_then(|sealed| repo.decode_blob(b, loc, sealed).ok())
                    .map(|p| (*b, p)),
                _ => None,
            };
            let dict = batch.pieces[*pi].dict.as_deref();
            let used = match &base_plain {
                Some((b, plain)) => {
                    compress::encode_delta(data, b, plain, level, dict, enc).then_some(*b)
                }
                None => {
                    let choice = match (policy.choose(data, bottleneck), dict) {
                        // Small frames gain most from effort: an `auto`
                        // repository spends it on dictionary stream chunks.
                        (compress::Choice::Zstd(l), Some(_)) if policy.auto => {
                            compress::Choice::Zstd(l.max(compress::STREAM_DICT_LEVEL))
                        }
                        (c, _) => c,
                    };
                    compress::encode_with(data, choice, dict, enc);
                    None
                }
            };
            (key.seal_blob(BlobKind::Data, id, enc), used)
        })
        .collect();
    for (&(_, _, len, id, _), (s, base)) in new.iter().zip(&sealed) {
        saver.add_with_base(BlobKind::Data, id, s, len as u32, *base)?;
    }
    for (p, cs) in batch.pieces.iter().zip(chunks) {
        if contents.len() <= p.slot {
            contents.resize_with(p.slot + 1, Vec::new);
            lengths.resize(p.slot + 1, 0);
        }
        contents[p.slot].extend(cs.into_iter().map(|(_, _, id)| id));
        lengths[p.slot] += p.len as u64;
    }
    Ok(())
}

/// Stores a tree blob unless already stored; returns its id.
pub fn save_tree(repo: &Repository, saver: &mut BlobSaver, tree: &Tree) -> Result<BlobId> {
    let plain = tree.encode();
    if plain.len() > crate::format::MAX_TREE_SIZE {
        return Err(Error::usage(format!(
            "a folder's listing encodes to {} bytes, more than the 256 MiB tree limit; back up fewer or smaller files per folder",
            plain.len()
        )));
    }
    let key = repo.key();
    let id = key.blob_id(&plain);
    repo.cache_tree(&id, &plain)?;
    if saver.is_pending(&id) || repo.catalog().contains(&id)? {
        return Ok(id);
    }
    saver.add_plain(BlobKind::Tree, id, &plain, repo.config().compression_level)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Feeds `n` batches of one second each, `wait` of which the saver
    /// spent waiting for uploads, with `packs` sent so far.
    fn feed(
        g: &mut Gauge,
        t: &mut Instant,
        waited: &mut Duration,
        n: usize,
        wait: Duration,
        packs: u64,
    ) {
        for _ in 0..n {
            *t += Duration::from_secs(1);
            *waited += wait;
            g.observe(*t, packs, *waited);
        }
    }

    #[test]
    fn gauge_follows_upload_waits() {
        // Local: CPU-bound until uploads hold the writer up.
        let mut g = Gauge::new(false, 2);
        let (mut t, mut w) = (g.since, Duration::ZERO);
        assert_eq!(g.now, Bottleneck::Cpu);
        feed(&mut g, &mut t, &mut w, 5, Duration::from_millis(20), 10);
        assert_eq!(g.now, Bottleneck::Cpu, "2% waiting is CPU-bound");
        feed(&mut g, &mut t, &mut w, 2, Duration::from_millis(600), 12);
        assert_eq!(g.now, Bottleneck::Upload);
        feed(&mut g, &mut t, &mut w, 20, Duration::ZERO, 40);
        assert_eq!(g.now, Bottleneck::Cpu);

        // Remote: upload-bound from the start, and while no more packs
        // than run at once were sent, however free the queue looks.
        let mut g = Gauge::new(true, 6);
        let (mut t, mut w) = (g.since, Duration::ZERO);
        assert_eq!(g.now, Bottleneck::Upload);
        feed(&mut g, &mut t, &mut w, 30, Duration::ZERO, 6);
        assert_eq!(g.now, Bottleneck::Upload);
        // Then measured: a queue that never fills means CPU-bound...
        feed(&mut g, &mut t, &mut w, 30, Duration::ZERO, 7);
        assert_eq!(g.now, Bottleneck::Cpu);
        // ...and one that does, upload-bound again.
        feed(&mut g, &mut t, &mut w, 3, Duration::from_millis(900), 9);
        assert_eq!(g.now, Bottleneck::Upload);
    }
}
