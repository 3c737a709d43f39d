//! `snap restore-test PROFILE`: restore the profile's latest snapshot into
//! a scratch directory (and its PostgreSQL and MariaDB/MySQL dumps into
//! scratch databases, dropped afterwards; MySQL in `restore_test_mysql.rs`;
//! its SQLite streams into scratch files, each checked with `PRAGMA
//! integrity_check`), run the checks of `[profile.NAME.restore-test]`,
//! report each, and fail naming the checks that did not hold. The result is
//! recorded in the profile's state file and metrics (`cli::monitor`).

use super::jobs::{child_error, load_config, secs, snap_child, Passwords};
use super::Global;
use crate::cli::profile::{is_pg_dump_stream, pg_with_dbname, profile_tag, Config, SqlCheck};
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use snap::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RestoreTestArgs {
    /// Profile whose latest snapshot is tested.
    profile: String,
    /// Test this snapshot instead of the profile's latest.
    #[arg(long)]
    snapshot: Option<String>,
    /// Keep the scratch directory (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Test the profile's snapshot in this repository (the profile's
    /// `repository` or its `copy-to`) [default: the profile's repository].
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// Started by `snap run`: record the result, leave metrics to the run.
    #[arg(long, hide = true)]
    from_run: bool,
}

struct Report<'g> {
    g: &'g Global,
    checks: Vec<Value>,
    failed: Vec<String>,
}

impl Report<'_> {
    fn add(&mut self, name: &str, ok: bool, detail: String) {
        let status = if ok { "pass" } else { "fail" };
        if !ok {
            self.failed.push(format!("{name} ({detail})"));
        }
        let v = json!({"type": "check", "check": name, "status": status, "detail": detail});
        // A failed write is not an error here: the checks still run, and
        // main exits with 141 if standard output closed.
        let _ = if self.g.json {
            outln!("{v}")
        } else {
            outln!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" })
        };
        self.checks.push(v);
    }
}

