//! The `snap` command line: clap definitions and one function per subcommand.

mod backup;
mod completions;
mod init;
mod jobs;
mod ls;
mod progress;
mod restore;
mod restore_test;
mod run;
mod schedule;
mod snapshots;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use snap::repo::default_cache_dir;
use snap::{Error, ErrorKind, Repository};
use std::io::IsTerminal;
use std::path::PathBuf;

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
pub struct Global {
    /// Repository: a directory path or s3://bucket/prefix [default: ~/.local/share/snap/repo].
    #[arg(short = 'r', long, env = "SNAP_REPO", global = true)]
    pub repo: Option<String>,
    /// Read the password from the first line of this file (else SNAP_PASSWORD, else a prompt on a TTY).
    #[arg(long, env = "SNAP_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Directory for the catalog cache [default: $XDG_CACHE_HOME/snap].
    #[arg(long, env = "SNAP_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Profile file for run, schedule and restore-test [default: ./snap.toml,
    /// else $XDG_CONFIG_HOME/snap/snap.toml, else /etc/snap/snap.toml].
    #[arg(long, env = "SNAP_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository.
    Init(init::InitArgs),
    /// Back up paths, standard input or a command's output into a new snapshot.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots,
    /// Restore a snapshot into a directory, or a stream to stdout.
    Restore(restore::RestoreArgs),
    /// List the entries of a snapshot.
    Ls(ls::LsArgs),
    /// Run a profile: backup, forget/prune, copy, check, with hooks.
    Run(run::RunArgs),
    /// Print or install a systemd timer (or a crontab line) that runs a profile.
    Schedule(schedule::ScheduleArgs),
    /// Restore a profile's latest snapshot into scratch space and check it.
    RestoreTest(restore_test::RestoreTestArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff): `snap man > snap.1`.
    Man,
}

/// Exit status for "backup finished, some sources unreadable".
pub const EXIT_PARTIAL: u8 = 3;

/// Runs the parsed command line; returns the process exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    match &cli.cmd {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots => snapshots::run(g),
        Command::Restore(a) => restore::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Schedule(a) => schedule::run(g, a),
        Command::RestoreTest(a) => restore_test::run(g, a),
        Command::Completions(a) => completions::run(a),
        Command::Man => completions::man(),
    }
}

pub fn repo_location(g: &Global) -> Result<String> {
    Ok(g.repo
        .clone()
        .unwrap_or_else(|| default_repo().to_string_lossy().into_owned()))
}

/// The default repository when neither `--repo` nor `SNAP_REPO` is given:
/// `$XDG_DATA_HOME/snap/repo` (usually `~/.local/share/snap/repo`).
pub fn default_repo() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join("snap")
        .join("repo")
}

pub fn password(g: &Global, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
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

pub fn cache_dir(g: &Global) -> PathBuf {
    g.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

pub fn open(g: &Global) -> Result<Repository> {
    let loc = repo_location(g)?;
    let pw = password(g, false)?;
    Ok(Repository::open(&loc, pw.as_bytes(), &cache_dir(g))?)
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
