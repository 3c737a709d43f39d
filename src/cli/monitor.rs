//! What a profile's jobs did, for people and for monitoring: the state file
//! (`snap status`), Prometheus metrics in the node_exporter textfile format
//! (`metrics-file`), a Pushgateway push (`metrics-push`) and a
//! healthchecks-style ping (`ping-url`).
//!
//! State lives in a small JSON file per profile (`state-file`, default
//! `$XDG_STATE_HOME/snap/profiles/NAME.json`), not in the catalog: the
//! catalog is a cache of one repository that may be deleted at any time,
//! while a profile's record spans several repositories and must survive a
//! cache reset (a lost record would make `snap status` report the profile
//! as never backed up). The file holds one record per operation and
//! repository (`backup@main`, `copy@offsite`, `restore-test@offsite`, …)
//! and is replaced atomically (write beside it, fsync, rename).
//!
//! Metrics (all gauges, labelled `profile`, `repository`, and `operation`
//! where it applies) are derived from the state file after every `run`
//! and `restore-test`, so the file always shows every operation's last
//! result, not only the last job's:
//!
//! - `snap_last_success_timestamp_seconds`, `snap_last_run_timestamp_seconds`
//! - `snap_last_run_success` (1 or 0), `snap_duration_seconds`
//! - `snap_backup_bytes_read`, `snap_backup_bytes_added` (last backup)
//! - `snap_repository_size_bytes`, `snap_snapshots`
//! - `snap_restore_test_success` (1 or 0)
//!
//! A standalone `snap check --metrics-file FILE` writes the check series of
//! the same names without a profile or state file
//! ([`write_check_metrics`]).

use super::profile::{Config, Profile};
use serde::{Deserialize, Serialize};
use snap::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The last result of one operation on one repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpRecord {
    /// `backup`, `forget`, `copy`, `check`, `restore-test` or `run`.
    pub operation: String,
    /// Repository name (a key of `[repository]`).
    pub repository: String,
    /// When the last attempt ended (Unix seconds).
    pub last_run: i64,
    /// When the last successful attempt ended (Unix seconds).
    pub last_success: Option<i64>,
    /// Whether the last attempt succeeded.
    pub ok: bool,
    /// Duration of the last attempt in seconds.
    pub seconds: f64,
    /// The last attempt's error, if it failed.
    pub error: Option<String>,
    /// Backup: bytes read from the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Backup: bytes added to the repository (after compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
}

/// Repository facts measured after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoFacts {
    /// Bytes stored in packs (the catalog's total).
    pub size_bytes: u64,
    /// Snapshots in the repository.
    pub snapshots: u64,
}

/// The state file of one profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Records by `OPERATION@REPOSITORY`.
    #[serde(default)]
    pub ops: BTreeMap<String, OpRecord>,
    /// Repository facts by repository name.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepoFacts>,
}

/// Unix time now, in seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The state file of profile `name`: `state-file`, else
/// `$XDG_STATE_HOME/snap/profiles/NAME.json` (`~/.local/state/…`), else
/// the same below the cache folder; characters of NAME other than ASCII
/// letters, digits, `-` and `_` become `_`.
pub fn state_path(name: &str, p: &Profile) -> PathBuf {
    if let Some(f) = &p.state_file {
        return f.clone();
    }
    let base = dirs::state_dir().unwrap_or_else(snap::repo::default_cache_dir);
    // A profile name is any TOML key: keep it inside the folder.
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join("snap")
        .join("profiles")
        .join(format!("{file}.json"))
}

impl State {
    /// Reads the state file; a missing file is an empty state.
    ///
    /// Errors: the file cannot be read, or is not a state file (naming it).
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::corrupt(format!(
                    "state file {} is damaged ({e}); remove it to start afresh",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes the state file atomically (its folder is created).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::corrupt(format!("encoding state: {e}")))?;
        write_atomic(path, text.as_bytes(), 0o600)
    }

    /// The record of `op` on `repo`, if any.
    pub fn get(&self, op: &str, repo: &str) -> Option<&OpRecord> {
        self.ops.get(&format!("{op}@{repo}"))
    }

    /// Records an attempt of `op` on `repo` that ended now.
    pub fn record(&mut self, mut r: OpRecord) {
        let key = format!("{}@{}", r.operation, r.repository);
        r.last_run = now();
        let prev = self.ops.get(&key);
        r.last_success = if r.ok {
            Some(r.last_run)
        } else {
            prev.and_then(|p| p.last_success)
        };
        if !r.ok || r.operation != "backup" {
            // Keep the last successful backup's byte counts.
            if let Some(p) = prev {
                r.bytes_read = r.bytes_read.or(p.bytes_read);
                r.bytes_added = r.bytes_added.or(p.bytes_added);
            }
        }
        self.ops.insert(key, r);
    }

