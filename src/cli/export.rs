//! `snap export`: a snapshot as a tar or zip archive.

use super::{human, open, Global};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use snap::ops::archive::{export, export_zip_seekable, ArchiveFormat};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Tar,
    Zip,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Archive format: tar keeps owners, modes, mtimes, symlinks, FIFOs
    /// and devices; zip keeps modes, mtimes (2 s) and symlinks.
    #[arg(long, value_enum, default_value = "tar")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

pub fn run(g: &Global, a: &ExportArgs) -> Result<u8> {
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let format = match a.format {
        Format::Tar => ArchiveFormat::Tar,
        Format::Zip => ArchiveFormat::Zip,
    };
    let started = std::time::Instant::now();
    let sum = match &a.output {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let s = match format {
                // A file is seekable: the zip is written in place.
                ArchiveFormat::Zip => {
                    let (s, bw) = export_zip_seekable(&repo, &snap.tree, w)?;
                    w = bw;
                    s
                }
                ArchiveFormat::Tar => export(&repo, &snap.tree, format, &mut w)?,
            };
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
            s
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(snap::Error::usage(
                    "standard output is a terminal: redirect it (> out.tar) or use -o FILE",
                )
                .into());
            }
            let mut w = std::io::BufWriter::with_capacity(1 << 20, super::stdout());
            let s = export(&repo, &snap.tree, format, &mut w)?;
            w.flush()?;
            s
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        eprintln!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": id.to_hex(), "files": sum.files, "dirs": sum.dirs, "others": sum.others, "skipped": sum.skipped, "bytes": sum.bytes, "seconds": secs})
        );
    } else {
        eprintln!(
            "exported snapshot {}: {} files, {} dirs, {} other entries, {} in {:.2} s",
            id.short(),
            sum.files,
            sum.dirs,
            sum.others,
            human(sum.bytes),
            secs
        );
        if sum.skipped > 0 {
            eprintln!(
                "warning: {} entries (FIFOs, devices or sockets) cannot be stored in this format and were left out",
                sum.skipped
            );
        }
    }
    Ok(0)
}
