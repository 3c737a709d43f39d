//! `snap import-tar`: a tar archive into a new snapshot.

use super::{human, open_session, progress, Global};
use anyhow::{Context, Result};
use clap::Args;
use snap::ops::backup::BackupOptions;
use snap::session::Operation;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ImportTarArgs {
    /// The tar archive (uncompressed), or `-` for standard input.
    file: PathBuf,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record [default: this machine's].
    #[arg(long)]
    host: Option<String>,
    /// A description stored with the snapshot [default: "imported from FILE"].
    #[arg(long)]
    description: Option<String>,
}

pub fn run(g: &Global, a: &ImportTarArgs) -> Result<u8> {
    // Like a backup, the import writes packs under a lease taken before the
    // catalog sync (format-spec §19), so a concurrent prune cannot delete
    // packs it relies on.
    let repo = open_session(g, Operation::ImportTar)?;
    let bar = progress::start(g, "import", g.json || g.no_progress);
    let opts = BackupOptions {
        tags: a.tags.clone(),
        host: a.host.clone(),
        description: Some(
            a.description
                .clone()
                .unwrap_or_else(|| format!("imported from {}", a.file.display())),
        ),
        ..Default::default()
    };
    let out = if a.file.as_os_str() == "-" {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        snap::ops::archive::import_tar(&repo, &mut lock, "-", opts)
    } else {
        let f = std::fs::File::open(&a.file)
            .with_context(|| format!("opening {}", a.file.display()))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let name = a.file.to_string_lossy().into_owned();
        snap::ops::archive::import_tar(&repo, &mut r, &name, opts)
    };
    bar.finish();
    drop(repo);
    let out = out?;
    let s = &out.snapshot.summary;
    if g.json {
        outln!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": out.id.to_hex(), "summary": s})
        )?;
    } else {
        eprintln!(
            "imported {} files, {} dirs: read {}, added {} to the repository in {:.2} s",
            s.files_new,
            s.dirs,
            human(s.bytes_read),
            human(s.bytes_added_stored),
            s.seconds
        );
        outln!("snapshot {} saved", out.id.short())?;
    }
    Ok(0)
}
