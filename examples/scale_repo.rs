//! Builds a local repository that indexes N synthetic blobs (default 50
//! million) for the scale test (benches/scale.sh, tests/scale.rs).
//!
//! ```text
//! SNAP_PASSWORD=... cargo run --release --example scale_repo -- REPO CACHE_DIR [N] [REF_PERCENT]
//! ```
//!
//! `REPO` must be an initialised local repository. Written, in the order a
//! backup writes (format-spec §14: packs, then index objects, then the
//! snapshot):
//! - `ceil(N / 4096)` packs under `data/`: 4096 × 256 KiB of zeros as a
//!   *sparse* hole (no disk space), then a real sealed pack header
//!   (format-spec §6: about 184 KiB, 2.2 GB at 50 million blobs) and its
//!   length, so `repair index` reads real headers;
//! - real index objects (format-spec §7: sealed with `AAD_INDEX`, named by
//!   the BLAKE3 of their bytes, at most 122 packs = 499,712 blobs each, about
//!   22 MiB of plaintext) listing every pack with 4096 data blobs of 256 KiB;
//! - real tree blobs (in real packs, through `BlobSaver`, with their own
//!   index objects) and one snapshot (time 2000-01-01, so a real backup made
//!   later is the latest) whose trees reference every blob of REF_PERCENT %
//!   of the synthetic packs (default 50: packs `p` with `p % 100 < 50`), as
//!   one 1 GiB file per pack, 16 files per folder;
//! - finally the catalog, by opening the repository (the ordinary sync
//!   loads every index object); its time is printed.
//!
//! Faithful for everything that does not read blob data: `check` (structure:
//! index objects authenticate and decode, every indexed pack is listed with
//! its indexed size, every tree decodes, every referenced blob is indexed,
//! the catalog agrees with the index objects) and `prune` (its own index
//! view, the tree walk over 25 million references, the per-pack usage
//! query; the unreferenced half of the packs is marked, and no pack is
//! partly used, so nothing is repacked), `repair index` (every pack header
//! is read and authenticates) and `repair snapshots` (the tree walk, a
//! lookup per referenced blob). Not faithful: `check --read-data`
//! and restore of the synthetic snapshot (the packs are zeros, and their
//! names are not the BLAKE3 of their bytes), and blob ids: the first 8
//! bytes of blob i are i · ⌊2⁶⁴/N⌋ (big-endian; the rest BLAKE3 of i), so
//! ids look random to lookups but each index object covers one contiguous
//! id range, which makes loading the catalog append-friendly (a real
//! repository's index objects each span the whole id space).

use snap::crypto::AAD_PACK_HEADER;
use snap::format::index::{IndexFile, IndexPack};
use snap::format::pack::{PackEntry, PackHeader};
use snap::format::snapshot::Snapshot;
use snap::format::tree::{EntryKind, Tree, TreeEntry};
use snap::format::BlobKind;
use snap::repo::write_sealed;
use snap::store::ObjectKind;
use snap::write::pack::BlobSaver;
use snap::{BlobId, IndexId, PackId, Repository, SnapshotId};
use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

const PER_PACK: u64 = 4096;
const PACKS_PER_INDEX: u64 = 122;
const BLOB_LEN: u32 = (1 << 18) + 40;
const RAW_LEN: u32 = 1 << 18;
const FILES_PER_DIR: usize = 16;

fn blob_id(i: u64, step: u64) -> BlobId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i * step).to_be_bytes());
    id[8..].copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..24]);
    BlobId(id)
}

fn pack_id(p: u64) -> PackId {
    PackId(*blake3::hash(&[b"scale-pack".as_slice(), &p.to_le_bytes()].concat()).as_bytes())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!(
            "usage: scale_repo REPO CACHE_DIR [N] [REF_PERCENT]; password in SNAP_PASSWORD"
        );
    }
    let n: u64 = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000_000);
    let ref_percent: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let pw = std::env::var("SNAP_PASSWORD").map_err(|_| anyhow::anyhow!("set SNAP_PASSWORD"))?;
    let summary = generate(
        &args[1],
        std::path::Path::new(&args[2]),
        &pw,
        n,
        ref_percent,
    )?;
    println!("{summary}");
    Ok(())
}