    /// Whether `op` on `repo` is due under a rotation of `every` seconds:
    /// never succeeded, or the last success is at least that old.
    pub fn due(&self, op: &str, repo: &str, every: u64) -> bool {
        match self.get(op, repo).and_then(|r| r.last_success) {
            Some(t) => now().saturating_sub(t) >= every as i64,
            None => true,
        }
    }
}

/// Loads, changes and saves the state file of profile `name`.
pub fn update(name: &str, p: &Profile, f: impl FnOnce(&mut State)) -> Result<State> {
    let path = state_path(name, p);
    let mut st = State::load(&path)?;
    f(&mut st);
    st.save(&path)?;
    Ok(st)
}

/// Writes `bytes` to `path` through a temporary file beside it (fsynced,
/// given `mode`, renamed over `path`), creating the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    Ok(())
}

/// Escapes a Prometheus label value (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// (metric, help) for every metric snap writes, in output order.
const METRICS: &[(&str, &str)] = &[
    (
        "snap_last_success_timestamp_seconds",
        "Unix time the operation last succeeded.",
    ),
    (
        "snap_last_run_timestamp_seconds",
        "Unix time the operation last ended, successfully or not.",
    ),
    (
        "snap_last_run_success",
        "1 if the operation's last attempt succeeded, else 0.",
    ),
    (
        "snap_duration_seconds",
        "Duration of the operation's last attempt in seconds.",
    ),
    (
        "snap_backup_bytes_read",
        "Bytes read from the sources by the last successful backup.",
    ),
    (
        "snap_backup_bytes_added",
        "Bytes added to the repository by the last successful backup.",
    ),
    (
        "snap_repository_size_bytes",
        "Bytes stored in the repository's packs.",
    ),
    ("snap_snapshots", "Snapshots in the repository."),
    (
        "snap_restore_test_success",
        "1 if the last restore-test of the repository passed, else 0.",
    ),
];

/// The samples (`name{labels} value` lines, by metric name) of profile
/// `name`'s state.
pub fn samples(name: &str, st: &State) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let pl = label(name);
    for r in st.ops.values() {
        let l = format!(
            "profile=\"{pl}\",repository=\"{}\",operation=\"{}\"",
            label(&r.repository),
            label(&r.operation)
        );
        let mut push = |m: &str, labels: &str, v: String| {
            out.push((m.to_string(), format!("{m}{{{labels}}} {v}")));
        };
        if let Some(t) = r.last_success {
            push("snap_last_success_timestamp_seconds", &l, t.to_string());
        }
        push(
            "snap_last_run_timestamp_seconds",
            &l,
            r.last_run.to_string(),
        );
        push("snap_last_run_success", &l, u8::from(r.ok).to_string());
        push("snap_duration_seconds", &l, format!("{:.3}", r.seconds));
        let rl = format!("profile=\"{pl}\",repository=\"{}\"", label(&r.repository));
        if r.operation == "backup" {
            if let Some(b) = r.bytes_read {
                push("snap_backup_bytes_read", &rl, b.to_string());
            }
            if let Some(b) = r.bytes_added {
                push("snap_backup_bytes_added", &rl, b.to_string());
            }
        }
        if r.operation == "restore-test" {
            push("snap_restore_test_success", &rl, u8::from(r.ok).to_string());
        }
    }
    for (repo, f) in &st.repositories {
        let rl = format!("profile=\"{pl}\",repository=\"{}\"", label(repo));
        out.push((
            "snap_repository_size_bytes".into(),
            format!("snap_repository_size_bytes{{{rl}}} {}", f.size_bytes),
        ));
        out.push((
            "snap_snapshots".into(),
            format!("snap_snapshots{{{rl}}} {}", f.snapshots),
        ));
    }
    out
}

/// Text exposition format of `samples`, grouped by metric with `# HELP`
/// and `# TYPE … gauge` lines.
pub fn render(samples: &[(String, String)]) -> String {
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, line) in samples {
        by.entry(m.as_str()).or_default().push(line.as_str());
    }
    let mut out = String::new();
    let mut emit = |m: &str, help: Option<&str>, lines: &[&str]| {
        if let Some(h) = help {
            out.push_str(&format!("# HELP {m} {h}\n"));
        }
        out.push_str(&format!("# TYPE {m} gauge\n"));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    };
    for (m, help) in METRICS {
        if let Some(lines) = by.remove(m) {
            emit(m, Some(help), &lines);
        }
    }
    for (m, lines) in by {
        emit(m, None, &lines);
    }
    out
}

