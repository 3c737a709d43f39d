//! The program's [`Events`]: the library reports through it, this module
//! prints. Progress events (`Totals`, `Bytes`, `FileDone`) only feed
//! [`Counters`], which a display thread polls: an indicatif bar (percent
//! and ETA once the total is known) when stderr is a terminal, JSON
//! `status` lines on stdout under `--json` (backup, import-tar), nothing
//! otherwise. Warnings are printed as they come, on stderr: `warning: …`,
//! or `{"type":"warning","message":…}` under `--json`. While a JSON
//! display runs, every other event is also one `{"type":"event",…}` line
//! on stdout (README "Events").

use super::output::escape;
use super::Global;
use snap::events::{Counters, Event, Events, WarningKind};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Seconds between two JSON `status` lines.
const JSON_INTERVAL: Duration = Duration::from_secs(1);

/// The program's event sink (one per process: [`events`]).
pub struct CliEvents {
    json: bool,
    counters: Counters,
    /// Print events as JSON lines on stdout (a JSON display is running).
    json_lines: AtomicBool,
    /// The terminal bar, if one is drawn: warnings are printed above it.
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

/// The process's [`CliEvents`], made on first use with `g`'s `--json`.
pub fn events(g: &Global) -> Arc<CliEvents> {
    static EVENTS: OnceLock<Arc<CliEvents>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            Arc::new(CliEvents {
                json: g.json,
                counters: Counters::default(),
                json_lines: AtomicBool::new(false),
                bar: Mutex::new(None),
            })
        })
        .clone()
}

/// The line a warning event is shown as.
fn warning_text(kind: WarningKind, path: Option<&str>, message: &str) -> String {
    match (kind, path) {
        (WarningKind::Unreadable, Some(p)) => format!("skipped {p}: {message}"),
        (WarningKind::Special, Some(p)) => format!("cannot create device {p}: {message}"),
        (_, Some(p)) => format!("{p}: {message}"),
        (_, None) => message.to_string(),
    }
}

impl Events for CliEvents {
    fn event(&self, e: &Event) {
        if self.counters.record(e) {
            return;
        }
        if let Event::Started { .. } = e {
            for c in [
                &self.counters.bytes,
                &self.counters.files,
                &self.counters.total_bytes,
                &self.counters.total_files,
            ] {
                c.store(0, Ordering::Relaxed);
            }
        }
        if let Event::Warning {
            kind,
            path,
            message,
        } = e
        {
            let text = warning_text(*kind, path.as_deref(), message);
            let print = || {
                if self.json {
                    eprintln!(
                        "{}",
                        serde_json::json!({"type": "warning", "message": text})
                    );
                } else {
                    eprintln!("warning: {}", escape(&text));
                }
            };
            match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(pb) => pb.suspend(print),
                None => print(),
            }
            return;
        }
        if self.json_lines.load(Ordering::Relaxed) {
            if let Ok(serde_json::Value::Object(mut m)) = serde_json::to_value(e) {
                m.insert("type".into(), "event".into());
                // A closed stdout ends the status lines too; main reports it.
                let _ = outln!("{}", serde_json::Value::Object(m));
            }
        }
    }
}

/// A running progress display; `finish` stops it.
pub struct Bar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    events: Option<Arc<CliEvents>>,
}

impl Bar {
    /// Stops and clears the display (a JSON display prints its last line).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Some(ev) = self.events.take() {
            ev.json_lines.store(false, Ordering::Relaxed);
            *ev.bar.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// Starts a bar on stderr for the events of `g`'s repository unless `quiet`
/// or stderr is not a terminal.
pub fn start(g: &Global, verb: &'static str, quiet: bool) -> Bar {
    let stop = Arc::new(AtomicBool::new(false));
    if quiet || !std::io::stderr().is_terminal() {
        return Bar {
            stop,
            handle: None,
            events: None,
        };
    }
    let ev = events(g);
    let pb = indicatif::ProgressBar::new_spinner();
    *ev.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(pb.clone());
    let p = ev.clone();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let p = &p.counters;
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
        events: Some(ev),
    }
}

/// One JSON `status` line: counters so far, and once the total is known,
/// `percent_done` (0..=1) and `seconds_remaining` (estimated from the rate
/// so far); both are null while it is not.
fn status_line(p: &Counters, verb: &str, started: Instant) -> serde_json::Value {
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

/// Starts JSON lines on stdout: every event but progress and warnings as
/// it comes, and a `status` line a second, and a last one when the bar
/// finishes. A failed write stops them (main reports a closed stdout).
pub fn start_json(g: &Global, verb: &'static str) -> Bar {
    let stop = Arc::new(AtomicBool::new(false));
    let ev = events(g);
    ev.json_lines.store(true, Ordering::Relaxed);
    let p = ev.clone();
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let started = Instant::now();
        let mut next = started + JSON_INTERVAL;
        loop {
            let last = s.load(Ordering::Relaxed);
            if last || Instant::now() >= next {
                if outln!("{}", status_line(&p.counters, verb, started)).is_err() || last {
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
        events: Some(ev),
    }
}
