//! `snap mount MOUNTPOINT`: the repository as a read-only FUSE file system,
//! served in the foreground until Ctrl-C, SIGTERM or `umount MOUNTPOINT`.
//!
//! The inode table and the reads are [`snap::read::mount::MountFs`]; this file
//! only answers the kernel's requests with it (fuser, mounted without libfuse:
//! the mount(2) call as root, else the `fusermount3` helper).

use super::{open, Global};
use anyhow::Result;
use clap::Args;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};
use snap::format::tree::EntryKind;
use snap::read::mount::{Attr, FsError, MountFs, MountOptions};
use snap::Error;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Empty folder to mount on.
    mountpoint: PathBuf,
    /// Memory for decoded file content kept between reads, MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    cache_size: u64,
    /// Let other users read the mount (needs `user_allow_other` in /etc/fuse.conf unless root).
    #[arg(long)]
    allow_other: bool,
}

/// The contents never change while mounted: let the kernel keep entries and
/// attributes for a while.
const TTL: Duration = Duration::from_secs(60);

pub fn run(g: &Global, a: &MountArgs) -> Result<u8> {
    if a.cache_size == 0 {
        return Err(Error::usage("--cache-size must be at least 1 (MiB)").into());
    }
    match std::fs::metadata(&a.mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::usage(format!(
                "mount point {} is not a folder",
                a.mountpoint.display()
            ))
            .into())
        }
        Err(e) => {
            return Err(Error::io(format!("mount point {}", a.mountpoint.display()), e).into())
        }
    }
    let repo = open(g)?;
    let fs = MountFs::new(
        repo,
        MountOptions {
            cache_bytes: a.cache_size.saturating_mul(1 << 20),
        },
    )?;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("snap".into()),
        MountOption::Subtype("snap".into()),
    ];
    if a.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(4);
    // Ctrl-C / SIGTERM set a flag while this guard lives; the loop below
    // sees it and unmounts.
    let _graceful = snap::interrupt::graceful();
    let _ = super::STOPPING.set("unmounting");
    let session = fuser::spawn_mount(Fuse(fs), &a.mountpoint, &cfg).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::ENOENT)
            || e.kind() == std::io::ErrorKind::NotFound
        {
            " (is FUSE available? /dev/fuse and, when not root, fusermount3 from the fuse3 package)"
        } else {
            ""
        };
        Error::io(format!("mounting on {}{hint}", a.mountpoint.display()), e)
    })?;
    eprintln!(
        "snap: mounted on {}; Ctrl-C or `umount {}` to unmount",
        a.mountpoint.display(),
        a.mountpoint.display()
    );
    loop {
        if session.guard.is_finished() {
            // Unmounted from outside (umount / fusermount3 -u).
            session
                .join()
                .map_err(|e| Error::io("serving the mount", e))?;
            eprintln!("snap: unmounted {}", a.mountpoint.display());
            return Ok(0);
        }
        if snap::interrupt::interrupted() {
            session
                .umount_and_join()
                .map_err(|e| Error::io(format!("unmounting {}", a.mountpoint.display()), e))?;
            eprintln!("snap: unmounted {}", a.mountpoint.display());
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Fuse(MountFs);

impl Fuse {
    /// Re-reads the snapshot list if `ino` is a snapshot folder and it is
    /// due ([`MountFs::refresh_if_due`]); whether it was. A failure is a
    /// warning: the old list stays.
    fn refresh(&self, ino: u64) -> bool {
        match self.0.refresh_if_due(ino) {
            Ok(done) => done,
            Err(e) => {
                self.0
                    .repository()
                    .warn(format!("reading the snapshot list: {e:#}"));
                false
            }
        }
    }
}

fn errno(e: &FsError, fs: &MountFs, what: impl FnOnce() -> String) -> Errno {
    if let FsError::Repo(err) = e {
        fs.repository().warn(format!("{}: {err:#}", what()));
    }
    Errno::from_i32(e.errno())
}

fn time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::Socket => FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.mtime_ns),
        mtime: time(a.mtime_ns),
        ctime: time(a.ctime_ns),
        crtime: time(a.mtime_ns),
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        flags: 0,
        blksize: 128 << 10,
    }
}

impl Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut r = self.0.lookup(parent.0, name.as_bytes());
        // A name missing from a snapshot folder may be a snapshot made since.
        if matches!(r, Err(FsError::NotFound)) && self.refresh(parent.0) {
            r = self.0.lookup(parent.0, name.as_bytes());
        }
        match r {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), fuser::Generation(0)),
            Err(e) => reply.error(errno(&e, &self.0, || {
                format!("looking up {}", name.to_string_lossy())
            })),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e, &self.0, String::new)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e, &self.0, String::new)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        match self.0.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e, &self.0, || format!("opening inode {}", ino.0))),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(fh.0, offset, size) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(&e, &self.0, || {
                format!("reading inode {} at byte {offset}", ino.0)
            })),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.attr(ino.0) {
            Ok(a) if a.kind == EntryKind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(&e, &self.0, String::new)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if offset == 0 {
            // A new listing of a snapshot folder: new snapshots show up.
            self.refresh(ino.0);
        }
        let parent = self.0.parent(ino.0).unwrap_or(ino.0);
        // Entry i of the listing has offset i + 1: ".", "..", then children.
        let dots = [(ino.0, b".".as_slice()), (parent, b"..".as_slice())];
        for (i, (c, name)) in dots.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(*c),
                (i + 1) as u64,
                FileType::Directory,
                OsStr::from_bytes(name),
            ) {
                reply.ok();
                return;
            }
        }
        let skip = (offset as usize).saturating_sub(2);
        let mut next = skip as u64 + 3;
        let r = self.0.for_children(ino.0, skip, |name, a| {
            let full = reply.add(
                INodeNo(a.ino),
                next,
                file_type(a.kind),
                OsStr::from_bytes(name),
            );
            next += 1;
            full
        });
        if let Err(e) = r {
            reply.error(errno(&e, &self.0, || format!("listing inode {}", ino.0)));
            return;
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Inodes in use: the inode table's size (it shrinks as the kernel forgets).
        let files = self.0.inode_count() as u64;
        reply.statfs(0, 0, 0, files, 0, 128 << 10, 255, 0);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let x = match self.0.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e, &self.0, String::new)),
        };
        match x.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some((_, v)) if size == 0 => reply.size(v.len() as u32),
            Some((_, v)) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Some((_, v)) => reply.data(v),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let x = match self.0.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e, &self.0, String::new)),
        };
        let mut list = Vec::new();
        for (k, _) in &x {
            list.extend_from_slice(k);
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32);
        } else if list.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&list);
        }
    }
}
