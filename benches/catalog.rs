//! SQLite catalog: inserting one index object of 100 000 blobs, then
//! `contains` / `lookup` of known and unknown blob ids.

mod common;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use snap::catalog::Catalog;
use snap::format::index::{IndexFile, IndexPack};
use snap::format::pack::PackEntry;
use snap::format::BlobKind;
use snap::{BlobId, TypedId};
use std::time::Duration;

/// Blobs per synthetic index object.
const BLOBS: usize = 100_000;
/// Blobs per synthetic pack (64 × 256 KiB ≈ 16 MiB packs).
const PER_PACK: usize = 64;

fn id<T: TypedId>(seed: u64, i: u64) -> T {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&i.to_le_bytes());
    T::from_bytes(*h.finalize().as_bytes())
}

/// An index object naming `BLOBS` synthetic blobs in `BLOBS / PER_PACK` packs.
fn index(seed: u64) -> IndexFile {
    let packs = (0..BLOBS / PER_PACK)
        .map(|p| IndexPack {
            id: id(seed ^ 0xffff, p as u64),
            size: 16 << 20,
            blobs: (0..PER_PACK)
                .map(|b| PackEntry {
                    kind: BlobKind::Data,
                    id: id(seed, (p * PER_PACK + b) as u64),
                    offset: (b as u32) << 18,
                    length: 1 << 18,
                    raw_len: 1 << 18,
                    base: None,
                })
                .collect(),
        })
        .collect();
    IndexFile {
        supersedes: Vec::new(),
        packs,
    }
}

fn catalog(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let idx = index(1);
    let mut g = c.benchmark_group("catalog");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(BLOBS as u64));
    let mut n = 0u32;
    g.bench_function("add_index_100k", |b| {
        b.iter_batched(
            || {
                n += 1;
                let cat =
                    Catalog::open(&dir.path().join(format!("c{n}.sqlite")), "bench").expect("open");
                (cat, n)
            },
            |(mut cat, n)| cat.add_index(&id(9, n as u64), &idx).expect("add_index"),
            BatchSize::PerIteration,
        )
    });
    // A catalog holding the 100k blobs for lookups.
    let mut cat = Catalog::open(&dir.path().join("lookup.sqlite"), "bench").expect("open");
    cat.add_index(&id(9, 0), &idx).expect("add_index");
    const Q: u64 = 10_000;
    g.throughput(Throughput::Elements(Q));
    let known: Vec<BlobId> = (0..Q).map(|i| id(1, (i * 7) % BLOBS as u64)).collect();
    let unknown: Vec<BlobId> = (0..Q).map(|i| id(2, i)).collect();
    g.bench_function("contains_known", |b| {
        b.iter(|| {
            for i in &known {
                assert!(cat.contains(black_box(i)).expect("contains"));
            }
        })
    });
    g.bench_function("contains_unknown", |b| {
        b.iter(|| {
            for i in &unknown {
                assert!(!cat.contains(black_box(i)).expect("contains"));
            }
        })
    });
    g.bench_function("lookup_known", |b| {
        b.iter(|| {
            for i in &known {
                black_box(cat.lookup(i).expect("lookup").expect("present"));
            }
        })
    });
    g.bench_function("lookup_unknown", |b| {
        b.iter(|| {
            for i in &unknown {
                assert!(cat.lookup(i).expect("lookup").is_none());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, catalog);
criterion_main!(benches);
