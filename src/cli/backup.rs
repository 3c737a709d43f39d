//! `snap backup`: paths, stdin and commands into a snapshot.

use super::{human, open_session, progress, Global, EXIT_PARTIAL};
use anyhow::Result;
use clap::Args;
use snap::ops::backup::{BackupOptions, Progress, StreamInput, StreamSource};
use snap::session::Operation;
use snap::write::{mysql, sources};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
    /// Read a stream from standard input.
    #[arg(long)]
    stdin: bool,
    /// Run this shell command and store its standard output as a stream
    /// (`NAME=CMD` names the stream); no snapshot is recorded if it fails.
    #[arg(long = "command", value_name = "[NAME=]CMD")]
    commands: Vec<String>,
    /// Dump a PostgreSQL database with `pg_dump --format=custom --compress=0`
    /// (repeatable). CONNINFO is a libpq connection string or URI without a
    /// password (use PGPASSWORD or ~/.pgpass); the stream is named
    /// `pg-<dbname>.dump` unless given as NAME=CONNINFO.
    #[arg(long = "pg", value_name = "[NAME=]CONNINFO")]
    pg: Vec<String>,
    /// Also store `pg_dumpall --globals-only` (roles, tablespaces) of the
    /// first --pg server as stream `pg-globals.sql`.
    #[arg(long, requires = "pg")]
    pg_globals: bool,
    /// Dump a MongoDB deployment with `mongodump --archive --uri=URI`
    /// (repeatable); the stream is named `mongo.archive` unless given as
    /// NAME=URI. A password in the URI is passed through a temporary
    /// `--config` file, never on the command line.
    #[arg(long = "mongo", value_name = "[NAME=]URI")]
    mongo: Vec<String>,
    /// Add `--oplog` to every mongodump (point-in-time dump of a replica set).
    #[arg(long, requires = "mongo")]
    mongo_oplog: bool,
    /// Dump a MariaDB/MySQL database with `mariadb-dump --single-transaction
    /// --quick --routines --events --triggers --hex-blob`
    /// (repeatable). CONNINFO is `mysql://USER@HOST:PORT/DATABASE` or
    /// `host=… port=… user=… database=…`, without a password (the client
    /// reads MYSQL_PWD or ~/.my.cnf; `password-file=PATH` is passed in a
    /// private option file); the stream is named `mysql-<database>.sql`
    /// unless given as NAME=CONNINFO.
    #[arg(long = "mysql", value_name = "[NAME=]CONNINFO")]
    mysql: Vec<String>,
    /// Also store the accounts and grants of the first --mysql server
    /// (`mariadb-dump --system=users`) as stream `mysql-globals.sql`.
    #[arg(long, requires = "mysql")]
    mysql_globals: bool,
    /// If a --pg/--mysql/--mongo/--command/--stdin source fails, still record the
    /// snapshot without it, tagged `partial` (exit code 3).
    #[arg(long)]
    allow_partial: bool,
    /// Name of the stream from --stdin or a single --command [default: stdin, or the command's program name].
    #[arg(long)]
    stdin_name: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record [default: this machine's].
    #[arg(long)]
    host: Option<String>,
    /// Exclude paths matching a glob (repeatable; `*` does not cross `/`,
    /// `**` does). Without `/` it matches a base name at any depth (`*.tmp`);
    /// an absolute pattern matches the whole absolute path
    /// (`/home/*/.cache`); `./` or `../` patterns are relative to the
    /// current directory; any other pattern with `/` matches the last
    /// components of a path anywhere below the backup paths (`data/git`
    /// excludes `/srv/data/git`).
    #[arg(long = "exclude", value_name = "GLOB")]
    excludes: Vec<String>,
    /// Parent snapshot to compare against [default: latest with the same host and paths].
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, ignoring the parent snapshot.
    #[arg(long)]
    force: bool,
    /// A description stored with the snapshot.
    #[arg(long)]
    description: Option<String>,
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<u8> {
    // The lease is written before the catalog loads the prune marks, so a
    // concurrent prune either sees this lease as a blocker or this backup
    // sees its mark (format-spec §19, §20.2); the snapshot
    // is committed only while the lease is valid.
    let repo = open_session(g, Operation::Backup)?;
    let mut streams = Vec::new();
    if a.stdin {
        streams.push(StreamSource {
            name: a.stdin_name.clone().unwrap_or_else(|| "stdin".into()),
            kind: "stdin".into(),
            input: StreamInput::Stdin,
            details: Default::default(),
        });
    }
    for c in &a.commands {
        let (name, cmd) = match c.split_once('=') {
            Some((n, rest)) if sources::valid_stream_name(n) => (n.to_string(), rest.to_string()),
            _ => {
                let default = if a.commands.len() == 1 && !a.stdin {
                    a.stdin_name.clone()
                } else {
                    None
                };
                let prog = c.split_whitespace().next().unwrap_or("command");
                let prog = prog.rsplit('/').next().unwrap_or(prog).to_string();
                (default.unwrap_or(prog), c.clone())
            }
        };
        streams.push(StreamSource {
            name,
            kind: "command".into(),
            input: StreamInput::Command(cmd),
            details: Default::default(),
        });
    }
    let mut failed_sources = Vec::new();
    let mut secrets = Vec::new();
    let mut secrets_my = Vec::new();
    let mut fail_or_record = |e: snap::Error, name: String, kind: &str| -> Result<()> {
        if e.kind() != snap::ErrorKind::Source {
            return Err(e.into());
        }
        if !a.allow_partial {
            return Err(snap::Error::new(
                snap::ErrorKind::Source,
                format!("{e:#}; no snapshot was recorded (--allow-partial records one without it)"),
            )
            .into());
        }
        let mut details = std::collections::BTreeMap::new();
        details.insert("error".to_string(), format!("{e:#}"));
        failed_sources.push(snap::format::snapshot::SourceInfo {
            name,
            kind: kind.into(),
            command: None,
            details,
        });
        Ok(())
    };
    for (i, spec) in a.pg.iter().enumerate() {
        match sources::pg_source(spec) {
            Ok(s) => streams.push(s),
            Err(e) => fail_or_record(e, spec_label(spec), sources::KIND_PG)?,
        }
        if i == 0 && a.pg_globals {
            let (_, conninfo) = sources::split_name(spec);
            match sources::pg_globals_source(conninfo) {
                Ok(s) => streams.push(s),
                Err(e) => fail_or_record(
                    e,
                    sources::PG_GLOBALS_STREAM.into(),
                    sources::KIND_PG_GLOBALS,
                )?,
            }
        }
    }
    for (i, spec) in a.mysql.iter().enumerate() {
        match mysql::mysql_source(spec) {
            Ok((s, secret)) => {
                streams.push(s);
                secrets_my.extend(secret);
            }
            Err(e) => fail_or_record(e, mysql_label(spec), mysql::KIND_MYSQL)?,
        }
        if i == 0 && a.mysql_globals {
            let (_, conninfo) = mysql::split_name(spec);
            match mysql::mysql_globals_source(conninfo) {
                Ok((s, secret)) => {
                    streams.push(s);
                    secrets_my.extend(secret);
                }
                Err(e) => fail_or_record(
                    e,
                    mysql::MYSQL_GLOBALS_STREAM.into(),
                    mysql::KIND_MYSQL_GLOBALS,
                )?,
            }
        }
    }
    for spec in &a.mongo {
        match sources::mongo_source(spec, a.mongo_oplog) {
            Ok((s, secret)) => {
                streams.push(s);
                secrets.extend(secret);
            }
            Err(e) => fail_or_record(e, "mongo".into(), sources::KIND_MONGO)?,
        }
    }
    let mut names = std::collections::HashSet::new();
    for s in &streams {
        if !names.insert(s.name.clone()) {
            return Err(snap::Error::usage(format!(
                "two sources would both be stored as stream {:?}: name them with NAME=...",
                s.name
            ))
            .into());
        }
    }
    let parent = match &a.parent {
        Some(p) => Some(repo.resolve_snapshot(p)?.0),
        None => None,
    };
    let progress = Arc::new(Progress::default());
    let bar = if g.json && !g.no_progress {
        progress::start_json(&progress, "backup")
    } else {
        progress::start(&progress, "backup", g.json || g.no_progress)
    };
    let out = snap::ops::backup::backup(
        &repo,
        BackupOptions {
            paths: a.paths.clone(),
            streams,
            tags: a.tags.clone(),
            host: a.host.clone(),
            excludes: a.excludes.clone(),
            parent,
            force: a.force,
            description: a.description.clone(),
            progress: progress.clone(),
            before_commit: None,
            allow_partial: a.allow_partial,
            failed_sources,
        },
    );
    bar.finish();
    let repo = repo.finish();
    drop(secrets);
    drop(secrets_my);
    let out = out.map_err(|e| match e.kind() {
        snap::ErrorKind::Interrupted => snap::Error::new(
            e.kind(),
            format!("{e:#}: no snapshot was recorded; the data already stored is indexed, the next backup reuses it"),
        ),
        _ => e,
    })?;
    // Under --json every warning is one JSON object on stderr.
    let warn = |m: String| {
        if g.json {
            eprintln!("{}", serde_json::json!({"type": "warning", "message": m}));
        } else {
            eprintln!("warning: {}", super::output::escape(&m));
        }
    };
    for f in &out.snapshot.failed_sources {
        warn(
            f.details
                .get("error")
                .cloned()
                .unwrap_or_else(|| "source failed".into()),
        );
    }
    for w in &out.warnings {
        warn(format!("skipped {w}"));
    }
    for c in &out.changed {
        warn(format!("{c}: changed while reading; stored the bytes read"));
    }
    let s = &out.snapshot.summary;
    if g.json {
        outln!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": out.id.to_hex(), "summary": s, "warnings": out.warnings, "changed": out.changed, "partial": out.snapshot.partial, "failed_sources": out.snapshot.failed_sources, "requests": repo.store().stats().to_json()})
        )?;
    } else {
        eprintln!(
            "files: {} new, {} changed, {} unchanged; dirs: {}",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs
        );
        eprintln!(
            "read {}, added {} to the repository ({} before compression, {} blobs) in {:.2} s",
            human(s.bytes_read),
            human(s.bytes_added_stored),
            human(s.bytes_added_raw),
            s.blobs_added,
            s.seconds
        );
        if out.snapshot.partial {
            outln!(
                "snapshot {} saved, partial: {} source(s) failed",
                out.id.short(),
                out.snapshot.failed_sources.len()
            )?;
        } else {
            outln!("snapshot {} saved", out.id.short())?;
        }
    }
    Ok(
        if out.warnings.is_empty() && out.changed.is_empty() && !out.snapshot.partial {
            0
        } else {
            EXIT_PARTIAL
        },
    )
}

/// The stream name a `--pg` argument asks for, for error records.
fn spec_label(spec: &str) -> String {
    let (name, conninfo) = sources::split_name(spec);
    name.map(str::to_string).unwrap_or_else(|| {
        format!(
            "pg-{}.dump",
            sources::pg_dbname(conninfo).unwrap_or_else(|| "?".into())
        )
    })
}

/// The stream name a `--mysql` argument asks for, for error records.
fn mysql_label(spec: &str) -> String {
    let (name, conninfo) = mysql::split_name(spec);
    name.map(str::to_string).unwrap_or_else(|| {
        let db = mysql::MyConn::parse(conninfo)
            .ok()
            .and_then(|c| c.database)
            .unwrap_or_else(|| "?".into());
        format!("mysql-{db}.sql")
    })
}
