//! Test vectors (format-spec §26): recomputes every encoding in
//! `tests/data/vectors.json` from fixed inputs and compares byte for byte.
//!
//! The committed file is the contract: a normal run fails if any byte
//! changes. `SNAP_REGENERATE_VECTORS=1 cargo test --test vectors` rewrites it
//! (only do that for a deliberate format change, recorded in §27).

use serde_json::{json, Map, Value};
use snap::crypto::{
    self, blob_aad, MasterKey, AAD_DICT, AAD_INDEX, AAD_KEY, AAD_PACK_HEADER, AAD_SNAPSHOT,
    NONCE_LEN,
};
use snap::format::config::{ChunkSizes, Chunking, Compression, Config};
use snap::format::index::{IndexFile, IndexPack};
use snap::format::keyfile::{Kdf, KeyFile};
use snap::format::pack::{split_pack, PackHeader};
use snap::format::snapshot::{Snapshot, SourceInfo, Summary};
use snap::format::tree::{ChunkProfile, EntryKind, Tree, TreeEntry};
use snap::format::{BlobId, BlobKind, DictId, IndexId, KeyId, PackId, SnapshotId};
use snap::write::chunker::{gear_table, Chunker, GEAR_CONTEXT};
use snap::write::compress;
use snap::write::pack::PackBuilder;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.json")
}

