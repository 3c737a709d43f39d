//! Tree blobs (format-spec §14): one directory's entries, sorted by name.

use super::{BlobId, DecodeError, Reader};

/// Version byte of the tree plaintext.
pub const TREE_VERSION: u8 = 1;

/// Largest name accepted, bytes (the u16 length field).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;

/// Deepest nesting of folders a snapshot may have, in levels below the
/// root tree (the root's children are level 1; format-spec §17). Writers
/// refuse deeper paths; readers report "tree deeper than N levels" instead of
/// walking further.
pub const MAX_DEPTH: usize = 1024;

/// Name of the reserved top-level folder that holds streams (format-spec §14.3).
pub const STREAMS_DIR: &str = "@streams";

/// Type of a tree entry, one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file (1).
    File,
    /// Directory (2); `subtree` names its tree.
    Dir,
    /// Symbolic link (3); `link_target` holds the target bytes.
    Symlink,
    /// Named pipe (4).
    Fifo,
    /// Character device (5); `rdev` holds the device number.
    CharDevice,
    /// Block device (6); `rdev` holds the device number.
    BlockDevice,
    /// Unix socket (7), recorded but not restored.
    Socket,
}

impl EntryKind {
    /// The kind byte (format-spec §14.1).
    pub fn to_byte(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Dir => 2,
            EntryKind::Symlink => 3,
            EntryKind::Fifo => 4,
            EntryKind::CharDevice => 5,
            EntryKind::BlockDevice => 6,
            EntryKind::Socket => 7,
        }
    }
    /// Parses a kind byte.
    pub fn from_byte(b: u8) -> Option<EntryKind> {
        Some(match b {
            1 => EntryKind::File,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            4 => EntryKind::Fifo,
            5 => EntryKind::CharDevice,
            6 => EntryKind::BlockDevice,
            7 => EntryKind::Socket,
            _ => return None,
        })
    }
}

/// Chunking profile a file's content was cut with (format-spec §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkProfile {
    /// Larger chunks for file trees (0).
    Files,
    /// Small chunks for database dumps and other streams (1).
    Streams,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// File name bytes (not necessarily UTF-8), 1..=65535 bytes, no `/` or NUL.
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: EntryKind,
    /// Unix permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch (UTC).
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch; used only to
    /// decide whether a file changed since the parent snapshot.
    pub ctime_ns: i64,
    /// Inode number at backup time (change detection and hard links).
    pub inode: u64,
    /// Device id at backup time (hard links).
    pub dev: u64,
    /// Hard link count at backup time.
    pub nlink: u64,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Device number for character and block devices, else 0.
    pub rdev: u64,
    /// Chunking profile of `content`.
    pub profile: ChunkProfile,
    /// Symlink target bytes; empty for other kinds.
    pub link_target: Vec<u8>,
    /// Extended attributes as (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Data blob ids whose concatenated plaintexts are the file's content.
    pub content: Vec<BlobId>,
    /// For directories, the id of the subtree blob.
    pub subtree: Option<BlobId>,
}

impl TreeEntry {
    /// An entry with the given name and kind and every other field zero.
    pub fn new(name: impl Into<Vec<u8>>, kind: EntryKind) -> Self {
        TreeEntry {
            name: name.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            dev: 0,
            nlink: 0,
            size: 0,
            rdev: 0,
            profile: ChunkProfile::Files,
            link_target: Vec::new(),
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }
}

/// A directory: entries sorted by name bytes, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// Entries in strictly increasing name order.
    pub entries: Vec<TreeEntry>,
}

