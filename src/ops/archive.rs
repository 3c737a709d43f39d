//! Snapshots as ordinary archives: `snap export` writes a snapshot tree as
//! a tar (ustar with GNU long names, via the `tar` crate) or zip (via the
//! `zip` crate) stream, and `snap import-tar` reads a tar stream into a new
//! snapshot whose tree mirrors the archive.
//!
//! Paths in the archive are relative: the snapshot root's children are the
//! archive's top level, so a file backed up from `/srv/app/a.txt` is
//! `srv/app/a.txt`, and a stream is `@streams/NAME`. Tar keeps mode, mtime
//! (seconds), uid/gid, symlinks, hard-linked content is stored twice (the
//! snapshot format does not record link groups), FIFOs and device nodes.
//! Zip keeps mode, mtime (2-second resolution, years 1980-2107), symlinks;
//! it has no owners, and FIFOs and devices are skipped.

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{EntryKind, TreeEntry};
use crate::format::BlobId;
use crate::ops::backup::{backup_entries, BackupOptions, BackupOutcome};
use crate::read::planner::for_each_blob_with;
use crate::repo::Repository;
use crate::session::Session;
use std::io::{Read, Write};

/// Most entries walked ahead of the archive writer: their file contents
/// are read as one stream through the planner ([`for_each_blob_with`]).
const BATCH_ENTRIES: usize = 4096;
/// Most content bytes of a batch of entries (a batch holds at least one
/// file), bytes.
const BATCH_BYTES: u64 = 256 << 20;
/// Decoded blobs queued between the reading threads and the archive writer.
const QUEUED_BLOBS: usize = 16;

/// The content of the files of one batch, in walk order, as the planner's
/// reader threads deliver it: [`FileReader`] takes one file's blobs off it.
struct BlobQueue {
    rx: std::sync::mpsc::Receiver<Result<Vec<u8>>>,
}

impl BlobQueue {
    /// The next blob, or the reading error (the reader stopped).
    fn next(&mut self) -> std::io::Result<Vec<u8>> {
        match self.rx.recv() {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other(Error::new(
                ErrorKind::Io,
                "the content reader stopped",
            ))),
        }
    }
}

/// One file's content off a [`BlobQueue`]: exactly its `blobs` blobs.
struct FileReader<'q> {
    queue: &'q mut BlobQueue,
    blobs: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes delivered.
    n: u64,
}

impl<'q> FileReader<'q> {
    fn new(queue: &'q mut BlobQueue, blobs: usize) -> Self {
        FileReader {
            queue,
            blobs,
            buf: Vec::new(),
            pos: 0,
            n: 0,
        }
    }

    /// Takes this file's blobs not read yet off the queue; returns their
    /// bytes (not delivered).
    fn drain(&mut self) -> std::io::Result<u64> {
        let mut left = (self.buf.len() - self.pos) as u64;
        while self.blobs > 0 {
            left += self.queue.next()?.len() as u64;
            self.blobs -= 1;
        }
        self.pos = self.buf.len();
        Ok(left)
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() && self.blobs > 0 {
            self.buf = self.queue.next()?;
            self.pos = 0;
            self.blobs -= 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.n += n as u64;
        Ok(n)
    }
}

/// What [`walk_with_content`] calls per entry: (path, entry, its content).
type EntryFn<'a> = dyn FnMut(&[u8], &TreeEntry, &mut FileReader<'_>) -> Result<()> + 'a;

