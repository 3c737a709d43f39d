//! The `snap` command line: clap definitions and one function per subcommand.

/// `println!` for results: writes one line to standard output through
/// [`out_line`] and returns its `std::io::Result<()>` (use `outln!(…)?`), so a
/// closed standard output (`snap ls | head`) ends the command instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out_line(format_args!($($arg)*))
    };
}

mod backup;
mod cache;
mod check;
mod completions;
mod copy;
mod diff;
mod dump;
mod export;
mod find;
mod forget;
mod import_tar;
mod init;
mod jobs;
mod key;
mod locks;
mod ls;
mod monitor;
mod mount;
pub mod output;
pub mod profile;
mod progress;
mod prune;
mod repair;
mod restore;
mod restore_test;
mod restore_test_mysql;
mod run;
mod schedule;
mod serve;
mod snapshots;
mod stats;
mod status;
mod tag;

#[cfg(test)]
mod doc_commands;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use snap::repo::default_cache_dir;
use snap::store::StoreOptions;
use snap::{Error, Repository};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

const EXIT_CODES: &str =
    "Exit codes: 0 ok; 1 error; 2 usage; 3 backup finished but some sources were unreadable; \
10 repository does not exist; 11 repository locked; 12 wrong password; 130 interrupted (SIGINT; 143 SIGTERM); \
141 standard output was closed before the command finished (`snap ls latest | head`; \
the command stops quietly, as if killed by SIGPIPE).";

/// Exit status when standard output was closed by its reader (128 + SIGPIPE,
/// what a shell reports for a program killed by SIGPIPE).
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// Set once a write to standard output failed because its reader went away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to standard output has failed with a broken pipe: the
/// command's error is then a consequence, and `main` exits quietly with
/// [`EXIT_STDOUT_CLOSED`].
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn note_stdout<T>(r: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
    r
}

/// Writes `args` and a newline to standard output (see `outln!`).
/// Errors: the write error; a broken pipe also sets [`stdout_closed`].
pub fn out_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    note_stdout(o.write_fmt(args).and_then(|_| o.write_all(b"\n")))
}

/// Standard output for bulk writes (archives, streams, generated text):
/// a write that fails with a broken pipe sets [`stdout_closed`].
pub struct Stdout(std::io::StdoutLock<'static>);

/// Locks standard output for bulk writes; see [`Stdout`].
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        note_stdout(self.0.write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        note_stdout(self.0.write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        note_stdout(self.0.flush())
    }
}

/// snap: deduplicating, encrypted snapshots of file trees and database dumps.
#[derive(Parser, Debug)]
#[command(name = "snap", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
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
    /// S3 endpoint URL for S3-compatible stores [default: AWS_ENDPOINT_URL, else AWS].
    #[arg(long, env = "SNAP_S3_ENDPOINT", global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Allow a plain-http S3 endpoint that is not a loopback address (data stays encrypted; request signatures and metadata do not).
    #[arg(long, global = true)]
    pub s3_allow_http: bool,
    /// Seconds to keep retrying a failed S3 request (exponential backoff) before giving up.
    #[arg(
        long,
        env = "SNAP_S3_RETRY_TIMEOUT",
        global = true,
        default_value_t = 120,
        value_name = "SECS"
    )]
    pub s3_retry_timeout: u64,
    /// Pack uploads kept in flight at once (1..=64; each holds one pack, ~16 MiB, in memory)
    /// [default: 2 for a local directory, 6 for S3].
    #[arg(long, env = "SNAP_UPLOAD_CONCURRENCY", global = true, value_name = "N")]
    pub upload_concurrency: Option<usize>,
    /// Cap uploads to this many KiB/s (averaged over objects).
    #[arg(
        long,
        env = "SNAP_LIMIT_UPLOAD",
        global = true,
        value_name = "KIB_PER_SEC"
    )]
    pub limit_upload: Option<u64>,
    /// Cap downloads to this many KiB/s.
    #[arg(
        long,
        env = "SNAP_LIMIT_DOWNLOAD",
        global = true,
        value_name = "KIB_PER_SEC"
    )]
    pub limit_download: Option<u64>,
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
    /// List snapshots (--tag, --host, --path, --latest N to filter).
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot into a directory, or a stream to stdout.
    Restore(restore::RestoreArgs),
    /// List the entries of a snapshot.
    Ls(ls::LsArgs),
    /// Copy snapshots from another repository, sending only missing data (re-encrypted).
    Copy(copy::CopyArgs),
    /// Manage passwords (key files) and the recovery code.
    Key(key::KeyArgs),
    /// Find files and folders by name or path glob across snapshots.
    Find(find::FindArgs),
    /// Show what changed between two snapshots.
    Diff(diff::DiffArgs),
    /// Write one file (or stream) of a snapshot to standard output.
    Dump(dump::DumpArgs),
    /// Browse the snapshots as a read-only file system (FUSE), until Ctrl-C.
    Mount(mount::MountArgs),
    /// Sizes, deduplication and compression of snapshots.
    Stats(stats::StatsArgs),
    /// Add, remove or set snapshot tags.
    Tag(tag::TagArgs),
    /// Manage the local catalog cache.
    Cache(cache::CacheArgs),
    /// Remove snapshots by id or by a retention policy.
    Forget(forget::ForgetArgs),
    /// Delete data no snapshot needs (safe while backups run).
    Prune(prune::PruneArgs),
    /// Verify the repository (structure; pack data with --read-data).
    Check(check::CheckArgs),
    /// List the leases of running (or crashed) snap processes.
    Locks,
    /// Remove expired leases (--all: every lease).
    Unlock(locks::UnlockArgs),
    /// Repair the index or snapshots after damage.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Write a snapshot as a tar or zip archive (restorable without snap).
    Export(export::ExportArgs),
    /// Create a snapshot from a tar archive.
    #[command(name = "import-tar")]
    ImportTar(import_tar::ImportTarArgs),
    /// Run a profile: backup, forget/prune, copy, check, with hooks.
    Run(run::RunArgs),
    /// Print or install a systemd timer (or a crontab line) that runs a profile.
    Schedule(schedule::ScheduleArgs),
    /// Restore a profile's latest snapshot into scratch space and check it.
    RestoreTest(restore_test::RestoreTestArgs),
    /// Serve the web console and its JSON API (127.0.0.1:8080 by default).
    Serve(serve::ServeArgs),
    /// Show each profile's last successful backup, copy, check and
    /// restore-test with their age; exit 1 when one is older than max-age.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff): `snap man > snap.1`.
    Man,
}

