//! Pack building: a pure [`PackBuilder`] and the [`BlobSaver`] that spreads
//! sealed blobs over several open packs, uploads full packs concurrently
//! (up to [`Store::upload_concurrency`] in flight, as tasks on the store's
//! runtime) and writes index objects for them (format-spec §6, §7, §18).

use crate::crypto::{MasterKey, AAD_PACK_HEADER};
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{PackEntry, PackHeader};
use crate::format::{BlobId, BlobKind, IndexId, PackId};
use crate::store::{ObjectKind, Store};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accumulates sealed blobs into one pack; no I/O.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack: its id (BLAKE3 of `bytes`), bytes and header entries.
pub struct FinishedPack {
    /// BLAKE3-256 of `bytes`; the object name.
    pub id: PackId,
    /// The whole pack.
    pub bytes: Bytes,
    /// Entries, in pack order.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// Bytes of blobs added so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends one sealed blob; `base` names the base of a delta blob.
    pub fn add(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_len: u32,
        base: Option<BlobId>,
    ) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_len,
            base,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the header and appends it and its length; resets the builder.
    pub fn finish(&mut self, key: &MasterKey) -> FinishedPack {
        let mut nonce = [0u8; crate::crypto::NONCE_LEN];
        crate::crypto::random_bytes(&mut nonce);
        self.finish_with_nonce(key, &nonce)
    }

    /// [`PackBuilder::finish`] with an explicit header nonce: for test
    /// vectors only; real packs use a random nonce.
    pub fn finish_with_nonce(
        &mut self,
        key: &MasterKey,
        nonce: &[u8; crate::crypto::NONCE_LEN],
    ) -> FinishedPack {
        let entries = std::mem::take(&mut self.entries);
        let mut buf = std::mem::take(&mut self.buf);
        let header = PackHeader { entries };
        let sealed = key.seal_with_nonce(nonce, AAD_PACK_HEADER, &header.encode());
        buf.extend_from_slice(&sealed);
        buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id: PackId::of_object(&buf),
            bytes: Bytes::from(buf),
            entries: header.entries,
        }
    }
}

/// Totals of what a [`BlobSaver`] stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct SaveStats {
    /// Blobs added.
    pub blobs: u64,
    /// Plaintext bytes of the blobs added.
    pub raw_bytes: u64,
    /// Bytes of packs and index objects written.
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
}

/// Packs uploaded per index object (default of [`BlobSaver::set_index_every`]).
const PACKS_PER_INDEX: usize = 64;

/// Default index checkpoint interval (5 minutes; see
/// [`BlobSaver::set_index_interval`]).
pub const INDEX_INTERVAL: Duration = Duration::from_secs(300);

