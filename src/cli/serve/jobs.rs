//! Console jobs: long operations (backup, restore, import) run as child
//! `snap` processes owned by the server, so they go on when the browser
//! closes. Progress comes from the child's `--json` status lines.
//!
//! Each child leads a process group of its own. A job is stopped with
//! SIGINT to that group ([`Jobs::stop`]), exactly what Ctrl-C in a terminal
//! sends: `snap run` forwards it (as SIGTERM) to its running step's child,
//! which leads a group of its own, and a backup then indexes the packs it stored, releases its lease
//! and exits 130. When the server itself gets SIGINT or SIGTERM, every
//! running job gets SIGINT ([`Jobs::stop_all`]).

use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Lines of a job's output kept for the page (the newest).
const LOG_LINES: usize = 200;

/// One job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Job number, from 1, unique for this server process.
    pub id: u64,
    /// `backup`, `restore`, `restore-db` or `import`.
    pub kind: String,
    /// What the job does, for people.
    pub title: String,
    /// `running`, `done`, `failed` or `stopped` (ended after a stop request).
    pub state: String,
    /// Share done, 0..=1, once the child reports a total.
    pub percent: Option<f64>,
    /// Bytes processed so far, as the child reports them.
    pub bytes_done: u64,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// End time, RFC 3339 UTC.
    pub ended: Option<String>,
    /// The child's exit status once it ended.
    pub exit_code: Option<i32>,
    /// The error line of a failed job (the lease's reason when it was locked).
    pub error: Option<String>,
    /// The newest lines of the child's output.
    pub log: Vec<String>,
    /// Whether a stop was requested (SIGINT sent to the child).
    pub stop_requested: bool,
    /// Key used to refuse conflicting jobs (the repository, or a restore target).
    #[serde(skip)]
    pub conflict_key: String,
    /// Process id of the running child.
    #[serde(skip)]
    pub pid: Option<u32>,
}

/// Why [`Jobs::stop`] did not send a signal.
#[derive(Debug, PartialEq, Eq)]
pub enum StopError {
    /// No job with that id.
    NoSuchJob,
    /// The job already ended (its state is given).
    Ended(String),
}

