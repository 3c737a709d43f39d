//! The local delta-base cache of a put-only host (format-spec §13.1).
//!
//! A put-only key cannot open the blobs it wrote on earlier nights, so it
//! cannot read a delta base (format-spec §13) from the repository. Instead
//! every stream chunk it reads is kept here, zstd-compressed (level 1), as
//! `<cache dir>/<repository id>/stream-bases/<blob id>`; the next night's
//! changed chunks are compressed against these. A chunk file is used only
//! if it decompresses to exactly the indexed length and its keyed BLAKE3 id
//! matches. Files not written or touched by a backup for [`MAX_AGE`] are
//! removed after each backup that read streams, so the cache holds about
//! one dump plus the chunks the last days added.

use crate::crypto::MasterKey;
use crate::format::BlobId;
use std::path::{Path, PathBuf};

/// Chunk files unused for this long are evicted (10 days, seconds: a
/// weekly dump still finds last week's chunks).
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10 * 24 * 3600);

/// zstd level of the cached chunks (fast; the cache is local).
const LEVEL: i32 = 1;

fn file(dir: &Path, id: &BlobId) -> PathBuf {
    dir.join(id.to_hex())
}

/// Keeps stream chunk `id` (plaintext `data`) in `dir`: written if absent,
/// else its modification time set to now. Best effort: a failure only
/// costs a later delta.
pub fn keep(dir: &Path, id: &BlobId, data: &[u8]) {
    let f = file(dir, id);
    if filetime::set_file_mtime(&f, filetime::FileTime::now()).is_ok() {
        return;
    }
    let Ok(z) = zstd::bulk::compress(data, LEVEL) else {
        return;
    };
    let tmp = dir.join(format!("{}.tmp{}", id.to_hex(), std::process::id()));
    let _ = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, &z))
        .and_then(|_| std::fs::rename(&tmp, &f));
    let _ = std::fs::remove_file(&tmp);
}

/// The plaintext of chunk `id` from `dir`, if cached, exactly `raw_len`
/// bytes long and matching `id` under `key`'s id key; else `None`. A file
/// larger than zstd's bound for `raw_len` bytes is not read.
pub fn load(dir: &Path, key: &MasterKey, id: &BlobId, raw_len: u32) -> Option<Vec<u8>> {
    let path = file(dir, id);
    let bound = zstd::zstd_safe::compress_bound(raw_len as usize) as u64;
    if std::fs::metadata(&path).ok()?.len() > bound {
        return None;
    }
    let z = std::fs::read(&path).ok()?;
    let plain = zstd::bulk::decompress(&z, raw_len as usize).ok()?;
    (plain.len() == raw_len as usize && key.blob_id(&plain) == *id).then_some(plain)
}

/// Removes chunk files (and stale temporary files) of `dir` not written or
/// touched since `now − MAX_AGE`. Returns the number removed.
pub fn evict(dir: &Path) -> usize {
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(MAX_AGE) else {
        return 0;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if old && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_chunks_load_only_when_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let data = b"row 1\nrow 2\n".repeat(100);
        let id = key.blob_id(&data);
        assert!(load(dir.path(), &key, &id, data.len() as u32).is_none());
        keep(dir.path(), &id, &data);
        assert_eq!(
            load(dir.path(), &key, &id, data.len() as u32).unwrap(),
            data
        );
        // Wrong length, or a file whose content does not match its name.
        assert!(load(dir.path(), &key, &id, data.len() as u32 - 1).is_none());
        let other = key.blob_id(b"other");
        std::fs::copy(file(dir.path(), &id), file(dir.path(), &other)).unwrap();
        assert!(load(dir.path(), &key, &other, data.len() as u32).is_none());
        // A file far larger than any frame of that length is not read.
        let huge = key.blob_id(b"huge");
        std::fs::File::create(file(dir.path(), &huge))
            .and_then(|f| f.set_len(1 << 30))
            .unwrap();
        assert!(load(dir.path(), &key, &huge, data.len() as u32).is_none());
        std::fs::remove_file(file(dir.path(), &huge)).unwrap();
        // Old files go, fresh ones stay.
        let old = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_file_mtime(file(dir.path(), &other), old).unwrap();
        assert_eq!(evict(dir.path()), 1);
        assert!(load(dir.path(), &key, &id, data.len() as u32).is_some());
    }
}