/// Path of a PostgreSQL client program: `$SNAP_PG_BIN/NAME` if that file
/// exists, else `NAME` on `PATH`.
fn pg_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAP_PG_BIN").filter(|d| !d.is_empty()) {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Runs `psql -X -A -t -q -v ON_ERROR_STOP=1 -d CONNINFO -c SQL`; returns
/// trimmed stdout or the error text.
fn psql(conninfo: &str, sql: &str) -> Result<String, String> {
    let out = snap::write::sources::command(pg_program("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("psql failed")
            .trim()
            .to_string())
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Counts regular files under `dir`, not following symlinks.
fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// Evaluates one SQL check's value against its expectations.
pub fn sql_verdict(q: &SqlCheck, value: &str) -> Result<String, String> {
    if let Some(e) = &q.expect {
        if value != e {
            return Err(format!("got {value:?}, expected {e:?}"));
        }
    }
    if q.expect_min.is_some() || q.expect_max.is_some() {
        let v: f64 = value
            .parse()
            .map_err(|_| format!("got {value:?}, not a number"))?;
        if let Some(min) = q.expect_min {
            if v < min {
                return Err(format!("got {value}, expected at least {min}"));
            }
        }
        if let Some(max) = q.expect_max {
            if v > max {
                return Err(format!("got {value}, expected at most {max}"));
            }
        }
    }
    Ok(format!("got {value}"))
}

pub fn run(g: &Global, a: &RestoreTestArgs) -> Result<u8> {
    let cfg = load_config(g)?;
    let p = cfg.get(&a.profile)?.clone();
    let repo = a.repository.clone().unwrap_or_else(|| p.repository.clone());
    if repo != p.repository && Some(&repo) != p.copy_to.as_ref() {
        return Err(Error::usage(format!(
            "--repository {repo:?} is neither the repository nor the copy-to of profile {}",
            a.profile
        ))
        .into());
    }
    let t0 = Instant::now();
    let res = run_checks(g, a, &cfg, &repo);
    let rec = super::monitor::OpRecord {
        operation: "restore-test".into(),
        repository: repo,
        ok: res.is_ok(),
        seconds: secs(t0),
        error: res.as_ref().err().map(super::error_line),
        ..Default::default()
    };
    match super::monitor::update(&a.profile, &p, |st| st.record(rec)) {
        Ok(st) if !a.from_run => super::monitor::publish(&a.profile, &p, &st),
        Ok(_) => {}
        Err(e) => eprintln!("snap: warning: {e}"),
    }
    res
}

fn run_checks(g: &Global, a: &RestoreTestArgs, cfg: &Config, repo: &str) -> Result<u8> {
    let mut p = cfg.get(&a.profile)?.clone();
    // Everything below opens `p.repository`: the one under test.
    p.repository = repo.to_string();
    let cfg = cfg.clone();
    let rt = p.restore_test.clone();
    let mut pw = Passwords::new(g, &cfg);
    let t0 = Instant::now();
    let base = |verb: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--repo".to_string(),
            cfg.repo(&p.repository)
                .map(|r| r.path.clone())
                .unwrap_or_default(),
            "--json".to_string(),
            "--no-progress".to_string(),
        ];
        if let Some(c) = &g.cache_dir {
            v.push("--cache-dir".into());
            v.push(c.to_string_lossy().into_owned());
        }
        v.extend(verb.iter().map(|s| s.to_string()));
        v
    };
    // 1. Which snapshot.
    let (id, snap) = find_snapshot(
        &cfg,
        &mut pw,
        &p.repository,
        &base(&["snapshots"]),
        &a.profile,
        a.snapshot.as_deref(),
    )?;
    let short = id[..id.len().min(8)].to_string();
    if !g.json {
        outln!(
            "testing snapshot {short} of profile {} ({})",
            a.profile,
            snap["time"].as_str().unwrap_or("")
        )?;
    }
    let mut rep = Report {
        g,
        checks: Vec::new(),
        failed: Vec::new(),
    };
    // 2. Scratch directory.
    let (dir, made) = match &rt.target {
        Some(t) => {
            if t.exists()
                && std::fs::read_dir(t)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Error::usage(format!(
                    "restore-test target {} is not empty; give an empty or missing directory",
                    t.display()
                ))
                .into());
            }
            (t.clone(), !t.exists())
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!(
                    "snap-restore-test-{}-{}-{nanos}",
                    a.profile,
                    std::process::id()
                )),
                true,
            )
        }
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let has_tree = snap["paths"].as_array().is_some_and(|p| !p.is_empty());
    // 3. Restore the tree (streams are tested separately).
    if has_tree {
        let t = Instant::now();
        let args = base(&["restore", &id, "--target"]);
        let mut args = args;
        args.push(dir.to_string_lossy().into_owned());
        args.extend([
            "--exclude".to_string(),
            snap::format::tree::STREAMS_DIR.to_string(),
        ]);
        let out = snap_child(&cfg, &mut pw, &p.repository, None, &args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        if out.status.success() {
            let n = count_files(&dir);
            rep.add(
                "restore",
                true,
                format!(
                    "{n} files restored to {} in {:.2} s",
                    dir.display(),
                    secs(t)
                ),
            );
            if let Some(min) = rt.min_files {
                rep.add(
                    "min-files",
                    n >= min,
                    format!("{n} files, at least {min} required"),
                );
            }
            for f in &rt.files {
                let rel = f.trim_start_matches('/');
                let ok = std::fs::symlink_metadata(dir.join(rel)).is_ok();
                rep.add(
                    &format!("file {rel}"),
                    ok,
                    if ok {
                        "present".into()
                    } else {
                        "missing".into()
                    },
                );
            }
        } else {
            rep.add(
                "restore",
                false,
                child_error(&String::from_utf8_lossy(&out.stderr)),
            );
        }
    } else if rt.min_files.is_some() || !rt.files.is_empty() {
        rep.add(
            "restore",
            false,
            "the snapshot has no file tree, but min-files/files checks are set".into(),
        );
    }
    // 4. SQLite streams into scratch files (integrity_check, their SQL
    // checks); the other SQL checks against scratch databases, one per
    // dump stream used.
    let sqlite_sql = sqlite_checks(&cfg, &mut pw, &p, &base, &id, &snap, &dir, &mut rep)?;
    let rest: Vec<SqlCheck> = rt
        .sql
        .iter()
        .filter(|q| !sqlite_sql.contains(&q.query))
        .cloned()
        .collect();
    if !rest.is_empty() {
        let (my_checks, pg_checks) = super::restore_test_mysql::split_checks(&rest, &snap);
        if !pg_checks.is_empty() {
            sql_checks(&cfg, &mut pw, &p, &base, &id, &snap, &pg_checks, &mut rep)?;
        }
        let outcomes =
            super::restore_test_mysql::run_checks(&cfg, &mut pw, &p, &base, &id, &snap, &my_checks);
        for (name, ok, detail) in outcomes {
            rep.add(&name, ok, detail);
        }
    }
    // 5. Commands in the restore directory.
    for (i, c) in rt.commands.iter().enumerate() {
        let st = snap::write::sources::command("sh")
            .arg("-c")
            .arg(c)
            .current_dir(&dir)
            .env("SNAP_RESTORE_DIR", &dir)
            .env("SNAP_SNAPSHOT_ID", &id)
            .env("SNAP_PROFILE", &a.profile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        let (ok, detail) = match st {
            Ok(s) if s.success() => (true, "exit 0".to_string()),
            Ok(s) => (false, format!("{s}")),
            Err(e) => (false, format!("cannot start: {e}")),
        };
        rep.add(&format!("command #{}", i + 1), ok, detail);
    }
    if a.keep {
        eprintln!("kept {}", dir.display());
    } else if made {
        let _ = std::fs::remove_dir_all(&dir);
    } else if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
        }
    }
    let status = if rep.failed.is_empty() {
        "pass"
    } else {
        "fail"
    };
    let summary = json!({"type": "summary", "profile": a.profile, "snapshot_id": id, "status": status,
        "checks": rep.checks.len(), "failed": rep.failed, "seconds": secs(t0)});
    if g.json {
        outln!("{summary}")?;
    } else {
        outln!(
            "restore-test of profile {}: {status} ({} checks, {} failed)",
            a.profile,
            rep.checks.len(),
            rep.failed.len()
        )?;
    }
    if !rep.failed.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "restore-test of profile {} failed: {}",
                a.profile,
                rep.failed.join("; ")
            ),
        )
        .into());
    }
    Ok(0)
}

