//! Fills a repository's catalog with N synthetic blobs (default 50 million)
//! for the scale test (benches/scale.sh).
//!
//! ```text
//! SNAP_PASSWORD=... cargo run --release --example scale_catalog -- REPO CACHE_DIR [N]
//! ```
//!
//! How it stays faithful to what `snap backup` sees: the catalog
//! (`CACHE_DIR/<repository id>/catalog.sqlite`, schema in `src/catalog.rs`) is
//! a cache of the repository's index objects, and `Repository::sync_catalog`
//! wipes it if it holds an index id that is not listed under `index/`. So this
//! tool first writes one real index object into the repository (an empty
//! `IndexFile`, sealed with `AAD_INDEX` and named by the BLAKE3 of its bytes,
//! exactly as `BlobSaver` writes them) and then, with rusqlite in one
//! transaction with prepared statements, inserts under that index id:
//! the `indexes` row, N/64 `packs` rows (16 MiB each) and N `blobs` rows
//! (256 KiB data blobs, 64 per pack). Blob ids are spread evenly over the id
//! space (first 8 bytes = i · 2^64/N, big-endian; the rest from BLAKE3 of i) so
//! they are inserted in key order (a fast append) yet look like random ids to
//! lookups. Later syncs keep the entries (the index id exists); a later
//! `snap cache rebuild` would drop them (the real index object is empty), and
//! the packs they name do not exist, so nothing may read these blobs — real
//! backups never look them up with a hit, since real ids are keyed BLAKE3.
//! The catalog's own connection settings (WAL, 8 MiB page cache) are restored
//! at the end; the load itself uses a rollback journal and a 1 GiB cache.

use rusqlite::{params, Connection};
use snap::format::index::IndexFile;
use snap::repo::write_sealed;
use snap::{IndexId, Repository};
use std::time::Instant;

const PER_PACK: u64 = 64;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: scale_catalog REPO CACHE_DIR [N]; password in SNAP_PASSWORD");
    }
    let (loc, cache) = (&args[1], std::path::PathBuf::from(&args[2]));
    let n: u64 = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000_000);
    let pw = std::env::var("SNAP_PASSWORD").map_err(|_| anyhow::anyhow!("set SNAP_PASSWORD"))?;
    let t = Instant::now();
    let (index_id, repo_id) = {
        let repo = Repository::open(loc, pw.as_bytes(), &cache)?;
        let empty = IndexFile {
            supersedes: Vec::new(),
            packs: Vec::new(),
        };
        let (id, _) = write_sealed::<IndexId>(repo.store(), repo.key(), &empty.encode())?;
        (id, repo.config().id.clone())
    };
    let path = cache.join(&repo_id).join("catalog.sqlite");
    let mut conn = Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -1_000_000)?;
    let tx = conn.transaction()?;
    let base: i64 = tx.query_row("SELECT coalesce(max(pack_no), 0) FROM packs", [], |r| {
        r.get(0)
    })?;
    {
        let mut ins_pack =
            tx.prepare("INSERT INTO packs(pack_no,id,size,index_id) VALUES(?1,?2,?3,?4)")?;
        let packs = n.div_ceil(PER_PACK);
        for p in 0..packs {
            let pid = blake3::hash(&[b"pack".as_slice(), &p.to_le_bytes()].concat());
            ins_pack.execute(params![
                base + 1 + p as i64,
                &pid.as_bytes()[..],
                16i64 << 20,
                &index_id.0[..]
            ])?;
        }
        let mut ins_blob = tx.prepare(
            "INSERT INTO blobs(id,kind,pack_no,offset,length,raw_len) VALUES(?1,0,?2,?3,?4,?5)",
        )?;
        let step = u64::MAX / n.max(1);
        let mut id = [0u8; 32];
        for i in 0..n {
            id[..8].copy_from_slice(&(i * step).to_be_bytes());
            let tail = blake3::hash(&i.to_le_bytes());
            id[8..].copy_from_slice(&tail.as_bytes()[..24]);
            ins_blob.execute(params![
                &id[..],
                base + 1 + (i / PER_PACK) as i64,
                ((i % PER_PACK) << 18) as i64,
                (1i64 << 18) + 40,
                1i64 << 18
            ])?;
            if i % 5_000_000 == 0 && i > 0 {
                eprintln!(
                    "scale_catalog: {i} blobs, {:.0} s",
                    t.elapsed().as_secs_f64()
                );
            }
        }
        tx.execute(
            "INSERT OR IGNORE INTO indexes(id) VALUES(?1)",
            [&index_id.0[..]],
        )?;
    }
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let count: i64 = conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))?;
    drop(conn);
    let size = std::fs::metadata(&path)?.len();
    println!(
        "scale_catalog: {count} blobs in {} ({:.2} GB), index {} , {:.0} s",
        path.display(),
        size as f64 / 1e9,
        index_id.short(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