/// `n` bytes counting up from `start` (wrapping).
fn seq(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

fn nonce(start: u8) -> [u8; NONCE_LEN] {
    seq(start, NONCE_LEN).try_into().unwrap()
}

/// The first `n` bytes of the BLAKE3 XOF (unkeyed) of `label`.
fn xof(label: &str, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(label.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}

fn master() -> MasterKey {
    MasterKey::from_bytes(&seq(0, 96)).unwrap()
}

const PASSWORD: &str = "correct horse battery staple";

/// Builds every vector; each also decodes its own output with the library.
fn build() -> Value {
    let mk = master();
    let mut v = Map::new();

    v.insert(
        "master_key".into(),
        json!({
            "note": "96 bytes = encryption key 32 || id key 32 || chunker seed 32; bytes 0x00..0x5f",
            "bytes": h(&mk.to_bytes()),
        }),
    );

    // §5 key file.
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
        salt: hex::encode(seq(0xa0, 32)),
    };
    let mut kek = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64, 1, 1, Some(32)).unwrap(),
    )
    .hash_password_into(PASSWORD.as_bytes(), &seq(0xa0, 32), &mut kek)
    .unwrap();
    let kf = crypto::wrap_master_key_with(
        &mk,
        PASSWORD.as_bytes(),
        kdf,
        &nonce(0x10),
        "2026-01-02T03:04:05.678Z".into(),
        "vector-host".into(),
        "vector-user".into(),
    )
    .unwrap();
    let kbytes = kf.encode();
    let parsed = KeyFile::decode(&kbytes).unwrap();
    let unwrapped = crypto::unwrap_master_key(&parsed, PASSWORD.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(*unwrapped.to_bytes(), *mk.to_bytes());
    assert!(crypto::unwrap_master_key(&parsed, b"wrong")
        .unwrap()
        .is_none());
    v.insert(
        "key_file".into(),
        json!({
            "password": PASSWORD,
            "salt": h(&seq(0xa0, 32)),
            "argon2id": {"m_cost_kib": 64, "t_cost": 1, "p_cost": 1, "version": 19, "output_len": 32},
            "nonce": h(&nonce(0x10)),
            "aad": String::from_utf8(AAD_KEY.to_vec()).unwrap(),
            "kek": h(&kek),
            "sealed_master": kf.sealed_master,
            "json": String::from_utf8(kbytes.clone()).unwrap(),
            "key_id": KeyId::of_object(&kbytes).to_hex(),
        }),
    );

    // §3 blob ids.
    let mut ids = Map::new();
    for (name, p) in [
        ("empty", b"".to_vec()),
        ("hello", b"hello, snap\n".to_vec()),
        ("seq_1000", seq(0, 1000)),
    ] {
        let id = mk.blob_id(&p);
        assert_eq!(
            id.0,
            *blake3::keyed_hash(&seq(32, 32).try_into().unwrap(), &p).as_bytes()
        );
        ids.insert(name.into(), json!({"plaintext": h(&p), "id": id.to_hex()}));
    }
    v.insert(
        "blob_id".into(),
        json!({"id_key": h(&seq(32, 32)), "cases": ids}),
    );
    // Every object kind is named alike (format-spec §3): one vector.
    let oid = PackId::of_object(b"snap").to_hex();
    for other in [
        IndexId::of_object(b"snap").to_hex(),
        SnapshotId::of_object(b"snap").to_hex(),
        DictId::of_object(b"snap").to_hex(),
        KeyId::of_object(b"snap").to_hex(),
    ] {
        assert_eq!(other, oid);
    }
    v.insert(
        "object_id".into(),
        json!({"bytes": h(b"snap"), "id": PackId::of_object(b"snap").to_hex()}),
    );

    // §11 envelope.
    let plain = b"attack at dawn";
    let env = mk.seal_with_nonce(&nonce(0x40), AAD_INDEX, plain);
    assert_eq!(mk.open(AAD_INDEX, &env, "vector").unwrap(), plain);
    let bid = mk.blob_id(plain);
    let benv = mk.seal_blob_with_nonce(&nonce(0x58), BlobKind::Tree, &bid, plain);
    assert_eq!(mk.open_blob(BlobKind::Tree, &bid, &benv).unwrap(), plain);
    v.insert(
        "envelope".into(),
        json!({
            "enc_key": h(&seq(0, 32)),
            "labelled": {
                "nonce": h(&nonce(0x40)),
                "aad": String::from_utf8(AAD_INDEX.to_vec()).unwrap(),
                "plaintext": h(plain),
                "sealed": h(&env),
            },
            "blob": {
                "nonce": h(&nonce(0x58)),
                "kind": "tree",
                "id": bid.to_hex(),
                "aad": h(&blob_aad(BlobKind::Tree, &bid)),
                "plaintext": h(plain),
                "sealed": h(&benv),
            },
        }),
    );

    // §12 blob payloads.
    let short = b"hello, snap\n".to_vec();
    let text = b"the quick brown fox jumps over the lazy dog\n".repeat(40);
    let noise = xof("snap vector noise", 4096);
    let mut payloads = Map::new();
    let mut enc_of = BTreeMap::new();
    for (name, p) in [
        ("short_raw", &short),
        ("text_zstd", &text),
        ("noise_raw", &noise),
    ] {
        let mut enc = Vec::new();
        compress::encode(p, 3, &mut enc);
        assert_eq!(compress::decode(&enc, p.len()).unwrap(), *p);
        payloads.insert(
            name.into(),
            json!({"plaintext": h(p), "level": 3, "payload": h(&enc)}),
        );
        enc_of.insert(name, enc);
    }
    assert_eq!(enc_of["short_raw"][0], compress::RAW);
    assert_eq!(enc_of["text_zstd"][0], compress::ZSTD);
    assert_eq!(enc_of["noise_raw"][0], compress::RAW);
    v.insert(
        "payload".into(),
        json!({"note": "noise = BLAKE3-XOF(\"snap vector noise\")[0..4096]", "cases": payloads}),
    );

    // §13 delta payload: 300 numbered rows with one row changed, against
    // the unchanged rows as its base (zstd raw-content dictionary = base
    // plaintext).
    let rows: Vec<u8> = (0..300u32)
        .flat_map(|i| {
            format!("{i}\trow {} of the table, value {}\n", i * 37 % 101, i * i).into_bytes()
        })
        .collect();
    let base_id = mk.blob_id(&rows);
    let mut changed = rows.clone();
    changed[880..889].copy_from_slice(b"THE QUICK");
    let text_base = &rows;
    let mut denc = Vec::new();
    assert!(compress::encode_delta(
        &changed, &base_id, &rows, 3, None, &mut denc
    ));
    assert_eq!(denc[0], compress::ZSTD_DELTA);
    assert_eq!(&denc[1..33], &base_id.0[..]);
    // Independent decode: a plain zstd decoder with the base as dictionary.
    let mut dz = zstd::bulk::Decompressor::with_dictionary(text_base).unwrap();
    assert_eq!(dz.decompress(&denc[33..], changed.len()).unwrap(), changed);
    let delta_entry = snap::format::pack::PackHeader {
        entries: vec![snap::format::pack::PackEntry {
            kind: BlobKind::Data,
            id: mk.blob_id(&changed),
            offset: 0,
            length: (denc.len() + snap::crypto::ENVELOPE_OVERHEAD) as u32,
            raw_len: changed.len() as u32,
            base: Some(base_id),
        }],
    };
    v.insert(
        "delta".into(),
        json!({
            "note": "base = rows 0..300 formatted as \"{i}\\trow {i*37 % 101} of the table, value {i*i}\\n\"; plaintext = base with bytes 880..889 replaced by \"THE QUICK\"",
            "base_plaintext": h(&rows),
            "base_id": base_id.to_hex(),
            "plaintext": h(&changed),
            "id": mk.blob_id(&changed).to_hex(),
            "level": 3,
            "payload": h(&denc),
            "pack_header_plaintext": h(&delta_entry.encode()),
        }),
    );

    // §12.1 dictionary object and a payload compressed with it.
    let drows: Vec<u8> = (0..3000u32)
        .flat_map(|i| {
            format!(
                "{i}\t/srv/app/file_{}.txt\tvalue {} of the table\n",
                i % 53,
                i * 7 % 1009
            )
            .into_bytes()
        })
        .collect();
    let dsamples: Vec<&[u8]> = drows.chunks(1024).collect();
    let dict_plain = compress::Dictionary::train(&dsamples, 4096, 1).expect("dictionary trains");
    let dict_sealed = mk.seal_with_nonce(&nonce(0x60), AAD_DICT, &dict_plain);
    let dict_id = DictId::of_object(&dict_sealed);
    let dict = compress::Dictionary::new(dict_id, &dict_plain).unwrap();
    let dtext = &drows[40_000..41_024];
    let mut dpayload = Vec::new();
    compress::encode_with(dtext, compress::Choice::Zstd(3), Some(&dict), &mut dpayload);
    assert_eq!(dpayload[0], compress::ZSTD_DICT);
    assert_eq!(&dpayload[1..33], &dict_id.0[..]);
    // Independent decode: a plain zstd decoder with the dictionary.
    let mut dz = zstd::bulk::Decompressor::with_dictionary(&dict_plain).unwrap();
    assert_eq!(dz.decompress(&dpayload[33..], dtext.len()).unwrap(), dtext);
    v.insert(
        "dict".into(),
        json!({
            "note": "samples = rows 0..3000 formatted as \"{i}\\t/srv/app/file_{i % 53}.txt\\tvalue {i*7 % 1009} of the table\\n\", cut in 1024-byte pieces; zstd dictionary of at most 4096 bytes with dictionary id (generation) 1; plaintext = bytes 40000..41024 of the rows",
            "dictionary_plaintext": h(&dict_plain),
            "aad": String::from_utf8(AAD_DICT.to_vec()).unwrap(),
            "nonce": h(&nonce(0x60)),
            "sealed": h(&dict_sealed),
            "id": dict_id.to_hex(),
            "plaintext": h(dtext),
            "level": 3,
            "payload": h(&dpayload),
        }),
    );

    // §14 tree.
    let content_a = mk.blob_id(&text);
    let content_b = mk.blob_id(&short);
    let mut dir = TreeEntry::new(&b"docs"[..], EntryKind::Dir);
    dir.mode = 0o755;
    dir.uid = 1000;
    dir.gid = 1000;
    dir.mtime_ns = 1_767_322_245_678_000_000;
    dir.ctime_ns = 1_767_322_245_678_000_001;
    dir.inode = 2;
    dir.dev = 0x803;
    dir.nlink = 2;
    dir.subtree = Some(mk.blob_id(&Tree::default().encode()));
    let mut file = TreeEntry::new(&b"caf\xe9-\xff.txt"[..], EntryKind::File);
    file.mode = 0o644;
    file.uid = 1000;
    file.gid = 100;
    file.mtime_ns = -1;
    file.ctime_ns = 1_700_000_000_000_000_000;
    file.inode = 12345;
    file.dev = 0x803;
    file.nlink = 1;
    file.size = (text.len() + short.len()) as u64;
    file.xattrs = vec![
        (b"user.a".to_vec(), b"1".to_vec()),
        (b"user.b".to_vec(), vec![0, 1, 0xff]),
    ];
    file.content = vec![content_a, content_b];
    let mut link = TreeEntry::new(&b"link"[..], EntryKind::Symlink);
    link.mode = 0o777;
    link.link_target = b"../target/path".to_vec();
    let mut dev = TreeEntry::new(&b"null"[..], EntryKind::CharDevice);
    dev.mode = 0o666;
    dev.rdev = 0x103;
    let mut stream = TreeEntry::new(&b"stream.sql"[..], EntryKind::File);
    stream.mode = 0o600;
    stream.profile = ChunkProfile::Streams;
    stream.size = short.len() as u64;
    stream.content = vec![content_b];
    let mut tree = Tree {
        entries: vec![dev, stream, link, file, dir],
    };
    tree.sort();
    let tplain = tree.encode();
    assert_eq!(Tree::decode(&tplain).unwrap(), tree);
    let tree_id = mk.blob_id(&tplain);
    let mut tpayload = Vec::new();
    compress::encode(&tplain, 3, &mut tpayload);
    v.insert(
        "tree".into(),
        json!({
            "note": "entries: docs (dir), null (char device), link (symlink), stream.sql (streams profile), caf\\xe9-\\xff.txt (non-UTF-8, xattrs, 2 chunks)",
            "empty_tree": h(&Tree::default().encode()),
            "plaintext": h(&tplain),
            "id": tree_id.to_hex(),
        }),
    );

    // §6 pack: the text payload (data), the short payload (data) and the tree.
    let blobs: [(BlobKind, BlobId, &Vec<u8>, usize, u8); 3] = [
        (
            BlobKind::Data,
            content_a,
            &enc_of["text_zstd"],
            text.len(),
            0x60,
        ),
        (
            BlobKind::Data,
            content_b,
            &enc_of["short_raw"],
            short.len(),
            0x78,
        ),
        (BlobKind::Tree, tree_id, &tpayload, tplain.len(), 0x90),
    ];
    let mut pb = PackBuilder::default();
    let mut sealed_blobs = Vec::new();
    for (kind, id, payload, raw_len, n) in blobs {
        let s = mk.seal_blob_with_nonce(&nonce(n), kind, &id, payload);
        pb.add(kind, id, &s, raw_len as u32, None);
        sealed_blobs.push(json!({
            "kind": if kind == BlobKind::Tree { "tree" } else { "data" },
            "id": id.to_hex(),
            "nonce": h(&nonce(n)),
            "payload": h(payload),
            "raw_len": raw_len,
            "sealed": h(&s),
        }));
    }
    let pack = pb.finish_with_nonce(&mk, &nonce(0xa8));
    let header = PackHeader {
        entries: pack.entries.clone(),
    };
    let hplain = header.encode();
    let (data_len, hsealed) = split_pack(&pack.bytes).unwrap();
    assert_eq!(
        PackHeader::decode(
            &mk.open(AAD_PACK_HEADER, hsealed, "vector").unwrap(),
            data_len as u64
        )
        .unwrap(),
        header
    );
    assert_eq!(pack.id, PackId::of_object(&pack.bytes));
    v.insert(
        "pack".into(),
        json!({
            "blobs": sealed_blobs,
            "header_nonce": h(&nonce(0xa8)),
            "header_plaintext": h(&hplain),
            "bytes": h(&pack.bytes),
            "id": pack.id.to_hex(),
            "key": format!("data/{}/{}", &pack.id.to_hex()[..2], pack.id.to_hex()),
        }),
    );

    // §7 index.
    let idx = IndexFile {
        supersedes: vec![IndexId::of_object(b"an older index")],
        packs: vec![IndexPack {
            id: pack.id,
            size: pack.bytes.len() as u64,
            blobs: pack.entries.clone(),
        }],
    };
    let iplain = idx.encode();
    assert_eq!(IndexFile::decode(&iplain).unwrap(), idx);
    let isealed = mk.seal_with_nonce(&nonce(0xc0), AAD_INDEX, &iplain);
    v.insert(
        "index".into(),
        json!({
            "plaintext": h(&iplain),
            "nonce": h(&nonce(0xc0)),
            "sealed": h(&isealed),
            "id": IndexId::of_object(&isealed).to_hex(),
        }),
    );

    // §8 snapshot.
    let snap = Snapshot {
        version: 1,
        time: "2026-01-02T03:04:05.678Z".into(),
        hostname: "vector-host".into(),
        username: "vector-user".into(),
        paths: vec!["/home/user".into(), "/srv/data".into()],
        streams: vec!["stream.sql".into()],
        tags: vec!["daily".into(), "vector".into()],
        parent: Some(SnapshotId::of_object(b"a parent snapshot")),
        tree: tree_id,
        description: Some("test vector \u{e9}\u{1f600}".into()),
        original: None,
        partial: false,
        failed_sources: Vec::new(),
        sources: vec![SourceInfo {
            name: "stream.sql".into(),
            kind: "command".into(),
            command: Some("pg_dump -Fc app".into()),
            details: BTreeMap::from([("database".to_string(), "app".to_string())]),
        }],
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unchanged: 3,
            dirs: 4,
            bytes_read: 5,
            total_bytes: 6,
            blobs_added: 7,
            bytes_added_raw: 8,
            bytes_added_stored: 9,
            errors: 0,
            seconds: 1.234,
        },
    };
    let splain = snap.encode();
    assert_eq!(Snapshot::decode(&splain).unwrap(), snap);
    let ssealed = mk.seal_with_nonce(&nonce(0xd8), AAD_SNAPSHOT, &splain);
    v.insert(
        "snapshot".into(),
        json!({
            "json": String::from_utf8(splain.clone()).unwrap(),
            "nonce": h(&nonce(0xd8)),
            "sealed": h(&ssealed),
            "id": SnapshotId::of_object(&ssealed).to_hex(),
        }),
    );

    // §4 config.
    let cfg = Config {
        version: 1,
        id: hex::encode(seq(0xe0, 32)),
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
    let cbytes = cfg.encode();
    assert_eq!(Config::decode(&cbytes).unwrap(), cfg);
    v.insert(
        "config".into(),
        json!({"json": String::from_utf8(cbytes).unwrap()}),
    );
    // The same with `compression` = `auto` and a `key_check` under the
    // vectors' master key (§4), as `init` writes since `auto` exists.
    let mut auto = Config {
        compression: Some(Compression::Auto),
        ..cfg.clone()
    };
    auto.key_check = Some(crypto::config_key_check(&mk, &auto.encode()));
    let abytes = auto.encode();
    assert_eq!(Config::decode(&abytes).unwrap(), auto);
    assert!(crypto::config_key_matches(&mk, &auto));
    v.insert(
        "config_auto".into(),
        json!({"json": String::from_utf8(abytes).unwrap()}),
    );
    // The same with S3 Object Lock (§4, §25.8): 30 days, governance.
    let mut locked = Config {
        object_lock: Some(snap::format::config::ObjectLock {
            mode: snap::format::config::LockMode::Governance,
            period: 30 * 86_400,
        }),
        key_check: None,
        ..auto.clone()
    };
    locked.key_check = Some(crypto::config_key_check(&mk, &locked.encode()));
    let lbytes = locked.encode();
    assert_eq!(Config::decode(&lbytes).unwrap(), locked);
    assert!(crypto::config_key_matches(&mk, &locked));
    v.insert(
        "config_object_lock".into(),
        json!({"json": String::from_utf8(lbytes).unwrap()}),
    );

    // §15 chunking.
    let seed: [u8; 32] = seq(64, 32).try_into().unwrap();
    let gear = gear_table(&seed);
    let input = xof("snap vector chunker input", 256 << 10);
    let mut profiles = Map::new();
    for (name, sizes) in [
        (
            "small",
            ChunkSizes {
                min: 256,
                avg: 1024,
                max: 4096,
            },
        ),
        ("streams_default", Config::STREAMS),
    ] {
        let c = Chunker::new(&seed, sizes);
        let mut cuts = Vec::new();
        assert_eq!(c.cuts(&input, true, &mut cuts), input.len());
        let lens: Vec<usize> = cuts.iter().map(|&(_, l)| l).collect();
        profiles.insert(
            name.into(),
            json!({"min": sizes.min, "avg": sizes.avg, "max": sizes.max, "lengths": lens}),
        );
    }
    // Long runs of one byte value never match a mask: cuts at max.
    let zeros = vec![0u8; 10_000];
    let mut zc = Vec::new();
    Chunker::new(
        &seed,
        ChunkSizes {
            min: 256,
            avg: 1024,
            max: 4096,
        },
    )
    .cuts(&zeros, true, &mut zc);
    v.insert(
        "chunking".into(),
        json!({
            "seed": h(&seed),
            "context": GEAR_CONTEXT,
            "gear_first_8": gear[..8].iter().map(|g| format!("{g:016x}")).collect::<Vec<_>>(),
            "gear_last": format!("{:016x}", gear[255]),
            "input": "BLAKE3-XOF(\"snap vector chunker input\")[0..262144]",
            "input_first_16": h(&input[..16]),
            "profiles": profiles,
            "zeros_10000_small": zc.iter().map(|&(_, l)| l).collect::<Vec<_>>(),
        }),
    );

    json!({
        "format": "snap repository format v1 test vectors (format-spec.md §26)",
        "hex": "all byte strings are lower-case hex unless named json/text",
        "nonces": "nonce(s) = 24 bytes s, s+1, ... (mod 256)",
        "vectors": v,
    })
}