impl Cli {
    /// Whether `--json` was given (errors are then printed as JSON).
    pub fn json(&self) -> bool {
        self.global.json
    }
}

/// Exit status for "backup finished, some sources unreadable".
pub const EXIT_PARTIAL: u8 = 3;

/// Whether the running command reads old content or deletes, so that a
/// put-only key (format-spec §5.1) is refused right after it opens the
/// repository, with one line, before anything is read.
static NEEDS_FULL_KEY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Commands a put-only key may run: init, backup, import-tar, key (its
/// own key files; `key export` refuses), locks, cache, and the profile
/// commands, whose forget/prune/copy/check steps are refused when they
/// open the repository (format-spec §25.9).
fn allowed_put_only(c: &Command) -> bool {
    matches!(
        c,
        Command::Init(_)
            | Command::Backup(_)
            | Command::ImportTar(_)
            | Command::Key(_)
            | Command::Locks
            | Command::Cache(_)
            | Command::Run(_)
            | Command::Schedule(_)
            | Command::Status(_)
            | Command::Completions(_)
            | Command::Man
    )
}

/// Runs the parsed command line; returns the process exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    let g = &cli.global;
    NEEDS_FULL_KEY.store(
        !allowed_put_only(&cli.cmd),
        std::sync::atomic::Ordering::Relaxed,
    );
    match &cli.cmd {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Cache(a) => cache::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Locks => locks::run(g),
        Command::Unlock(a) => locks::run_unlock(g, a),
        Command::Repair(c) => repair::run(g, c),
        Command::Export(a) => export::run(g, a),
        Command::ImportTar(a) => import_tar::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Schedule(a) => schedule::run(g, a),
        Command::RestoreTest(a) => restore_test::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::Status(a) => status::run(g, a),
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
        // The whole file is secret too: zeroized when dropped.
        let s = zeroize::Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading password file {}", f.display()))?,
        );
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

/// Password of a second (source) repository: the first line of `file`, else
/// `SNAP_FROM_PASSWORD`, else a prompt on a TTY.
pub fn from_password(file: Option<&std::path::Path>) -> Result<zeroize::Zeroizing<String>> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("reading source password file {}", f.display()))?;
        return Ok(zeroize::Zeroizing::new(
            s.lines().next().unwrap_or("").to_string(),
        ));
    }
    if let Ok(p) = std::env::var("SNAP_FROM_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        return Ok(zeroize::Zeroizing::new(rpassword::prompt_password(
            "source repository password: ",
        )?));
    }
    Err(Error::usage(
        "no source password given: set SNAP_FROM_PASSWORD, use --from-password-file, or run on a terminal",
    )
    .into())
}

