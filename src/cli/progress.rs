//! Progress display: an indicatif bar (percent and ETA once the total is
//! known) when stderr is a terminal, JSON `status` lines on stdout under
//! `--json` (backup), nothing otherwise. The library only updates counters
//! in [`Progress`].

use snap::ops::backup::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Seconds between two JSON `status` lines.
const JSON_INTERVAL: Duration = Duration::from_secs(1);

/// A running progress display; `finish` stops it.
pub struct Bar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Bar {
    /// Stops and clears the display (a JSON display prints its last line).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts a display for `p` unless `quiet` or stderr is not a terminal.
pub fn start(p: &Arc<Progress>, verb: &'static str, quiet: bool) -> Bar {
    let stop = Arc::new(AtomicBool::new(false));
    if quiet || !std::io::stderr().is_terminal() {
        return Bar { stop, handle: None };
    }
    let p = p.clone();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{elapsed_precise}] {bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        while !s.load(Ordering::Relaxed) {
            let total = p.total_bytes.load(Ordering::Relaxed);
            if total > 0 && pb.length() != Some(total) {
                pb.set_length(total);
                pb.set_style(
                    indicatif::ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
            pb.set_position(p.bytes.load(Ordering::Relaxed));
            pb.set_message(format!(
                "{verb}: {}/{} files",
                p.files.load(Ordering::Relaxed),
                p.total_files.load(Ordering::Relaxed)
            ));
            pb.tick();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        pb.finish_and_clear();
    });
    Bar {
        stop,
        handle: Some(handle),
    }
}

/// One JSON `status` line: counters so far, and once the total is known,
/// `percent_done` (0..=1) and `seconds_remaining` (estimated from the rate
/// so far); both are null while it is not.
fn status_line(p: &Progress, verb: &str, started: Instant) -> serde_json::Value {
    let done = p.bytes.load(Ordering::Relaxed);
    let total = p.total_bytes.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let (percent, remaining) = if total > 0 {
        let frac = (done as f64 / total as f64).min(1.0);
        let left = (secs * (total.saturating_sub(done)) as f64 / done.max(1) as f64).round();
        (Some(frac), (done > 0).then_some(left as u64))
    } else {
        (None, None)
    };
    serde_json::json!({
        "type": "status",
        "action": verb,
        "bytes_done": done,
        "total_bytes": (total > 0).then_some(total),
        "files_done": p.files.load(Ordering::Relaxed),
        "total_files": p.total_files.load(Ordering::Relaxed),
        "percent_done": percent,
        "seconds_elapsed": secs.round() as u64,
        "seconds_remaining": remaining,
    })
}

/// Starts JSON `status` lines on stdout for `p`: one a second, and a last
/// one when the bar finishes. A failed write stops them (main reports a
/// closed stdout).
pub fn start_json(p: &Arc<Progress>, verb: &'static str) -> Bar {
    let stop = Arc::new(AtomicBool::new(false));
    let p = p.clone();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let started = Instant::now();
        let mut next = started + JSON_INTERVAL;
        loop {
            let last = s.load(Ordering::Relaxed);
            if last || Instant::now() >= next {
                if outln!("{}", status_line(&p, verb, started)).is_err() || last {
                    return;
                }
                next += JSON_INTERVAL;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Bar {
        stop,
        handle: Some(handle),
    }
}
