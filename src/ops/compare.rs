//! `snap check --compare-source PATH`: compares a snapshot's copy of a file
//! tree with the live tree on disk and lists what differs other than by
//! modification time (the "verify" of restic issue #1280): content (the
//! file cut with the repository's chunker gives other chunk ids), entries
//! missing from or new in the source, type, permission bits, owner,
//! symlink targets. A file whose size and mtime are unchanged is still
//! read: silent corruption on the source disk (or in the repository's
//! record of it) is what this finds. Nothing is written anywhere.
//!
//! Entries the backup excluded show up as `new` unless the same
//! `--exclude` patterns are given to the compare (an excluded entry, and
//! everything below an excluded folder, is skipped on both sides, with
//! backup's matching: [`ExcludeSet`]); a source that changes while it is
//! compared shows those changes. Reads one file at a time.

use crate::error::{Error, Result};
use crate::format::tree::{EntryKind, TreeEntry};
use crate::format::BlobId;
use crate::ops::backup::ExcludeSet;
use crate::repo::Repository;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// How an entry differs from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceChange {
    /// A file's bytes (or a symlink's target, a device number) differ.
    Content,
    /// In the snapshot, not in the source.
    Missing,
    /// In the source, not in the snapshot.
    New,
    /// Another entry type (a file became a folder, …).
    Type,
    /// Other permission bits.
    Mode,
    /// Other owner or group.
    Owner,
    /// Could not be read from the source.
    Unreadable,
}

/// One difference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceDiff {
    /// What differs.
    pub change: SourceChange,
    /// Path in the source file system.
    pub path: PathBuf,
    /// Details ("size 10 → 12 bytes", "mode 644 → 600", an error).
    pub detail: String,
}

/// What [`compare_source`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompareReport {
    /// Entries compared (both sides present).
    pub entries: u64,
    /// Regular files whose content was read and compared.
    pub files_read: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Differences, in path order.
    pub diffs: Vec<SourceDiff>,
}

/// Compares the entry at absolute path `source` (a folder or a file, as
/// stored in the snapshot whose root tree is `root`) with the live file
/// system. Walks at most 1024 folder levels. Entries below `source` that
/// `excludes` matches (absolute paths, as `snap backup --exclude` matches
/// them) are neither compared nor reported, in the snapshot or the source.
///
/// Errors: [`crate::ErrorKind::Usage`] when `source` is not absolute or not
/// in the snapshot; tree reads' errors ([`crate::ErrorKind::Corrupt`],
/// backend errors); [`crate::ErrorKind::Interrupted`].
pub fn compare_source(
    repo: &Repository,
    root: &BlobId,
    source: &Path,
    excludes: &ExcludeSet,
) -> Result<CompareReport> {
    if !source.is_absolute() {
        return Err(Error::usage(format!(
            "{} is not an absolute path",
            source.display()
        )));
    }
    // Find the entry: one tree per path component.
    let mut tree = repo.read_tree(root)?;
    let mut entry: Option<TreeEntry> = None;
    for c in source.components() {
        let Component::Normal(name) = c else { continue };
        if let Some(e) = &entry {
            let Some(sub) = e.subtree.filter(|_| e.kind == EntryKind::Dir) else {
                return Err(not_in(source));
            };
            tree = repo.read_tree(&sub)?;
        }
        entry = Some(
            tree.get(name.as_bytes())
                .cloned()
                .ok_or_else(|| not_in(source))?,
        );
    }
    let Some(entry) = entry else {
        return Err(Error::usage(
            "compare the folders that were backed up, not /",
        ));
    };
    let mut rep = CompareReport::default();
    compare_entry(repo, &entry, source, 1, excludes, &mut rep)?;
    rep.diffs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(rep)
}

fn not_in(p: &Path) -> Error {
    Error::usage(format!(
        "{} is not in the snapshot; give a path that was backed up (or --snapshot)",
        p.display()
    ))
}

fn kind_of(m: &std::fs::Metadata) -> EntryKind {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        EntryKind::Dir
    } else if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_fifo() {
        EntryKind::Fifo
    } else if t.is_char_device() {
        EntryKind::CharDevice
    } else if t.is_block_device() {
        EntryKind::BlockDevice
    } else if t.is_socket() {
        EntryKind::Socket
    } else {
        EntryKind::File
    }
}

fn push(rep: &mut CompareReport, change: SourceChange, path: &Path, detail: String) {
    rep.diffs.push(SourceDiff {
        change,
        path: path.to_path_buf(),
        detail,
    });
}