/// First path where `a` and `b` differ.
fn diff(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(w)) => {
                        if let Some(d) = diff(&p, u, w) {
                            return Some(d);
                        }
                    }
                    _ => return Some(format!("{p}: present on one side only")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: length {} vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (u, w))| diff(&format!("{path}[{i}]"), u, w))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: computed {a} but the file says {b}")),
    }
}

#[test]
fn vectors_match_committed_file() {
    let computed = build();
    if std::env::var_os("SNAP_REGENERATE_VECTORS").is_some() {
        let mut s = serde_json::to_string_pretty(&computed).unwrap();
        s.push('\n');
        std::fs::create_dir_all(path().parent().unwrap()).unwrap();
        std::fs::write(path(), s).unwrap();
    }
    let file: Value =
        serde_json::from_slice(&std::fs::read(path()).expect("tests/data/vectors.json is missing"))
            .expect("tests/data/vectors.json is not JSON");
    if let Some(d) = diff("", &computed, &file) {
        panic!("format changed: {d}");
    }
    committed_bytes_decode(&file);
}

/// Decodes the committed bytes (not the recomputed ones) with the library,
/// so a decoder regression is caught even if encoders change in step.
fn committed_bytes_decode(file: &Value) {
    let v = &file["vectors"];
    let hx = |p: &Value| hex::decode(p.as_str().unwrap()).unwrap();
    let mk = MasterKey::from_bytes(&hx(&v["master_key"]["bytes"])).unwrap();

    let kf = KeyFile::decode(v["key_file"]["json"].as_str().unwrap().as_bytes()).unwrap();
    let k = crypto::unwrap_master_key(&kf, PASSWORD.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(*k.to_bytes(), *mk.to_bytes());

    let pack = hx(&v["pack"]["bytes"]);
    assert_eq!(PackId::of_object(&pack).to_hex(), v["pack"]["id"]);
    let (data_len, hs) = split_pack(&pack).unwrap();
    let header = PackHeader::decode(
        &mk.open(AAD_PACK_HEADER, hs, "pack").unwrap(),
        data_len as u64,
    )
    .unwrap();
    assert_eq!(header.entries.len(), 3);
    let mut tree = None;
    for e in &header.entries {
        let s = &pack[e.offset as usize..(e.offset + e.length) as usize];
        let payload = mk.open_blob(e.kind, &e.id, s).unwrap();
        let plain = compress::decode_limited(&payload, e.raw_len as usize, 256 << 20).unwrap();
        assert_eq!(mk.blob_id(&plain), e.id);
        if e.kind == BlobKind::Tree {
            tree = Some(Tree::decode(&plain).unwrap());
        }
    }
    let tree = tree.unwrap();
    assert_eq!(tree.entries.len(), 5);
    assert_eq!(tree.entries[0].name, b"caf\xe9-\xff.txt");

    let idx = IndexFile::decode(
        &mk.open(AAD_INDEX, &hx(&v["index"]["sealed"]), "index")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(idx.packs[0].blobs, header.entries);

    let snap = Snapshot::decode(
        &mk.open(AAD_SNAPSHOT, &hx(&v["snapshot"]["sealed"]), "snapshot")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(snap.tree.to_hex(), v["tree"]["id"]);

    let cfg = Config::decode(v["config"]["json"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(cfg.chunking.files, Config::FILES);
    assert_eq!(cfg.compression, None);
    let auto = Config::decode(v["config_auto"]["json"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(auto.compression, Some(Compression::Auto));
    assert_eq!(auto.compression_level, 3);
    assert!(crypto::config_key_matches(&mk, &auto));

    let dsealed = hx(&v["dict"]["sealed"]);
    let did = DictId::of_object(&dsealed);
    assert_eq!(did.to_hex(), v["dict"]["id"]);
    let dplain = mk.open(AAD_DICT, &dsealed, "dict").unwrap();
    let dict = compress::Dictionary::new(did, &dplain).unwrap();
    let text = hx(&v["dict"]["plaintext"]);
    assert_eq!(
        compress::decode_dict(&hx(&v["dict"]["payload"]), &dict, text.len(), 1 << 20).unwrap(),
        text
    );
}

/// The cut-point pseudo-code of format-spec §15.3, written independently of
/// the `fastcdc` crate, with the mask table of §15.2.
fn spec_cut(d: &[u8], g: &[u64; 256], min: usize, avg: usize, max: usize) -> usize {
    const MASKS: [(u32, u64); 17] = [
        (7, 0x0000000018035100),
        (8, 0x0000001800035300),
        (9, 0x0000019000353000),
        (10, 0x0000590003530000),
        (11, 0x0000d90003530000),
        (12, 0x0000d90103530000),
        (13, 0x0000d90303530000),
        (14, 0x0000d90313530000),
        (15, 0x0000d90f03530000),
        (16, 0x0000d90303537000),
        (17, 0x0000d90703537000),
        (18, 0x0000d90707537000),
        (19, 0x0000d91707537000),
        (20, 0x0000d91747537000),
        (21, 0x0000d91767537000),
        (22, 0x0000d93767537000),
        (23, 0x0000d93777537000),
    ];
    let mask = |i: u32| MASKS.iter().find(|m| m.0 == i).unwrap().1;
    let b = avg.trailing_zeros();
    let (ms, ml) = (mask(b + 1), mask(b - 1));
    let len = d.len();
    if len <= min {
        return len;
    }
    let n = len.min(max);
    let center = avg.min(n);
    let mut h: u64 = 0;
    for (i, &byte) in d.iter().enumerate().take(2 * (n / 2)).skip(min) {
        h = (h << 1).wrapping_add(g[byte as usize]);
        let m = if i < 2 * (center / 2) { ms } else { ml };
        if h & m == 0 {
            return i;
        }
    }
    n
}

#[test]
fn spec_pseudocode_matches_library_chunker() {
    let seed: [u8; 32] = seq(64, 32).try_into().unwrap();
    let g = gear_table(&seed);
    for (label, n) in [("a", 300_000), ("b", 4097), ("c", 1025), ("d", 5)] {
        let input = xof(label, n);
        for sizes in [
            ChunkSizes {
                min: 256,
                avg: 1024,
                max: 4096,
            },
            ChunkSizes {
                min: 64,
                avg: 256,
                max: 1024,
            },
            Config::STREAMS,
            Config::FILES,
        ] {
            let c = Chunker::new(&seed, sizes);
            let mut lib = Vec::new();
            c.cuts(&input, true, &mut lib);
            let mut spec = Vec::new();
            let mut pos = 0;
            while pos < input.len() {
                let l = spec_cut(
                    &input[pos..],
                    &g,
                    sizes.min as usize,
                    sizes.avg as usize,
                    sizes.max as usize,
                );
                spec.push((pos, l));
                pos += l;
            }
            assert_eq!(lib, spec, "input {label}, sizes {sizes:?}");
        }
    }
}
