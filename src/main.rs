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

fn main() -> ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    // SIGINT/SIGTERM: stop children, index stored packs, release the lease.
    if let Err(e) = snap::interrupt::install() {
        eprintln!("snap: warning: {e}");
    }
    // From the parsed flags: a literal "--json" inside another argument
    // (e.g. a --command string) must not switch the error format.
    let json = cli.json();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A run stopped by SIGINT/SIGTERM exits with 128 + the signal,
            // whatever error its interruption caused.
            let code = snap::interrupt::exit_code().unwrap_or_else(|| cli::exit_code(&e));
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>();
            // anyhow's chain repeats the snap::Error message with its own sources; keep the outermost
            // context and the first snap message.
            let line = dedup_chain(&msg);
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

fn dedup_chain(parts: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for p in parts {
        if out.iter().any(|o| o.contains(p.as_str())) {
            continue;
        }
        out.push(p);
    }
    out.join(": ")
}