/// Walks the snapshot tree `root` (see [`walk`]) in batches of at most
/// [`BATCH_ENTRIES`] entries or [`BATCH_BYTES`] content bytes, and calls
/// `f(path, entry, content)` for each entry in walk order; `content`
/// delivers a file's blobs, read for the whole batch as one stream through
/// the planner ([`for_each_blob_with`]: coalesced ranged reads,
/// [`crate::read::planner::reads_in_flight`] of them in flight, the same as
/// a restore) on threads that run ahead of `f`. Memory: one batch of
/// entries, [`QUEUED_BLOBS`] decoded blobs and the planner's window.
///
/// Errors: `f`'s, and the repository's reading trees and blobs (a blob
/// error reaches `f` as an I/O error wrapping it, see [`write_err`]).
fn walk_with_content(repo: &Repository, root: &BlobId, f: &mut EntryFn<'_>) -> Result<()> {
    let window = crate::read::planner::reads_in_flight(repo.store(), 0);
    let mut batch: Vec<(Vec<u8>, TreeEntry)> = Vec::new();
    let mut bytes = 0u64;
    let mut flush = |batch: &mut Vec<(Vec<u8>, TreeEntry)>| -> Result<()> {
        let ids: Vec<BlobId> = batch
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::File)
            .flat_map(|(_, e)| e.content.iter().copied())
            .collect();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUED_BLOBS);
        std::thread::scope(|sc| {
            sc.spawn(move || {
                let r = for_each_blob_with(repo, &ids, window, |b| {
                    // The writer stopped (an error): stop reading.
                    tx.send(Ok(b.to_vec()))
                        .map_err(|_| Error::new(ErrorKind::Io, "the archive writer stopped"))
                });
                if let Err(e) = r {
                    let _ = tx.send(Err(e));
                }
            });
            let mut queue = BlobQueue { rx };
            for (path, e) in batch.drain(..) {
                let blobs = if e.kind == EntryKind::File {
                    e.content.len()
                } else {
                    0
                };
                let mut r = FileReader::new(&mut queue, blobs);
                f(&path, &e, &mut r)?;
                let extra = r.drain().map_err(write_err)?;
                if r.n + extra != e.size {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "{}: content is {} bytes, the tree says {}; run `snap check`",
                            String::from_utf8_lossy(&path),
                            r.n + extra,
                            e.size
                        ),
                    ));
                }
            }
            Ok(())
        })
    };
    walk(repo, root, &mut |path, e| {
        if e.kind == EntryKind::File {
            bytes += e.size;
        }
        batch.push((path.to_vec(), e.clone()));
        if batch.len() >= BATCH_ENTRIES || bytes >= BATCH_BYTES {
            flush(&mut batch)?;
            bytes = 0;
        }
        Ok(())
    })?;
    flush(&mut batch)
}

/// Archive format of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// POSIX tar (GNU long-name extensions when needed), uncompressed.
    Tar,
    /// Zip (deflate for files; zip64 for files of 4 GiB or more), written
    /// seekably: to a non-seekable writer through a temporary file (see
    /// [`export_zip_seekable`]).
    Zip,
}

/// Totals of an export.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportSummary {
    /// Regular files written.
    pub files: u64,
    /// Folders written.
    pub dirs: u64,
    /// Other entries written (symlinks, FIFOs, devices).
    pub others: u64,
    /// Entries left out because the format cannot hold them.
    pub skipped: u64,
    /// Content bytes written (before any zip compression).
    pub bytes: u64,
}

/// Most trees [`walk`] reads ahead of its position.
const TREES_AHEAD: usize = 4096;

/// Trees read ahead of a depth-first walk: on a miss, the tree and its
/// descendants level by level (each level one batch of concurrent,
/// coalesced reads, [`crate::read::trees::read_trees`]) until
/// [`TREES_AHEAD`] are held, so a walk costs about one round trip per
/// level and per [`TREES_AHEAD`] folders instead of one per folder.
struct TreesAhead<'r> {
    repo: &'r Repository,
    held: std::collections::HashMap<BlobId, Result<crate::format::tree::Tree>>,
}

