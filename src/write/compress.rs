//! Blob compression (format-spec §12): one leading byte says how the rest is
//! stored (0 = raw, 1 = zstd frame, 2 = zstd frame against a base blob).

use crate::error::{Error, Result};

/// Compression byte: payload stored as is.
pub const RAW: u8 = 0;
/// Compression byte: payload is one zstd frame.
pub const ZSTD: u8 = 1;
/// Compression byte: payload is the 32-byte id of a base data blob followed
/// by one zstd frame compressed with the base's plaintext as a raw-content
/// dictionary (a delta blob, format-spec §13).
pub const ZSTD_DELTA: u8 = 2;

/// A delta encoding is kept without trying plain zstd when it is at most
/// 1/`DELTA_SURE` of the plaintext (plain zstd seldom gets that far).
const DELTA_SURE: usize = 64;

/// Shannon entropy of a sample above which data is treated as incompressible
/// (bits per byte); JPEG, gzip and ciphertext sit near 8.0.
const ENTROPY_LIMIT: f64 = 7.2;
/// Bytes sampled for the entropy estimate.
const SAMPLE: usize = 16 << 10;

/// Cheap check, before paying for zstd: order-0 entropy of up to 16 KiB taken
/// as four spread-out slices.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < 512 {
        return false;
    }
    let mut hist = [0u32; 256];
    let mut n = 0u32;
    if data.len() <= SAMPLE {
        for &b in data {
            hist[b as usize] += 1;
        }
        n = data.len() as u32;
    } else {
        let part = SAMPLE / 4;
        for k in 0..4 {
            let start = (data.len() - part) * k / 3;
            for &b in &data[start..start + part] {
                hist[b as usize] += 1;
            }
            n += part as u32;
        }
    }
    let n = n as f64;
    let h: f64 = hist
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    h > ENTROPY_LIMIT
}

/// zstd level of [`Policy::choose`] for a compressible blob on a CPU-bound
/// writer (an `auto` repository, format-spec §12). Measured on a 258 MiB
/// proportional sample of the toolchain tree (`benches/stages.rs` sampling):
/// level 2 spends 29% less time in zstd than level 3 and stores 3.7% more;
/// level 1 spends 45% less but stores 8.7% more, beyond the 5% allowed.
pub const FAST_LEVEL: i32 = 2;

/// Where a writer's time goes, as seen by its blob saver: computing
/// (chunking, hashing, compressing, sealing) or waiting for pack uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bottleneck {
    /// Uploads keep up; CPU time bounds the throughput.
    Cpu,
    /// The upload queue is full: the writer waits for the store.
    Upload,
}

/// How one blob is stored: its payload's compression byte and zstd level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Compression byte [`RAW`]: stored as is.
    Raw,
    /// Compression byte [`ZSTD`] at this level (still stored raw if the
    /// frame saves less than about 3 %).
    Zstd(i32),
}

/// How a writer compresses blobs: a repository's `compression_level` and
/// `compression` (format-spec §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The repository's zstd level (−7 ..= 22).
    pub level: i32,
    /// `compression` = `auto`: choose per blob ([`Policy::choose`]).
    pub auto: bool,
}

impl Policy {
    /// The policy of a repository's config.
    pub fn of(config: &crate::format::config::Config) -> Policy {
        Policy {
            level: config.compression_level,
            auto: config.compression == Some(crate::format::config::Compression::Auto),
        }
    }

    /// The compression for a blob with plaintext `data` on a writer whose
    /// bottleneck is `bottleneck` (format-spec §12, "Writing"): raw when the
    /// entropy estimate ([`looks_incompressible`]) says incompressible;
    /// else the repository's level, except that an `auto` policy on a
    /// CPU-bound writer uses the faster [`FAST_LEVEL`] (or the repository's
    /// level if that is lower). Upload-bound writers therefore never store
    /// more than the repository's level would, and CPU-bound ones spend
    /// less time compressing.
    pub fn choose(&self, data: &[u8], bottleneck: Bottleneck) -> Choice {
        if looks_incompressible(data) {
            Choice::Raw
        } else if self.auto && bottleneck == Bottleneck::Cpu {
            Choice::Zstd(FAST_LEVEL.min(self.level))
        } else {
            Choice::Zstd(self.level)
        }
    }
}