fn compare_entry(
    repo: &Repository,
    e: &TreeEntry,
    path: &Path,
    depth: usize,
    excludes: &ExcludeSet,
    rep: &mut CompareReport,
) -> Result<()> {
    crate::interrupt::check()?;
    crate::read::restore::check_depth(depth, || path.display().to_string())?;
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            push(rep, SourceChange::Missing, path, "not in the source".into());
            return Ok(());
        }
        Err(err) => {
            push(rep, SourceChange::Unreadable, path, err.to_string());
            return Ok(());
        }
    };
    rep.entries += 1;
    let kind = kind_of(&m);
    if kind != e.kind {
        push(
            rep,
            SourceChange::Type,
            path,
            format!("{:?} in the snapshot, {:?} in the source", e.kind, kind).to_lowercase(),
        );
        return Ok(());
    }
    let mode = m.mode() & 0o7777;
    if kind != EntryKind::Symlink && mode != e.mode {
        push(
            rep,
            SourceChange::Mode,
            path,
            format!("mode {:o} → {mode:o}", e.mode),
        );
    }
    if m.uid() != e.uid || m.gid() != e.gid {
        push(
            rep,
            SourceChange::Owner,
            path,
            format!("owner {}:{} → {}:{}", e.uid, e.gid, m.uid(), m.gid()),
        );
    }
    match kind {
        EntryKind::File => {
            if m.len() != e.size {
                push(
                    rep,
                    SourceChange::Content,
                    path,
                    format!("size {} → {} bytes", e.size, m.len()),
                );
                return Ok(());
            }
            rep.files_read += 1;
            let r = std::fs::File::open(path).and_then(|mut f| same_content(repo, &mut f, e));
            match r {
                Ok((same, n)) => {
                    rep.bytes_read += n;
                    if !same {
                        push(
                            rep,
                            SourceChange::Content,
                            path,
                            format!("same size ({} bytes), other bytes", e.size),
                        );
                    }
                }
                Err(err) => push(rep, SourceChange::Unreadable, path, err.to_string()),
            }
        }
        EntryKind::Symlink => {
            let t = std::fs::read_link(path).map(|t| t.as_os_str().as_bytes().to_vec());
            match t {
                Ok(t) if t == e.link_target => {}
                Ok(t) => push(
                    rep,
                    SourceChange::Content,
                    path,
                    format!(
                        "target {} → {}",
                        String::from_utf8_lossy(&e.link_target),
                        String::from_utf8_lossy(&t)
                    ),
                ),
                Err(err) => push(rep, SourceChange::Unreadable, path, err.to_string()),
            }
        }
        EntryKind::CharDevice | EntryKind::BlockDevice if m.rdev() != e.rdev => push(
            rep,
            SourceChange::Content,
            path,
            format!("device {} → {}", e.rdev, m.rdev()),
        ),
        EntryKind::Dir => {
            let Some(sub) = e.subtree else {
                return Ok(());
            };
            let tree = repo.read_tree(&sub)?;
            let mut live: Vec<Vec<u8>> = match std::fs::read_dir(path) {
                Ok(rd) => rd
                    .flatten()
                    .map(|d| d.file_name().as_bytes().to_vec())
                    .collect(),
                Err(err) => {
                    push(rep, SourceChange::Unreadable, path, err.to_string());
                    return Ok(());
                }
            };
            live.sort();
            for child in &tree.entries {
                let p = path.join(std::ffi::OsStr::from_bytes(&child.name));
                if !excludes.is_match(&p) {
                    compare_entry(repo, child, &p, depth + 1, excludes, rep)?;
                }
            }
            for name in live {
                let p = path.join(std::ffi::OsStr::from_bytes(&name));
                if tree.get(&name).is_none() && !excludes.is_match(&p) {
                    push(rep, SourceChange::New, &p, "not in the snapshot".into());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `f` holds exactly `e`'s content: cut with the repository's file
/// chunker (as a backup cuts it), its chunks' keyed BLAKE3 ids equal
/// `e.content`. Returns (equal, bytes read); stops at the first chunk that
/// differs. Needs no index: the cut points come from the bytes.
fn same_content(
    repo: &Repository,
    f: &mut std::fs::File,
    e: &TreeEntry,
) -> std::io::Result<(bool, u64)> {
    use std::io::Read;
    let ch = repo.files_chunker();
    let max = ch.max_size();
    let mut buf: Vec<u8> = Vec::with_capacity(2 * max);
    let mut tmp = vec![0u8; 1 << 20];
    let (mut idx, mut read, mut eof) = (0usize, 0u64, false);
    let mut cuts = Vec::new();
    loop {
        while !eof && buf.len() < max {
            let n = f.read(&mut tmp)?;
            if n == 0 {
                eof = true;
            } else {
                buf.extend_from_slice(&tmp[..n]);
                read += n as u64;
            }
        }
        if buf.is_empty() {
            break;
        }
        cuts.clear();
        let used = ch.cuts(&buf, eof, &mut cuts);
        for &(off, len) in &cuts {
            if e.content.get(idx) != Some(&repo.key().blob_id(&buf[off..off + len])) {
                return Ok((false, read));
            }
            idx += 1;
        }
        buf.drain(..used);
    }
    Ok((idx == e.content.len(), read))
}