impl TreesAhead<'_> {
    fn get(&mut self, id: &BlobId) -> Result<crate::format::tree::Tree> {
        if let Some(t) = self.held.remove(id) {
            return t;
        }
        let mut level = vec![*id];
        while !level.is_empty() && self.held.len() < TREES_AHEAD {
            let got = crate::read::trees::read_trees(self.repo, &level);
            level = got
                .values()
                .flatten()
                .flat_map(|t| t.entries.iter().filter_map(|e| e.subtree))
                .filter(|s| !self.held.contains_key(s) && s != id)
                .collect();
            level.sort_unstable();
            level.dedup();
            level.truncate(TREES_AHEAD.saturating_sub(self.held.len() + got.len()));
            self.held.extend(got);
        }
        self.held
            .remove(id)
            .unwrap_or_else(|| self.repo.read_tree(id))
    }
}

/// Visits every entry below tree `id` depth-first, parents before
/// children, with its relative path. Iterative (one open tree per level);
/// [`ErrorKind::Corrupt`] for a tree deeper than
/// [`crate::format::tree::MAX_DEPTH`]. Trees are read ahead
/// ([`TreesAhead`]).
fn walk(
    repo: &Repository,
    id: &BlobId,
    f: &mut dyn FnMut(&[u8], &TreeEntry) -> Result<()>,
) -> Result<()> {
    let mut trees = TreesAhead {
        repo,
        held: std::collections::HashMap::new(),
    };
    // One level per open folder: its remaining entries and its path.
    let mut stack: Vec<(std::vec::IntoIter<TreeEntry>, Vec<u8>)> =
        vec![(trees.get(id)?.entries.into_iter(), Vec::new())];
    while let Some((entries, prefix)) = stack.last_mut() {
        let Some(e) = entries.next() else {
            stack.pop();
            continue;
        };
        let mut path = prefix.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&e.name);
        f(&path, &e)?;
        if e.kind == EntryKind::Dir {
            if let Some(sub) = &e.subtree {
                crate::read::restore::check_depth(stack.len() + 1, || {
                    format!("/{}", String::from_utf8_lossy(&path))
                })?;
                let t = trees.get(sub)?;
                stack.push((t.entries.into_iter(), path));
            }
        }
    }
    Ok(())
}

/// Maps an I/O error from the archive writer to an [`Error`]: a repository
/// error raised while reading content passes through unchanged.
fn write_err(e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(err) = inner.downcast::<Error>() {
                return *err;
            }
        }
        return Error::new(ErrorKind::Io, "writing the archive");
    }
    Error::io("writing the archive", e)
}

/// Seconds since the Unix epoch of a nanosecond time, rounded down.
fn secs(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// Writes the snapshot tree `root` to `w` as an archive.
///
/// Errors: I/O errors writing `w`, repository errors reading trees and
/// blobs. A file whose content does not match its recorded size is an
/// [`ErrorKind::Corrupt`] error (tar headers carry the size up front).
pub fn export(
    repo: &Repository,
    root: &BlobId,
    format: ArchiveFormat,
    w: &mut dyn Write,
) -> Result<ExportSummary> {
    match format {
        ArchiveFormat::Tar => export_tar(repo, root, w),
        ArchiveFormat::Zip => export_zip(repo, root, w),
    }
}

fn export_tar(repo: &Repository, root: &BlobId, w: &mut dyn Write) -> Result<ExportSummary> {
    let mut sum = ExportSummary::default();
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    walk_with_content(repo, root, &mut |path, e, content| {
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid as u64);
        h.set_gid(e.gid as u64);
        h.set_mtime(secs(e.mtime_ns).max(0) as u64);
        match e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty())
                    .map_err(write_err)?;
                sum.dirs += 1;
            }
            EntryKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(e.size);
                let mut r = content.take(e.size);
                let mut counted = Counted { r: &mut r, n: 0 };
                b.append_data(&mut h, p, &mut counted).map_err(write_err)?;
                if counted.n != e.size {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!(
                            "{}: content is {} bytes, the tree says {}; run `snap check`",
                            String::from_utf8_lossy(path),
                            counted.n,
                            e.size
                        ),
                    ));
                }
                sum.files += 1;
                sum.bytes += e.size;
            }
            EntryKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let t = std::path::Path::new(std::ffi::OsStr::from_bytes(&e.link_target));
                b.append_link(&mut h, p, t).map_err(write_err)?;
                sum.others += 1;
            }
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
                h.set_entry_type(match e.kind {
                    EntryKind::Fifo => tar::EntryType::Fifo,
                    EntryKind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                h.set_size(0);
                if e.kind != EntryKind::Fifo {
                    let major = libc::major(e.rdev as libc::dev_t);
                    let minor = libc::minor(e.rdev as libc::dev_t);
                    h.set_device_major(major).map_err(write_err)?;
                    h.set_device_minor(minor).map_err(write_err)?;
                }
                b.append_data(&mut h, p, std::io::empty())
                    .map_err(write_err)?;
                sum.others += 1;
            }
            _ => sum.skipped += 1,
        }
        Ok(())
    })?;
    b.into_inner().and_then(|w| w.flush()).map_err(write_err)?;
    Ok(sum)
}

