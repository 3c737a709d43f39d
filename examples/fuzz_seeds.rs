//! Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*):
//! valid encodings made by the library itself, in each target's input layout
//! (see fuzz/fuzz_targets/*.rs).
//!
//! Usage: `cargo run --example fuzz_seeds [-- DIR]` (default `fuzz/corpus`).

use snap::crypto::{wrap_master_key_with_params, MasterKey};
use snap::format::config::{Chunking, Config};
use snap::format::index::{IndexFile, IndexPack};
use snap::format::pack::{split_pack, PackHeader};
use snap::format::snapshot::{Snapshot, SourceInfo, Summary};
use snap::format::tree::{ChunkProfile, EntryKind, Tree, TreeEntry};
use snap::format::{BlobId, BlobKind, IndexId, SnapshotId};
use snap::write::compress;
use snap::write::pack::PackBuilder;
use std::path::{Path, PathBuf};

/// The fixed key of the fuzz targets that open envelopes.
fn fuzz_key() -> MasterKey {
    MasterKey::from_bytes(&[7u8; 96]).expect("96-byte key")
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("creating corpus directory");
    std::fs::write(d.join(format!("seed-{name}")), bytes).expect("writing seed");
}

fn text(n: usize) -> Vec<u8> {
    b"seed corpus text, compressible. ".repeat(n / 32 + 1)[..n].to_vec()
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
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

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let key = fuzz_key();

    // config
    let mut config = Config {
        version: 1,
        id: "ab".repeat(32),
        chunking: Chunking {
            files: Config::FILES,
            streams: Config::STREAMS,
        },
        pack_size: 16 << 20,
        open_packs: 4,
        compression_level: 3,
        compression: None,
        object_lock: None,
        key_check: None,
    };
    write(&dir, "config", "default", &config.encode());
    config.pack_size = 1 << 20;
    config.open_packs = 1;
    config.compression_level = -7;
    write(&dir, "config", "small", &config.encode());

    // keyfile: tiny Argon2id parameters, password "fuzz password".
    for (i, params) in [(64, 1, 1), (128, 2, 2)].into_iter().enumerate() {
        let kf = wrap_master_key_with_params(
            &MasterKey::generate(),
            b"fuzz password",
            params,
            "2026-01-01T00:00:00.000Z".into(),
            "host".into(),
            "user".into(),
        )
        .expect("wrapping a key");
        write(&dir, "keyfile", &i.to_string(), &kf.encode());
    }

    // blob: flags || raw_len || id || sealed envelope (flags bit 1 clear)
    // and flags || raw_len || id || encoded payload (bit 1 set).
    let mut enc = Vec::new();
    for (i, plain) in [text(3000), noise(1, 700), Vec::new(), text(1)]
        .into_iter()
        .enumerate()
    {
        let id = key.blob_id(&plain);
        compress::encode(&plain, 3, &mut enc);
        let kind = if i == 1 {
            BlobKind::Tree
        } else {
            BlobKind::Data
        };
        let sealed = key.seal_blob(kind, &id, &enc);
        let mut seed = vec![kind.to_byte()];
        seed.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        seed.extend_from_slice(&id.0);
        let mut payload_seed = seed.clone();
        payload_seed[0] |= 2;
        seed.extend_from_slice(&sealed);
        payload_seed.extend_from_slice(&enc);
        write(&dir, "blob", &format!("sealed-{i}"), &seed);
        write(&dir, "blob", &format!("payload-{i}"), &payload_seed);
    }

    // pack: mode 0 || whole pack; mode 1 || data_len || header plaintext.
    let mut packs = Vec::new();
    for n in [1usize, 3] {
        let mut b = PackBuilder::default();
        for j in 0..n {
            let plain = if j % 2 == 0 {
                text(500 + j)
            } else {
                noise(j as u64, 300)
            };
            let id = key.blob_id(&plain);
            compress::encode(&plain, 3, &mut enc);
            let sealed = key.seal_blob(BlobKind::Data, &id, &enc);
            b.add(BlobKind::Data, id, &sealed, plain.len() as u32, None);
        }
        let p = b.finish(&key);
        let mut seed = vec![0u8];
        seed.extend_from_slice(&p.bytes);
        write(&dir, "pack", &format!("whole-{n}"), &seed);
        let (data_len, _) = split_pack(&p.bytes).expect("pack splits");
        let header = PackHeader {
            entries: p.entries.clone(),
        };
        let mut seed = vec![1u8];
        seed.extend_from_slice(&(data_len as u64).to_le_bytes());
        seed.extend_from_slice(&header.encode());
        write(&dir, "pack", &format!("header-{n}"), &seed);
        packs.push(IndexPack {
            id: p.id,
            size: p.bytes.len() as u64,
            blobs: p.entries,
        });
    }

    // index
    write(&dir, "index", "empty", &IndexFile::default().encode());
    let idx = IndexFile {
        supersedes: vec![IndexId([3; 32])],
        packs,
    };
    write(&dir, "index", "two-packs", &idx.encode());

    // tree
    let mut file = TreeEntry::new(&b"file.txt"[..], EntryKind::File);
    file.mode = 0o644;
    file.size = 4096;
    file.mtime_ns = 1_700_000_000_123_456_789;
    file.content = vec![BlobId([1; 32]), BlobId([2; 32])];
    file.xattrs = vec![(b"user.a".to_vec(), b"value".to_vec())];
    let mut dir_e = TreeEntry::new(&b"dir"[..], EntryKind::Dir);
    dir_e.mode = 0o755;
    dir_e.subtree = Some(BlobId([9; 32]));
    let mut link = TreeEntry::new(&b"link"[..], EntryKind::Symlink);
    link.link_target = b"file.txt".to_vec();
    let mut stream = TreeEntry::new(&b"dump.sql"[..], EntryKind::File);
    stream.profile = ChunkProfile::Streams;
    let mut t = Tree {
        entries: vec![file, dir_e, link, stream],
    };
    t.sort();
    write(&dir, "tree", "four", &t.encode());
    write(&dir, "tree", "empty", &Tree::default().encode());

    // snapshot
    let mut s = Snapshot {
        version: 1,
        time: "2026-01-02T03:04:05.678Z".into(),
        hostname: "host".into(),
        username: "user".into(),
        paths: vec!["/home/user".into()],
        streams: vec![],
        tags: vec!["daily".into()],
        parent: Some(SnapshotId([4; 32])),
        tree: BlobId([5; 32]),
        description: Some("seed".into()),
        sources: vec![],
        original: None,
        partial: false,
        failed_sources: vec![],
        summary: Summary {
            files_new: 3,
            bytes_read: 1234,
            seconds: 1.5,
            ..Default::default()
        },
    };
    write(&dir, "snapshot", "paths", &s.encode());
    s.paths.clear();
    s.parent = None;
    s.streams = vec!["db.dump".into()];
    s.sources = vec![SourceInfo {
        name: "db.dump".into(),
        kind: "pg".into(),
        command: Some("pg_dump -Fc db".into()),
        details: [("database".to_string(), "db".to_string())].into(),
    }];
    write(&dir, "snapshot", "stream", &s.encode());

    // chunker: seed || min u16 || avg shift u8 || max u16 || split u16 || data
    for (i, (shift, len)) in [(0u8, 5000usize), (2, 20000), (4, 60000)]
        .into_iter()
        .enumerate()
    {
        let mut seed = vec![i as u8 + 1; 32];
        seed.extend_from_slice(&100u16.to_le_bytes());
        seed.push(shift);
        seed.extend_from_slice(&3000u16.to_le_bytes());
        seed.extend_from_slice(&((len / 3) as u16).to_le_bytes());
        seed.extend_from_slice(&noise(i as u64 + 10, len));
        write(&dir, "chunker", &i.to_string(), &seed);
    }
    eprintln!("wrote seed corpus under {}", dir.display());
}
