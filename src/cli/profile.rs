//! Profile files (`snap.toml`): named repositories and named backup jobs
//! ("profiles") that `snap run`, `snap schedule` and `snap restore-test` use.
//!
//! The file is TOML (parsed with the `toml` crate through serde). Every table
//! rejects unknown keys, so a typo is an error naming the key and its line.
//! This module is pure apart from [`Config::load`] / [`Config::find`] (which
//! read the file) and [`RepositoryDef::password`] (which may run a command):
//! it turns a profile into the argument lists of the `snap` child processes
//! that `snap run` starts, so those lists can be unit-tested.
//!
//! Documentation for users: `docs/profiles.md`.

use serde::Deserialize;
use snap::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tag every snapshot made by `snap run PROFILE` carries, so that
/// retention, copy and restore-test select exactly that profile's snapshots.
pub fn profile_tag(profile: &str) -> String {
    format!("profile:{profile}")
}

/// The whole profile file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named repositories (`[repository.NAME]`).
    #[serde(default)]
    pub repository: BTreeMap<String, RepositoryDef>,
    /// Named profiles (`[profile.NAME]`).
    #[serde(default)]
    pub profile: BTreeMap<String, Profile>,
    /// Where the file was read from (absolute when it could be made so);
    /// not a key of the file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// A repository and how to get its password.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryDef {
    /// A directory path or `s3://bucket/prefix`.
    pub path: String,
    /// Read the password from the first line of this file.
    pub password_file: Option<PathBuf>,
    /// Run this shell command (`sh -c`) and use the first line of its
    /// standard output as the password.
    pub password_command: Option<String>,
    /// Extra environment for every `snap` process that opens this repository
    /// (e.g. `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One or several shell commands (`before = "cmd"` or `before = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct Commands(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Commands {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => Commands(vec![s]),
            OneOrMany::Many(v) => Commands(v),
        }
    }
}

/// A backup job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// Name of the primary repository (a key of `[repository]`).
    pub repository: String,
    /// Files and directories to back up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Exclude globs (`snap backup --exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// PostgreSQL databases, `[NAME=]CONNINFO` (`snap backup --pg`).
    #[serde(default)]
    pub pg: Vec<String>,
    /// MongoDB deployments, `[NAME=]URI` (`snap backup --mongo`).
    #[serde(default)]
    pub mongo: Vec<String>,
    /// MariaDB/MySQL databases, `[NAME=]CONNINFO` (`snap backup --mysql`).
    #[serde(default)]
    pub mysql: Vec<String>,
    /// Also store the accounts and grants of the first `mysql` server
    /// (`snap backup --mysql-globals`).
    #[serde(default)]
    pub mysql_globals: bool,
    /// Command streams, `NAME=CMD` (`snap backup --command`).
    #[serde(default)]
    pub command: Vec<String>,
    /// Tags for the snapshot (the tag `profile:NAME` is always added).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Host name to record in snapshots [default: this machine's].
    pub host: Option<String>,
    /// Retention: keep the N newest snapshots.
    pub keep_last: Option<u32>,
    /// Retention: keep one snapshot for each of the last N hours.
    pub keep_hourly: Option<u32>,
    /// Retention: keep one snapshot for each of the last N days.
    pub keep_daily: Option<u32>,
    /// Retention: keep one snapshot for each of the last N ISO weeks.
    pub keep_weekly: Option<u32>,
    /// Retention: keep one snapshot for each of the last N months.
    pub keep_monthly: Option<u32>,
    /// Retention: keep one snapshot for each of the last N years.
    pub keep_yearly: Option<u32>,
    /// Retention: keep everything newer than this span (e.g. `14d`).
    pub keep_within: Option<String>,
    /// Retention: keep snapshots with these tags.
    #[serde(default)]
    pub keep_tag: Vec<String>,
    /// After forgetting, prune unused data [default: true].
    pub prune: Option<bool>,
    /// Copy the profile's snapshots to this repository (a key of `[repository]`).
    pub copy_to: Option<String>,
    /// Run `snap check` on the primary repository at the end.
    #[serde(default)]
    pub check: bool,
    /// With check: also read and verify this share of the pack data (`5%`).
    pub check_read_data_subset: Option<String>,
    /// Commands run before the backup; a failure fails the job.
    #[serde(default)]
    pub before: Commands,
    /// Commands run after all steps succeeded.
    #[serde(default)]
    pub after: Commands,
    /// Commands run when the job failed (instead of `after`).
    #[serde(default)]
    pub on_failure: Commands,
    /// Notification commands run last when the job succeeded.
    #[serde(default)]
    pub notify_success: Commands,
    /// Notification commands run last when the job failed.
    #[serde(default)]
    pub notify_failure: Commands,
    /// Checks for `snap restore-test`.
    #[serde(default)]
    pub restore_test: RestoreTest,
}