impl Tree {
    /// Looks an entry up by name (binary search).
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Sorts entries by name; call before [`Tree::encode`].
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Plaintext layout in format-spec §14.1.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.entries.len() * 96);
        out.push(TREE_VERSION);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&e.name);
            out.push(e.kind.to_byte());
            out.push(match e.profile {
                ChunkProfile::Files => 0,
                ChunkProfile::Streams => 1,
            });
            for v in [e.mode, e.uid, e.gid] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.mtime_ns, e.ctime_ns] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.inode, e.dev, e.nlink, e.size, e.rdev] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(e.link_target.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.link_target);
            out.extend_from_slice(&(e.xattrs.len() as u32).to_le_bytes());
            for (k, v) in &e.xattrs {
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            out.extend_from_slice(&(e.content.len() as u32).to_le_bytes());
            for c in &e.content {
                out.extend_from_slice(&c.0);
            }
            match &e.subtree {
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(&id.0);
                }
                None => out.push(0),
            }
        }
        out
    }

    /// Decodes a tree plaintext; rejects unsorted or duplicate names, empty
    /// names, names containing `/` or NUL, and `.`/`..`.
    pub fn decode(buf: &[u8]) -> Result<Tree, DecodeError> {
        let mut r = Reader::new("tree", buf);
        let v = r.u8()?;
        if v != TREE_VERSION {
            return Err(r.err(format!("unsupported version {v}")));
        }
        // The smallest entry is well over 64 bytes; bound the allocation.
        let n = r.count(64)?;
        let mut entries: Vec<TreeEntry> = Vec::with_capacity(n);
        for _ in 0..n {
            let name_len = r.u16()? as usize;
            let name = r.bytes(name_len)?.to_vec();
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.iter().any(|&b| b == b'/' || b == 0)
            {
                return Err(r.err("invalid entry name"));
            }
            if let Some(prev) = entries.last() {
                if prev.name >= name {
                    return Err(r.err("entry names are not strictly sorted"));
                }
            }
            let kb = r.u8()?;
            let kind = EntryKind::from_byte(kb)
                .ok_or_else(|| r.err(format!("unknown entry kind {kb}")))?;
            let profile = match r.u8()? {
                0 => ChunkProfile::Files,
                1 => ChunkProfile::Streams,
                p => return Err(r.err(format!("unknown chunk profile {p}"))),
            };
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let mtime_ns = r.i64()?;
            let ctime_ns = r.i64()?;
            let inode = r.u64()?;
            let dev = r.u64()?;
            let nlink = r.u64()?;
            let size = r.u64()?;
            let rdev = r.u64()?;
            let tl = r.count(1)?;
            let link_target = r.bytes(tl)?.to_vec();
            let nx = r.count(8)?;
            let mut xattrs = Vec::with_capacity(nx);
            for _ in 0..nx {
                let kl = r.count(1)?;
                let k = r.bytes(kl)?.to_vec();
                let vl = r.count(1)?;
                let v = r.bytes(vl)?.to_vec();
                xattrs.push((k, v));
            }
            let nc = r.count(32)?;
            let mut content = Vec::with_capacity(nc);
            for _ in 0..nc {
                content.push(r.id()?);
            }
            let subtree = match r.u8()? {
                0 => None,
                1 => Some(r.id()?),
                b => return Err(r.err(format!("invalid subtree flag {b}"))),
            };
            if (kind == EntryKind::Dir) != subtree.is_some() {
                return Err(r.err("subtree present on a non-directory or missing on a directory"));
            }
            entries.push(TreeEntry {
                name,
                kind,
                mode,
                uid,
                gid,
                mtime_ns,
                ctime_ns,
                inode,
                dev,
                nlink,
                size,
                rdev,
                profile,
                link_target,
                xattrs,
                content,
                subtree,
            });
        }
        r.finish()?;
        Ok(Tree { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..24,
        )
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
    }

    fn entry() -> impl Strategy<Value = TreeEntry> {
        let kind = prop_oneof![
            Just(EntryKind::File),
            Just(EntryKind::Dir),
            Just(EntryKind::Symlink),
            Just(EntryKind::Fifo),
            Just(EntryKind::CharDevice),
            Just(EntryKind::BlockDevice),
            Just(EntryKind::Socket),
        ];
        (
            kind,
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<i64>(),
                any::<i64>(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..16),
                proptest::collection::vec(any::<u8>(), 0..32),
                0..4,
            ),
            proptest::collection::vec(any::<[u8; 32]>(), 0..5),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(
                    kind,
                    (mode, uid, gid, mtime_ns, ctime_ns),
                    (inode, dev, nlink, size, rdev),
                    streams,
                    link,
                    xattrs,
                    content,
                    sub,
                )| {
                    TreeEntry {
                        name: Vec::new(),
                        kind,
                        mode,
                        uid,
                        gid,
                        mtime_ns,
                        ctime_ns,
                        inode,
                        dev,
                        nlink,
                        size,
                        rdev,
                        profile: if streams {
                            ChunkProfile::Streams
                        } else {
                            ChunkProfile::Files
                        },
                        link_target: link,
                        xattrs: xattrs.into_iter().collect(),
                        content: content.into_iter().map(BlobId).collect(),
                        subtree: (kind == EntryKind::Dir).then_some(BlobId(sub)),
                    }
                },
            )
    }

    pub(crate) fn tree() -> impl Strategy<Value = Tree> {
        proptest::collection::btree_map(name(), entry(), 0..12).prop_map(|m| Tree {
            entries: m
                .into_iter()
                .map(|(n, mut e)| {
                    e.name = n;
                    e
                })
                .collect(),
        })
    }

    proptest! {
        #[test]
        fn roundtrip(t in tree()) {
            let enc = t.encode();
            prop_assert_eq!(Tree::decode(&enc).unwrap(), t);
        }

        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Tree::decode(&buf);
        }

        #[test]
        fn decode_survives_mutation(t in tree(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut enc = t.encode();
            let i = pos % enc.len();
            enc[i] = byte;
            let _ = Tree::decode(&enc);
            enc.truncate(i);
            let _ = Tree::decode(&enc);
        }
    }

    fn one(name: &[u8]) -> Vec<u8> {
        Tree {
            entries: vec![TreeEntry::new(name, EntryKind::File)],
        }
        .encode()
    }

    #[test]
    fn rejects_bad_names_and_order() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(Tree::decode(&one(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(Tree::decode(&one(b"\xff\xfe")).is_ok());
        let mut t = Tree {
            entries: vec![
                TreeEntry::new(&b"b"[..], EntryKind::File),
                TreeEntry::new(&b"a"[..], EntryKind::File),
            ],
        };
        assert!(Tree::decode(&t.encode()).is_err(), "unsorted accepted");
        t.sort();
        assert!(Tree::decode(&t.encode()).is_ok());
        t.entries[1].name = b"a".to_vec();
        assert!(Tree::decode(&t.encode()).is_err(), "duplicate accepted");
        // A directory without a subtree is rejected.
        assert!(Tree::decode(
            &Tree {
                entries: vec![TreeEntry::new(&b"d"[..], EntryKind::Dir)]
            }
            .encode()
        )
        .is_err());
    }
}
