//! Deterministic test data shared by the benches.
#![allow(dead_code)]

use std::path::Path;

/// xorshift64 bytes: incompressible, reproducible.
pub fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "fn",
    "let",
    "mut",
    "struct",
    "impl",
    "pub",
    "use",
    "match",
    "Some",
    "None",
    "Ok",
    "Err",
    "self",
    "return",
    "where",
    "value",
    "buffer",
    "length",
    "index",
    "error",
    "result",
    "data",
    "snapshot",
    "repository",
    "chunk",
    "pack",
    "blob",
    "tree",
    "file",
    "stream",
    "catalog",
    "<div>",
    "</div>",
    "class=\"item\"",
    "{",
    "}",
    "(",
    ")",
    ";",
    "=",
    "==",
    "->",
    "//",
    "#",
];

/// Text-like bytes: words from a small vocabulary with numbers and line
/// breaks, compressing roughly 3-4x with zstd -3 like source code and docs.
pub fn text(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 64);
    let mut col = 0;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % WORDS.len() as u64) as usize];
        v.extend_from_slice(w.as_bytes());
        col += w.len() + 1;
        if (x >> 32) % 17 == 0 {
            v.extend_from_slice(format!(" {}", (x >> 40) % 100_000).as_bytes());
        }
        if col > 70 || (x >> 20) % 23 == 0 {
            v.push(b'\n');
            col = 0;
        } else {
            v.push(b' ');
        }
    }
    v.truncate(n);
    v
}

/// Writes a mixed tree of about `total` bytes under `root`: half text-like
/// files (1 KiB .. 4 MiB), a quarter random files, a quarter small text files
/// (≤ 16 KiB) in nested directories. Returns the bytes written.
pub fn write_tree(root: &Path, total: usize, seed: u64) -> usize {
    let mut written = 0;
    let mut i = 0u64;
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while written < total {
        let r = next();
        let (size, data) = match i % 4 {
            0 | 1 => {
                let s = 1024 + (r % (4 << 20)) as usize;
                (s, text(r, s))
            }
            2 => {
                let s = 1024 + (r % (2 << 20)) as usize;
                (s, random(r, s))
            }
            _ => {
                let s = 100 + (r % (16 << 10)) as usize;
                (s, text(r, s))
            }
        };
        let dir = root.join(format!("d{}/e{}", i % 7, i % 13));
        std::fs::create_dir_all(&dir).expect("create bench dir");
        std::fs::write(dir.join(format!("f{i}.dat")), &data).expect("write bench file");
        written += size;
        i += 1;
    }
    written
}