pub fn cache_dir(g: &Global) -> PathBuf {
    g.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

/// Storage options from the global flags.
pub fn store_options(g: &Global) -> Result<StoreOptions> {
    if g.upload_concurrency.is_some_and(|n| !(1..=64).contains(&n)) {
        return Err(Error::usage("--upload-concurrency must be 1..=64").into());
    }
    let kib = |v: Option<u64>, flag: &str| -> Result<Option<u64>> {
        match v {
            Some(0) => Err(Error::usage(format!("{flag} must be at least 1 KiB/s")).into()),
            Some(k) => Ok(Some(k.saturating_mul(1024))),
            None => Ok(None),
        }
    };
    Ok(StoreOptions {
        s3_endpoint: g.s3_endpoint.clone(),
        s3_allow_http: g.s3_allow_http,
        upload_concurrency: g.upload_concurrency.unwrap_or(0),
        limit_upload: kib(g.limit_upload, "--limit-upload")?,
        limit_download: kib(g.limit_download, "--limit-download")?,
        retry_timeout: std::time::Duration::from_secs(g.s3_retry_timeout),
        ..StoreOptions::default()
    })
}

pub fn open(g: &Global) -> Result<Repository> {
    let repo = open_unsynced(g)?;
    repo.sync_catalog()?;
    Ok(repo)
}

/// Prints the repository's warnings to stderr as they are raised:
/// `snap: warning: …`, or `{"type":"warning","message":…}` with `--json`.
pub fn print_warnings(g: &Global, repo: &Repository) {
    let json = g.json;
    repo.set_warning_sink(Box::new(move |m| {
        if json {
            eprintln!("{}", serde_json::json!({"type": "warning", "message": m}));
        } else {
            eprintln!("snap: warning: {m}");
        }
    }));
}

/// [`open`] without the catalog sync (the caller takes a lease, then syncs).
pub fn open_unsynced(g: &Global) -> Result<Repository> {
    let loc = repo_location(g)?;
    let opts = store_options(g)?;
    let pw = password(g, false)?;
    let mut repo = Repository::open_unsynced(&loc, pw.as_bytes(), &cache_dir(g), &opts)?;
    if NEEDS_FULL_KEY.load(std::sync::atomic::Ordering::Relaxed) {
        repo.require_full_key()?;
    }
    repo.set_events(progress::events(g));
    print_warnings(g, &repo);
    Ok(repo)
}

/// Opens the repository for a write `op`: [`open_unsynced`], then
/// [`snap::Session::start`] takes the operation's lease and syncs the catalog.
pub fn open_session(g: &Global, op: snap::session::Operation) -> Result<snap::Session> {
    Ok(snap::Session::start(open_unsynced(g)?, op)?)
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

/// A modification time in nanoseconds since the Unix epoch as
/// "YYYY-MM-DD HH:MM:SS" UTC.
pub fn mtime_str(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Tells the user on a terminal that a signal stops the running operation
/// gracefully (called by [`snap::interrupt`]'s watcher thread).
pub fn on_stopping(sig: i32) {
    if std::io::stderr().is_terminal() {
        let what = STOPPING
            .get()
            .copied()
            .unwrap_or("indexing what is stored, releasing the lease");
        eprintln!(
            "\nsnap: {}: stopping ({what}); signal again to quit at once",
            snap::interrupt::signal_name(sig)
        );
    }
}

/// What [`on_stopping`] says the command does before it ends, when not the
/// default (a backup's "indexing what is stored, releasing the lease").
pub static STOPPING: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Maps an error to the documented exit code: the kind of the outermost
/// [`snap::Error`] in the chain ([`snap::ErrorKind::exit_code`]), else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .map_or(1, Error::exit_code)
}

/// An error and its causes as one line, outermost first, joined by ": ",
/// each cause once ([`snap::error::write_chain`]).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let top: &(dyn std::error::Error + 'static) = e.as_ref();
    // Writing to a String does not fail.
    let _ = snap::error::write_chain(&mut line, "", Some(top));
    line
}
