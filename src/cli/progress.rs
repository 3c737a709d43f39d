//! Progress display: an indicatif bar when stderr is a terminal, nothing
//! otherwise. The library only updates counters in [`Progress`].

use snap::backup::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running progress display; `finish` stops it.
pub struct Bar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Bar {
    /// Stops and clears the display.
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
                    indicatif::ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
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
