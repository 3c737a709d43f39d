//! Byte layouts of everything snap writes to a repository (format-spec.md).
//!
//! Pure: no I/O, no crypto. Each submodule mirrors one section of the spec and
//! turns typed structs into plaintext bytes and back. Decoders treat their
//! input as hostile: every length is bounds-checked before it is used and
//! nothing panics on malformed input.

pub mod config;
pub mod dict;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lease;
pub mod pack;
pub mod snapshot;
pub mod tree;

pub use id::{BlobId, DictId, IndexId, KeyId, ObjectId, PackId, RepoId, SnapshotId, TypedId};

/// Repository format version written by this build (format-spec §1).
pub const FORMAT_VERSION: u32 = 1;

/// Largest data blob plaintext accepted when reading (64 MiB, format-spec
/// §17): bounds decompression and allocation for data from the repository.
pub const MAX_BLOB_SIZE: usize = 64 << 20;

/// Largest tree blob plaintext written or read (256 MiB, format-spec §17).
/// Trees hold every content id of their files (32 bytes per chunk), so they
/// may outgrow [`MAX_BLOB_SIZE`]; a writer refuses a larger tree rather than
/// store a snapshot no reader accepts.
pub const MAX_TREE_SIZE: usize = 256 << 20;

/// Largest pack accepted (4 GiB - 1 byte: offsets are u32, format-spec §6).
pub const MAX_PACK_SIZE: u64 = u32::MAX as u64;

/// Largest pack header, index or snapshot object accepted when reading
/// (256 MiB, format-spec §17).
pub const MAX_METADATA_SIZE: usize = 256 << 20;

/// Kind of a blob (format-spec §6.2, §11), stored as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// A chunk of file or stream content (byte 0).
    Data,
    /// An encoded tree (byte 1).
    Tree,
}

impl BlobKind {
    /// The byte written for this kind.
    pub fn to_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    /// Parses the byte written for a kind.
    pub fn from_byte(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// A decoding failure: what was being decoded, at which byte offset, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is malformed at byte {offset}: {detail}")]
pub struct DecodeError {
    /// The structure being decoded ("pack header", "tree", …).
    pub what: &'static str,
    /// Byte offset into the decoded plaintext.
    pub offset: usize,
    /// What was expected.
    pub detail: String,
}

/// Little-endian reader over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            what: self.what,
            offset: self.pos,
            detail: detail.into(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(format!("needs {n} bytes, only {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?.try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    /// The next 32 bytes as an id of the kind the caller expects.
    pub(crate) fn id<T: TypedId>(&mut self) -> Result<T, DecodeError> {
        let b = self.bytes(32)?;
        Ok(T::from_bytes(b.try_into().unwrap_or_default()))
    }

    /// A count of items of `item_size` bytes each, checked against the bytes
    /// left so that no allocation is driven by an unchecked length.
    pub(crate) fn count(&mut self, item_size: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_size.max(1)) > self.remaining() {
            return Err(self.err(format!(
                "count {n} of {item_size}-byte items exceeds the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}
