//! 32-byte ids, one type per kind of thing named (format-spec §3).
//!
//! Every id is 32 bytes shown as 64 lower-case hex digits, in JSON as that
//! hex string; the kinds differ only in what the bytes name and how they are
//! computed:
//!
//! | type           | names                                  | computed as                              |
//! |----------------|----------------------------------------|------------------------------------------|
//! | [`BlobId`]     | a data or tree blob (content, trees)   | keyed BLAKE3-256 of the plaintext (§3)   |
//! | [`PackId`]     | a pack object `data/xx/<id>`           | BLAKE3-256 of the stored bytes           |
//! | [`IndexId`]    | an index object `index/<id>`           | BLAKE3-256 of the stored bytes           |
//! | [`SnapshotId`] | a snapshot object `snapshots/<id>`     | BLAKE3-256 of the stored bytes           |
//! | [`DictId`]     | a dictionary object `dicts/<id>`       | BLAKE3-256 of the stored bytes           |
//! | [`KeyId`]      | a key file `keys/<id>`                 | BLAKE3-256 of the stored bytes           |
//! | [`RepoId`]     | the repository (`config.id`)           | 32 random bytes                          |
//!
//! The types are distinct so that a pack id passed where a blob id is
//! expected does not compile. There is no conversion between kinds: the
//! format never reinterprets one kind as another. Only the object ids have
//! `of_object` (the unkeyed hash of stored bytes); blob ids come from
//! `crypto::MasterKey::blob_id` (keyed) and cannot be computed here.
//! Code that works on any kind (listing a prefix, naming an object in an
//! error) is generic over [`TypedId`], or over [`ObjectId`] for stored
//! objects (reading a sealed object and checking its name).
//!
//! Leases and marks are named by random strings (format-spec §9, §10), not
//! by ids.

use std::fmt;
use std::hash::Hash;

mod sealed {
    pub trait Sealed {}
}

/// What every id type shares: 32 bytes, hex, ordering and hashing. Sealed:
/// the id types of this module are the only ones.
pub trait TypedId:
    sealed::Sealed + Copy + Eq + Ord + Hash + Default + fmt::Display + fmt::Debug + Send + Sync
{
    /// What the id names, for messages ("pack", "blob", …).
    const WHAT: &'static str;

    /// The id with these 32 bytes.
    fn from_bytes(b: [u8; 32]) -> Self;

    /// The 32 bytes of the id.
    fn bytes(&self) -> &[u8; 32];

    /// 64 lower-case hex digits.
    fn to_hex(&self) -> String {
        hex::encode(self.bytes())
    }

    /// The first 8 hex digits, for listings.
    fn short(&self) -> String {
        hex::encode(&self.bytes()[..4])
    }

    /// Parses 64 hex digits (either case); `None` for anything else.
    fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self::from_bytes(out))
    }

    /// Reads an id from the first 32 bytes of `b`, if it is long enough.
    fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(b.get(..32)?.try_into().ok()?))
    }
}

/// The ids of stored objects (packs, index, snapshot, dictionary and key
/// objects), which are named by the unkeyed BLAKE3-256 of their stored
/// bytes. Blob ids are keyed and are not object ids.
pub trait ObjectId: TypedId {
    /// The unkeyed BLAKE3-256 of `bytes`: how a stored object is named
    /// (format-spec §3).
    fn of_object(bytes: &[u8]) -> Self {
        Self::from_bytes(*blake3::hash(bytes).as_bytes())
    }
}