/// Fills the initialised local repository `loc` (catalog under `cache`) with
/// `n` synthetic blobs, `ref_percent` % of the packs referenced by one
/// snapshot (see the file documentation). Returns a one-line summary.
pub fn generate(
    loc: &str,
    cache: &std::path::Path,
    pw: &str,
    n: u64,
    ref_percent: u64,
) -> anyhow::Result<String> {
    let t = Instant::now();
    let repo = Repository::open(loc, pw.as_bytes(), cache)?;
    // Sparse packs are made with the file system directly: only a local
    // repository (a plain path) will do.
    if loc.contains("://") {
        anyhow::bail!("{loc} is not a local repository");
    }
    let root = std::path::PathBuf::from(loc);
    let step = u64::MAX / n.max(1);
    let packs = n.div_ceil(PER_PACK);
    // Packs (sparse: zeros where the blobs would be, then a real sealed
    // header) and the index objects naming them.
    let mut indexes = 0;
    for first in (0..packs).step_by(PACKS_PER_INDEX as usize) {
        let mut f = IndexFile::default();
        for p in first..(first + PACKS_PER_INDEX).min(packs) {
            let blobs: Vec<PackEntry> = (p * PER_PACK..((p + 1) * PER_PACK).min(n))
                .enumerate()
                .map(|(k, i)| PackEntry {
                    kind: BlobKind::Data,
                    id: blob_id(i, step),
                    offset: k as u32 * BLOB_LEN,
                    length: BLOB_LEN,
                    raw_len: RAW_LEN,
                    base: None,
                })
                .collect();
            let data_len = blobs.len() as u64 * BLOB_LEN as u64;
            let header = repo.key().seal(
                AAD_PACK_HEADER,
                &PackHeader {
                    entries: blobs.clone(),
                }
                .encode(),
            );
            let path = root.join(ObjectKind::Pack.key(&pack_id(p).to_hex()));
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            let mut file = std::fs::File::create(&path)?;
            file.set_len(data_len)?;
            file.seek(SeekFrom::Start(data_len))?;
            file.write_all(&header)?;
            file.write_all(&(header.len() as u32).to_le_bytes())?;
            f.packs.push(IndexPack {
                id: pack_id(p),
                size: data_len + header.len() as u64 + 4,
                blobs,
            });
        }
        write_sealed::<IndexId>(repo.store(), repo.key(), &f.encode())?;
        indexes += 1;
    }
    eprintln!(
        "scale_repo: {packs} sparse packs, {indexes} index objects, {:.0} s",
        t.elapsed().as_secs_f64()
    );
    // Trees referencing REF_PERCENT % of the packs, and the snapshot.
    let (size, open) = repo.config().writer_packs();
    let mut saver = BlobSaver::new(repo.store().clone(), repo.key().clone(), size, open);
    let mut dirs = Tree::default();
    let mut files = Tree::default();
    let mut referenced = 0u64;
    let flush = |files: &mut Tree, dirs: &mut Tree, saver: &mut BlobSaver| -> anyhow::Result<()> {
        if files.entries.is_empty() {
            return Ok(());
        }
        let sub = snap::write::ingest::save_tree(&repo, saver, files)?;
        let mut e = TreeEntry::new(format!("d{:06}", dirs.entries.len()), EntryKind::Dir);
        e.mode = 0o755;
        e.subtree = Some(sub);
        dirs.entries.push(e);
        files.entries.clear();
        Ok(())
    };
    for p in (0..packs).filter(|p| p % 100 < ref_percent) {
        let mut e = TreeEntry::new(format!("f{p:08}"), EntryKind::File);
        e.mode = 0o644;
        e.content = (p * PER_PACK..((p + 1) * PER_PACK).min(n))
            .map(|i| blob_id(i, step))
            .collect();
        e.size = e.content.len() as u64 * RAW_LEN as u64;
        referenced += e.content.len() as u64;
        files.entries.push(e);
        if files.entries.len() == FILES_PER_DIR {
            flush(&mut files, &mut dirs, &mut saver)?;
        }
    }
    flush(&mut files, &mut dirs, &mut saver)?;
    let tree = snap::write::ingest::save_tree(&repo, &mut saver, &dirs)?;
    saver.finish()?;
    let snap = Snapshot {
        version: 1,
        time: "2000-01-01T00:00:00.000Z".into(),
        hostname: "scale".into(),
        username: "scale".into(),
        paths: vec!["/scale".into()],
        streams: Vec::new(),
        tags: Vec::new(),
        parent: None,
        tree,
        description: None,
        sources: Vec::new(),
        partial: false,
        failed_sources: Vec::new(),
        summary: Default::default(),
        original: None,
    };
    let (sid, _) = write_sealed::<SnapshotId>(repo.store(), repo.key(), &snap.encode())?;
    drop(repo);
    let written = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let repo = Repository::open(loc, pw.as_bytes(), cache)?;
    let count = repo.catalog().blob_count()?;
    Ok(format!(
        "scale_repo: {n} synthetic blobs ({referenced} referenced by snapshot {}), {written:.0} s to write; catalog of {count} blobs synced in {:.0} s",
        sid.short(),
        t2.elapsed().as_secs_f64()
    ))
}
