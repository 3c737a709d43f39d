//! Batched reads of sealed blobs: the blobs wanted from each pack are sorted,
//! neighbours are coalesced into one ranged read (on a remote store also
//! across gaps of up to [`REMOTE_GAP`] bytes, since a request costs more than
//! the bytes between two blobs), and a batch's reads go to
//! [`Store::get_ranges`] at once (concurrent inside the store). Used by the backup's
//! delta-base reads, whose blobs sit in stream order but interleaved over a
//! few packs (restores go through [`crate::read::planner`]).

use crate::catalog::BlobLocation;
use crate::error::{Error, Result};
use crate::format::PackId;
use crate::store::{ObjectKind, Store};
use bytes::Bytes;

pub use crate::read::planner::{MAX_READ, REMOTE_GAP};

/// The bytes of one batch of coalesced reads.
pub struct Fetched {
    /// (pack, start offset, bytes), sorted by (pack, start).
    ranges: Vec<(PackId, u64, Bytes)>,
}

impl Fetched {
    /// The sealed bytes of the blob at `loc`; [`crate::error::ErrorKind::Corrupt`]
    /// if this batch did not read them (the pack was shorter than indexed).
    pub fn sealed(&self, loc: &BlobLocation) -> Result<&[u8]> {
        self.get(loc).ok_or_else(|| short_pack(&loc.pack))
    }

    /// Bytes this batch read from the store.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(_, _, b)| b.len() as u64).sum()
    }

    /// The sealed bytes of the blob at `loc`, if this batch read it.
    pub fn get(&self, loc: &BlobLocation) -> Option<&[u8]> {
        let off = loc.offset as u64;
        let i = self
            .ranges
            .partition_point(|(p, s, _)| (*p, *s) <= (loc.pack, off));
        let (p, s, b) = self.ranges.get(i.checked_sub(1)?)?;
        if *p != loc.pack {
            return None;
        }
        let from = (off - s) as usize;
        b.get(from..from + loc.length as usize)
    }
}

/// Reads the sealed blobs at `locs` (duplicates allowed) with as few ranged
/// reads as the store's kind makes worthwhile.
///
/// Errors: the store's (NotFound for a missing pack, Corrupt for one shorter
/// than the index says, Backend/Io for transport failures).
pub fn fetch(store: &Store, locs: &[BlobLocation]) -> Result<Fetched> {
    fetch_in(store, locs, true)
}

/// [`fetch`], with the coalesced reads sent at once (`concurrent`, through
/// [`Store::get_ranges`]) or one after another (for a caller that bounds
/// the reads in flight with its own threads, as the planner's stream
/// windows do). Errors: as [`fetch`].
pub fn fetch_in(store: &Store, locs: &[BlobLocation], concurrent: bool) -> Result<Fetched> {
    let gap = if store.is_remote() { REMOTE_GAP } else { 0 };
    let mut want: Vec<(PackId, u64, u64)> = locs
        .iter()
        .map(|l| (l.pack, l.offset as u64, l.offset as u64 + l.length as u64))
        .collect();
    want.sort_unstable();
    want.dedup();
    let mut plan: Vec<(PackId, u64, u64)> = Vec::new();
    for (pack, s, e) in want {
        match plan.last_mut() {
            Some((p, ps, pe)) if *p == pack && s <= *pe + gap && e - *ps <= MAX_READ => {
                *pe = (*pe).max(e);
            }
            _ => plan.push((pack, s, e)),
        }
    }
    let key = |p: &PackId| ObjectKind::Pack.key(&p.to_hex());
    let reqs: Vec<(String, std::ops::Range<u64>)> =
        plan.iter().map(|(p, s, e)| (key(p), *s..*e)).collect();
    let got = if concurrent {
        store.get_ranges(&reqs)?
    } else {
        reqs.iter()
            .map(|(k, r)| store.get_range(k, r.clone()))
            .collect::<Result<Vec<_>>>()?
    };
    let mut ranges = Vec::with_capacity(plan.len());
    for ((p, s, e), b) in plan.into_iter().zip(got) {
        if (b.len() as u64) < e - s {
            return Err(short_pack(&p));
        }
        ranges.push((p, s, b));
    }
    Ok(Fetched { ranges })
}

fn short_pack(pack: &PackId) -> Error {
    Error::corrupt(format!(
        "pack {} is shorter than its index says; run `snap check`",
        pack.short()
    ))
}