/// Encodes a blob plaintext into `out` (cleared first): compressed with zstd
/// at `level` unless it looks incompressible or compression saves < 3%.
/// Reuses one zstd context per thread.
pub fn encode(data: &[u8], level: i32, out: &mut Vec<u8>) {
    let policy = Policy { level, auto: false };
    encode_as(data, policy.choose(data, Bottleneck::Cpu), out);
}

/// Encodes a blob plaintext into `out` (cleared first) as `choice` says
/// (from [`Policy::choose`]); a zstd frame that saves less than about 3 %
/// is replaced by the raw plaintext. Reuses one zstd context per thread.
pub fn encode_as(data: &[u8], choice: Choice, out: &mut Vec<u8>) {
    // One zstd context per level in use (an `auto` writer uses two).
    thread_local! {
        static CCTX: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    if let Choice::Zstd(level) = choice {
        // zstd writes into an initialised slice; a reused buffer is only
        // grown (zero-filled once), not cleared and zero-filled per blob.
        let bound = zstd::zstd_safe::compress_bound(data.len());
        if out.len() < 1 + bound {
            out.resize(1 + bound, 0);
        }
        out[0] = ZSTD;
        let n = CCTX.with(|c| {
            let mut c = c.borrow_mut();
            let i = match c.iter().position(|(l, _)| *l == level) {
                Some(i) => i,
                None => {
                    if c.len() >= 4 {
                        c.remove(0);
                    }
                    c.push((level, zstd::bulk::Compressor::new(level).ok()?));
                    c.len() - 1
                }
            };
            c[i].1.compress_to_buffer(data, &mut out[1..]).ok()
        });
        if let Some(n) = n {
            if n + n / 32 < data.len() {
                out.truncate(1 + n);
                return;
            }
        }
    }
    out.clear();
    out.push(RAW);
    out.extend_from_slice(data);
}

/// Encodes `data` as a delta blob against `base` (id `base_id`, plaintext
/// `base_plain`) into `out` when that is worth it: the delta frame is kept if
/// it is at most 1/64 of `data`, or at least 25% smaller than plain
/// [`encode`]. Returns whether `out` holds a delta encoding; otherwise `out`
/// holds the plain encoding. zstd level `level`; data that looks
/// incompressible is stored raw. Source of the technique: zstd's raw-content
/// dictionaries (`ZSTD_CCtx_loadDictionary`), as in `zstd --patch-from`.
pub fn encode_delta(
    data: &[u8],
    base_id: &crate::format::Id,
    base_plain: &[u8],
    level: i32,
    out: &mut Vec<u8>,
) -> bool {
    if looks_incompressible(data) || base_plain.is_empty() {
        encode(data, level, out);
        return false;
    }
    let bound = zstd::zstd_safe::compress_bound(data.len());
    out.clear();
    out.resize(1 + 32 + bound, 0);
    out[0] = ZSTD_DELTA;
    out[1..33].copy_from_slice(&base_id.0);
    let n = zstd::bulk::Compressor::with_dictionary(level, base_plain)
        .and_then(|mut c| c.compress_to_buffer(data, &mut out[33..]))
        .ok();
    let Some(n) = n else {
        encode(data, level, out);
        return false;
    };
    let delta_len = 33 + n;
    if delta_len <= data.len() / DELTA_SURE {
        out.truncate(delta_len);
        return true;
    }
    let mut plain = Vec::new();
    encode(data, level, &mut plain);
    if delta_len * 4 <= plain.len() * 3 {
        out.truncate(delta_len);
        true
    } else {
        *out = plain;
        false
    }
}

/// The base blob named by an encoded payload, if it is a delta blob
/// (compression byte [`ZSTD_DELTA`]); `None` for raw and zstd payloads and
/// for a delta payload too short to name one.
pub fn delta_base(encoded: &[u8]) -> Option<crate::format::Id> {
    match encoded {
        [ZSTD_DELTA, rest @ ..] if rest.len() >= 32 => crate::format::Id::from_slice(&rest[..32]),
        _ => None,
    }
}

/// Decodes a delta payload (compression byte [`ZSTD_DELTA`]) given its base's
/// plaintext; `raw_len` and `limit` as in [`decode_limited`].
///
/// Errors: [`crate::error::ErrorKind::Corrupt`] if the payload is not a delta
/// payload, does not decompress against `base_plain`, or decompresses to
/// other than `raw_len` bytes.
pub fn decode_delta(
    encoded: &[u8],
    base_plain: &[u8],
    raw_len: usize,
    limit: usize,
) -> Result<Vec<u8>> {
    if raw_len > limit {
        return Err(Error::corrupt(format!(
            "blob length {raw_len} exceeds the {} MiB limit",
            limit >> 20
        )));
    }
    if delta_base(encoded).is_none() {
        return Err(Error::corrupt("not a delta payload"));
    }
    let out = zstd::bulk::Decompressor::with_dictionary(base_plain)
        .and_then(|mut d| d.decompress(&encoded[33..], raw_len))
        .map_err(|e| Error::corrupt(format!("delta blob does not decompress: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::corrupt(format!(
            "blob decompressed to {} bytes, index says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// Decodes a blob's encoded bytes; `raw_len` is the expected plaintext length
/// from the index, bounded by [`crate::format::MAX_BLOB_SIZE`]. Data must
/// already be authenticated (opened envelope).
pub fn decode(encoded: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    decode_limited(encoded, raw_len, crate::format::MAX_BLOB_SIZE)
}

/// [`decode`] with an explicit plaintext limit in bytes (tree blobs may
/// reach [`crate::format::MAX_TREE_SIZE`]).
pub fn decode_limited(encoded: &[u8], raw_len: usize, limit: usize) -> Result<Vec<u8>> {
    if raw_len > limit {
        return Err(Error::corrupt(format!(
            "blob length {raw_len} exceeds the {} MiB limit",
            limit >> 20
        )));
    }
    let (&tag, body) = encoded
        .split_first()
        .ok_or_else(|| Error::corrupt("empty blob payload"))?;
    let out = match tag {
        RAW => body.to_vec(),
        ZSTD => {
            // Bounded: output beyond raw_len is an error, not an allocation.
            zstd::bulk::decompress(body, raw_len)
                .map_err(|e| Error::corrupt(format!("blob does not decompress: {e}")))?
        }
        ZSTD_DELTA => {
            return Err(Error::corrupt(
                "delta blob decoded without its base (internal error)",
            ))
        }
        t => return Err(Error::corrupt(format!("unknown compression byte {t}"))),
    };
    if out.len() != raw_len {
        return Err(Error::corrupt(format!(
            "blob decompressed to {} bytes, index says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 1usize..4) {
            let d: Vec<u8> = data.iter().cycle().take(data.len() * rep).copied().collect();
            let mut enc = Vec::new();
            encode(&d, 3, &mut enc);
            prop_assert_eq!(decode(&enc, d.len()).unwrap(), d);
        }
    }

    #[test]
    fn random_data_is_stored_raw_and_text_compressed() {
        let mut r = vec![0u8; 100_000];
        crate::crypto::random_bytes(&mut r);
        let mut enc = Vec::new();
        encode(&r, 3, &mut enc);
        assert_eq!(enc[0], RAW);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(2000);
        encode(&text, 3, &mut enc);
        assert_eq!(enc[0], ZSTD);
        assert!(enc.len() < text.len() / 10);
    }

    #[test]
    fn delta_against_similar_base_is_small_and_roundtrips() {
        let base: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("row {i} some text {}\n", i * 7).into_bytes())
            .collect();
        let mut data = base.clone();
        data[5000..5010].copy_from_slice(b"CHANGED!!!");
        let base_id = crate::format::Id([5; 32]);
        let mut out = Vec::new();
        assert!(encode_delta(&data, &base_id, &base, 3, &mut out));
        assert_eq!(out[0], ZSTD_DELTA);
        assert_eq!(delta_base(&out), Some(base_id));
        assert!(out.len() < 200, "delta is {} bytes", out.len());
        assert_eq!(
            decode_delta(&out, &base, data.len(), 1 << 20).unwrap(),
            data
        );
        // Without the right base it fails, never silently.
        assert!(decode_delta(&out, b"other", data.len(), 1 << 20).is_err());
        assert!(decode(&out, data.len()).is_err());
        // An unrelated base: plain zstd is kept.
        let unrelated = vec![b'z'; 4096];
        assert!(!encode_delta(&data, &base_id, &unrelated, 3, &mut out));
        assert_eq!(decode(&out, data.len()).unwrap(), data);
    }

    #[test]
    fn auto_chooses_raw_fast_or_repository_level() {
        let mut noise = vec![0u8; 200_000];
        crate::crypto::random_bytes(&mut noise);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(5000);
        let auto = Policy {
            level: 3,
            auto: true,
        };
        // Incompressible: raw, whatever the bottleneck.
        assert_eq!(auto.choose(&noise, Bottleneck::Cpu), Choice::Raw);
        assert_eq!(auto.choose(&noise, Bottleneck::Upload), Choice::Raw);
        // Compressible on a CPU-bound writer: the fast level; upload-bound:
        // the repository's level.
        assert_eq!(
            auto.choose(&text, Bottleneck::Cpu),
            Choice::Zstd(FAST_LEVEL)
        );
        assert_eq!(auto.choose(&text, Bottleneck::Upload), Choice::Zstd(3));
        // The fast level never exceeds a lower repository level.
        let low = Policy {
            level: -3,
            auto: true,
        };
        assert_eq!(low.choose(&text, Bottleneck::Cpu), Choice::Zstd(-3));
        // A fixed level (no `compression` field) is used whatever the bottleneck.
        let fixed = Policy {
            level: 3,
            auto: false,
        };
        assert_eq!(fixed.choose(&text, Bottleneck::Cpu), Choice::Zstd(3));
        assert_eq!(fixed.choose(&noise, Bottleneck::Cpu), Choice::Raw);
        // Each choice decodes with the one decoder, and `encode` is the
        // fixed policy.
        let mut enc = Vec::new();
        for choice in [Choice::Raw, Choice::Zstd(FAST_LEVEL), Choice::Zstd(3)] {
            encode_as(&text, choice, &mut enc);
            assert_eq!(enc[0], if choice == Choice::Raw { RAW } else { ZSTD });
            assert_eq!(decode(&enc, text.len()).unwrap(), text);
        }
        let rows: Vec<u8> = (0..20_000u32)
            .flat_map(|i| {
                format!("row {i} value {}\n", i.wrapping_mul(2_654_435_761) % 9973).into_bytes()
            })
            .collect();
        let mut fast = Vec::new();
        encode_as(&rows, Choice::Zstd(FAST_LEVEL), &mut fast);
        encode(&rows, 3, &mut enc);
        let mut three = Vec::new();
        encode_as(&rows, Choice::Zstd(3), &mut three);
        assert_eq!(enc, three);
        assert_ne!(fast, three, "the fast level and 3 wrote the same frame");
        assert_eq!(decode(&fast, rows.len()).unwrap(), rows);
    }

    #[test]
    fn decode_bounds_output() {
        let text = vec![0u8; 10_000];
        let mut enc = Vec::new();
        encode(&text, 3, &mut enc);
        assert!(decode(&enc, 9_999).is_err());
    }
}