/// `[profile.NAME.restore-test]`: what a restore of the latest snapshot must show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestoreTest {
    /// Restore into this directory instead of a fresh temporary one (it must
    /// be empty or missing; it is removed afterwards unless `--keep`).
    pub target: Option<PathBuf>,
    /// The restored tree holds at least this many regular files (streams excluded).
    pub min_files: Option<u64>,
    /// Paths (relative to the restore root, e.g. `srv/app/config.json`) that
    /// must exist in the restored tree.
    #[serde(default)]
    pub files: Vec<String>,
    /// SQL checks, run against a scratch database restored from a pg dump stream.
    #[serde(default)]
    pub sql: Vec<SqlCheck>,
    /// Server for scratch databases (a libpq conninfo or URI, without a
    /// password) [default: the profile's first `pg` source].
    pub pg_server: Option<String>,
    /// MariaDB/MySQL server for scratch databases (a `--mysql` CONNINFO;
    /// its database, if any, is ignored) [default: the profile's first
    /// `mysql` source].
    pub mysql_server: Option<String>,
    /// Shell commands run in the restore directory; each must exit 0.
    #[serde(default)]
    pub commands: Vec<String>,
}

/// One SQL check: the first column of the first row of `query`, as a number.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlCheck {
    /// The query (e.g. `select count(*) from accounts`).
    pub query: String,
    /// The value must be at least this.
    pub expect_min: Option<f64>,
    /// The value must be at most this.
    pub expect_max: Option<f64>,
    /// The value, as text, must equal this.
    pub expect: Option<String>,
    /// Which dump stream to restore (a pg `*.dump` or a `--mysql` stream)
    /// [default: the only one].
    pub stream: Option<String>,
}