/// Every job of this server, with a change counter for server-sent events.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Mutex<Vec<Job>>>,
    tick: watch::Sender<u64>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            inner: Arc::default(),
            tick: watch::channel(0).0,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Jobs {
    /// All jobs, oldest first.
    pub fn list(&self) -> Vec<Job> {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Job `id`, if it exists.
    pub fn get(&self, id: u64) -> Option<Job> {
        self.list().into_iter().find(|j| j.id == id)
    }

    /// A receiver that changes whenever any job changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Ok(mut v) = self.inner.lock() {
            if let Some(j) = v.iter_mut().find(|j| j.id == id) {
                f(j);
            }
        }
        self.tick.send_modify(|t| *t += 1);
    }

    /// Starts `cmd` as job `kind`. Refused (Err with the reason) while a
    /// running job has the same `conflict_key`.
    pub fn start(
        &self,
        kind: &str,
        title: String,
        conflict_key: String,
        mut cmd: Command,
        cleanup: Option<std::path::PathBuf>,
    ) -> Result<u64, String> {
        let id = {
            let mut v = self
                .inner
                .lock()
                .map_err(|_| "job list poisoned".to_string())?;
            if let Some(o) = v
                .iter()
                .find(|j| j.state == "running" && j.conflict_key == conflict_key)
            {
                return Err(format!(
                    "refused: job {} ({}: {}) is still running on {}; wait for it to finish",
                    o.id, o.kind, o.title, conflict_key
                ));
            }
            let id = v.len() as u64 + 1;
            v.push(Job {
                id,
                kind: kind.to_string(),
                title,
                state: "running".into(),
                percent: None,
                bytes_done: 0,
                started: now(),
                ended: None,
                exit_code: None,
                error: None,
                log: Vec::new(),
                stop_requested: false,
                conflict_key,
                pid: None,
            });
            id
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.update(id, |j| {
                    j.state = "failed".into();
                    j.error = Some(format!("starting snap: {e}"));
                    j.ended = Some(now());
                });
                return Ok(id);
            }
        };
        let pid = child.id();
        let mut stop_now = false;
        self.update(id, |j| {
            j.pid = Some(pid);
            stop_now = j.stop_requested;
        });
        if stop_now {
            // A stop came while the child was starting.
            let _ = self.stop(id);
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let me = self.clone();
        let err_thread = stderr.map(|s| {
            let me = me.clone();
            std::thread::spawn(move || {
                let mut last_error = None;
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    let msg = match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(v) if v["type"] == "error" => {
                            let m = v["message"].as_str().unwrap_or("").to_string();
                            last_error = Some(m.clone());
                            m
                        }
                        Ok(v) if v["message"].is_string() => {
                            v["message"].as_str().unwrap_or("").to_string()
                        }
                        _ => {
                            if let Some(m) = line.strip_prefix("snap: error: ") {
                                last_error = Some(m.to_string());
                            }
                            line
                        }
                    };
                    me.update(id, |j| push_log(j, msg));
                }
                last_error
            })
        });
        std::thread::spawn(move || {
            if let Some(s) = stdout {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(v) if v["type"] == "status" => me.update(id, |j| {
                            j.percent = v["percent_done"].as_f64();
                            j.bytes_done = v["bytes_done"].as_u64().unwrap_or(j.bytes_done);
                        }),
                        _ => me.update(id, |j| push_log(j, line)),
                    }
                }
            }
            let status = child.wait();
            let last_error = err_thread.and_then(|t| t.join().ok()).flatten();
            if let Some(p) = cleanup {
                let _ = std::fs::remove_file(p);
            }
            me.update(id, |j| {
                j.ended = Some(now());
                j.pid = None;
                let code = status.as_ref().ok().and_then(|s| s.code());
                j.exit_code = code;
                if j.stop_requested && code != Some(0) {
                    j.state = "stopped".into();
                    j.error = Some(last_error.unwrap_or_else(|| "stopped".into()));
                } else if code == Some(0) {
                    j.state = "done".into();
                    j.percent = Some(1.0);
                } else {
                    j.state = "failed".into();
                    j.error = Some(last_error.unwrap_or_else(|| match &status {
                        Ok(s) => format!("snap exited with {s}"),
                        Err(e) => format!("waiting for snap: {e}"),
                    }));
                }
            });
        });
        Ok(id)
    }
}

impl Jobs {
    /// Asks running job `id` to stop: SIGINT to its `snap` child (once the
    /// child exits the job's state is `stopped`, unless it finished
    /// successfully first). Asking again sends SIGINT again, which ends the
    /// child at once (see `snap::interrupt`). Returns the job.
    pub fn stop(&self, id: u64) -> Result<Job, StopError> {
        let pid = {
            let mut v = self.inner.lock().map_err(|_| StopError::NoSuchJob)?;
            let j = v
                .iter_mut()
                .find(|j| j.id == id)
                .ok_or(StopError::NoSuchJob)?;
            if j.state != "running" {
                return Err(StopError::Ended(j.state.clone()));
            }
            j.stop_requested = true;
            j.pid
        };
        if let Some(p) = pid {
            interrupt_group(p);
        }
        self.tick.send_modify(|t| *t += 1);
        self.get(id).ok_or(StopError::NoSuchJob)
    }

    /// SIGINT to every running job's process group (the server is ending).
    pub fn stop_all(&self) {
        // Runs on snap::interrupt's watcher thread (not in a signal
        // handler): waiting for the lock is fine, its holders never block.
        if let Ok(v) = self.inner.lock() {
            for p in v
                .iter()
                .filter(|j| j.state == "running")
                .filter_map(|j| j.pid)
            {
                interrupt_group(p);
            }
        }
    }
}

/// SIGINT to process group `pgid` (a job's child leads its own group).
fn interrupt_group(pgid: u32) {
    if let Some(p) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // The group may be gone a moment ago: nothing to stop then.
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::INT);
    }
}

fn push_log(j: &mut Job, line: String) {
    if j.log.len() >= LOG_LINES {
        j.log.remove(0);
    }
    j.log.push(line);
}
