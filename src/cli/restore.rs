//! `snap restore`: a snapshot into a directory or a stream to stdout.

use super::{human, open, progress, Global};
use anyhow::{Context, Result};
use clap::Args;
use snap::backup::Progress;
use snap::Error;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long, conflicts_with = "stdout")]
    target: Option<PathBuf>,
    /// Write the snapshot's stream to standard output.
    #[arg(long)]
    stdout: bool,
    /// With --stdout: which stream, when the snapshot has several.
    #[arg(long)]
    stream: Option<String>,
    /// Only restore paths matching this glob (repeatable).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Do not restore paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
}

pub fn run(g: &Global, a: &RestoreArgs) -> Result<u8> {
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(&a.snapshot)?;
    if a.stdout {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let n = snap::restore::restore_stream(
            &repo,
            &snap.tree,
            &snap.streams,
            a.stream.as_deref(),
            &mut lock,
        )
        .with_context(|| format!("restoring snapshot {}", id.short()))?;
        if !g.json {
            eprintln!("restored {} from snapshot {}", human(n), id.short());
        }
        return Ok(0);
    }
    let target = a
        .target
        .clone()
        .ok_or_else(|| Error::usage("give --target DIR (or --stdout for a stream)"))?;
    let progress = Arc::new(Progress::default());
    let bar = progress::start(&progress, "restore", g.json || g.no_progress);
    let started = std::time::Instant::now();
    let r = snap::restore::restore(
        &repo,
        &snap.tree,
        &target,
        &snap::restore::RestoreOptions {
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            progress: progress.clone(),
        },
    );
    bar.finish();
    let sum = r.with_context(|| format!("restoring snapshot {}", id.short()))?;
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        println!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": id.to_hex(), "files": sum.files, "dirs": sum.dirs, "bytes": sum.bytes, "seconds": secs})
        );
    } else {
        eprintln!(
            "restored snapshot {} to {}: {} files, {} dirs, {} in {:.2} s",
            id.short(),
            target.display(),
            sum.files,
            sum.dirs,
            human(sum.bytes),
            secs
        );
    }
    Ok(0)
}
