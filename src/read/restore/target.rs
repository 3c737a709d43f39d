//! The restore target: a directory that may hold anything, including
//! symlinks planted to lead a restore elsewhere.
//!
//! Every path below the target is opened one component at a time relative
//! to its parent's handle (`openat` with `O_NOFOLLOW`, through `rustix`), so
//! no symlink inside the target is ever followed. Where the snapshot has a
//! folder and the target has something else (a symlink, a file), that thing
//! is removed and a folder created in its place; an existing file is
//! replaced by a new file, or, when `--overwrite if-changed` updates it in
//! place, opened for writing only after checking it is the regular file
//! compared (same device and inode) with no other hard link. Metadata is applied to
//! the open handle (`fchown`, `fchmod`, `fsetxattr`, `futimens`); for
//! symlinks and device nodes with the `*at` calls and
//! `AT_SYMLINK_NOFOLLOW`. The target directory itself, given by the user,
//! is opened as an ordinary path (symlinks in it are followed).
//!
//! A route is the list of names from the target to an entry (what a tree
//! walk or a restore planner produces); names were checked by the tree
//! decoder (format-spec §14.1: no `/`, NUL, `.` or `..`) and are checked again
//! here.

use crate::format::tree::{EntryKind, TreeEntry};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open restore target directory.
pub struct Target {
    root: OwnedFd,
    path: PathBuf,
}

/// Flags for opening a folder without following a symlink in its place.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A name as a single path component; `InvalidInput` for `""`, `.`, `..`
/// or a name holding `/` or NUL.
fn component(name: &[u8]) -> io::Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid entry name {:?}", String::from_utf8_lossy(name)),
        ));
    }
    Ok(OsStr::from_bytes(name))
}

fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits & 0o7777)
}

impl Target {
    /// Opens (creating it and its parents if missing) the target directory
    /// `path`. Errors: the `io::Error` of creating or opening it.
    pub fn open(path: &Path) -> io::Result<Target> {
        std::fs::create_dir_all(path)?;
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Target {
            root,
            path: path.to_path_buf(),
        })
    }

    /// The target path joined with `route`, for messages.
    pub fn display(&self, route: &[Vec<u8>]) -> PathBuf {
        let mut p = self.path.clone();
        for c in route {
            p.push(OsStr::from_bytes(c));
        }
        p
    }

    /// Opens the folder at `route` (the target itself for an empty route)
    /// without following symlinks. With `create`, missing folders are
    /// created (mode 0700 until their metadata is applied) and a symlink or
    /// other non-folder in the way is removed first; without it, anything
    /// but an existing folder is an error (`NotFound`, or `ENOTDIR`/`ELOOP`).
    pub fn dir(&self, route: &[Vec<u8>], create: bool) -> io::Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for name in route {
            let parent = cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
            cur = Some(child_dir(parent, name, create)?);
        }
        match cur {
            Some(f) => Ok(f),
            None => Ok(rustix::fs::openat(
                &self.root,
                ".",
                dir_flags(),
                Mode::empty(),
            )?),
        }
    }
}

/// Opens folder `name` (one component) in the folder `parent` without
/// following a symlink; with `create` as [`Target::dir`] does for each
/// component of a route (missing: created; a non-folder in the way:
/// replaced). Errors: `InvalidInput` for a bad name, else the `openat`,
/// `unlinkat` or `mkdirat` error.
pub fn child_dir(
    parent: std::os::fd::BorrowedFd<'_>,
    name: &[u8],
    create: bool,
) -> io::Result<OwnedFd> {
    let name = component(name)?;
    if create {
        open_or_make_dir(parent, name)
    } else {
        Ok(rustix::fs::openat(
            parent,
            name,
            dir_flags(),
            Mode::empty(),
        )?)
    }
}