/// Writes profile `name`'s metrics into `path`: the file's samples of other
/// profiles are kept, this profile's are replaced; written atomically with
/// mode 0644 (node_exporter runs as another user).
pub fn write_metrics(path: &Path, name: &str, st: &State) -> Result<()> {
    let mine = format!("profile=\"{}\"", label(name));
    merge_metrics(path, |l| l.contains(&mine), samples(name, st))
}

/// The sample lines of the textfile `path` (none when it cannot be read).
fn file_samples(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `new` samples into the textfile `path` with the file's samples
/// that `replaced` does not match; atomically, mode 0644.
fn merge_metrics(
    path: &Path,
    replaced: impl Fn(&str) -> bool,
    new: Vec<(String, String)>,
) -> Result<()> {
    let mut all: Vec<(String, String)> = file_samples(path)
        .into_iter()
        .filter(|l| !replaced(l))
        .map(|l| (l.split(['{', ' ']).next().unwrap_or(&l).to_string(), l))
        .collect();
    all.extend(new);
    write_atomic(path, render(&all).as_bytes(), 0o644)
}

/// `snap check --metrics-file PATH` without a profile: writes the check's
/// result into the node_exporter textfile `path` as the series a profile's
/// check step writes (`snap_last_run_timestamp_seconds`,
/// `snap_last_run_success`, `snap_duration_seconds` and
/// `snap_last_success_timestamp_seconds`, labelled `profile="NAME"`,
/// `repository="LOCATION"`, `operation="check"`), so the same alert rules
/// apply. No state file: the last success time of a failed check is
/// carried over from the file's previous sample. The file's other samples
/// are kept. `seconds`: the check's duration. Errors: writing the file.
pub fn write_check_metrics(
    path: &Path,
    name: &str,
    location: &str,
    ok: bool,
    seconds: f64,
) -> Result<()> {
    let series = format!(
        "profile=\"{}\",repository=\"{}\",operation=\"check\"",
        label(name),
        label(location)
    );
    let previous = file_samples(path).into_iter().find_map(|l| {
        let rest = l.strip_prefix("snap_last_success_timestamp_seconds{")?;
        let (labels, value) = rest.split_once("} ")?;
        (labels == series).then(|| value.trim().parse::<i64>().ok())?
    });
    let now = now();
    let mut st = State::default();
    st.ops.insert(
        format!("check@{location}"),
        OpRecord {
            operation: "check".into(),
            repository: location.into(),
            last_run: now,
            last_success: if ok { Some(now) } else { previous },
            ok,
            seconds,
            ..OpRecord::default()
        },
    );
    let mine = format!("{{{series}}}");
    merge_metrics(path, |l| l.contains(&mine), samples(name, &st))
}

/// The Pushgateway URL for profile `name`: `url` itself when it holds
/// `/metrics/job/`, else `URL/metrics/job/snap/profile/NAME`.
pub fn push_url(url: &str, name: &str) -> String {
    if url.contains("/metrics/job/") {
        return url.to_string();
    }
    let enc: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "{}/metrics/job/snap/profile/{enc}",
        url.trim_end_matches('/')
    )
}

/// One HTTP request with a 10 s timeout; returns the status code. The URL
/// is left out of errors (a ping URL is a secret of sorts).
#[cfg(feature = "s3")]
pub fn http(method: &str, url: &str, body: String) -> std::result::Result<u16, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        let r = client
            .request(method, url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok(r.status().as_u16())
    })
}

/// Without the `s3` feature there is no HTTP client.
#[cfg(not(feature = "s3"))]
pub fn http(_method: &str, _url: &str, _body: String) -> std::result::Result<u16, String> {
    Err("this snap was built without HTTP support (feature s3)".into())
}

/// Sends a request, one retry after 1 s; a failure is a warning on stderr,
/// never an error of the job.
fn request_or_warn(what: &str, method: &str, url: &str, body: &str) {
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        match http(method, url, body.to_string()) {
            Ok(c) if (200..300).contains(&c) => return,
            Ok(c) => last = format!("HTTP status {c}"),
            Err(e) => last = e,
        }
    }
    eprintln!("snap: warning: {what} failed: {last}");
}

