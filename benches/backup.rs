//! End to end: `snap::ops::backup::backup` of a generated 64 MiB mixed tree into a
//! fresh local repository (initial backup), and a second no-change backup.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use snap::ops::backup::{backup, BackupOptions};
use snap::repo::InitOptions;
use snap::session::Operation;
use snap::store::StoreOptions;
use snap::{Repository, Session};
use std::time::Duration;

const TREE: usize = 64 << 20;

/// A new repository, opened in a backup session (its lease held).
fn fresh_repo(base: &std::path::Path, n: u32) -> Session {
    let loc = base.join(format!("repo{n}"));
    let loc = loc.to_str().expect("utf-8 temp path");
    Repository::init(loc, b"bench", &InitOptions::default()).expect("init");
    Session::open(
        loc,
        b"bench",
        &base.join(format!("cache{n}")),
        &StoreOptions::default(),
        Operation::Backup,
    )
    .expect("open")
}

fn opts(src: &std::path::Path) -> BackupOptions {
    BackupOptions {
        paths: vec![src.to_path_buf()],
        ..Default::default()
    }
}

fn end_to_end(c: &mut Criterion) {
    std::env::set_var("SNAP_TEST_FAST_KDF", "1");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let bytes = common::write_tree(&src, TREE, 7);
    let mut g = c.benchmark_group("backup");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut n = 0u32;
    g.bench_function("initial_64MiB", |b| {
        b.iter_batched(
            || {
                // Drop the previous round's repository outside the timed part.
                let _ = std::fs::remove_dir_all(dir.path().join(format!("repo{n}")));
                let _ = std::fs::remove_dir_all(dir.path().join(format!("cache{n}")));
                n += 1;
                fresh_repo(dir.path(), n)
            },
            |repo| {
                backup(&repo, opts(&src)).expect("backup");
                repo
            },
            BatchSize::PerIteration,
        )
    });
    let repo = fresh_repo(dir.path(), 0);
    backup(&repo, opts(&src)).expect("first backup");
    g.bench_function("unchanged_64MiB", |b| {
        b.iter(|| backup(&repo, opts(&src)).expect("backup"))
    });
    g.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
