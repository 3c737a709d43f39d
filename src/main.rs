//! The `snap` binary: parse the command line, run it, map errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// Keeps glibc from holding freed multi-MiB buffers (packs, batches) in
/// per-thread arenas: buffers of 1 MiB and more are mapped and unmapped.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Removes `SNAP_*` variables that are set but empty, so that clap's `env`
/// fallbacks and the password lookup treat them as unset (`SNAP_REPO= snap
/// init` uses the default repository instead of the path "").
fn drop_empty_snap_vars() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, v)| k.as_encoded_bytes().starts_with(b"SNAP_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::remove_var(k);
    }
}

/// Parses the command line. `--help` and `--version` print as clap prints
/// them; a usage error is printed by clap, or under `--json` as one JSON
/// error object on stderr; both exit with code 2.
fn parse_args() -> Result<cli::Cli, ExitCode> {
    use clap::error::ErrorKind as K;
    let e = match cli::Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let is_usage_error = !matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !(json && is_usage_error) {
        e.exit();
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string();
    let code = e.exit_code().clamp(1, 255) as u8;
    eprintln!(
        "{}",
        serde_json::json!({"type": "error", "code": code, "message": line, "usage": true})
    );
    Err(ExitCode::from(code))
}

fn main() -> ExitCode {
    tune_allocator();
    drop_empty_snap_vars();
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // SIGINT/SIGTERM: stop children, index stored packs, release the lease.
    if let Err(e) = snap::interrupt::install(cli::on_stopping) {
        eprintln!("snap: warning: {e:#}");
    }
    // SNAP_STATS=1: each repository's request counters as one JSON line.
    if std::env::var("SNAP_STATS").is_ok_and(|v| !v.is_empty() && v != "0") {
        snap::store::set_stats_report(Box::new(|v| eprintln!("{v}")));
    }
    // From the parsed flags: a literal "--json" inside another argument
    // (e.g. a --command string) must not switch the error format.
    let json = cli.json();
    match cli::run(cli) {
        // The reader of standard output went away (`snap ls | head`): stop
        // quietly, as a program killed by SIGPIPE would.
        _ if cli::stdout_closed() => ExitCode::from(cli::EXIT_STDOUT_CLOSED),
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A run stopped by SIGINT/SIGTERM exits with 128 + the signal,
            // whatever error its interruption caused.
            let code = snap::interrupt::exit_code().unwrap_or_else(|| cli::exit_code(&e));
            let line = cli::error_line(&e);
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({"type": "error", "code": code, "message": line})
                );
            } else {
                // Paths and names in a message may hold terminal controls.
                eprintln!("snap: error: {}", cli::output::escape(&line));
            }
            ExitCode::from(code)
        }
    }
}
