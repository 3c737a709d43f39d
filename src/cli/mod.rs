//! The `snap` command line: clap definitions and one function per subcommand.

mod progress;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use snap::backup::{BackupOptions, Progress, StreamInput, StreamSource};
use snap::format::config::{ChunkSizes, Chunking};
use snap::repo::{default_cache_dir, InitOptions};
use snap::{Error, ErrorKind, Repository};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

const EXIT_CODES: &str =
    "Exit codes: 0 ok; 1 error; 2 usage; 3 backup finished but some sources were unreadable; \
10 repository does not exist; 11 repository locked; 12 wrong password; 130 interrupted.";

/// snap: deduplicating, encrypted snapshots of file trees and database dumps.
#[derive(Parser, Debug)]
#[command(name = "snap", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Repository: a directory path or s3://bucket/prefix.
    #[arg(short = 'r', long, env = "SNAP_REPO", global = true)]
    repo: Option<String>,
    /// Read the password from the first line of this file (else SNAP_PASSWORD, else a prompt on a TTY).
    #[arg(long, env = "SNAP_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Directory for the catalog cache [default: $XDG_CACHE_HOME/snap].
    #[arg(long, env = "SNAP_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Never draw a progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up paths, standard input or a command's output into a new snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots,
    /// Restore a snapshot into a directory, or a stream to stdout.
    Restore(RestoreArgs),
    /// List the entries of a snapshot.
    Ls(LsArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// File chunk sizes in bytes as MIN,AVG,MAX (AVG a power of two) [default: 65536,262144,2097152].
    #[arg(long, value_parser = parse_sizes)]
    chunk_files: Option<ChunkSizes>,
    /// Stream chunk sizes in bytes as MIN,AVG,MAX [default: 4096,16384,131072].
    #[arg(long, value_parser = parse_sizes)]
    chunk_streams: Option<ChunkSizes>,
    /// Target pack size in MiB (1..=1024).
    #[arg(long, default_value_t = 16)]
    pack_size_mib: u32,
    /// zstd compression level for blobs (1..=19).
    #[arg(long, default_value_t = 3)]
    compression: i32,
}

fn parse_sizes(s: &str) -> std::result::Result<ChunkSizes, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("{x:?}: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    let [min, avg, max] = v[..] else {
        return Err("expected MIN,AVG,MAX".into());
    };
    let c = ChunkSizes { min, avg, max };
    c.validate()?;
    Ok(c)
}

#[derive(Args, Debug)]
struct BackupArgs {
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

#[derive(Args, Debug)]
struct RestoreArgs {
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

#[derive(Args, Debug)]
struct LsArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Folder inside the snapshot to list [default: all].
    path: Option<String>,
}

/// Exit status for "backup finished, some sources unreadable".
pub const EXIT_PARTIAL: u8 = 3;

/// Runs the parsed command line; returns the process exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match &cli.cmd {
        Command::Init(a) => init(g, a),
        Command::Backup(a) => backup(g, a),
        Command::Snapshots => snapshots(g),
        Command::Restore(a) => restore(g, a),
        Command::Ls(a) => ls(g, a),
    }
}

fn repo_location(g: &Global) -> Result<String> {
    g.repo
        .clone()
        .ok_or_else(|| Error::usage("no repository given: use --repo or set SNAP_REPO").into())
}

fn password(g: &Global, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    if let Some(f) = &g.password_file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("reading password file {}", f.display()))?;
        let line = s.lines().next().unwrap_or("").to_string();
        return Ok(zeroize::Zeroizing::new(line));
    }
    if let Ok(p) = std::env::var("SNAP_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let p = zeroize::Zeroizing::new(rpassword::prompt_password("repository password: ")?);
        if confirm {
            let q = zeroize::Zeroizing::new(rpassword::prompt_password("repeat password: ")?);
            if *p != *q {
                return Err(Error::usage("passwords do not match").into());
            }
        }
        return Ok(p);
    }
    Err(Error::usage(
        "no password given: set SNAP_PASSWORD, use --password-file, or run on a terminal",
    )
    .into())
}