/// Opens folder `name` in `parent`, creating it, or replacing a non-folder
/// (symlink, file, FIFO…) by a new folder.
fn open_or_make_dir(parent: std::os::fd::BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    for _ in 0..3 {
        match rustix::fs::openat(parent, name, dir_flags(), Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            // A symlink (ELOOP with O_NOFOLLOW) or another non-folder.
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "the folder keeps changing while it is restored",
    ))
}

/// Removes whatever non-folder is at `name` in `dir` (nothing if absent).
/// A folder in the way is an error (`EISDIR`): it is not removed.
fn clear(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir_at(dir, name) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a folder is in the way (it is not removed)",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whether a folder (not a symlink to one) is at `name` in `dir`.
pub fn folder_at(dir: &OwnedFd, name: &[u8]) -> bool {
    component(name).is_ok_and(|n| is_dir_at(dir, n))
}

fn is_dir_at(dir: &OwnedFd, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
        .unwrap_or(false)
}

/// Creates a new regular file `name` in `dir` for writing (mode 0600 until
/// its metadata is applied). Whatever non-folder was there is removed first:
/// an existing file is never opened, so a symlink or a hard link in its
/// place cannot redirect the write.
pub fn create_file(dir: &OwnedFd, name: &[u8]) -> io::Result<std::fs::File> {
    let name = component(name)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..3 {
        match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok(std::fs::File::from(fd)),
            Err(Errno::EXIST) => clear(dir, name)?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "the file keeps reappearing while it is restored",
    ))
}

/// Opens the regular file `name` in `dir` again for writing (no create, no
/// truncate, symlinks not followed, non-blocking so a FIFO swapped in
/// cannot stall it), for a restore that closed it between writes or that
/// updates an existing file in place; `(dev, ino)` are those of the file it
/// created or compared, and anything else found there, or a file that
/// gained another hard link (a write would change the other name too), is
/// an error (the file was replaced while it was restored). With `read`,
/// it is opened for reading too (an in-place update saves what it
/// overwrites).
pub fn reopen_file(
    dir: &OwnedFd,
    name: &[u8],
    dev_ino: (u64, u64),
    read: bool,
) -> io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    let name = component(name)?;
    let rw = if read { OFlags::RDWR } else { OFlags::WRONLY };
    let flags = rw | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let f = std::fs::File::from(rustix::fs::openat(dir, name, flags, Mode::empty())?);
    let md = f.metadata()?;
    if (md.dev(), md.ino()) != dev_ino || !md.is_file() || md.nlink() != 1 {
        return Err(io::Error::other(
            "the file was replaced by something else while it was restored",
        ));
    }
    Ok(f)
}

/// Creates symlink `name` → `target` in `dir`, replacing a non-folder.
pub fn create_symlink(dir: &OwnedFd, name: &[u8], target: &[u8]) -> io::Result<()> {
    let name = component(name)?;
    clear(dir, name)?;
    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name)?;
    Ok(())
}

/// Creates a FIFO or device node `name` in `dir` (replacing a non-folder)
/// with permission bits `mode` and device number `rdev`.
pub fn create_special(
    dir: &OwnedFd,
    name: &[u8],
    kind: EntryKind,
    bits: u32,
    rdev: u64,
) -> io::Result<()> {
    let name = component(name)?;
    clear(dir, name)?;
    let ft = match kind {
        EntryKind::Fifo => rustix::fs::FileType::Fifo,
        EntryKind::CharDevice => rustix::fs::FileType::CharacterDevice,
        EntryKind::BlockDevice => rustix::fs::FileType::BlockDevice,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a special file",
            ))
        }
    };
    rustix::fs::mknodat(dir, name, ft, mode(bits), rdev)?;
    Ok(())
}

/// Hard-links `from_name` in `from_dir` as `name` in `dir` (replacing a
/// non-folder); symlinks are not followed (`linkat` without
/// `AT_SYMLINK_FOLLOW`).
pub fn link(from_dir: &OwnedFd, from_name: &[u8], dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let from = component(from_name)?;
    let name = component(name)?;
    clear(dir, name)?;
    rustix::fs::linkat(from_dir, from, dir, name, AtFlags::empty())?;
    Ok(())
}

