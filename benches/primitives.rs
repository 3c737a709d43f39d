//! Throughput of each content-pipeline primitive on one core: FastCDC with the
//! keyed gear table, keyed BLAKE3, zstd level 3, delta encoding and decoding
//! against a base chunk (format-spec §13), XChaCha20-Poly1305 seal/open and
//! pack building. Results read as bytes/s (MB/s).

mod common;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use snap::crypto::MasterKey;
use snap::format::config::Config;
use snap::format::BlobKind;
use snap::write::chunker::Chunker;
use snap::write::pack::PackBuilder;
use std::time::Duration;

const N: usize = 16 << 20;

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g
}

fn chunker(c: &mut Criterion) {
    let key = MasterKey::generate();
    let data = common::text(1, N);
    let mut g = group(c, "chunker");
    g.throughput(Throughput::Bytes(N as u64));
    for (name, sizes) in [("files", Config::FILES), ("streams", Config::STREAMS)] {
        let ch = Chunker::new(key.chunker_seed(), sizes);
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(ch.cuts(black_box(&data), true, &mut out))
            })
        });
    }
    g.finish();
}

fn keyed_hash(c: &mut Criterion) {
    let key = MasterKey::generate();
    let data = common::random(2, N);
    let mut g = group(c, "keyed_hash");
    for chunk in [16usize << 10, 256 << 10] {
        g.throughput(Throughput::Bytes(N as u64));
        g.bench_with_input(BenchmarkId::new("blake3", chunk), &chunk, |b, &chunk| {
            b.iter(|| {
                for part in data.chunks(chunk) {
                    black_box(key.blob_id(part));
                }
            })
        });
    }
    g.finish();
}

fn compress(c: &mut Criterion) {
    let mut g = group(c, "compress_zstd3");
    g.throughput(Throughput::Bytes(N as u64));
    for (name, data) in [
        ("text", common::text(3, N)),
        ("random", common::random(3, N)),
    ] {
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                for part in data.chunks(256 << 10) {
                    snap::write::compress::encode(part, 3, &mut out);
                    black_box(out.len());
                }
            })
        });
    }
    g.finish();
}

/// Delta blobs: 64 KiB text chunks whose base is the same chunk with one
/// 40-byte row changed (a nightly dump's typical changed chunk).
fn delta(c: &mut Criterion) {
    let data = common::text(5, N);
    let base_id = snap::format::BlobId([7; 32]);
    let chunks: Vec<(&[u8], Vec<u8>)> = data
        .chunks(64 << 10)
        .map(|base| {
            let mut changed = base.to_vec();
            let at = changed.len() / 2;
            let end = (at + 40).min(changed.len());
            changed[at..end].fill(b'#');
            (base, changed)
        })
        .collect();
    let encoded: Vec<Vec<u8>> = chunks
        .iter()
        .map(|(base, changed)| {
            let mut out = Vec::new();
            snap::write::compress::encode_delta(changed, &base_id, base, 3, None, &mut out);
            out
        })
        .collect();
    let mut g = group(c, "delta_zstd3");
    g.throughput(Throughput::Bytes(N as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            for (base, changed) in &chunks {
                snap::write::compress::encode_delta(changed, &base_id, base, 3, None, &mut out);
                black_box(out.len());
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for ((base, changed), enc) in chunks.iter().zip(&encoded) {
                let plain =
                    snap::write::compress::decode_delta(enc, base, changed.len(), 1 << 20).unwrap();
                black_box(plain.len());
            }
        })
    });
    g.finish();
}

fn seal_open(c: &mut Criterion) {
    let key = MasterKey::generate();
    let data = common::random(4, N);
    let id = key.blob_id(b"x");
    let sealed: Vec<Vec<u8>> = data
        .chunks(256 << 10)
        .map(|p| key.seal_blob(BlobKind::Data, &id, p))
        .collect();
    let mut g = group(c, "xchacha20poly1305");
    g.throughput(Throughput::Bytes(N as u64));
    g.bench_function("seal", |b| {
        b.iter(|| {
            for part in data.chunks(256 << 10) {
                black_box(key.seal_blob(BlobKind::Data, &id, part));
            }
        })
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            for s in &sealed {
                black_box(key.open_blob(BlobKind::Data, &id, s).expect("open"));
            }
        })
    });
    g.finish();
}

fn pack_build(c: &mut Criterion) {
    let key = MasterKey::generate();
    let data = common::random(5, N);
    let blobs: Vec<(snap::BlobId, Vec<u8>)> = data
        .chunks(256 << 10)
        .map(|p| {
            let id = key.blob_id(p);
            (id, key.seal_blob(BlobKind::Data, &id, p))
        })
        .collect();
    let mut g = group(c, "pack");
    g.throughput(Throughput::Bytes(N as u64));
    g.bench_function("add_finish_16MiB", |b| {
        b.iter(|| {
            let mut pb = PackBuilder::default();
            for (id, s) in &blobs {
                pb.add(BlobKind::Data, *id, s, s.len() as u32, None);
            }
            black_box(pb.finish(&key).id)
        })
    });
    g.finish();
}

criterion_group!(benches, chunker, keyed_hash, compress, delta, seal_open, pack_build);
criterion_main!(benches);