/// 1-based line number of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Parses a profile file's text; `origin` names it in errors.
    ///
    /// Errors ([`ErrorKind::Usage`]): TOML syntax, an unknown key, a wrong
    /// type (each naming the line), or a profile naming a repository that
    /// is not defined.
    pub fn parse(text: &str, origin: &Path) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(" line {}", line_of(text, s.start)))
                .unwrap_or_default();
            let msg = e.message().replace('\n', " ");
            Error::usage(format!("{}{line}: {}", origin.display(), msg.trim()))
        })?;
        cfg.path = origin.to_path_buf();
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let origin = self.path.display();
        for (name, r) in &self.repository {
            if r.path.trim().is_empty() {
                return Err(Error::usage(format!(
                    "{origin}: repository {name:?} has an empty path"
                )));
            }
            if r.password_file.is_some() && r.password_command.is_some() {
                return Err(Error::usage(format!(
                    "{origin}: repository {name:?} has both password-file and password-command; keep one"
                )));
            }
        }
        for (name, p) in &self.profile {
            let known = |r: &str, key: &str| -> Result<()> {
                if self.repository.contains_key(r) {
                    Ok(())
                } else {
                    Err(Error::usage(format!(
                        "{origin}: profile {name:?}: {key} {r:?} is not a [repository.{r}] table in this file"
                    )))
                }
            };
            known(&p.repository, "repository")?;
            if let Some(c) = &p.copy_to {
                known(c, "copy-to")?;
                if *c == p.repository {
                    return Err(Error::usage(format!(
                        "{origin}: profile {name:?}: copy-to names its own repository {c:?}"
                    )));
                }
            }
            if p.paths.is_empty()
                && p.pg.is_empty()
                && p.mongo.is_empty()
                && p.mysql.is_empty()
                && p.command.is_empty()
            {
                return Err(Error::usage(format!(
                    "{origin}: profile {name:?} has no sources: give paths, pg, mysql, mongo or command"
                )));
            }
            if p.mysql_globals && p.mysql.is_empty() {
                return Err(Error::usage(format!(
                    "{origin}: profile {name:?}: mysql-globals needs a mysql source"
                )));
            }
            for c in &p.command {
                if !c.split_once('=').is_some_and(|(n, cmd)| {
                    snap::write::sources::valid_stream_name(n) && !cmd.trim().is_empty()
                }) {
                    return Err(Error::usage(format!(
                        "{origin}: profile {name:?}: command {c:?} is not NAME=CMD (NAME of letters, digits, - _ .)"
                    )));
                }
            }
            if let Some(s) = &p.check_read_data_subset {
                parse_percent(s).map_err(|e| {
                    Error::usage(format!(
                        "{origin}: profile {name:?}: check-read-data-subset: {e}"
                    ))
                })?;
            }
            for q in &p.restore_test.sql {
                if q.expect_min.is_none() && q.expect_max.is_none() && q.expect.is_none() {
                    return Err(Error::usage(format!(
                        "{origin}: profile {name:?}: restore-test sql {:?} has no expect-min, expect-max or expect",
                        q.query
                    )));
                }
            }
        }
        Ok(())
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading profile file {}", path.display()), e))?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::parse(&text, &abs)
    }

    /// The places searched, in order, when no `--config` is given:
    /// `./snap.toml`, `$XDG_CONFIG_HOME/snap/snap.toml`, `/etc/snap/snap.toml`.
    pub fn search_path() -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from("snap.toml")];
        if let Some(d) = dirs::config_dir() {
            v.push(d.join("snap").join("snap.toml"));
        }
        v.push(PathBuf::from("/etc/snap/snap.toml"));
        v
    }

    /// Loads `explicit` if given, else the first existing file of
    /// [`Config::search_path`]. Errors with [`ErrorKind::Usage`] when none exists.
    pub fn find(explicit: Option<&Path>) -> Result<Config> {
        if let Some(p) = explicit {
            return Config::load(p);
        }
        let paths = Config::search_path();
        for p in &paths {
            if p.is_file() {
                return Config::load(p);
            }
        }
        Err(Error::usage(format!(
            "no profile file: give --config FILE or create one of {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The profile `name`, or a usage error listing the defined ones.
    pub fn get(&self, name: &str) -> Result<&Profile> {
        self.profile.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.profile.keys().map(|s| s.as_str()).collect();
            Error::usage(format!(
                "no profile {name:?} in {} (defined: {})",
                self.path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The repository `name` (validated to exist by [`Config::parse`]).
    pub fn repo(&self, name: &str) -> Result<&RepositoryDef> {
        self.repository.get(name).ok_or_else(|| {
            Error::usage(format!("no repository {name:?} in {}", self.path.display()))
        })
    }
}

/// Parses `"5%"` or `"5"` into a percentage in (0, 100].
pub fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like \"5%\""))?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("{s:?} is not in (0, 100]"))
    }
}

impl RepositoryDef {
    /// The repository's password: from `password-file`, from
    /// `password-command`, else `None` (the caller falls back to the
    /// environment's SNAP_PASSWORD / SNAP_PASSWORD_FILE).
    ///
    /// Errors: the file cannot be read; the command cannot start, exits
    /// non-zero, or prints nothing ([`ErrorKind::Usage`]).
    pub fn password(&self, name: &str) -> Result<Option<zeroize::Zeroizing<String>>> {
        if let Some(f) = &self.password_file {
            let s = zeroize::Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                Error::io(
                    format!("repository {name:?}: reading password-file {}", f.display()),
                    e,
                )
            })?);
            return Ok(Some(zeroize::Zeroizing::new(
                s.lines().next().unwrap_or("").to_string(),
            )));
        }
        if let Some(c) = &self.password_command {
            let out = snap::write::sources::command("sh")
                .arg("-c")
                .arg(c)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| {
                    Error::io(format!("repository {name:?}: starting password-command"), e)
                })?;
            let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
            if !out.status.success() {
                return Err(Error::usage(format!(
                    "repository {name:?}: password-command failed ({}); fix the command in the profile file",
                    out.status
                )));
            }
            let line = text.lines().next().unwrap_or("").to_string();
            if line.is_empty() {
                return Err(Error::usage(format!(
                    "repository {name:?}: password-command printed no password"
                )));
            }
            return Ok(Some(zeroize::Zeroizing::new(line)));
        }
        Ok(None)
    }
}

