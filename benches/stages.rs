//! Single-thread throughput of each content-pipeline stage over the same real
//! bytes, and the "primitive limit": the rate two cores could reach if the
//! stages were perfectly spread over them (2 / Σ seconds-per-byte).
//!
//! `cargo bench --bench stages` reads a proportional sample of `STAGES_MB` MiB
//! (default 256) of the regular files under `STAGES_SRC` (default
//! `~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu`, the tree that
//! benches/compare.sh backs up) into memory, then times on one thread: reading the files
//! again (page cache), FastCDC (files profile) with the keyed gear table,
//! keyed BLAKE3 per chunk, zstd (`snap::write::compress::encode`, level
//! `STAGES_ZSTD_LEVEL`, default 3 as in new repositories) per chunk,
//! XChaCha20-Poly1305 seal of each encoded chunk, and `PackBuilder` add +
//! finish. Rates are input bytes per second (MB = 10^6 bytes).
//! Without `--bench` (as under `cargo test --all-targets`) it does nothing.

use snap::crypto::MasterKey;
use snap::format::config::Config;
use snap::format::BlobKind;
use snap::write::chunker::Chunker;
use snap::write::pack::PackBuilder;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every regular file under `dir` with its size, in sorted walk order.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut es: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    es.sort_by_key(|e| e.file_name());
    for e in es {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&e.path(), out);
        } else if ft.is_file() {
            out.push((e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
}

/// A proportional sample of about `budget` bytes: walking in order, a file is
/// taken while the bytes taken lag `budget` x the fraction of bytes walked,
/// so the sample has the tree's mix of binaries, libraries and documents.
fn sample(all: &[(PathBuf, u64)], budget: u64) -> Vec<PathBuf> {
    let total: u64 = all.iter().map(|f| f.1).sum::<u64>().max(1);
    let (mut seen, mut taken) = (0u128, 0u128);
    let mut out = Vec::new();
    for (p, len) in all {
        seen += *len as u128;
        if taken * total as u128 <= seen * budget as u128 {
            taken += *len as u128;
            out.push(p.clone());
        }
    }
    out
}

fn rate(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("stages: run with `cargo bench --bench stages`");
        return;
    }
    let src = std::env::var("STAGES_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dirs_home().join(".rustup/toolchains/stable-x86_64-unknown-linux-gnu"));
    let level: i32 = std::env::var("STAGES_ZSTD_LEVEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mb: u64 = std::env::var("STAGES_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let mut all = Vec::new();
    walk(&src, &mut all);
    let files = sample(&all, mb << 20);
    let data: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let total: usize = data.iter().map(|d| d.len()).sum();
    println!(
        "stages: {} of {} files, {:.1} MiB from {} (single thread, warm cache)",
        data.len(),
        all.len(),
        total as f64 / 1048576.0,
        src.display()
    );
    let key = MasterKey::generate();
    let chunker = Chunker::new(key.chunker_seed(), Config::FILES);
    let mut results: Vec<(&str, f64)> = Vec::new();

    let t = Instant::now();
    let mut n = 0usize;
    for p in &files {
        n += std::fs::read(p).map(|d| d.len()).unwrap_or(0);
    }
    results.push(("read (page cache)", t.elapsed().as_secs_f64()));
    assert!(n >= total);

    let t = Instant::now();
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut cuts = Vec::new();
    for d in &data {
        cuts.clear();
        chunker.cuts(d, true, &mut cuts);
        chunks.extend(cuts.iter().map(|&(o, l)| &d[o..o + l]));
    }
    results.push(("fastcdc (files 64K/256K/2M)", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let ids: Vec<snap::BlobId> = chunks.iter().map(|c| key.blob_id(c)).collect();
    results.push(("blake3 keyed", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut enc = Vec::new();
    let encoded: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| {
            snap::write::compress::encode(c, level, &mut enc);
            enc.clone()
        })
        .collect();
    results.push(("zstd (encode)", t.elapsed().as_secs_f64()));
    let enc_total: usize = encoded.iter().map(|e| e.len()).sum();

    let t = Instant::now();
    let sealed: Vec<Vec<u8>> = encoded
        .iter()
        .zip(&ids)
        .map(|(e, id)| key.seal_blob(BlobKind::Data, id, e))
        .collect();
    results.push(("xchacha20poly1305 seal", t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut pb = PackBuilder::default();
    let mut packs = 0;
    for ((s, id), c) in sealed.iter().zip(&ids).zip(&chunks) {
        pb.add(BlobKind::Data, *id, s, c.len() as u32, None);
        if pb.len() >= 16 << 20 {
            std::hint::black_box(pb.finish(&key).id);
            packs += 1;
        }
    }
    std::hint::black_box(pb.finish(&key).id);
    results.push((
        "pack add+finish (blake3 of pack)",
        t.elapsed().as_secs_f64(),
    ));

    println!(
        "{} chunks (avg {} KiB), zstd level {level} output {:.1}% of input, {} packs",
        chunks.len(),
        total / chunks.len().max(1) / 1024,
        enc_total as f64 * 100.0 / total as f64,
        packs + 1
    );
    println!("| stage | MB/s (input bytes, 1 thread) | s per GB |");
    println!("|---|---:|---:|");
    let mut sum = 0.0;
    for (name, secs) in &results {
        sum += secs;
        println!(
            "| {name} | {:.0} | {:.2} |",
            rate(total, *secs),
            secs / total as f64 * 1e9
        );
    }
    let one = rate(total, sum);
    println!(
        "| all stages, one core | {one:.0} | {:.2} |",
        sum / total as f64 * 1e9
    );
    println!(
        "two cores allow about {:.0} MB/s (the primitive limit)",
        2.0 * one
    );
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}
