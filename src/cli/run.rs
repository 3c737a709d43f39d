//! `snap run PROFILE`: before hooks → backup → forget/prune → copy → check →
//! restore-test → after / on-failure hooks → notifications → state file,
//! metrics and ping (`cli::monitor`). Each step is this executable run as a
//! child process (`snap --repo … --json <verb> …`), so `run` only depends
//! on the command line of the other subcommands. A check or restore-test
//! with a rotation (`check-every`, `[restore-test] every`) runs only when
//! due, judged from the state file.

use super::jobs::{child_error, load_config, secs, snap_child, Passwords};
use super::monitor::{self, OpRecord};
use super::{Global, EXIT_PARTIAL};
use crate::cli::profile::{parse_span, step_error, ChildGlobals, Config, Profile, Step, StepKind};
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Profile name (a `[profile.NAME]` table of the profile file).
    profile: String,
    /// Print the steps and their command lines; run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What a job has done so far; becomes the summary object.
struct Job {
    profile: String,
    config: String,
    repository: String,
    started: String,
    t0: Instant,
    steps: Vec<Value>,
    snapshot: Option<String>,
    failed_step: Option<String>,
    error: Option<String>,
    exit_code: u8,
}

impl Job {
    fn status(&self, running: bool) -> &'static str {
        if running {
            "running"
        } else if self.failed_step.is_some() {
            "failure"
        } else if self.exit_code == EXIT_PARTIAL {
            "partial"
        } else {
            "success"
        }
    }

    fn summary(&self, running: bool) -> Value {
        json!({
            "type": "summary",
            "profile": self.profile,
            "status": self.status(running),
            "exit_code": self.exit_code,
            "snapshot_id": self.snapshot,
            "failed_step": self.failed_step,
            "error": self.error,
            "repository": self.repository,
            "config": self.config,
            "started": self.started,
            "seconds": secs(self.t0),
            "steps": self.steps,
        })
    }

    fn fail(&mut self, step: &str, code: u8, msg: String) {
        self.failed_step = Some(step.to_string());
        self.error = Some(msg);
        self.exit_code = code;
    }
}

/// Prints one event. A failed write is not an error here: the job's steps
/// and hooks still run, and main exits with 141 if standard output closed.
fn emit(g: &Global, v: &Value, human: impl FnOnce() -> String) {
    let _ = if g.json {
        outln!("{v}")
    } else {
        outln!("{}", human())
    };
}

/// Runs the hook commands of one kind; returns the first failure message.
/// Hooks get the summary JSON on stdin and `SNAP_*` variables; their stdout
/// goes to our stderr so that `--json` output stays clean.
fn run_hooks(
    g: &Global,
    job: &mut Job,
    hook: &str,
    cmds: &[String],
    running: bool,
) -> Option<String> {
    for (i, cmd) in cmds.iter().enumerate() {
        let summary = job.summary(running);
        let t = Instant::now();
        let res = run_hook(job, hook, cmd, &summary, running);
        let (status, code, err) = match &res {
            Ok(0) => ("ok", 0, None),
            Ok(c) => (
                "failed",
                *c,
                Some(format!("{hook} hook #{} exited with code {c}", i + 1)),
            ),
            Err(e) => (
                "failed",
                -1,
                Some(format!("{hook} hook #{} could not start: {e}", i + 1)),
            ),
        };
        let v = json!({"type": "hook", "hook": hook, "index": i, "status": status, "exit_code": code, "seconds": secs(t)});
        emit(g, &v, || {
            format!("hook {hook} #{}: {status} in {:.2} s", i + 1, secs(t))
        });
        if let Some(e) = err {
            return Some(e);
        }
    }
    None
}