/// The index checkpoint interval: `SNAP_INDEX_INTERVAL` (whole seconds, at
/// least 1) when set to a number, else [`INDEX_INTERVAL`].
pub fn index_interval() -> Duration {
    std::env::var("SNAP_INDEX_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.max(1)))
        .unwrap_or(INDEX_INTERVAL)
}

type UploadResult = Result<IndexPack>;

/// Saves sealed blobs into packs and indexes them.
///
/// Write order (format-spec §18): a pack is stored before any index names it
/// (a pack enters an index only after its upload returned success);
/// blobs enter the catalog only after their index object is stored.
/// Memory: the open packs plus at most `upload_concurrency` finished packs.
pub struct BlobSaver {
    store: Arc<Store>,
    key: MasterKey,
    pack_size: usize,
    open: Vec<PackBuilder>,
    /// Blobs in open, uploading or uploaded-but-unindexed packs.
    pending: HashSet<BlobId>,
    done_tx: mpsc::Sender<UploadResult>,
    done_rx: mpsc::Receiver<UploadResult>,
    /// Uploads spawned and not yet collected.
    in_flight: usize,
    max_in_flight: usize,
    index_every: usize,
    /// Longest time an uploaded pack waits for its index object.
    index_interval: Duration,
    /// When the last index object was written (or the saver created).
    last_index: Instant,
    /// First upload error seen; later calls report it again.
    failed: Option<Error>,
    /// Time spent waiting for a free upload slot.
    upload_wait: Duration,
    uploaded: Vec<IndexPack>,
    /// Index objects written, with their contents, for the caller to catalog.
    pub written_indexes: Vec<(IndexId, IndexFile)>,
    /// Totals.
    pub stats: SaveStats,
}

impl BlobSaver {
    /// A saver with `open_packs` packs filled at once, each flushed at
    /// `pack_size` bytes.
    pub fn new(
        store: Arc<Store>,
        key: MasterKey,
        pack_size: usize,
        open_packs: usize,
    ) -> BlobSaver {
        let (done_tx, done_rx) = mpsc::channel();
        let max_in_flight = store.upload_concurrency().max(1);
        BlobSaver {
            store,
            key,
            pack_size,
            open: (0..open_packs.max(1))
                .map(|_| PackBuilder::default())
                .collect(),
            pending: HashSet::new(),
            done_tx,
            done_rx,
            in_flight: 0,
            max_in_flight,
            index_every: PACKS_PER_INDEX,
            index_interval: index_interval(),
            last_index: Instant::now(),
            failed: None,
            upload_wait: Duration::ZERO,
            uploaded: Vec::new(),
            written_indexes: Vec::new(),
            stats: SaveStats::default(),
        }
    }

    /// Writes an index object every `packs` uploaded packs (default 64).
    /// Smaller values make an interrupted run lose less (packs not yet named
    /// by an index are uploaded again by the next run) at the cost of more,
    /// smaller index objects.
    pub fn set_index_every(&mut self, packs: usize) {
        self.index_every = packs.max(1);
    }

    /// Writes an index object for the uploaded packs once `interval` has
    /// passed since the last one (default [`index_interval`]), checked on
    /// every [`BlobSaver::add`] and [`BlobSaver::checkpoint`]: a killed
    /// backup or a power loss then loses at most about `interval` of upload.
    pub fn set_index_interval(&mut self, interval: Duration) {
        self.index_interval = interval;
    }

    /// Records finished uploads and, when the index interval has passed and
    /// packs are waiting, writes an index object for them. For callers that
    /// may not add blobs for a while (a slow source).
    ///
    /// Errors: the first upload error, or the index write's error.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.collect(false)?;
        self.index_if_due()
    }

    fn index_if_due(&mut self) -> Result<()> {
        if self.uploaded.len() >= self.index_every
            || (!self.uploaded.is_empty() && self.last_index.elapsed() >= self.index_interval)
        {
            self.write_index()?;
        }
        Ok(())
    }

    /// Total time the saver has spent waiting for a free upload slot (all
    /// `upload_concurrency` uploads running) before it could hand over a
    /// full pack: time in which the writer was bound by its uploads.
    pub fn upload_wait(&self) -> Duration {
        self.upload_wait
    }

    /// Whether this saver already holds blob `id` (not yet in the catalog).
    pub fn is_pending(&self, id: &BlobId) -> bool {
        self.pending.contains(id)
    }

    /// Adds a sealed blob. The open pack is chosen by the blob's keyed id, so
    /// pack sizes do not follow one file's chunk sequence.
    pub fn add(&mut self, kind: BlobKind, id: BlobId, sealed: &[u8], raw_len: u32) -> Result<()> {
        self.add_with_base(kind, id, sealed, raw_len, None)
    }

    /// [`BlobSaver::add`] for a blob that may be delta-encoded against the
    /// data blob `base` (format-spec §13); the base must already be stored.
    pub fn add_with_base(
        &mut self,
        kind: BlobKind,
        id: BlobId,
        sealed: &[u8],
        raw_len: u32,
        base: Option<BlobId>,
    ) -> Result<()> {
        if !self.pending.insert(id) {
            return Ok(());
        }
        let n = self.open.len();
        let slot = (u16::from_le_bytes([id.0[30], id.0[31]]) as usize) % n;
        self.open[slot].add(kind, id, sealed, raw_len, base);
        self.stats.blobs += 1;
        self.stats.raw_bytes += raw_len as u64;
        if self.open[slot].len() >= self.pack_size {
            let p = self.open[slot].finish(&self.key);
            self.send(p)?;
        }
        self.collect(false)?;
        self.index_if_due()
    }

    fn send(&mut self, p: FinishedPack) -> Result<()> {
        // Keep at most `max_in_flight` uploads running.
        if self.in_flight >= self.max_in_flight {
            let waiting = Instant::now();
            while self.in_flight >= self.max_in_flight {
                self.collect_one()?;
            }
            self.upload_wait += waiting.elapsed();
        }
        if let Some(e) = &self.failed {
            return Err(Error::new(e.kind(), format!("{e:#}")));
        }
        self.stats.packs += 1;
        self.stats.stored_bytes += p.bytes.len() as u64;
        let size = p.bytes.len() as u64;
        // One thread per upload (at most `max_in_flight` at once), each
        // blocking on the store's synchronous put; a pack is megabytes, so a
        // thread start is noise beside its upload.
        let store = self.store.clone();
        let tx = self.done_tx.clone();
        let (id, blobs, bytes) = (p.id, p.entries, p.bytes);
        std::thread::Builder::new()
            .name("snap-upload".into())
            .spawn(move || {
                let r = store
                    .put_new(&ObjectKind::Pack.key(&id.to_hex()), bytes)
                    .map(|_| IndexPack { id, size, blobs });
                let _ = tx.send(r);
            })
            .map_err(|e| Error::io("starting a pack upload thread", e))?;
        self.in_flight += 1;
        Ok(())
    }

    fn record(&mut self, r: UploadResult) {
        self.in_flight -= 1;
        match r {
            Ok(p) => self.uploaded.push(p),
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(e);
                }
            }
        }
    }

    /// Waits for one upload to finish.
    fn collect_one(&mut self) -> Result<()> {
        let r = self.done_rx.recv().map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Backend,
                "pack upload task vanished",
            )
        })?;
        self.record(r);
        Ok(())
    }

    /// Records finished uploads; with `block`, waits for all of them.
    fn collect(&mut self, block: bool) -> Result<()> {
        if block {
            while self.in_flight > 0 {
                self.collect_one()?;
            }
        } else {
            while let Ok(r) = self.done_rx.try_recv() {
                self.record(r);
            }
        }
        match &self.failed {
            Some(e) => Err(Error::new(e.kind(), format!("{e:#}"))),
            None => Ok(()),
        }
    }

    fn write_index(&mut self) -> Result<()> {
        if self.uploaded.is_empty() {
            return Ok(());
        }
        let idx = IndexFile {
            supersedes: Vec::new(),
            packs: std::mem::take(&mut self.uploaded),
        };
        let (id, sealed) =
            match crate::repo::write_sealed::<IndexId>(&self.store, &self.key, &idx.encode()) {
                Ok(w) => w,
                Err(e) => {
                    // Keep the packs for a later attempt (finish, salvage).
                    self.uploaded = idx.packs;
                    return Err(e);
                }
            };
        self.stats.stored_bytes += sealed.len() as u64;
        self.written_indexes.push((id, idx));
        self.last_index = Instant::now();
        Ok(())
    }

    /// Flushes every open pack, waits for uploads and writes the last index
    /// object. After `Ok`, every added blob is in a stored pack named by a
    /// stored index object.
    ///
    /// On an upload error, the packs that did arrive are still indexed (so a
    /// later run can reuse their blobs) before the error is returned.
    pub fn finish(&mut self) -> Result<()> {
        let mut first_err = None;
        for i in 0..self.open.len() {
            if !self.open[i].is_empty() {
                let p = self.open[i].finish(&self.key);
                if let Err(e) = self.send(p) {
                    first_err.get_or_insert(e);
                    break;
                }
            }
        }
        let r = self.collect(true);
        let w = self.write_index();
        match (first_err, r, w) {
            (Some(e), _, _) | (None, Err(e), _) | (None, Ok(()), Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// After a failure (an upload error such as a full disk, or any error
    /// while adding blobs): stops the uploader and, best effort, writes an
    /// index object naming the packs that were stored before the failure, so
    /// that the next backup reuses their blobs instead of uploading them
    /// again (they would otherwise be unreferenced until prune). Blobs of
    /// packs that were not stored are dropped. Errors are ignored: the
    /// caller is already returning the original one. Call
    /// [`BlobSaver::take_written`] afterwards to catalog what was indexed.
    pub fn salvage(&mut self) {
        // Wait for uploads in flight; a lost task ends the wait.
        while self.in_flight > 0 {
            if self.collect_one().is_err() {
                break;
            }
        }
        let _ = self.write_index();
    }

    /// Takes the index objects written since the last call (for the catalog);
    /// their blobs stop being pending.
    pub fn take_written(&mut self) -> Vec<(IndexId, IndexFile)> {
        let w = std::mem::take(&mut self.written_indexes);
        for (_, idx) in &w {
            for p in &idx.packs {
                for b in &p.blobs {
                    self.pending.remove(&b.id);
                }
            }
        }
        w
    }
}

impl Drop for BlobSaver {
    fn drop(&mut self) {
        // Let spawned uploads finish rather than leave half-written state
        // behind the caller's back (their packs are simply unindexed).
        while self.in_flight > 0 && self.done_rx.recv().is_ok() {
            self.in_flight -= 1;
        }
    }
}