/// The snapshot to test: `explicit`, else the newest with tag `profile:NAME`.
fn find_snapshot(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    repo: &str,
    args: &[String],
    profile: &str,
    explicit: Option<&str>,
) -> Result<(String, Value)> {
    let out = snap_child(cfg, pw, repo, None, args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        let code = out.status.code().unwrap_or(1);
        return Err(crate::cli::profile::step_error(
            "snapshots",
            code,
            &child_error(&String::from_utf8_lossy(&out.stderr)),
        )
        .into());
    }
    let list: Vec<Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::corrupt(format!("snap snapshots --json printed bad JSON: {e}")))?;
    let tag = profile_tag(profile);
    let found = match explicit {
        Some(spec) => list.into_iter().rfind(|s| {
            s["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&spec.to_ascii_lowercase()))
        }),
        None => list.into_iter().rfind(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag.as_str())))
        }),
    };
    let Some(s) = found else {
        return Err(Error::new(
            ErrorKind::NotFound,
            match explicit {
                Some(spec) => format!("no snapshot {spec:?} in repository {repo:?}"),
                None => format!(
                    "no snapshot of profile {profile} (tag {tag}) in repository {repo:?}: run `snap run {profile}` first"
                ),
            },
        )
        .into());
    };
    let id = s["id"].as_str().unwrap_or_default().to_string();
    Ok((id, s))
}

#[allow(clippy::too_many_arguments)]
fn sql_checks(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    p: &crate::cli::profile::Profile,
    base: &dyn Fn(&[&str]) -> Vec<String>,
    id: &str,
    snap: &Value,
    checks: &[&SqlCheck],
    rep: &mut Report<'_>,
) -> Result<()> {
    let rt = &p.restore_test;
    let dumps: Vec<String> = snap["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .filter(|s| is_pg_dump_stream(s))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let server = rt.pg_server.clone().or_else(|| {
        p.pg.first()
            .map(|s| crate::cli::profile::split_stream_name(s).1.to_string())
    });
    let Some(server) = server else {
        rep.add(
            "sql",
            false,
            "no PostgreSQL server for scratch databases: set pg-server in [profile.X.restore-test]"
                .into(),
        );
        return Ok(());
    };
    let by_stream = group_by_stream(
        checks,
        &dumps,
        "the snapshot has no PostgreSQL dump stream (*.dump)",
        "dump streams",
        &mut |n, ok, d| rep.add(n, ok, d),
    );
    let admin = pg_with_dbname(&server, "postgres");
    check_streams(
        by_stream,
        "pg",
        &|db| {
            psql(&admin, &format!("CREATE DATABASE {}", quote_ident(db)))
                .map(drop)
                .map_err(|e| format!("creating scratch database: {e}"))
        },
        &mut |stream, db| restore_dump(cfg, pw, p, base, id, stream, &pg_with_dbname(&server, db)),
        &|db, sql| {
            let out = psql(&pg_with_dbname(&server, db), sql)?;
            let first = out.lines().next().unwrap_or("");
            Ok(first.split('|').next().unwrap_or("").trim().to_string())
        },
        &|db| {
            psql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db)),
            )
            .map(drop)
        },
        &mut |n, ok, d| rep.add(n, ok, d),
    );
    Ok(())
}