fn run_hook(job: &Job, hook: &str, cmd: &str, summary: &Value, running: bool) -> Result<i32> {
    use std::os::fd::AsFd;
    let stdout_to_stderr: Stdio = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::inherit());
    // Hooks (often third-party notifiers) never see a password.
    let mut sh = snap::write::sources::command("sh");
    if running {
        // A before hook (`sleep 30`, a dump) is stopped with the job: in a
        // process group of its own that gets our SIGTERM on an interrupt.
        use std::os::unix::process::CommandExt;
        sh.process_group(0);
    }
    let mut child = sh
        .arg("-c")
        .arg(cmd)
        .env("SNAP_HOOK", hook)
        .env("SNAP_PROFILE", &job.profile)
        .env("SNAP_STATUS", job.status(running))
        .env("SNAP_SNAPSHOT_ID", job.snapshot.as_deref().unwrap_or(""))
        .env("SNAP_ERROR", job.error.as_deref().unwrap_or(""))
        .env("SNAP_FAILED_STEP", job.failed_step.as_deref().unwrap_or(""))
        .env("SNAP_EXIT_CODE", job.exit_code.to_string())
        .env("SNAP_REPOSITORY", &job.repository)
        .env("SNAP_CONFIG", &job.config)
        .env("SNAP_SECONDS", format!("{:.3}", secs(job.t0)))
        .stdin(Stdio::piped())
        .stdout(stdout_to_stderr)
        .spawn()?;
    // Hooks after the steps run even after an interrupt (on-failure): only
    // before hooks are stopped by one.
    let _watch = running.then(|| snap::interrupt::watch_child(child.id(), true));
    let mut input = child.stdin.take();
    let body = format!("{summary}\n");
    // A hook that does not read its stdin must not block us: write on a thread
    // and ignore a closed pipe.
    let writer = std::thread::spawn(move || {
        if let Some(w) = input.as_mut() {
            let _ = w.write_all(body.as_bytes());
        }
        drop(input);
    });
    let status = child.wait()?;
    let _ = writer.join();
    Ok(status.code().unwrap_or(128 + 15))
}

pub fn run(g: &Global, a: &RunArgs) -> Result<u8> {
    let cfg = load_config(g)?;
    let p = cfg.get(&a.profile)?.clone();
    let plan = cfg.plan(
        &a.profile,
        &ChildGlobals {
            cache_dir: g.cache_dir.clone(),
        },
    )?;
    if a.dry_run {
        for s in &plan {
            let v = json!({"type": "plan", "step": s.kind.name(), "repository": s.repo, "from": s.from, "args": s.args});
            emit(g, &v, || {
                format!(
                    "{}: snap {}",
                    s.kind.name(),
                    shell_words::join(s.args.iter().map(String::as_str))
                )
            });
        }
        return Ok(0);
    }
    // SIGINT/SIGTERM to this process stop the job, not the process: the
    // running step's child (in a process group of its own, see `run_step`)
    // and a before hook get SIGTERM from `snap::interrupt`, stop cleanly
    // (lease released), and the job ends as failed with exit 130/143 after
    // its on-failure hooks.
    let _graceful = snap::interrupt::graceful();
    let mut job = Job {
        profile: a.profile.clone(),
        config: cfg.path.display().to_string(),
        repository: p.repository.clone(),
        started: snap::repo::now_rfc3339(),
        t0: Instant::now(),
        steps: Vec::new(),
        snapshot: None,
        failed_step: None,
        error: None,
        exit_code: 0,
    };
    let mut pw = Passwords::new(g, &cfg);
    // Resolve every password first: a bad password-command fails the job
    // before any hook changes the system.
    for s in &plan {
        for r in std::iter::once(&s.repo).chain(s.from.as_ref()) {
            if let Err(e) = pw.get(r) {
                job.fail("setup", super::exit_code(&e), super::error_line(&e));
                break;
            }
        }
        if job.failed_step.is_some() {
            break;
        }
    }
    if job.failed_step.is_none() {
        if let Some(e) = run_hooks(g, &mut job, "before", &p.before.0, true) {
            job.fail("before", 1, e);
        }
        interrupted(&mut job, "before");
    }
    let state = monitor::State::load(&monitor::state_path(&a.profile, &p)).unwrap_or_else(|e| {
        eprintln!("snap: warning: {e}");
        monitor::State::default()
    });
    for s in &plan {
        if job.failed_step.is_some() {
            let v = json!({"type": "step", "step": s.kind.name(), "status": "skipped"});
            emit(g, &v, || format!("{}: skipped", s.kind.name()));
            job.steps.push(v);
            continue;
        }
        if let Some(every) = not_due(&p, &state, s) {
            let v = json!({"type": "step", "step": s.kind.name(), "repository": s.repo, "status": "not-due", "every": every});
            emit(g, &v, || {
                format!("{} on {}: not due (every {every})", s.kind.name(), s.repo)
            });
            job.steps.push(v);
            continue;
        }
        if interrupted(&mut job, s.kind.name()) {
            let v = json!({"type": "step", "step": s.kind.name(), "status": "skipped"});
            emit(g, &v, || format!("{}: skipped", s.kind.name()));
            job.steps.push(v);
            continue;
        }
        let before = job.steps.len();
        run_step(g, &cfg, &mut pw, &mut job, s)?;
        interrupted(&mut job, s.kind.name());
        if job.steps.len() > before {
            record_step(&a.profile, &p, s, &job.steps[before]);
        }
    }
    if job.failed_step.is_none() {
        if let Some(e) = run_hooks(g, &mut job, "after", &p.after.0, false) {
            job.fail("after", 1, e);
        }
    }
    if job.failed_step.is_some() {
        if let Some(e) = run_hooks(g, &mut job, "on-failure", &p.on_failure.0, false) {
            eprintln!("snap: warning: {e}");
        }
        if let Some(e) = run_hooks(g, &mut job, "notify-failure", &p.notify_failure.0, false) {
            eprintln!("snap: warning: {e}");
        }
    } else if let Some(e) = run_hooks(g, &mut job, "notify-success", &p.notify_success.0, false) {
        eprintln!("snap: warning: {e}");
    }
    let summary = job.summary(false);
    report(g, &cfg, &mut pw, &a.profile, &p, &job, &summary);
    emit(g, &summary, || {
        format!(
            "profile {}: {} in {:.2} s{}",
            job.profile,
            job.status(false),
            secs(job.t0),
            job.snapshot
                .as_deref()
                .map(|s| format!(", snapshot {}", &s[..s.len().min(8)]))
                .unwrap_or_default()
        )
    });
    if let (Some(step), Some(err)) = (&job.failed_step, &job.error) {
        return Err(step_error(step, job.exit_code as i32, err)
            .context(format!("profile {}", job.profile))
            .into());
    }
    Ok(job.exit_code)
}

