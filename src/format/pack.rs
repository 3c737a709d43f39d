//! Pack layout and pack header (format-spec §6).
//!
//! A pack is `blob_1 || … || blob_n || sealed_header || header_len`, where
//! each blob is a sealed envelope (§11), `sealed_header` seals the encoded
//! [`PackHeader`] and `header_len` is the sealed header's length as a u32 LE.

use super::{BlobId, BlobKind, DecodeError, Reader};

/// Version byte of the pack header plaintext.
pub const PACK_HEADER_VERSION: u8 = 1;

/// Size of one encoded [`PackEntry`] without a base in bytes: kind 1 + id
/// 32 + offset 4 + length 4 + raw length 4. An entry with a base (a delta
/// blob) is [`BASE_ID_SIZE`] bytes longer.
pub const PACK_ENTRY_SIZE: usize = 1 + 32 + 4 + 4 + 4;

/// Extra bytes of an entry whose blob is delta-encoded: the base blob's id.
pub const BASE_ID_SIZE: usize = 32;

/// Flag ORed into an entry's kind byte when a base id follows the entry
/// (format-spec §6, "Delta blobs" §13).
pub const KIND_HAS_BASE: u8 = 0x80;

/// Size of the trailing header length field in bytes.
pub const HEADER_LEN_SIZE: usize = 4;

/// One blob inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data chunk or tree.
    pub kind: BlobKind,
    /// Keyed BLAKE3 id of the blob's plaintext.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack, bytes.
    pub offset: u32,
    /// Length of the sealed blob (nonce + ciphertext + tag), bytes.
    pub length: u32,
    /// Length of the blob's plaintext after decompression, bytes.
    pub raw_len: u32,
    /// For a delta blob (compression byte 2), the data blob whose plaintext
    /// is its zstd dictionary; `None` for every other blob.
    pub base: Option<BlobId>,
}

/// The list of blobs in a pack, in pack order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackHeader {
    /// Entries in the order the blobs appear in the pack.
    pub entries: Vec<PackEntry>,
}

impl PackEntry {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let flag = if self.base.is_some() {
            KIND_HAS_BASE
        } else {
            0
        };
        out.push(self.kind.to_byte() | flag);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        if let Some(b) = &self.base {
            out.extend_from_slice(&b.0);
        }
    }

    /// Encoded size of this entry in bytes.
    pub fn encoded_len(&self) -> usize {
        PACK_ENTRY_SIZE + if self.base.is_some() { BASE_ID_SIZE } else { 0 }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<PackEntry, DecodeError> {
        let k = r.u8()?;
        let kind = BlobKind::from_byte(k & !KIND_HAS_BASE)
            .ok_or_else(|| r.err(format!("unknown blob kind {k}")))?;
        let has_base = k & KIND_HAS_BASE != 0;
        if has_base && kind != BlobKind::Data {
            return Err(r.err("a tree blob cannot have a base".to_string()));
        }
        let mut e = PackEntry {
            kind,
            id: r.id()?,
            offset: r.u32()?,
            length: r.u32()?,
            raw_len: r.u32()?,
            base: None,
        };
        if has_base {
            let b = r.id()?;
            if b == e.id {
                return Err(r.err(format!("blob {} names itself as its base", e.id.short())));
            }
            e.base = Some(b);
        }
        Ok(e)
    }
}

impl PackHeader {
    /// Plaintext: version u8, count u32 LE, then `count` entries of
    /// [`PACK_ENTRY_SIZE`] bytes (plus [`BASE_ID_SIZE`] for a delta blob).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(5 + self.entries.iter().map(|e| e.encoded_len()).sum::<usize>());
        out.push(PACK_HEADER_VERSION);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.encode_into(&mut out);
        }
        out
    }

    /// Decodes and validates a header against the size of the pack's blob
    /// area (`data_len` bytes): entries must be contiguous from offset 0 and
    /// end exactly at `data_len`.
    pub fn decode(buf: &[u8], data_len: u64) -> Result<PackHeader, DecodeError> {
        let mut r = Reader::new("pack header", buf);
        let v = r.u8()?;
        if v != PACK_HEADER_VERSION {
            return Err(r.err(format!("unsupported version {v}")));
        }
        let n = r.count(PACK_ENTRY_SIZE)?;
        let mut entries = Vec::with_capacity(n);
        let mut next: u64 = 0;
        for _ in 0..n {
            let e = PackEntry::decode_from(&mut r)?;
            if e.offset as u64 != next {
                return Err(r.err(format!(
                    "blob {} at offset {} but expected {next}",
                    e.id.short(),
                    e.offset
                )));
            }
            next += e.length as u64;
            entries.push(e);
        }
        r.finish()?;
        if next != data_len {
            return Err(DecodeError {
                what: "pack header",
                offset: buf.len(),
                detail: format!("blobs cover {next} bytes but the pack holds {data_len}"),
            });
        }
        Ok(PackHeader { entries })
    }
}