/// One step of `snap run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// `snap backup` into the primary repository.
    Backup,
    /// `snap forget --prune` with the profile's retention on the primary repository.
    Forget,
    /// `snap copy` of the profile's snapshots to `copy-to`.
    Copy,
    /// `snap check` of the primary repository.
    Check,
}

impl StepKind {
    /// The step's name in output and hooks: backup, forget, copy, check.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Backup => "backup",
            StepKind::Forget => "forget",
            StepKind::Copy => "copy",
            StepKind::Check => "check",
        }
    }
}

/// A planned child process: `snap <args>`, opening repository `repo` (and,
/// for copy, reading from `from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Which step.
    pub kind: StepKind,
    /// Arguments after the program name (global options first).
    pub args: Vec<String>,
    /// Name of the repository written to (its password goes in SNAP_PASSWORD).
    pub repo: String,
    /// For copy: name of the source repository (password in SNAP_FROM_PASSWORD).
    pub from: Option<String>,
}

impl Profile {
    /// True when any keep-* retention key is set.
    pub fn has_retention(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || !self.keep_tag.is_empty()
    }

    /// True when the job ends with `snap check`.
    pub fn wants_check(&self) -> bool {
        self.check || self.check_read_data_subset.is_some()
    }

    /// `backup` arguments (after the global options).
    pub fn backup_args(&self, name: &str) -> Vec<String> {
        let mut a = vec!["backup".to_string()];
        for t in std::iter::once(profile_tag(name)).chain(self.tags.iter().cloned()) {
            a.push("--tag".into());
            a.push(t);
        }
        if let Some(h) = &self.host {
            a.push("--host".into());
            a.push(h.clone());
        }
        for e in &self.exclude {
            a.push("--exclude".into());
            a.push(e.clone());
        }
        for p in &self.pg {
            a.push("--pg".into());
            a.push(p.clone());
        }
        for m in &self.mysql {
            a.push("--mysql".into());
            a.push(m.clone());
        }
        if self.mysql_globals {
            a.push("--mysql-globals".into());
        }
        for m in &self.mongo {
            a.push("--mongo".into());
            a.push(m.clone());
        }
        for c in &self.command {
            a.push("--command".into());
            a.push(c.clone());
        }
        if !self.paths.is_empty() {
            a.push("--".into());
            a.extend(self.paths.iter().cloned());
        }
        a
    }

    /// `forget` arguments: the retention policy, restricted to this
    /// profile's snapshots (`--tag profile:NAME`), with `--prune` unless
    /// `prune = false`.
    pub fn forget_args(&self, name: &str) -> Vec<String> {
        let mut a = vec!["forget".to_string(), "--tag".to_string(), profile_tag(name)];
        let nums = [
            ("--keep-last", self.keep_last),
            ("--keep-hourly", self.keep_hourly),
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
            ("--keep-yearly", self.keep_yearly),
        ];
        for (flag, v) in nums {
            if let Some(n) = v {
                a.push(flag.into());
                a.push(n.to_string());
            }
        }
        if let Some(w) = &self.keep_within {
            a.push("--keep-within".into());
            a.push(w.clone());
        }
        for t in &self.keep_tag {
            a.push("--keep-tag".into());
            a.push(t.clone());
        }
        if self.prune.unwrap_or(true) {
            a.push("--prune".into());
        }
        a
    }

    /// `copy` arguments: every snapshot of this profile from `from_location`
    /// into `to_location` (already copied ones are skipped by `snap copy`).
    pub fn copy_args(&self, name: &str, from_location: &str, to_location: &str) -> Vec<String> {
        vec![
            "copy".to_string(),
            "--from".to_string(),
            from_location.to_string(),
            "--to".to_string(),
            to_location.to_string(),
            "--tag".to_string(),
            profile_tag(name),
        ]
    }