/// After a job of profile `name`: writes `metrics-file`, pushes to
/// `metrics-push`; failures are warnings.
pub fn publish(name: &str, p: &Profile, st: &State) {
    if let Some(f) = &p.metrics_file {
        if let Err(e) = write_metrics(f, name, st) {
            eprintln!("snap: warning: metrics-file: {e}");
        }
    }
    if let Some(u) = &p.metrics_push {
        let body = render(&samples(name, st));
        request_or_warn("metrics-push", "PUT", &push_url(u, name), &body);
    }
}

/// Pings `ping-url` (`URL` on success, `URL/fail` on failure) with `body`
/// (the job summary) as a POST; failures are warnings.
pub fn ping(p: &Profile, ok: bool, body: &str) {
    if let Some(u) = &p.ping_url {
        let url = if ok {
            u.clone()
        } else {
            format!("{}/fail", u.trim_end_matches('/'))
        };
        request_or_warn("ping-url", "POST", &url, body);
    }
}

/// The repository facts after a run: `snap stats --json --repository` on `repo`
/// (`repository.stored_size`, `repository.snapshots`). `None` when it fails.
pub fn measure(
    cfg: &Config,
    pw: &mut super::jobs::Passwords<'_>,
    repo: &str,
    cache_dir: Option<&Path>,
) -> Option<RepoFacts> {
    let mut args = vec![
        "--repo".to_string(),
        cfg.repo(repo).ok()?.path.clone(),
        "--json".to_string(),
        "--no-progress".to_string(),
    ];
    if let Some(c) = cache_dir {
        args.push("--cache-dir".into());
        args.push(c.to_string_lossy().into_owned());
    }
    args.extend(["stats".to_string(), "--repository".to_string()]);
    let out = super::jobs::snap_child(cfg, pw, repo, None, &args)
        .ok()?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(RepoFacts {
        size_bytes: v["repository"]["stored_size"].as_u64()?,
        snapshots: v["repository"]["snapshots"].as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_other_profiles_and_group_by_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("snap.prom");
        let mut a = State::default();
        a.record(OpRecord {
            operation: "backup".into(),
            repository: "main".into(),
            ok: true,
            seconds: 1.5,
            bytes_read: Some(10),
            bytes_added: Some(4),
            ..Default::default()
        });
        let mut b = State::default();
        b.record(OpRecord {
            operation: "restore-test".into(),
            repository: "r\"x".into(),
            ok: false,
            ..Default::default()
        });
        write_metrics(&f, "a", &a).unwrap();
        write_metrics(&f, "b", &b).unwrap();
        write_metrics(&f, "a", &a).unwrap();
        let t = std::fs::read_to_string(&f).unwrap();
        assert!(
            t.contains("snap_backup_bytes_added{profile=\"a\",repository=\"main\"} 4\n"),
            "{t}"
        );
        assert!(
            t.contains("snap_restore_test_success{profile=\"b\",repository=\"r\\\"x\"} 0\n"),
            "{t}"
        );
        assert_eq!(t.matches("snap_backup_bytes_read{").count(), 1, "{t}");
        // Every metric's samples follow its one TYPE line.
        let types = t
            .lines()
            .filter(|l| l.starts_with("# TYPE snap_last_run_success "))
            .count();
        assert_eq!(types, 1, "{t}");
        let mut seen = Vec::new();
        let mut current = "";
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&current), "{current} twice: {t}");
                seen.push(current);
            } else if !l.starts_with('#') {
                assert!(l.starts_with(current), "{l} outside its group: {t}");
            }
        }
    }

    #[test]
    fn record_keeps_last_success_and_due() {
        let p = state_path("../../x y", &Profile::default());
        assert_eq!(p.file_name().unwrap(), "______x_y.json");
        let mut s = State::default();
        let r = |ok| OpRecord {
            operation: "check".into(),
            repository: "m".into(),
            ok,
            ..Default::default()
        };
        assert!(s.due("check", "m", 3600));
        s.record(r(true));
        assert!(!s.due("check", "m", 3600));
        assert!(s.due("check", "m", 0));
        let t = s.get("check", "m").unwrap().last_success;
        s.record(r(false));
        assert_eq!(s.get("check", "m").unwrap().last_success, t);
        assert!(!s.get("check", "m").unwrap().ok);
        assert_eq!(
            push_url("http://h:9091/", "a b"),
            "http://h:9091/metrics/job/snap/profile/a%20b"
        );
    }
}
