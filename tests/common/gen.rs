//! Deterministic test data: a xorshift generator, and a source tree that
//! changes a little between backups.

use std::path::{Path, PathBuf};

/// xorshift64 pseudo-random numbers (deterministic per seed).
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to 1).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    /// `n` random bytes (incompressible).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    /// `n` bytes of compressible text.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 64);
        while v.len() < n {
            let w = self.next();
            v.extend_from_slice(format!("line {w:x} of some text that compresses\n").as_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A source tree under `root` that [`Tree::mutate`] changes between backups:
/// a fixed set of small files (some rewritten each time), a few "big" files
/// (one added, the oldest removed, each time) and a subdirectory.
pub struct Tree {
    /// The tree's root directory (absolute).
    pub root: PathBuf,
    rng: Rng,
    big: Vec<PathBuf>,
    generation: u64,
    big_size: usize,
    keep_big: usize,
}

impl Tree {
    /// Creates the tree with `small` small files (1..64 KiB) and `keep_big`
    /// big files of `big_size` bytes (half noise, half text).
    pub fn new(root: &Path, seed: u64, small: usize, big_size: usize, keep_big: usize) -> Tree {
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        let mut t = Tree {
            root: root.to_path_buf(),
            rng: Rng::new(seed),
            big: Vec::new(),
            generation: 0,
            big_size,
            keep_big,
        };
        for i in 0..small {
            let dir = if i % 3 == 0 {
                "sub"
            } else if i % 5 == 0 {
                "sub/deeper"
            } else {
                ""
            };
            let n = t.rng.range(1, 64 << 10) as usize;
            let data = if i % 2 == 0 {
                t.rng.text(n)
            } else {
                t.rng.bytes(n)
            };
            std::fs::write(root.join(dir).join(format!("small-{i:03}")), data).unwrap();
        }
        std::os::unix::fs::symlink("small-001", root.join("link")).unwrap();
        for _ in 0..keep_big {
            t.add_big();
        }
        t
    }

    fn add_big(&mut self) {
        self.generation += 1;
        let p = self.root.join(format!("big-{:04}", self.generation));
        let mut data = self.rng.bytes(self.big_size / 2);
        data.extend(self.rng.text(self.big_size - self.big_size / 2));
        std::fs::write(&p, data).unwrap();
        self.big.push(p);
    }

    /// Changes the tree a bit: rewrites two small files, adds one big file
    /// and removes the oldest big file beyond `keep_big`.
    pub fn mutate(&mut self) {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("small-"))
            })
            .collect();
        names.sort();
        for _ in 0..2 {
            if names.is_empty() {
                break;
            }
            let i = self.rng.range(0, names.len() as u64) as usize;
            let n = self.rng.range(1, 64 << 10) as usize;
            std::fs::write(&names[i], self.rng.text(n)).unwrap();
        }
        self.add_big();
        while self.big.len() > self.keep_big {
            let p = self.big.remove(0);
            std::fs::remove_file(p).unwrap();
        }
    }
}