fn timestamps(e: &TreeEntry) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: e.mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: e.mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Owner ids for `chown`; `None` for the "no change" value `u32::MAX`.
fn owner(e: &TreeEntry) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        (e.uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(e.uid)),
        (e.gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(e.gid)),
    )
}

/// Applies ownership (when permitted; failures are ignored, as for an
/// unprivileged restore), mode, extended attributes (failures are returned
/// as warnings) and mtime/atime to the open file or folder `fd`.
/// Errors: `fchmod` or `futimens` failing.
pub fn apply_metadata_fd(
    fd: impl AsFd,
    e: &TreeEntry,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    let fd = fd.as_fd();
    let (u, g) = owner(e);
    let _ = rustix::fs::fchown(fd, u, g);
    rustix::fs::fchmod(fd, mode(e.mode))?;
    for (k, v) in &e.xattrs {
        if let Err(err) =
            rustix::fs::fsetxattr(fd, OsStr::from_bytes(k), v, rustix::fs::XattrFlags::empty())
        {
            warnings.push(format!(
                "cannot set extended attribute {}: {err}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    rustix::fs::futimens(fd, &timestamps(e))?;
    Ok(())
}

/// Applies ownership (when permitted) and mtime to the symlink `name` in
/// `dir` without following it; for FIFOs and device nodes also the mode
/// (checked not to be a symlink first, since `fchmodat` cannot refuse one).
pub fn apply_metadata_at(dir: &OwnedFd, name: &[u8], e: &TreeEntry) -> io::Result<()> {
    let name = component(name)?;
    let (u, g) = owner(e);
    let _ = rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW);
    if e.kind != EntryKind::Symlink {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Symlink {
            rustix::fs::chmodat(dir, name, mode(e.mode), AtFlags::empty())?;
        }
    }
    rustix::fs::utimensat(dir, name, &timestamps(e), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// What is at `name` in `dir`, not following a symlink: `None` if nothing.
pub fn stat_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, component(name)?, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Where the symlink `name` in `dir` points (its bytes); `None` when
/// `name` is not a symlink. Errors: reading it.
pub fn read_link_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    match rustix::fs::readlinkat(dir, component(name)?, Vec::new()) {
        Ok(l) => Ok(Some(l.into_bytes())),
        Err(Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `st` is a regular file.
pub fn is_file(st: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
}

/// Opens the existing regular file `name` in `dir` for reading, never
/// following a symlink (`ELOOP`).
pub fn open_existing(dir: &OwnedFd, name: &[u8]) -> io::Result<std::fs::File> {
    let fd = rustix::fs::openat(
        dir,
        component(name)?,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// The names in folder `dir`, without `.` and `..`.
pub fn names(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    Ok(out)
}

/// Folders below a removed folder that [`remove_at`] descends into at most.
const MAX_REMOVE_DEPTH: usize = 256;

/// Removes `name` in `dir`: a folder with everything in it, anything else
/// (a symlink included: the link, never what it points to) with one
/// `unlinkat`. Folders are opened with `O_NOFOLLOW`, so nothing outside
/// `dir` is touched.
pub fn remove_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    remove_depth(dir, name, 0)
}

fn remove_depth(dir: &OwnedFd, name: &[u8], depth: usize) -> io::Result<()> {
    let n = component(name)?;
    match rustix::fs::unlinkat(dir, n, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir_at(dir, n) => {}
        Err(e) => return Err(e.into()),
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!(
            "folders nested deeper than {MAX_REMOVE_DEPTH} levels; not removed"
        )));
    }
    let sub = rustix::fs::openat(dir, n, dir_flags(), Mode::empty())?;
    for child in names(&sub)? {
        remove_depth(&sub, &child, depth + 1)?;
    }
    drop(sub);
    rustix::fs::unlinkat(dir, n, AtFlags::REMOVEDIR)?;
    Ok(())
}
