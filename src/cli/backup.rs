//! `snap backup`: paths, stdin and commands into a snapshot.

use super::{human, open, progress, Global, EXIT_PARTIAL};
use anyhow::Result;
use clap::Args;
use snap::backup::{BackupOptions, Progress, StreamInput, StreamSource};
use snap::lease::{LeaseGuard, Operation};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
    /// Read a stream from standard input.
    #[arg(long)]
    stdin: bool,
    /// Run this shell command and store its standard output as a stream
    /// (`NAME=CMD` names the stream); no snapshot is recorded if it fails.
    #[arg(long = "command", value_name = "[NAME=]CMD")]
    commands: Vec<String>,
    /// Name of the stream from --stdin or a single --command [default: stdin, or the command's program name].
    #[arg(long)]
    stdin_name: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record [default: this machine's].
    #[arg(long)]
    host: Option<String>,
    /// Exclude paths matching a glob (repeatable): without `/` it matches a base name.
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Parent snapshot to compare against [default: latest with the same host and paths].
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, ignoring the parent snapshot.
    #[arg(long)]
    force: bool,
    /// A description stored with the snapshot.
    #[arg(long)]
    description: Option<String>,
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<u8> {
    let repo = open(g)?;
    // The lease is written before the catalog loads the prune marks (second
    // sync), so a concurrent prune either sees this lease as a blocker or
    // this backup sees its mark (format-spec "Leases and two-phase prune").
    let lease = Arc::new(LeaseGuard::acquire(
        repo.store().clone(),
        repo.key(),
        Operation::Backup,
        "",
    )?);
    repo.sync_catalog()?;
    let mut streams = Vec::new();
    if a.stdin {
        streams.push(StreamSource {
            name: a.stdin_name.clone().unwrap_or_else(|| "stdin".into()),
            kind: "stdin".into(),
            input: StreamInput::Stdin,
            details: Default::default(),
        });
    }
    for c in &a.commands {
        let (name, cmd) = match c.split_once('=') {
            Some((n, rest))
                if !n.is_empty()
                    && n.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) =>
            {
                (n.to_string(), rest.to_string())
            }
            _ => {
                let default = if a.commands.len() == 1 && !a.stdin {
                    a.stdin_name.clone()
                } else {
                    None
                };
                let prog = c.split_whitespace().next().unwrap_or("command");
                let prog = prog.rsplit('/').next().unwrap_or(prog).to_string();
                (default.unwrap_or(prog), c.clone())
            }
        };
        streams.push(StreamSource {
            name,
            kind: "command".into(),
            input: StreamInput::Command(cmd),
            details: Default::default(),
        });
    }
    let parent = match &a.parent {
        Some(p) => Some(repo.resolve_snapshot(p)?.0),
        None => None,
    };
    let progress = Arc::new(Progress::default());
    let bar = progress::start(&progress, "backup", g.json || g.no_progress);
    let out = snap::backup::backup(
        &repo,
        BackupOptions {
            paths: a.paths.clone(),
            streams,
            tags: a.tags.clone(),
            host: a.host.clone(),
            excludes: a.excludes.clone(),
            parent,
            force: a.force,
            description: a.description.clone(),
            progress: progress.clone(),
            before_commit: Some({
                let l = lease.clone();
                Box::new(move || l.check_valid())
            }),
        },
    );
    bar.finish();
    drop(lease);
    let out = out?;
    for w in &out.warnings {
        eprintln!("warning: skipped {w}");
    }
    let s = &out.snapshot.summary;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": out.id.to_hex(), "summary": s, "warnings": out.warnings, "requests": repo.store().stats().to_json()})
        );
    } else {
        eprintln!(
            "files: {} new, {} changed, {} unchanged; dirs: {}",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs
        );
        eprintln!(
            "read {}, added {} to the repository ({} before compression, {} blobs) in {:.2} s",
            human(s.bytes_read),
            human(s.bytes_added_stored),
            human(s.bytes_added_raw),
            s.blobs_added,
            s.seconds
        );
        println!("snapshot {} saved", out.id.short());
    }
    Ok(if out.warnings.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    })
}