fn run_step(
    g: &Global,
    cfg: &Config,
    pw: &mut Passwords<'_>,
    job: &mut Job,
    s: &crate::cli::profile::Step,
) -> Result<()> {
    let name = s.kind.name();
    let t = Instant::now();
    // The child runs in a process group of its own so that a signal to our
    // group (a terminal's Ctrl-C, the console's Stop) reaches it once, as
    // our SIGTERM (`snap::interrupt::watch_child`), not twice (a second
    // signal would end it without its clean-up).
    let out = {
        use std::os::unix::process::CommandExt;
        snap_child(cfg, pw, &s.repo, s.from.as_deref(), &s.args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    }
    .and_then(|child| {
        let _watch = snap::interrupt::watch_child(child.id(), false);
        child.wait_with_output()
    });
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            job.fail(name, 1, format!("cannot start snap: {e}"));
            return Ok(());
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(1);
    // The child's last JSON line is its result object.
    let result: Option<Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .or_else(|| serde_json::from_str::<Value>(&stdout).ok());
    let partial = s.kind == StepKind::Backup && code == EXIT_PARTIAL as i32;
    let status = if code == 0 {
        "ok"
    } else if partial {
        "partial"
    } else {
        "failed"
    };
    if s.kind == StepKind::Backup && (code == 0 || partial) {
        job.snapshot = result
            .as_ref()
            .and_then(|r| r["snapshot"].as_str())
            .map(str::to_string);
    }
    // Warnings (unreadable files, …) from the child, as they were.
    let error = (code != 0 && !partial).then(|| child_error(&stderr));
    // A `--json` child prints its warnings as `{"type":"warning"}` objects.
    let warnings: Vec<String> = if error.is_some() {
        Vec::new()
    } else {
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str::<Value>(l) {
                Ok(v) if v["type"] == "warning" => {
                    v["message"].as_str().map(|m| format!("warning: {m}"))
                }
                Ok(_) => None,
                Err(_) => Some(l.to_string()),
            })
            .collect()
    };
    let mut v = json!({
        "type": "step",
        "step": name,
        "status": status,
        "exit_code": code,
        "seconds": secs(t),
        "repository": s.repo,
        "result": result,
        "error": error,
        "warnings": warnings,
    });
    if s.kind == StepKind::Backup {
        v["snapshot_id"] = json!(job.snapshot);
    }
    if let Some(f) = &s.from {
        v["from"] = json!(f);
    }
    if !g.json {
        for w in &warnings {
            eprintln!("  {name}: {w}");
        }
    }
    emit(g, &v, || {
        let mut line = format!("{name}: {status} in {:.2} s", secs(t));
        if s.kind == StepKind::Backup {
            if let Some(id) = &job.snapshot {
                line.push_str(&format!(", snapshot {}", &id[..id.len().min(8)]));
            }
        }
        if let Some(e) = &error {
            line.push_str(&format!(": {e}"));
        }
        line
    });
    job.steps.push(v);
    if partial {
        job.exit_code = EXIT_PARTIAL;
    } else if code != 0 {
        let c = u8::try_from(code).unwrap_or(1);
        job.fail(name, c, error.unwrap_or_default());
    }
    Ok(())
}

