//! `snap dump`: one file's content to standard output.

use super::{open, Global};
use anyhow::Result;
use clap::Args;
use snap::format::tree::EntryKind;
use snap::Error;
use std::io::Write;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Path of a file in the snapshot (e.g. /home/me/notes.txt or @streams/NAME).
    path: String,
}

pub fn run(g: &Global, a: &DumpArgs) -> Result<u8> {
    let repo = open(g)?;
    let (_, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let e = snap::read::restore::find_entry(&repo, &snap.tree, &a.path)?;
    match e.kind {
        EntryKind::File => {}
        EntryKind::Dir => {
            return Err(Error::usage(format!(
                "{} is a folder, not a file; list it with `snap ls {} {}`, restore it with \
                 `snap restore {} --target DIR --include '{}/**'`, or write it as an archive \
                 with `snap export`",
                a.path,
                a.snapshot,
                a.path,
                a.snapshot,
                a.path.trim_end_matches('/')
            ))
            .into())
        }
        k => {
            let what = match k {
                EntryKind::Symlink => "a symbolic link",
                EntryKind::Fifo => "a FIFO",
                EntryKind::CharDevice => "a character device",
                EntryKind::BlockDevice => "a block device",
                _ => "a socket",
            };
            return Err(Error::usage(format!(
                "{} is {what}, not a file: it has no content to write; `snap ls -l` shows it",
                a.path
            ))
            .into());
        }
    }
    // A reader that goes away (`| head`) ends the command quietly (main.rs).
    let mut w = std::io::BufWriter::with_capacity(1 << 20, super::stdout());
    snap::read::restore::write_content(&repo, &e, &mut w)?;
    w.flush()?;
    Ok(0)
}