    /// `check` arguments.
    pub fn check_args(&self) -> Vec<String> {
        let mut a = vec!["check".to_string()];
        if let Some(s) = &self.check_read_data_subset {
            a.push("--read-data-subset".into());
            a.push(s.trim().to_string());
        }
        a
    }
}

/// Options every child `snap` process gets before its subcommand.
#[derive(Debug, Clone, Default)]
pub struct ChildGlobals {
    /// `--cache-dir`, when the parent was given one.
    pub cache_dir: Option<PathBuf>,
}

impl Config {
    /// The steps `snap run NAME` performs, in order: backup, then forget
    /// (when retention is set), copy (when `copy-to` is set) and check
    /// (when `check` or `check-read-data-subset` is set). Each `args`
    /// starts with `--repo LOCATION --json --no-progress [--cache-dir DIR]`.
    pub fn plan(&self, name: &str, g: &ChildGlobals) -> Result<Vec<Step>> {
        let p = self.get(name)?;
        let main = self.repo(&p.repository)?;
        let globals = |loc: &str| -> Vec<String> {
            let mut a = vec![
                "--repo".to_string(),
                loc.to_string(),
                "--json".to_string(),
                "--no-progress".to_string(),
            ];
            if let Some(c) = &g.cache_dir {
                a.push("--cache-dir".into());
                a.push(c.to_string_lossy().into_owned());
            }
            a
        };
        let step = |kind, loc: &str, rest: Vec<String>, repo: &str, from: Option<String>| {
            let mut args = globals(loc);
            args.extend(rest);
            Step {
                kind,
                args,
                repo: repo.to_string(),
                from,
            }
        };
        let mut steps = vec![step(
            StepKind::Backup,
            &main.path,
            p.backup_args(name),
            &p.repository,
            None,
        )];
        if p.has_retention() {
            steps.push(step(
                StepKind::Forget,
                &main.path,
                p.forget_args(name),
                &p.repository,
                None,
            ));
        }
        if let Some(to) = &p.copy_to {
            let dst = self.repo(to)?;
            steps.push(step(
                StepKind::Copy,
                &dst.path,
                p.copy_args(name, &main.path, &dst.path),
                to,
                Some(p.repository.clone()),
            ));
        }
        if p.wants_check() {
            steps.push(step(
                StepKind::Check,
                &main.path,
                p.check_args(),
                &p.repository,
                None,
            ));
        }
        Ok(steps)
    }
}

/// Replaces (or sets) the database of a libpq connection string: for a
/// `postgres://` / `postgresql://` URI the path is replaced; for a
/// `key=value` string `dbname='DB'` is appended (libpq uses the last value
/// of a repeated keyword). `db` is quoted for the key/value form.
pub fn pg_with_dbname(conninfo: &str, db: &str) -> String {
    let c = conninfo.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = c.strip_prefix(scheme) {
            let (before_q, query) = match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let authority = before_q.split('/').next().unwrap_or("");
            let enc: String = db
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            return format!("{scheme}{authority}/{enc}{query}");
        }
    }
    let q = db.replace('\\', "\\\\").replace('\'', "\\'");
    if c.is_empty() {
        format!("dbname='{q}'")
    } else {
        format!("{c} dbname='{q}'")
    }
}

/// Splits a `pg`/`mongo` entry `[NAME=]VALUE` into the optional stream name
/// and the connection string, exactly as `snap backup --pg` does
/// ([`snap::write::sources::split_name`]: a libpq keyword before `=` is not a name).
pub fn split_stream_name(spec: &str) -> (Option<&str>, &str) {
    snap::write::sources::split_name(spec)
}

/// True when `name` looks like a PostgreSQL custom-format dump stream as
/// `snap backup --pg` names them (`pg-<db>.dump`), or ends in `.dump`.
pub fn is_pg_dump_stream(name: &str) -> bool {
    name.ends_with(".dump")
}

