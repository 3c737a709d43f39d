//! Index objects (format-spec §7): which blobs each pack holds.

use super::pack::{PackEntry, PACK_ENTRY_SIZE};
use super::{DecodeError, IndexId, PackId, Reader};

/// Version byte of the index plaintext.
pub const INDEX_VERSION: u8 = 1;

/// One pack's entry in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// BLAKE3 of the pack's stored bytes (its object name).
    pub id: PackId,
    /// Stored size of the pack, bytes.
    pub size: u64,
    /// The pack's blobs, as in its header.
    pub blobs: Vec<PackEntry>,
}

/// An index object's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index objects this one replaces (written by prune and repair); readers
    /// ignore a superseded index once the superseding one is present.
    pub supersedes: Vec<IndexId>,
    /// Packs described by this index.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Plaintext: version u8; supersedes count u32 + ids; pack count u32;
    /// per pack: id[32], size u64, blob count u32, entries (§6 entry layout).
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out = Vec::with_capacity(
            9 + 32 * self.supersedes.len() + 44 * self.packs.len() + blobs * PACK_ENTRY_SIZE + 64,
        );
        out.push(INDEX_VERSION);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.id.0);
            out.extend_from_slice(&p.size.to_le_bytes());
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for b in &p.blobs {
                b.encode_into(&mut out);
            }
        }
        out
    }

    /// Decodes an index plaintext.
    pub fn decode(buf: &[u8]) -> Result<IndexFile, DecodeError> {
        let mut r = Reader::new("index", buf);
        let v = r.u8()?;
        if v != INDEX_VERSION {
            return Err(r.err(format!("unsupported version {v}")));
        }
        let ns = r.count(32)?;
        let mut supersedes = Vec::with_capacity(ns);
        for _ in 0..ns {
            supersedes.push(r.id()?);
        }
        let np = r.count(44)?;
        let mut packs = Vec::with_capacity(np);
        for _ in 0..np {
            let id = r.id()?;
            let size = r.u64()?;
            let nb = r.count(PACK_ENTRY_SIZE)?;
            let mut blobs = Vec::with_capacity(nb);
            for _ in 0..nb {
                blobs.push(PackEntry::decode_from(&mut r)?);
            }
            packs.push(IndexPack { id, size, blobs });
        }
        r.finish()?;
        Ok(IndexFile { supersedes, packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index() -> impl Strategy<Value = IndexFile> {
        (
            proptest::collection::vec(any::<[u8; 32]>(), 0..5),
            proptest::collection::vec(
                (
                    any::<[u8; 32]>(),
                    any::<u64>(),
                    crate::format::pack::tests::entries(),
                ),
                0..6,
            ),
        )
            .prop_map(|(s, p)| IndexFile {
                supersedes: s.into_iter().map(IndexId).collect(),
                packs: p
                    .into_iter()
                    .map(|(id, size, (blobs, _))| IndexPack {
                        id: PackId(id),
                        size,
                        blobs,
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn roundtrip(idx in index()) {
            let enc = idx.encode();
            prop_assert_eq!(IndexFile::decode(&enc).unwrap(), idx);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = IndexFile::decode(&buf);
        }

        #[test]
        fn decode_survives_mutation(idx in index(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut enc = idx.encode();
            let i = pos % enc.len();
            enc[i] = byte;
            let _ = IndexFile::decode(&enc);
            enc.truncate(i);
            let _ = IndexFile::decode(&enc);
        }
    }

    #[test]
    fn rejects_trailing_bytes_and_other_versions() {
        let mut enc = IndexFile::default().encode();
        assert_eq!(enc, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
        enc.push(0);
        assert!(IndexFile::decode(&enc).is_err());
        assert!(IndexFile::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