/// Groups the SQL checks by the dump stream each runs against: its
/// `stream`, else the snapshot's only one of `streams`. A check that names
/// no stream while there are none or several fails through `add` (with
/// `none` as detail, or "several SEVERAL (…)") and is left out. Order: by
/// first appearance.
pub(super) fn group_by_stream<'a>(
    checks: &[&'a SqlCheck],
    streams: &[String],
    none: &str,
    several: &str,
    add: &mut dyn FnMut(&str, bool, String),
) -> Vec<(String, Vec<&'a SqlCheck>)> {
    let mut by_stream: Vec<(String, Vec<&SqlCheck>)> = Vec::new();
    for &q in checks {
        let stream = match (&q.stream, streams) {
            (Some(s), _) => s.clone(),
            (None, [one]) => one.clone(),
            (None, []) => {
                add(&format!("sql {}", q.query), false, none.to_string());
                continue;
            }
            (None, many) => {
                add(
                    &format!("sql {}", q.query),
                    false,
                    format!(
                        "several {several} ({}): name one with stream = \"…\"",
                        many.join(", ")
                    ),
                );
                continue;
            }
        };
        match by_stream.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, v)) => v.push(q),
            None => by_stream.push((stream, vec![q])),
        }
    }
    by_stream
}

/// A scratch database name unique to this process and moment:
/// `snap_restore_test_PID_NANOS`.
pub(super) fn scratch_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!("snap_restore_test_{}_{nanos}", std::process::id())
}

/// Runs the SQL checks of one database engine (`engine`: "pg", "mysql"),
/// stream by stream: `create` a scratch database, `restore` the stream
/// into it (reported as check `ENGINE-restore STREAM` with the seconds it
/// took), run each check's query (`query` returns the first column of the
/// first row) and judge it with [`sql_verdict`], then `drop_db` the database
/// (a failure is a warning on stderr). A failed `create` skips the stream
/// with a failed check. Every outcome goes to `add(name, passed, detail)`.
#[allow(clippy::type_complexity)]
pub(super) fn check_streams(
    by_stream: Vec<(String, Vec<&SqlCheck>)>,
    engine: &str,
    create: &dyn Fn(&str) -> Result<(), String>,
    restore: &mut dyn FnMut(&str, &str) -> Result<(), String>,
    query: &dyn Fn(&str, &str) -> Result<String, String>,
    drop_db: &dyn Fn(&str) -> Result<(), String>,
    add: &mut dyn FnMut(&str, bool, String),
) {
    for (stream, checks) in by_stream {
        let db = scratch_name();
        let check = format!("{engine}-restore {stream}");
        if let Err(e) = create(&db) {
            add(&check, false, e);
            continue;
        }
        let t = Instant::now();
        let restored = restore(&stream, &db);
        match &restored {
            Ok(()) => add(
                &check,
                true,
                format!("restored into scratch database {db} in {:.2} s", secs(t)),
            ),
            Err(e) => add(&check, false, e.clone()),
        }
        if restored.is_ok() {
            for q in checks {
                let name = format!("sql {}", q.query);
                match query(&db, &q.query) {
                    Ok(value) => match sql_verdict(q, &value) {
                        Ok(d) => add(&name, true, d),
                        Err(d) => add(&name, false, d),
                    },
                    Err(e) => add(&name, false, e),
                }
            }
        }
        if let Err(e) = drop_db(&db) {
            eprintln!("snap: warning: could not drop scratch database {db}: {e}");
        }
    }
}

