//! Content-defined chunking: FastCDC 2020 (Xia et al., "The Design of Fast
//! Content-Defined Chunking for Data Deduplication Based Storage Systems",
//! IEEE TPDS 2020) with a secret gear table (format-spec §15).
//!
//! A public gear table lets chunk sizes fingerprint known content; the table
//! here is 256 u64 words from BLAKE3's XOF in derive-key mode over the
//! repository's 32-byte chunker seed, so boundaries depend on the key.

use crate::format::config::ChunkSizes;
use fastcdc::v2020::{cut_gear, select_masks, Normalization};

/// BLAKE3 derive-key context for the gear table (format-spec §15).
pub const GEAR_CONTEXT: &str = "snap 2026 fastcdc gear table v1";

/// A chunker for one profile: gear tables plus size bounds. Cheap to share.
#[derive(Clone)]
pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

/// Derives the 256-entry gear table from a seed: entry `i` is the u64 LE at
/// bytes `8i..8i+8` of BLAKE3-XOF(derive_key(GEAR_CONTEXT, seed)).
pub fn gear_table(seed: &[u8; 32]) -> [u64; 256] {
    let mut bytes = [0u8; 2048];
    blake3::Hasher::new_derive_key(GEAR_CONTEXT)
        .update(seed)
        .finalize_xof()
        .fill(&mut bytes);
    let mut gear = [0u64; 256];
    for (i, g) in gear.iter_mut().enumerate() {
        *g = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    }
    gear
}

impl Chunker {
    /// A chunker with the gear table derived from `seed` and the given
    /// bounds (validated by [`ChunkSizes::validate`]); normalization level 1.
    pub fn new(seed: &[u8; 32], sizes: ChunkSizes) -> Chunker {
        let gear = gear_table(seed);
        let mut gear_ls = [0u64; 256];
        for (d, s) in gear_ls.iter_mut().zip(gear.iter()) {
            *d = s << 1;
        }
        let (mask_s, mask_l) = select_masks(sizes.avg as usize, Normalization::Level1);
        Chunker {
            gear: Box::new(gear),
            gear_ls: Box::new(gear_ls),
            min: sizes.min as usize,
            avg: sizes.avg as usize,
            max: sizes.max as usize,
            mask_s,
            mask_l,
        }
    }

    /// Largest chunk this chunker emits, bytes.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the next chunk at the start of `data` (1..=max, or
    /// `data.len()` if shorter than the minimum). `data` must not be empty.
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        n.clamp(1, data.len())
    }

    /// Chunk lengths covering all of `data`, in order. If `at_eof` is false the
    /// last chunk is left out when it might still grow (shorter than `max`),
    /// and the returned total tells how much was consumed.
    pub fn cuts(&self, data: &[u8], at_eof: bool, out: &mut Vec<(usize, usize)>) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            if !at_eof && rest.len() < self.max {
                break;
            }
            let n = self.next_cut(rest);
            out.push((pos, n));
            pos += n;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIZES: ChunkSizes = ChunkSizes {
        min: 256,
        avg: 1024,
        max: 4096,
    };

    fn data(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    proptest! {
        #[test]
        fn cuts_cover_input_within_limits(seed in any::<u64>(), n in 0usize..50_000) {
            let c = Chunker::new(&[7; 32], SIZES);
            let d = data(seed, n);
            let mut out = Vec::new();
            let total = c.cuts(&d, true, &mut out);
            prop_assert_eq!(total, d.len());
            let mut pos = 0;
            for (i, &(off, len)) in out.iter().enumerate() {
                prop_assert_eq!(off, pos);
                prop_assert!(len <= SIZES.max as usize);
                if i + 1 < out.len() { prop_assert!(len >= SIZES.min as usize); }
                pos += len;
            }
        }

        #[test]
        fn cuts_are_deterministic_and_streaming_equals_whole(seed in any::<u64>(), n in 0usize..40_000, split in 0usize..40_000) {
            let c = Chunker::new(&[9; 32], SIZES);
            let d = data(seed, n);
            let mut a = Vec::new();
            c.cuts(&d, true, &mut a);
            let mut b = Vec::new();
            c.cuts(&d, true, &mut b);
            prop_assert_eq!(&a, &b);
            // Streaming in two windows gives the same boundaries.
            let split = split.min(d.len());
            let mut s = Vec::new();
            let used = c.cuts(&d[..split], false, &mut s);
            let mut rest = Vec::new();
            c.cuts(&d[used..], true, &mut rest);
            s.extend(rest.into_iter().map(|(o, l)| (o + used, l)));
            prop_assert_eq!(a, s);
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let d = data(42, 200_000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Chunker::new(&[1; 32], SIZES).cuts(&d, true, &mut a);
        Chunker::new(&[2; 32], SIZES).cuts(&d, true, &mut b);
        assert_ne!(a, b);
    }
}