/// Counts bytes read through it.
struct Counted<'a, R: Read> {
    r: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

use std::os::unix::ffi::OsStrExt;

fn zip_time(ns: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp(secs(ns), 0).unwrap_or_default();
    zip::DateTime::from_date_and_time(
        t.year().clamp(1980, 2107) as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .unwrap_or_default()
}

/// Writes the zip archive of `root` to `w` (not seekable): the archive is
/// built in an unlinked temporary file in [`std::env::temp_dir`] (as large
/// as the archive) by [`export_zip_seekable`], then copied to `w`.
///
/// Why not zip's stream mode: zip 7.x's stream writer flags folder
/// entries "data descriptor follows" without writing one, and Info-ZIP
/// `unzip` rejects such archives ("overlapped components"); a seekable
/// writer puts the sizes in the local headers and writes no descriptors.
fn export_zip(repo: &Repository, root: &BlobId, w: &mut dyn Write) -> Result<ExportSummary> {
    use std::io::Seek;
    let tmp = anonymous_temp_file()?;
    let (sum, f) =
        export_zip_seekable(repo, root, std::io::BufWriter::with_capacity(1 << 20, tmp))?;
    let mut f = f
        .into_inner()
        .map_err(|e| Error::io("writing the temporary zip file", e.into_error()))?;
    f.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::io("reading the temporary zip file", e))?;
    std::io::copy(&mut f, w).map_err(write_err)?;
    w.flush().map_err(write_err)?;
    Ok(sum)
}

/// A new, already unlinked read-write file in the temporary folder.
/// Errors: [`ErrorKind::Io`] when it cannot be created.
fn anonymous_temp_file() -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r)
            .map_err(|e| Error::new(ErrorKind::Io, format!("random source: {e}")))?;
        let p = dir.join(format!(".snap-export-{}.zip", hex::encode(r)));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                std::fs::remove_file(&p)
                    .map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(Error::io(
                    format!("creating a temporary file in {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Err(Error::io(
        format!("creating a temporary file in {}", dir.display()),
        last.unwrap_or_else(|| std::io::Error::other("name clash")),
    ))
}