/// Splits a whole pack into (blob area length, sealed header), checking the
/// trailing length field.
pub fn split_pack(pack: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    let err = |detail: String| DecodeError {
        what: "pack",
        offset: pack.len(),
        detail,
    };
    if pack.len() < HEADER_LEN_SIZE {
        return Err(err("shorter than its header length field".into()));
    }
    let (rest, len_bytes) = pack.split_at(pack.len() - HEADER_LEN_SIZE);
    let hlen = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
    if hlen > rest.len() {
        return Err(err(format!(
            "header length {hlen} exceeds the {} bytes before it",
            rest.len()
        )));
    }
    let data_len = rest.len() - hlen;
    Ok((data_len, &rest[data_len..]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary header entries with contiguous offsets, and the blob area
    /// length they cover.
    pub(crate) fn entries() -> impl Strategy<Value = (Vec<PackEntry>, u64)> {
        proptest::collection::vec(
            (
                any::<bool>(),
                any::<[u8; 32]>(),
                41u32..100_000,
                any::<u32>(),
                proptest::option::of(any::<[u8; 32]>()),
            ),
            0..40,
        )
        .prop_map(|v| {
            let mut off = 0u32;
            let es = v
                .into_iter()
                .map(|(tree, id, length, raw_len, base)| {
                    let e = PackEntry {
                        kind: if tree { BlobKind::Tree } else { BlobKind::Data },
                        id: BlobId(id),
                        offset: off,
                        length,
                        raw_len,
                        // Only data blobs have a base, never themselves.
                        base: base.filter(|b| !tree && *b != id).map(BlobId),
                    };
                    off += length;
                    e
                })
                .collect();
            (es, off as u64)
        })
    }

    proptest! {
        #[test]
        fn header_roundtrip((entries, data_len) in entries()) {
            let h = PackHeader { entries };
            let enc = h.encode();
            let bases = h.entries.iter().filter(|e| e.base.is_some()).count();
            prop_assert_eq!(enc.len(), 5 + h.entries.len() * PACK_ENTRY_SIZE + bases * BASE_ID_SIZE);
            prop_assert_eq!(PackHeader::decode(&enc, data_len).unwrap(), h.clone());
            // Any other blob area length is rejected.
            prop_assert!(PackHeader::decode(&enc, data_len + 1).is_err());
        }

        #[test]
        fn header_decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600), len in any::<u64>()) {
            let _ = PackHeader::decode(&buf, len);
            let _ = split_pack(&buf);
        }

        #[test]
        fn header_decode_survives_mutation((entries, data_len) in entries(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut enc = PackHeader { entries }.encode();
            let i = pos % enc.len();
            enc[i] = byte;
            let _ = PackHeader::decode(&enc, data_len);
        }
    }

    #[test]
    fn base_only_on_data_blobs_and_never_itself() {
        let mut e = PackEntry {
            kind: BlobKind::Data,
            id: BlobId([1; 32]),
            offset: 0,
            length: 41,
            raw_len: 7,
            base: Some(BlobId([2; 32])),
        };
        let h = PackHeader { entries: vec![e] };
        assert_eq!(PackHeader::decode(&h.encode(), 41).unwrap(), h);
        e.kind = BlobKind::Tree;
        let enc = PackHeader { entries: vec![e] }.encode();
        assert!(PackHeader::decode(&enc, 41).is_err());
        e.kind = BlobKind::Data;
        e.base = Some(e.id);
        let enc = PackHeader { entries: vec![e] }.encode();
        assert!(PackHeader::decode(&enc, 41).is_err());
    }

    #[test]
    fn split_pack_checks_header_length() {
        assert!(split_pack(&[1, 2, 3]).is_err());
        let mut p = vec![9u8; 10];
        p.extend_from_slice(&4u32.to_le_bytes());
        let (data_len, header) = split_pack(&p).unwrap();
        assert_eq!((data_len, header), (6, &[9u8; 4][..]));
        let mut p = vec![9u8; 10];
        p.extend_from_slice(&11u32.to_le_bytes());
        assert!(split_pack(&p).is_err());
    }
}