/// Error for a step that failed, carrying the child's exit code: a code
/// that names a kind ([`ErrorKind::from_exit_code`]: usage, no repository,
/// locked, wrong password) keeps it, any other is [`ErrorKind::Source`].
pub fn step_error(step: &str, code: i32, message: &str) -> Error {
    let kind = ErrorKind::from_exit_code(code).unwrap_or(ErrorKind::Source);
    Error::new(kind, format!("step {step} failed (exit {code}): {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[repository.main]
path = "/srv/snap"
[repository.offsite]
path = "s3://backups/app"
password-command = "echo secret"
env = { AWS_REGION = "eu-west-1" }
[profile.nightly]
repository = "main"
paths = ["/srv/app"]
pg = ["postgresql://postgres@127.0.0.1:5432/shop"]
keep-daily = 7
copy-to = "offsite"
"#;

    fn cfg(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("snap.toml"))
    }

    #[test]
    fn example_plans_backup_forget_copy() {
        let c = cfg(EXAMPLE).unwrap();
        let steps = c.plan("nightly", &ChildGlobals::default()).unwrap();
        let kinds: Vec<_> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StepKind::Backup, StepKind::Forget, StepKind::Copy]);
        assert_eq!(
            steps[0].args,
            [
                "--repo",
                "/srv/snap",
                "--json",
                "--no-progress",
                "backup",
                "--tag",
                "profile:nightly",
                "--pg",
                "postgresql://postgres@127.0.0.1:5432/shop",
                "--",
                "/srv/app"
            ]
        );
        assert_eq!(
            steps[1].args,
            [
                "--repo",
                "/srv/snap",
                "--json",
                "--no-progress",
                "forget",
                "--tag",
                "profile:nightly",
                "--keep-daily",
                "7",
                "--prune"
            ]
        );
        assert_eq!(
            steps[2].args,
            [
                "--repo",
                "s3://backups/app",
                "--json",
                "--no-progress",
                "copy",
                "--from",
                "/srv/snap",
                "--to",
                "s3://backups/app",
                "--tag",
                "profile:nightly"
            ]
        );
        assert_eq!(steps[2].repo, "offsite");
        assert_eq!(steps[2].from.as_deref(), Some("main"));
        assert_eq!(c.repository["offsite"].env["AWS_REGION"], "eu-west-1");
    }

    #[test]
    fn full_retention_check_and_sources() {
        let c = cfg(r#"
[repository.r]
path = "/r"
[profile.p]
repository = "r"
paths = ["/a", "/b"]
exclude = ["*.tmp"]
mongo = ["mongodb://h/"]
command = ["ls.txt=ls -l /"]
tags = ["app"]
host = "web1"
keep-last = 3
keep-hourly = 24
keep-weekly = 4
keep-monthly = 12
keep-yearly = 2
keep-within = "14d"
keep-tag = ["keep"]
prune = false
check-read-data-subset = "5%"
before = "echo hi"
after = ["a", "b"]
"#)
        .unwrap();
        let p = c.get("p").unwrap();
        assert_eq!(
            p.backup_args("p"),
            [
                "backup",
                "--tag",
                "profile:p",
                "--tag",
                "app",
                "--host",
                "web1",
                "--exclude",
                "*.tmp",
                "--mongo",
                "mongodb://h/",
                "--command",
                "ls.txt=ls -l /",
                "--",
                "/a",
                "/b"
            ]
        );
        assert_eq!(
            p.forget_args("p"),
            [
                "forget",
                "--tag",
                "profile:p",
                "--keep-last",
                "3",
                "--keep-hourly",
                "24",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "12",
                "--keep-yearly",
                "2",
                "--keep-within",
                "14d",
                "--keep-tag",
                "keep"
            ]
        );
        assert_eq!(p.check_args(), ["check", "--read-data-subset", "5%"]);
        assert_eq!(p.before, Commands(vec!["echo hi".into()]));
        assert_eq!(p.after, Commands(vec!["a".into(), "b".into()]));
        let steps = c
            .plan(
                "p",
                &ChildGlobals {
                    cache_dir: Some("/c".into()),
                },
            )
            .unwrap();
        assert_eq!(
            steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
            [StepKind::Backup, StepKind::Forget, StepKind::Check]
        );
        assert_eq!(
            steps[2].args,
            [
                "--repo",
                "/r",
                "--json",
                "--no-progress",
                "--cache-dir",
                "/c",
                "check",
                "--read-data-subset",
                "5%"
            ]
        );
    }

    #[test]
    fn no_retention_no_forget_step() {
        let c =
            cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\n").unwrap();
        let steps = c.plan("p", &ChildGlobals::default()).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].kind, StepKind::Backup);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\nkeep-dayly = 7\n")
            .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 6"), "{m}");
        assert!(m.contains("keep-dayly"), "{m}");
        assert!(!m.contains('\n'), "{m}");
        let e = cfg("[repository.r]\npath='/r'\npasword-file='/x'\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(e.to_string().contains("pasword-file"), "{e}");
    }

    #[test]
    fn bad_references_and_values() {
        let e = cfg("[profile.p]\nrepository='nope'\npaths=['/x']\n").unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = cfg(
            "[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\ncopy-to='r'\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("own repository"), "{e}");
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\n").unwrap_err();
        assert!(e.to_string().contains("no sources"), "{e}");
        let e =
            cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\ncommand=['echo hi']\n")
                .unwrap_err();
        assert!(e.to_string().contains("NAME=CMD"), "{e}");
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\ncheck-read-data-subset='500%'\n")
            .unwrap_err();
        assert!(e.to_string().contains("check-read-data-subset"), "{e}");
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\nkeep-daily='x'\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 6"), "{e}");
        let c = cfg("[repository.r]\npath='/r'\n").unwrap();
        let e = c.get("nightly").unwrap_err();
        assert!(e.to_string().contains("nightly"), "{e}");
    }

    #[test]
    fn restore_test_table() {
        let c = cfg(r#"
[repository.r]
path = "/r"
[profile.p]
repository = "r"
paths = ["/srv/app"]
[profile.p.restore-test]
min-files = 100
files = ["srv/app/config.json"]
sql = [{ query = "select count(*) from accounts", expect-min = 1 }]
"#)
        .unwrap();
        let rt = &c.get("p").unwrap().restore_test;
        assert_eq!(rt.min_files, Some(100));
        assert_eq!(rt.files, ["srv/app/config.json"]);
        assert_eq!(rt.sql[0].expect_min, Some(1.0));
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\n[profile.p.restore-test]\nsql=[{query='select 1'}]\n").unwrap_err();
        assert!(e.to_string().contains("expect"), "{e}");
    }

    #[test]
    fn dbname_replacement() {
        assert_eq!(
            pg_with_dbname("postgresql://postgres@127.0.0.1:5432/shop", "t 1"),
            "postgresql://postgres@127.0.0.1:5432/t%201"
        );
        assert_eq!(
            pg_with_dbname("postgres://h?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(
            pg_with_dbname("host=h port=5 dbname=shop", "it's"),
            "host=h port=5 dbname=shop dbname='it\\'s'"
        );
    }

    #[test]
    fn stream_names() {
        assert_eq!(
            split_stream_name("shop.dump=postgresql://h/shop"),
            (Some("shop.dump"), "postgresql://h/shop")
        );
        assert_eq!(
            split_stream_name("host=h dbname=shop"),
            (None, "host=h dbname=shop")
        );
        assert_eq!(split_stream_name("postgresql://h/x?a=b").0, None);
    }

    #[test]
    fn mysql_sources_and_restore_test_server() {
        let c = cfg(r#"
[repository.r]
path = "/r"
[profile.shop]
repository = "r"
mysql = ["mysql://app@db:3306/shop?password-file=/etc/snap/db.pw"]
mysql-globals = true
[profile.shop.restore-test]
mysql-server = "mysql://root@scratch/"
sql = [{ query = "select count(*) from orders", expect-min = 1 }]
"#)
        .unwrap();
        let p = c.get("shop").unwrap();
        assert_eq!(
            p.backup_args("shop"),
            [
                "backup",
                "--tag",
                "profile:shop",
                "--mysql",
                "mysql://app@db:3306/shop?password-file=/etc/snap/db.pw",
                "--mysql-globals"
            ]
        );
        assert_eq!(
            p.restore_test.mysql_server.as_deref(),
            Some("mysql://root@scratch/")
        );
        let e = cfg("[repository.r]\npath='/r'\n[profile.p]\nrepository='r'\npaths=['/x']\nmysql-globals=true\n")
            .unwrap_err();
        assert!(e.to_string().contains("mysql-globals needs"), "{e}");
    }

    #[test]
    fn percent() {
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert_eq!(parse_percent("12.5"), Ok(12.5));
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("x").is_err());
    }
}
