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
    let e = snap::restore::find_entry(&repo, &snap.tree, &a.path)?;
    if e.kind != EntryKind::File {
        return Err(Error::usage(format!(
            "{} is a {:?}, not a file; use `snap ls` or `snap restore`",
            a.path, e.kind
        ))
        .into());
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    match snap::restore::write_content(&repo, &e, &mut w) {
        // The reader went away (`| head`): not an error.
        Err(e) if e.is_broken_pipe() => return Ok(0),
        r => r?,
    };
    match w.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        r => r.map(|_| 0).map_err(Into::into),
    }
}
