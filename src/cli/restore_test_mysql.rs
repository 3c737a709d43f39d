//! The MariaDB/MySQL part of `snap restore-test`: SQL checks whose stream
//! is a `--mysql` dump run against a scratch database on the profile's
//! `mysql-server` (default: its first `mysql` source's server), restored
//! with `snap restore ID --mysql … --stream NAME --no-globals` and dropped
//! afterwards.

use super::jobs::{child_error, snap_child, Passwords};
use super::restore_test::{check_streams, group_by_stream};
use crate::cli::profile::{is_pg_dump_stream, Config, Profile, SqlCheck};
use serde_json::Value;
use snap::write::mysql;
use std::process::Stdio;

/// One check's outcome: name, passed, detail.
pub type Outcome = (String, bool, String);

/// Names of the snapshot's `--mysql` dump streams (source kind `mysql`).
fn mysql_streams(snap: &Value) -> Vec<String> {
    snap["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["kind"] == mysql::KIND_MYSQL)
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits the SQL checks into those for MySQL dumps (a `stream` naming a
/// `--mysql` stream, or no stream when the snapshot's only dump is one)
/// and the rest (PostgreSQL, unchanged).
pub fn split_checks<'a>(
    checks: &'a [SqlCheck],
    snap: &Value,
) -> (Vec<&'a SqlCheck>, Vec<&'a SqlCheck>) {
    let my = mysql_streams(snap);
    let pg_dumps = snap["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .filter(|s| is_pg_dump_stream(s))
                .count()
        })
        .unwrap_or(0);
    checks.iter().partition(|q| match &q.stream {
        Some(s) => my.contains(s),
        None => pg_dumps == 0 && !my.is_empty(),
    })
}

/// Runs the MySQL checks: per stream, a scratch database is created,
/// restored into, queried (first column of the first row) and dropped.
/// Every failure becomes a failed outcome; nothing here returns an error.
pub fn run_checks(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    p: &Profile,
    base: &dyn Fn(&[&str]) -> Vec<String>,
    id: &str,
    snap: &Value,
    checks: &[&SqlCheck],
) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = Vec::new();
    if checks.is_empty() {
        return out;
    }
    let streams = mysql_streams(snap);
    let server = p
        .restore_test
        .mysql_server
        .clone()
        .or_else(|| p.mysql.first().map(|s| mysql::split_name(s).1.to_string()));
    let server = match server.as_deref().map(mysql::MyConn::parse) {
        Some(Ok(c)) => c.with_database(None),
        Some(Err(e)) => {
            out.push(("mysql".into(), false, format!("mysql-server: {e}")));
            return out;
        }
        None => {
            out.push((
                "mysql".into(),
                false,
                "no MySQL server for scratch databases: set mysql-server in [profile.X.restore-test]"
                    .into(),
            ));
            return out;
        }
    };
    let by_stream = group_by_stream(
        checks,
        &streams,
        "the snapshot has no MySQL dump stream",
        "MySQL dump streams",
        &mut |n, ok, d| out.push((n.to_string(), ok, d)),
    );
    check_streams(
        by_stream,
        "mysql",
        // `snap restore --create` makes the scratch database.
        &|_| Ok(()),
        &mut |stream, db| {
            let target = server.with_database(Some(db));
            let args = base(&[
                "restore",
                id,
                "--mysql",
                &target.display(),
                "--stream",
                stream,
                "--create",
                "--no-globals",
            ]);
            match snap_child(cfg, pw, &p.repository, None, &args) {
                Ok(mut c) => match c.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(child_error(&String::from_utf8_lossy(&o.stderr))),
                    Err(e) => Err(format!("cannot start snap restore: {e}")),
                },
                Err(e) => Err(e.to_string()),
            }
        },
        &|db, sql| {
            let text = mysql::query(&server.with_database(Some(db)), sql, "restore-test query")
                .map_err(|e| format!("{e:#}"))?;
            let first = text.lines().next().unwrap_or("");
            Ok(first.split('\t').next().unwrap_or("").trim().to_string())
        },
        &|db| {
            mysql::query(
                &server,
                &format!("DROP DATABASE IF EXISTS {}", mysql::quote_ident(db)),
                "dropping the scratch database",
            )
            .map(drop)
            .map_err(|e| format!("{e:#}"))
        },
        &mut |n, ok, d| out.push((n.to_string(), ok, d)),
    );
    out
}