/// After a SIGINT/SIGTERM: marks the job failed at `step` (unless it failed
/// already) with exit 128 + the signal number; returns whether one arrived.
fn interrupted(job: &mut Job, step: &str) -> bool {
    let Some(code) = snap::interrupt::exit_code() else {
        return false;
    };
    if job.failed_step.is_none() {
        let sig = snap::interrupt::signal().unwrap_or(0);
        let msg = format!("interrupted by {}", snap::interrupt::signal_name(sig));
        job.fail(step, code, msg);
    }
    true
}

/// The rotation of a check or restore-test step that is not due yet
/// (`check-every`, `[restore-test] every`), else `None` (run it).
fn not_due(p: &Profile, st: &monitor::State, s: &Step) -> Option<String> {
    let every = match s.kind {
        StepKind::Check => p.check_every.clone()?,
        StepKind::RestoreTest => p.restore_test.every.clone().filter(|e| e != "always")?,
        _ => return None,
    };
    let secs = parse_span(&every).ok()?;
    (!st.due(s.kind.name(), &s.repo, secs)).then_some(every)
}

/// Records a finished step in the profile's state file (restore-test
/// records itself); a failure to write it is a warning.
fn record_step(name: &str, p: &Profile, s: &Step, v: &Value) {
    if s.kind == StepKind::RestoreTest {
        return;
    }
    let summary = &v["result"]["summary"];
    let backup = s.kind == StepKind::Backup;
    let rec = OpRecord {
        operation: s.kind.name().to_string(),
        repository: s.repo.clone(),
        ok: v["status"] == "ok" || v["status"] == "partial",
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        error: v["error"].as_str().map(str::to_string),
        bytes_read: summary["bytes_read"].as_u64().filter(|_| backup),
        bytes_added: summary["bytes_added_stored"].as_u64().filter(|_| backup),
        ..Default::default()
    };
    if let Err(e) = monitor::update(name, p, |st| st.record(rec)) {
        eprintln!("snap: warning: {e}");
    }
}

/// After the job: records it as operation `run`, measures the repositories
/// written to when metrics are wanted, writes/pushes the metrics and pings
/// `ping-url`. Failures are warnings: the job's result stands.
fn report(
    g: &Global,
    cfg: &Config,
    pw: &mut super::jobs::Passwords<'_>,
    name: &str,
    p: &Profile,
    job: &Job,
    summary: &Value,
) {
    let ok = job.failed_step.is_none();
    let mut facts = Vec::new();
    if p.metrics_file.is_some() || p.metrics_push.is_some() {
        let mut repos = vec![p.repository.clone()];
        repos.extend(p.copy_to.clone());
        for r in repos {
            if let Some(f) = monitor::measure(cfg, pw, &r, g.cache_dir.as_deref()) {
                facts.push((r, f));
            }
        }
    }
    let rec = OpRecord {
        operation: "run".into(),
        repository: p.repository.clone(),
        ok,
        seconds: secs(job.t0),
        error: job.error.clone(),
        ..Default::default()
    };
    match monitor::update(name, p, |st| {
        st.record(rec);
        st.repositories.extend(facts);
    }) {
        Ok(st) => monitor::publish(name, p, &st),
        Err(e) => eprintln!("snap: warning: {e}"),
    }
    monitor::ping(p, ok, &summary.to_string());
}