/// `snap restore ID --stdout --stream NAME | pg_restore --no-owner --no-privileges -d TARGET`.
fn restore_dump(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    p: &crate::cli::profile::Profile,
    base: &dyn Fn(&[&str]) -> Vec<String>,
    id: &str,
    stream: &str,
    target: &str,
) -> Result<(), String> {
    let args = base(&["restore", id, "--stdout", "--stream", stream]);
    let mut snapc = snap_child(cfg, pw, &p.repository, None, &args)
        .map_err(|e| e.to_string())?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start snap restore: {e}"))?;
    let Some(dump) = snapc.stdout.take() else {
        return Err("snap restore has no stdout".into());
    };
    let pgr = snap::write::sources::command(pg_program("pg_restore"))
        .args(["--no-owner", "--no-privileges", "--dbname", target])
        .stdin(Stdio::from(dump))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let snap_out = snapc.wait_with_output().map_err(|e| e.to_string())?;
    if !snap_out.status.success() {
        return Err(format!(
            "snap restore --stream {stream}: {}",
            child_error(&String::from_utf8_lossy(&snap_out.stderr))
        ));
    }
    let pgr = pgr.map_err(|e| format!("cannot run pg_restore: {e}"))?;
    if !pgr.status.success() {
        let err = String::from_utf8_lossy(&pgr.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("error"))
            .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(format!("pg_restore failed ({}): {line}", pgr.status));
    }
    Ok(())
}

/// The snapshot's SQLite streams (sources of kind `sqlite`).
fn sqlite_streams(snap: &Value) -> Vec<String> {
    snap["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["kind"] == snap::write::sqlite::KIND_SQLITE)
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Restores every SQLite stream of the snapshot into a scratch file below
/// `dir` (`snap restore ID --sqlite FILE --stream NAME`, which runs
/// `PRAGMA integrity_check` before the file is in place) and runs the SQL
/// checks meant for it: those naming it with `stream`, and those naming no
/// stream when it is the snapshot's only database stream. Returns the
/// queries it handled (the others go to PostgreSQL).
#[allow(clippy::too_many_arguments)]
fn sqlite_checks(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    p: &crate::cli::profile::Profile,
    base: &dyn Fn(&[&str]) -> Vec<String>,
    id: &str,
    snap: &Value,
    dir: &Path,
    rep: &mut Report<'_>,
) -> Result<Vec<String>> {
    let streams = sqlite_streams(snap);
    // Another database stream (a pg dump, a MySQL dump) takes the checks
    // that name no stream.
    let has_pg = snap["streams"]
        .as_array()
        .is_some_and(|a| a.iter().filter_map(|s| s.as_str()).any(is_pg_dump_stream))
        || snap["sources"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["kind"] == snap::write::mysql::KIND_MYSQL)
        });
    let mut handled = Vec::new();
    if streams.is_empty() {
        return Ok(handled);
    }
    let scratch = dir.join(".snap-restore-test-sqlite");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    for stream in &streams {
        let file = scratch.join(stream);
        let t = Instant::now();
        let mut args = base(&["restore", id, "--stream", stream, "--sqlite"]);
        args.push(file.to_string_lossy().into_owned());
        let out = snap_child(cfg, pw, &p.repository, None, &args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        let ok = out.status.success();
        rep.add(
            &format!("sqlite-restore {stream}"),
            ok,
            if ok {
                format!("restored, PRAGMA integrity_check ok, in {:.2} s", secs(t))
            } else {
                child_error(&String::from_utf8_lossy(&out.stderr))
            },
        );
        for q in &p.restore_test.sql {
            let mine = match &q.stream {
                Some(s) => s == stream,
                None => streams.len() == 1 && !has_pg,
            };
            if !mine {
                continue;
            }
            handled.push(q.query.clone());
            let name = format!("sql {}", q.query);
            if !ok {
                rep.add(&name, false, "the database could not be restored".into());
                continue;
            }
            match snap::write::sqlite::query_value(&file, &q.query) {
                Ok(value) => match sql_verdict(q, &value) {
                    Ok(d) => rep.add(&name, true, d),
                    Err(d) => rep.add(&name, false, d),
                },
                Err(e) => rep.add(&name, false, e.to_string()),
            }
        }
        let _ = std::fs::remove_file(&file);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let q = SqlCheck {
            query: "q".into(),
            expect_min: Some(1.0),
            expect_max: Some(10.0),
            ..Default::default()
        };
        assert!(sql_verdict(&q, "5").is_ok());
        assert!(sql_verdict(&q, "0").unwrap_err().contains("at least 1"));
        assert!(sql_verdict(&q, "11").unwrap_err().contains("at most 10"));
        assert!(sql_verdict(&q, "x").unwrap_err().contains("not a number"));
        let q = SqlCheck {
            query: "q".into(),
            expect: Some("t".into()),
            ..Default::default()
        };
        assert!(sql_verdict(&q, "t").is_ok());
        assert!(sql_verdict(&q, "f").is_err());
    }
}