/// Defines one id type: a `[u8; 32]` newtype with hex, serde and the
/// [`TypedId`] methods. `object` adds `of_object` (BLAKE3 of stored bytes).
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl sealed::Sealed for $name {}

        impl TypedId for $name {
            const WHAT: &'static str = $what;
            fn from_bytes(b: [u8; 32]) -> Self {
                $name(b)
            }
            fn bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl $name {
            /// Length of an id in bytes.
            pub const LEN: usize = 32;

            // Inherent copies of the trait methods, so that callers need
            // not import the trait.

            /// 64 lower-case hex digits.
            pub fn to_hex(&self) -> String {
                <$name as TypedId>::to_hex(self)
            }

            /// The first 8 hex digits, for listings.
            pub fn short(&self) -> String {
                <$name as TypedId>::short(self)
            }

            /// Parses 64 hex digits (either case); `None` for anything else.
            pub fn from_hex(s: &str) -> Option<$name> {
                <$name as TypedId>::from_hex(s)
            }

            /// Reads an id from the first 32 bytes of `b`, if it is long
            /// enough.
            pub fn from_slice(b: &[u8]) -> Option<$name> {
                <$name as TypedId>::from_slice(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::from_hex(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!(
                        "invalid ",
                        $what,
                        " id: expected 64 hex digits"
                    ))
                })
            }
        }
    };
    (object $(#[$doc:meta])* $name:ident, $what:literal) => {
        typed_id!($(#[$doc])* $name, $what);

        impl ObjectId for $name {}

        impl $name {
            /// The unkeyed BLAKE3-256 of `bytes`: how a stored object is
            /// named (format-spec §3).
            pub fn of_object(bytes: &[u8]) -> $name {
                <$name as ObjectId>::of_object(bytes)
            }
        }
    };
}

typed_id!(
    /// A blob's id: the keyed BLAKE3-256 of its plaintext (format-spec §3),
    /// for data blobs (file and stream content, delta bases) and tree blobs
    /// (a snapshot's root, a folder's subtree) alike.
    BlobId,
    "blob"
);

typed_id!(object
    /// A pack's id: the BLAKE3-256 of the pack's stored bytes; the pack
    /// lives at `data/<first 2 hex>/<id>` (format-spec §2, §6).
    PackId,
    "pack"
);

typed_id!(object
    /// An index object's id: the BLAKE3-256 of its stored (sealed) bytes;
    /// stored at `index/<id>` (format-spec §7).
    IndexId,
    "index"
);

typed_id!(object
    /// A snapshot object's id: the BLAKE3-256 of its stored (sealed) bytes;
    /// stored at `snapshots/<id>` (format-spec §8).
    SnapshotId,
    "snapshot"
);

typed_id!(object
    /// A zstd dictionary object's id: the BLAKE3-256 of its stored (sealed)
    /// bytes; stored at `dicts/<id>` and named by dictionary-compressed
    /// blobs (format-spec §12.1).
    DictId,
    "dictionary"
);

typed_id!(object
    /// A key file's id: the BLAKE3-256 of its stored bytes; stored at
    /// `keys/<id>` (format-spec §5).
    KeyId,
    "key"
);

typed_id!(
    /// The repository's id: 32 random bytes chosen at `init`, the `id`
    /// field of `config` (format-spec §4).
    RepoId,
    "repository"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_share_bytes_and_encodings_but_not_types() {
        let bytes = b"one object";
        let p = PackId::of_object(bytes);
        let i = IndexId::of_object(bytes);
        // Same hash, same hex and JSON: the kinds differ only in type.
        assert_eq!(p.0, i.0);
        assert_eq!(p.to_hex(), i.to_hex());
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            serde_json::to_string(&i).unwrap()
        );
        assert_eq!(p.to_hex(), blake3::hash(bytes).to_hex().as_str());
        // Distinct types: only an explicit rebuild from bytes crosses kinds.
        assert_ne!(
            std::any::TypeId::of::<PackId>(),
            std::any::TypeId::of::<IndexId>()
        );
        assert_eq!(format!("{p:?}"), format!("PackId({})", p.short()));
        assert_eq!(BlobId::from_hex(&p.to_hex()).map(|b| b.0), Some(p.0));
    }

    #[test]
    fn hex_parsing_rejects_wrong_lengths() {
        assert!(BlobId::from_hex("ab").is_none());
        assert!(BlobId::from_hex(&"0".repeat(65)).is_none());
        assert!(BlobId::from_hex(&"g".repeat(64)).is_none());
        assert!(BlobId::from_slice(&[0; 31]).is_none());
        assert_eq!(BlobId::from_slice(&[7; 40]), Some(BlobId([7; 32])));
        let e = serde_json::from_str::<SnapshotId>("\"00\"").unwrap_err();
        assert!(e.to_string().contains("invalid snapshot id"), "{e}");
    }
}