fn cache_dir(g: &Global) -> PathBuf {
    g.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

fn open(g: &Global) -> Result<Repository> {
    let loc = repo_location(g)?;
    let pw = password(g, false)?;
    Ok(Repository::open(&loc, pw.as_bytes(), &cache_dir(g))?)
}

fn init(g: &Global, a: &InitArgs) -> Result<u8> {
    let loc = repo_location(g)?;
    let pw = password(g, true)?;
    if pw.is_empty() {
        return Err(Error::usage("empty password").into());
    }
    if !(1..=1024).contains(&a.pack_size_mib) {
        return Err(Error::usage("--pack-size-mib must be 1..=1024").into());
    }
    let mut opts = InitOptions::default();
    opts.chunking = Chunking {
        files: a.chunk_files.unwrap_or(opts.chunking.files),
        streams: a.chunk_streams.unwrap_or(opts.chunking.streams),
    };
    opts.pack_size = a.pack_size_mib << 20;
    opts.compression_level = a.compression;
    let id = Repository::init(&loc, pw.as_bytes(), &opts)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"type": "init", "repository": loc, "id": id.to_hex()})
        );
    } else {
        eprintln!("created snap repository {} at {loc}", id.short());
        eprintln!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}

fn backup(g: &Global, a: &BackupArgs) -> Result<u8> {
    let repo = open(g)?;
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
        },
    );
    bar.finish();
    let out = out?;
    for w in &out.warnings {
        eprintln!("warning: skipped {w}");
    }
    let s = &out.snapshot.summary;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": out.id.to_hex(), "summary": s, "warnings": out.warnings})
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

/// Bytes in binary units with two decimals ("1.50 MiB").
pub fn human(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

fn snapshots(g: &Global) -> Result<u8> {
    let repo = open(g)?;
    let snaps = repo.snapshots()?;
    if g.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                let mut j = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("id".into(), id.to_hex().into());
                    o.insert("short_id".into(), id.short().into());
                }
                j
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  paths / streams",
        "id", "time", "host", "tags", "size"
    );
    for (id, s) in &snaps {
        let what: Vec<String> = s
            .paths
            .iter()
            .cloned()
            .chain(s.streams.iter().map(|n| format!("@{n}")))
            .collect();
        println!(
            "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  {}",
            id.short(),
            s.time,
            s.hostname,
            s.tags.join(","),
            human(s.summary.total_bytes),
            what.join(" ")
        );
    }
    println!("{} snapshots", snaps.len());
    Ok(0)
}

fn restore(g: &Global, a: &RestoreArgs) -> Result<u8> {
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

fn ls(g: &Global, a: &LsArgs) -> Result<u8> {
    let repo = open(g)?;
    let (_, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let mut start = snap.tree;
    let mut prefix = String::new();
    if let Some(p) = &a.path {
        let e = snap::restore::find_entry(&repo, &snap.tree, p)?;
        start = e
            .subtree
            .ok_or_else(|| Error::new(ErrorKind::Usage, format!("{p} is not a folder")))?;
        prefix = format!("/{}", p.trim_matches('/'));
    }
    let mut stack = vec![(start, prefix)];
    let mut out = Vec::new();
    while let Some((tid, pre)) = stack.pop() {
        let t = repo.read_tree(&tid)?;
        for e in t.entries.iter().rev() {
            let path = format!("{pre}/{}", String::from_utf8_lossy(&e.name));
            if let Some(s) = e.subtree {
                stack.push((s, path.clone()));
            }
            out.push((path, e.kind, e.size, e.mode));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, k, size, mode) in out {
        if g.json {
            println!(
                "{}",
                serde_json::json!({"path": p, "type": k, "size": size, "mode": mode})
            );
        } else {
            println!("{:?}\t{:o}\t{}\t{}", k, mode, size, p);
        }
    }
    Ok(0)
}

/// Maps an error to the documented exit code.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(se) = cause.downcast_ref::<Error>() {
            return match se.kind() {
                ErrorKind::NoRepository => 10,
                ErrorKind::Locked => 11,
                ErrorKind::WrongPassword => 12,
                ErrorKind::Interrupted => 130,
                ErrorKind::Usage => 1,
                _ => 1,
            };
        }
    }
    1
}
