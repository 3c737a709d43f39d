//! Pack building: a pure [`PackBuilder`] and the [`BlobSaver`] that spreads
//! sealed blobs over several open packs, uploads full packs on a background
//! thread and writes index objects for them (format-spec §6, §7, §14).

use crate::crypto::{MasterKey, AAD_INDEX, AAD_PACK_HEADER};
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{PackEntry, PackHeader};
use crate::format::{BlobKind, Id};
use crate::store::{ObjectKind, Store};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Accumulates sealed blobs into one pack; no I/O.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack: its id (BLAKE3 of `bytes`), bytes and header entries.
pub struct FinishedPack {
    /// BLAKE3-256 of `bytes`; the object name.
    pub id: Id,
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

    /// Appends one sealed blob.
    pub fn add(&mut self, kind: BlobKind, id: Id, sealed: &[u8], raw_len: u32) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_len,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the header and appends it and its length; resets the builder.
    pub fn finish(&mut self, key: &MasterKey) -> FinishedPack {
        let entries = std::mem::take(&mut self.entries);
        let mut buf = std::mem::take(&mut self.buf);
        let header = PackHeader { entries };
        let sealed = key.seal(AAD_PACK_HEADER, &header.encode());
        buf.extend_from_slice(&sealed);
        buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id: Id::of_object(&buf),
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

/// Packs uploaded per index object.
const PACKS_PER_INDEX: usize = 64;

type UploadResult = Result<IndexPack>;

/// Saves sealed blobs into packs and indexes them.
///
/// Write order (format-spec §14): a pack is stored before any index names it;
/// blobs enter the catalog only after their index object is stored.
pub struct BlobSaver {
    store: Arc<Store>,
    key: MasterKey,
    pack_size: usize,
    open: Vec<PackBuilder>,
    /// Blobs in open, uploading or uploaded-but-unindexed packs.
    pending: HashSet<Id>,
    tx: Option<mpsc::SyncSender<FinishedPack>>,
    done_rx: mpsc::Receiver<UploadResult>,
    uploader: Option<JoinHandle<()>>,
    uploaded: Vec<IndexPack>,
    /// Index objects written, with their contents, for the caller to catalog.
    pub written_indexes: Vec<(Id, IndexFile)>,
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
        // Rendezvous: at most one finished pack waits beside the one uploading.
        let (tx, rx) = mpsc::sync_channel::<FinishedPack>(0);
        let (done_tx, done_rx) = mpsc::channel();
        let st = store.clone();
        let uploader = std::thread::Builder::new()
            .name("snap-upload".into())
            .spawn(move || {
                for p in rx {
                    let size = p.bytes.len() as u64;
                    let r = st
                        .put_new(&ObjectKind::Pack.key(&p.id.to_hex()), p.bytes)
                        .map(|_| IndexPack {
                            id: p.id,
                            size,
                            blobs: p.entries,
                        });
                    let failed = r.is_err();
                    if done_tx.send(r).is_err() || failed {
                        break;
                    }
                }
            })
            .ok();
        BlobSaver {
            store,
            key,
            pack_size,
            open: (0..open_packs.max(1))
                .map(|_| PackBuilder::default())
                .collect(),
            pending: HashSet::new(),
            tx: Some(tx),
            done_rx,
            uploader,
            uploaded: Vec::new(),
            written_indexes: Vec::new(),
            stats: SaveStats::default(),
        }
    }

    /// Whether this saver already holds blob `id` (not yet in the catalog).
    pub fn is_pending(&self, id: &Id) -> bool {
        self.pending.contains(id)
    }

    /// Adds a sealed blob. The open pack is chosen by the blob's keyed id, so
    /// pack sizes do not follow one file's chunk sequence.
    pub fn add(&mut self, kind: BlobKind, id: Id, sealed: &[u8], raw_len: u32) -> Result<()> {
        if !self.pending.insert(id) {
            return Ok(());
        }
        let n = self.open.len();
        let slot = (u16::from_le_bytes([id.0[30], id.0[31]]) as usize) % n;
        self.open[slot].add(kind, id, sealed, raw_len);
        self.stats.blobs += 1;
        self.stats.raw_bytes += raw_len as u64;
        if self.open[slot].len() >= self.pack_size {
            let p = self.open[slot].finish(&self.key);
            self.send(p)?;
        }
        self.collect(false)?;
        if self.uploaded.len() >= PACKS_PER_INDEX {
            self.write_index()?;
        }
        Ok(())
    }

    fn send(&mut self, p: FinishedPack) -> Result<()> {
        self.stats.packs += 1;
        self.stats.stored_bytes += p.bytes.len() as u64;
        if let Some(tx) = &self.tx {
            if tx.send(p).is_err() {
                // The uploader stopped after an error; report it.
                self.collect(true)?;
                return Err(Error::new(
                    crate::error::ErrorKind::Backend,
                    "pack upload stopped",
                ));
            }
        }
        Ok(())
    }

    fn collect(&mut self, block: bool) -> Result<()> {
        loop {
            let r = if block {
                match self.done_rx.recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            } else {
                match self.done_rx.try_recv() {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            };
            self.uploaded.push(r?);
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
        let sealed = self.key.seal(AAD_INDEX, &idx.encode());
        let id = Id::of_object(&sealed);
        self.stats.stored_bytes += sealed.len() as u64;
        self.store
            .put_new(&ObjectKind::Index.key(&id.to_hex()), Bytes::from(sealed))?;
        self.written_indexes.push((id, idx));
        Ok(())
    }

    /// Flushes every open pack, waits for uploads and writes the last index
    /// object. After `Ok`, every added blob is in a stored pack named by a
    /// stored index object.
    pub fn finish(&mut self) -> Result<()> {
        for i in 0..self.open.len() {
            if !self.open[i].is_empty() {
                let p = self.open[i].finish(&self.key);
                self.send(p)?;
            }
        }
        self.tx = None;
        if let Some(h) = self.uploader.take() {
            let _ = h.join();
        }
        self.collect(true)?;
        self.write_index()
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
        self.tx = None;
        if let Some(h) = self.uploader.take() {
            let _ = h.join();
        }
        while let Ok(r) = self.done_rx.try_recv() {
            if let Ok(p) = r {
                self.uploaded.push(p);
            }
        }
        let _ = self.write_index();
    }

    /// Takes the index objects written since the last call (for the catalog);
    /// their blobs stop being pending.
    pub fn take_written(&mut self) -> Vec<(Id, IndexFile)> {
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
        self.tx = None;
        if let Some(h) = self.uploader.take() {
            let _ = h.join();
        }
    }
}