/// Writes the snapshot tree `root` to the seekable `w` as a zip archive
/// (deflate for files; sizes and CRCs in the local headers, no data
/// descriptors; zip64 for files of 4 GiB or more); returns the totals and
/// `w` after the central directory.
///
/// Errors: as [`export`].
pub fn export_zip_seekable<W: Write + std::io::Seek>(
    repo: &Repository,
    root: &BlobId,
    w: W,
) -> Result<(ExportSummary, W)> {
    let zerr = |e: zip::result::ZipError| {
        Error::new(ErrorKind::Io, format!("writing the zip archive: {e}"))
    };
    let mut sum = ExportSummary::default();
    let mut z = zip::ZipWriter::new(w);
    walk_with_content(repo, root, &mut |path, e, content| {
        let name = String::from_utf8_lossy(path).into_owned();
        let opts = zip::write::SimpleFileOptions::default()
            .last_modified_time(zip_time(e.mtime_ns))
            .unix_permissions(e.mode & 0o7777);
        match e.kind {
            EntryKind::Dir => {
                z.add_directory(format!("{name}/"), opts).map_err(zerr)?;
                sum.dirs += 1;
            }
            EntryKind::File => {
                let opts = opts
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(e.size >= u32::MAX as u64);
                z.start_file(name, opts).map_err(zerr)?;
                let n = std::io::copy(content, &mut z).map_err(write_err)?;
                sum.files += 1;
                sum.bytes += n;
            }
            EntryKind::Symlink => {
                z.add_symlink(name, String::from_utf8_lossy(&e.link_target), opts)
                    .map_err(zerr)?;
                sum.others += 1;
            }
            _ => sum.skipped += 1,
        }
        Ok(())
    })?;
    let mut w = z.finish().map_err(zerr)?;
    w.flush().map_err(write_err)?;
    Ok((sum, w))
}

/// Reads a tar stream into a new snapshot whose tree mirrors the archive
/// (see [`backup_entries`]): regular files, folders, symlinks, hard links,
/// FIFOs and device nodes with their mode, uid/gid and mtime (PAX
/// fractional mtimes included). Global and other metadata headers are
/// skipped. `name` labels the archive in error messages.
///
/// Errors: [`ErrorKind::Usage`] for a malformed archive or an entry with
/// `..` in its path (nothing is recorded then), repository errors.
/// `session` must be opened for [`crate::session::Operation::ImportTar`]
/// (or `Backup`).
pub fn import_tar(
    session: &Session,
    r: &mut dyn Read,
    name: &str,
    opts: BackupOptions,
) -> Result<BackupOutcome> {
    let bad = |e: std::io::Error| Error::usage(format!("reading the tar archive {name}: {e}"));
    backup_entries(session, opts, |sink| {
        let mut ar = tar::Archive::new(r);
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path_bytes().into_owned();
            let h = entry.header();
            let kind = match h.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => EntryKind::File,
                tar::EntryType::Fifo => EntryKind::Fifo,
                tar::EntryType::Char => EntryKind::CharDevice,
                tar::EntryType::Block => EntryKind::BlockDevice,
                _ => continue,
            };
            let mut te = TreeEntry::new(Vec::new(), kind);
            te.mode = h.mode().map_err(bad)? & 0o7777;
            te.uid = h.uid().map_err(bad)? as u32;
            te.gid = h.gid().map_err(bad)? as u32;
            let mut mtime_ns = (h.mtime().map_err(bad)? as i64).saturating_mul(1_000_000_000);
            if let Ok(Some(pax)) = entry.pax_extensions() {
                for ext in pax.flatten() {
                    if ext.key_bytes() == b"mtime" {
                        if let Some(v) = ext
                            .value()
                            .ok()
                            .and_then(|v| v.parse::<f64>().ok())
                            .filter(|v| v.is_finite())
                        {
                            mtime_ns = (v * 1e9) as i64;
                        }
                    }
                }
            }
            te.mtime_ns = mtime_ns;
            te.ctime_ns = mtime_ns;
            te.nlink = 1;
            let h = entry.header();
            if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                te.rdev = libc::makedev(major, minor) as u64;
            }
            match h.entry_type() {
                tar::EntryType::Symlink => {
                    te.link_target = entry
                        .link_name_bytes()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    sink.add(&path, te, None)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    sink.add_hardlink(&path, te, &target)?;
                }
                _ if kind == EntryKind::File => {
                    sink.add(&path, te, Some(&mut entry))?;
                }
                _ => sink.add(&path, te, None)?,
            }
        }
        Ok(())
    })
}
