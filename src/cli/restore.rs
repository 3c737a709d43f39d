//! `snap restore`: a snapshot into a directory or a stream to stdout.

use super::{human, open, progress, Global};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use snap::format::snapshot::Snapshot;
use snap::read::restore::restore_stream;
use snap::write::{mysql, sources};
use snap::Error;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot: an id, a unique prefix, "latest" or "latest~N".
    snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(long, conflicts_with = "stdout")]
    target: Option<PathBuf>,
    /// Pack reads kept in flight while restoring into a directory (1..=64;
    /// default: 4 for a local repository, 16 for S3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    reads_in_flight: Option<u16>,
    /// Write the snapshot's stream to standard output.
    #[arg(long)]
    stdout: bool,
    /// With --stdout, --pg, --mysql, --mongo or --sqlite: which stream, when the snapshot has
    /// several of that kind.
    #[arg(long)]
    stream: Option<String>,
    /// Restore the snapshot's PostgreSQL dump into this database (a libpq
    /// connection string or URI without a password) with `pg_restore`;
    /// the `pg-globals.sql` stream, if present, is replayed with psql first.
    /// pg_restore stops at the first error; without --create it restores in
    /// one transaction, so a failed restore changes nothing.
    #[arg(long, value_name = "CONNINFO", conflicts_with = "stdout")]
    pg: Option<String>,
    /// With --pg: connect to the server's `postgres` database and let
    /// pg_restore create the dumped database (`pg_restore --create`);
    /// with --mysql: create the database (CONNINFO's, else the one dumped).
    /// Refused if that database exists, unless --clean is given.
    #[arg(long)]
    create: bool,
    /// With --pg: drop objects before recreating them
    /// (`pg_restore --clean --if-exists`); with --mysql: drop the whole
    /// database and create it empty before the dump is replayed.
    #[arg(long)]
    clean: bool,
    /// With --pg or --mysql: do not replay the globals stream (roles,
    /// tablespaces; MySQL accounts and grants).
    #[arg(long)]
    no_globals: bool,
    /// Restore the snapshot's MariaDB/MySQL dump into this database with
    /// `mariadb` (CONNINFO as for `backup --mysql`; without a database
    /// name, the one dumped); the `mysql-globals.sql` stream, if present,
    /// is replayed first. The client stops at the first error.
    #[arg(long, value_name = "CONNINFO", conflicts_with_all = ["stdout", "pg"])]
    mysql: Option<String>,
    /// Restore the snapshot's MongoDB archive with
    /// `mongorestore --archive --uri=URI`.
    #[arg(long, value_name = "URI", conflicts_with = "stdout")]
    mongo: Option<String>,
    /// With --mongo: drop each collection before restoring it
    /// (`mongorestore --drop`).
    #[arg(long, requires = "mongo")]
    drop: bool,
    /// Restore the snapshot's SQLite database stream to this file: written
    /// beside it, checked with `PRAGMA integrity_check`, then renamed into
    /// place. An existing file is refused unless --force.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["stdout", "target"])]
    sqlite: Option<PathBuf>,
    /// With --sqlite: replace an existing database file (and remove its
    /// -wal, -shm and -journal files). Stop the application using it first.
    #[arg(long, requires = "sqlite")]
    force: bool,
    /// Only restore paths matching this glob, and everything below them
    /// (repeatable). Only selected folders and the parents of selected
    /// entries are created; those parents get their snapshot metadata
    /// (mode, owner, mtime), as restic does. A file whose data in the
    /// repository is damaged is named at the end and the exit code is 1;
    /// everything else is restored.
    #[arg(long = "include")]
    include: Vec<String>,
    /// Do not restore paths matching this glob (repeatable).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
    /// Files that already exist in the target: "always" replaces them;
    /// "if-changed" keeps those whose size and mtime match the snapshot
    /// (unread), reads the others at the snapshot's chunk boundaries and
    /// rewrites only the chunks whose keyed hash differs (then sets length
    /// and metadata; a file that matches is kept, and so is a symlink that
    /// points where the snapshot's does); "if-newer" replaces only
    /// those older than the snapshot's; "never" keeps whatever exists.
    #[arg(long, value_enum, default_value = "always")]
    overwrite: OverwriteArg,
    /// Remove files and folders in the target that the snapshot does not
    /// have, in the folders restored whole (symlinks are removed, never
    /// followed).
    #[arg(long)]
    delete: bool,
    /// Print what would be written, updated in place, kept, blocked (a
    /// folder in the way) and deleted (one "write PATH", "update PATH",
    /// "keep PATH", "blocked PATH" or "delete PATH" line each, decided as
    /// the real run decides) and the bytes that would be written; change
    /// nothing. Exits 1 if an entry would be blocked, as the real run.
    #[arg(long)]
    dry_run: bool,
    /// Read every restored file back (also those --overwrite kept) and
    /// compare its chunk ids with the snapshot's; a mismatch is named and
    /// the exit code is 1.
    #[arg(long)]
    verify: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OverwriteArg {
    Always,
    IfChanged,
    IfNewer,
    Never,
}

pub fn run(g: &Global, a: &RestoreArgs) -> Result<u8> {
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(&a.snapshot)?;
    if a.stdout {
        // A reader that goes away (`| head`) ends the command quietly (main.rs).
        let mut out = super::stdout();
        let n = snap::read::restore::restore_stream(
            &repo,
            &snap.tree,
            &snap.streams,
            a.stream.as_deref(),
            &mut out,
        )
        .with_context(|| format!("restoring snapshot {}", id.short()))?;
        if !g.json {
            eprintln!("restored {} from snapshot {}", human(n), id.short());
        }
        return Ok(0);
    }
    if (a.create || a.clean || a.no_globals) && a.pg.is_none() && a.mysql.is_none() {
        return Err(
            Error::usage("--create, --clean and --no-globals go with --pg or --mysql").into(),
        );
    }
    if let Some(conninfo) = &a.pg {
        restore_pg(g, &repo, &id, &snap, a, conninfo)?;
    }
    if let Some(conninfo) = &a.mysql {
        restore_mysql(g, &repo, &id, &snap, a, conninfo)?;
    }
    if let Some(uri) = &a.mongo {
        restore_mongo(g, &repo, &id, &snap, a, uri)?;
    }
    if let Some(path) = &a.sqlite {
        restore_sqlite(g, &repo, &id, &snap, a, path)?;
    }
    let target = match &a.target {
        Some(t) => t.clone(),
        None if a.pg.is_some() || a.mongo.is_some() || a.mysql.is_some() || a.sqlite.is_some() => {
            return Ok(0)
        }
        None => return Err(Error::usage(
            "give --target DIR (or --stdout for a stream, --pg/--mysql/--mongo/--sqlite for a database)",
            )
            .into()),
        };
    let bar = progress::start(g, "restore", g.json || g.no_progress);
    let started = std::time::Instant::now();
    let r = snap::read::restore::restore(
        &repo,
        &snap.tree,
        &target,
        &snap::read::restore::RestoreOptions {
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            overwrite: match a.overwrite {
                OverwriteArg::Always => snap::read::restore::Overwrite::Always,
                OverwriteArg::IfChanged => snap::read::restore::Overwrite::IfChanged,
                OverwriteArg::IfNewer => snap::read::restore::Overwrite::IfNewer,
                OverwriteArg::Never => snap::read::restore::Overwrite::Never,
            },
            delete: a.delete,
            dry_run: a.dry_run,
            verify: a.verify,
            reads_in_flight: a.reads_in_flight.map_or(0, usize::from),
            // For tests only: lowers the open-file limit to exercise the
            // close-and-reopen path without thousands of files.
            max_open_files: std::env::var("SNAP_TEST_MAX_OPEN_FILES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        },
    );
    bar.finish();
    let sum = r.with_context(|| format!("restoring snapshot {}", id.short()))?;
    let secs = started.elapsed().as_secs_f64();
    if a.dry_run {
        for l in &sum.actions {
            if g.json {
                let (action, path) = l.split_once(' ').unwrap_or((l, ""));
                outln!(
                    "{}",
                    serde_json::json!({"type": "action", "action": action, "path": path})
                )?;
            } else {
                outln!("{}", super::output::escape(l))?;
            }
        }
    }
    if g.json {
        for v in &sum.verify_failed {
            outln!(
                "{}",
                serde_json::json!({"type": "verify_failed", "path": v.path.to_string_lossy(), "error": v.error})
            )?;
        }
        for d in &sum.blocked {
            outln!(
                "{}",
                serde_json::json!({"type": "blocked", "path": d.path.to_string_lossy(), "error": d.error})
            )?;
        }
        for d in &sum.damaged {
            outln!(
                "{}",
                serde_json::json!({"type": "damaged", "path": d.path.to_string_lossy(), "error": d.error})
            )?;
        }
        outln!(
            "{}",
            serde_json::json!({"type": "summary", "snapshot": id.to_hex(), "files": sum.files, "dirs": sum.dirs, "bytes": sum.bytes, "bytes_read": sum.bytes_read, "updated": sum.updated, "peak_open_files": sum.peak_open_files, "damaged": sum.damaged.len(), "blocked": sum.blocked.len(), "kept": sum.kept, "deleted": sum.deleted, "bytes_compared": sum.bytes_compared, "verify_failed": sum.verify_failed.len(), "dry_run": a.dry_run, "plan_seconds": sum.plan_seconds, "seconds": secs})
        )?;
    } else {
        eprintln!(
            "{} snapshot {} to {}: {} files, {} dirs, {} written, {} read from the repository in {:.2} s",
            if a.dry_run {
                "would restore"
            } else {
                "restored"
            },
            id.short(),
            target.display(),
            sum.files,
            sum.dirs,
            human(sum.bytes),
            human(sum.bytes_read),
            secs
        );
        if sum.kept + sum.updated + sum.deleted + sum.bytes_compared > 0 {
            eprintln!(
                "updated {} existing files in place (changed chunks only), kept {}, deleted {}, read {} of existing files to compare",
                sum.updated,
                sum.kept,
                sum.deleted,
                human(sum.bytes_compared)
            );
        }
        for v in &sum.verify_failed {
            eprintln!("error: {}: verify failed: {}", v.path.display(), v.error);
        }
        for d in sum.damaged.iter().chain(&sum.blocked) {
            eprintln!("error: {}: not restored: {}", d.path.display(), d.error);
        }
    }
    if !sum.blocked.is_empty() {
        if !g.json {
            eprintln!(
                "error: {} file(s) not restored because a folder is in their place",
                sum.blocked.len()
            );
        }
        if sum.damaged.is_empty() {
            return Ok(1);
        }
    }
    if !sum.damaged.is_empty() {
        if !g.json {
            eprintln!(
                "error: {} file(s) not restored because their data in the repository is damaged; run `snap check --read-data`",
                sum.damaged.len()
            );
        }
        return Ok(1);
    }
    if !sum.verify_failed.is_empty() {
        if !g.json {
            eprintln!(
                "error: {} file(s) on disk do not match the snapshot after the restore",
                sum.verify_failed.len()
            );
        }
        return Ok(1);
    }
    Ok(0)
}

/// The stream of `kind` to restore: `--stream` if given (it must be of
/// that kind), else the only one.
fn pick_stream(snap: &Snapshot, kind: &str, a: &RestoreArgs, flag: &str) -> Result<String> {
    let of_kind: Vec<&str> = snap
        .sources
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.name.as_str())
        .collect();
    if let Some(n) = &a.stream {
        // A dump that came in through --stdin or --command has no database
        // kind; named explicitly, it is handed to the restore program, which
        // checks its format.
        let untyped = snap.sources.iter().any(|s| {
            s.name == *n
                && ![
                    sources::KIND_PG,
                    sources::KIND_PG_GLOBALS,
                    sources::KIND_MONGO,
                    mysql::KIND_MYSQL,
                    mysql::KIND_MYSQL_GLOBALS,
                    snap::write::sqlite::KIND_SQLITE,
                ]
                .contains(&s.kind.as_str())
        });
        if of_kind.contains(&n.as_str()) || untyped {
            return Ok(n.clone());
        }
        return Err(Error::usage(format!(
            "stream {n:?} is not a {kind} dump of this snapshot; {flag} can restore: {}",
            if of_kind.is_empty() {
                "none".to_string()
            } else {
                of_kind.join(", ")
            }
        ))
        .into());
    }
    match of_kind.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Error::usage(format!(
            "this snapshot holds no {kind} dump; streams: {}",
            if snap.streams.is_empty() {
                "none".to_string()
            } else {
                snap.streams.join(", ")
            }
        ))
        .into()),
        many => Err(Error::usage(format!(
            "this snapshot holds several {kind} dumps ({}); pick one with --stream NAME",
            many.join(", ")
        ))
        .into()),
    }
}

/// Whether the snapshot holds stream `name` of source kind `kind`.
fn has_stream(snap: &Snapshot, kind: &str, name: &str) -> bool {
    snap.sources
        .iter()
        .any(|s| s.kind == kind && s.name == name)
}

/// The database name recorded at backup for stream `name` of kind `kind`
/// (the source's `database` detail), if any.
fn recorded_database(snap: &Snapshot, kind: &str, name: &str) -> Option<String> {
    snap.sources
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .and_then(|s| s.details.get("database"))
        .cloned()
}

/// Replays the globals stream `stream` (roles, users, grants) into the
/// client `argv` (psql, mariadb). A statement that fails is not fatal: the
/// stderr lines `is_error` accepts are counted and the first is printed as
/// one warning on stderr. Errors: the stream cannot be read, the client
/// cannot be started (`label` names the step).
fn replay_globals(
    repo: &snap::Repository,
    snap: &Snapshot,
    stream: &str,
    argv: &[String],
    label: &str,
    is_error: impl Fn(&str) -> bool,
) -> Result<()> {
    let (_, err) = sources::pipe_into(argv, label, |w| {
        restore_stream(repo, &snap.tree, &snap.streams, Some(stream), w)
    })?;
    let errors: Vec<&str> = std::str::from_utf8(&err)
        .unwrap_or("")
        .lines()
        .filter(|l| is_error(l))
        .collect();
    if let Some(first) = errors.first() {
        eprintln!(
            "warning: {} globals statement(s) failed, first: {}",
            errors.len(),
            first.trim()
        );
    }
    Ok(())
}

fn restore_pg(
    g: &Global,
    repo: &snap::Repository,
    id: &snap::SnapshotId,
    snap: &Snapshot,
    a: &RestoreArgs,
    conninfo: &str,
) -> Result<()> {
    if sources::pg_has_password(conninfo) {
        return Err(Error::usage(
            "the --pg connection string holds a password; remove it and set PGPASSWORD or use ~/.pgpass",
        )
        .into());
    }
    let name = pick_stream(snap, sources::KIND_PG, a, "--pg")?;
    if a.create && !a.clean {
        refuse_existing_database(repo, snap, &name, conninfo)?;
    }
    let started = std::time::Instant::now();
    if has_stream(snap, sources::KIND_PG_GLOBALS, sources::PG_GLOBALS_STREAM) && !a.no_globals {
        let target = if a.create {
            sources::pg_with_dbname(conninfo, "postgres")
        } else {
            conninfo.to_string()
        };
        let argv = sources::psql_globals_argv(&target);
        replay_globals(
            repo,
            snap,
            sources::PG_GLOBALS_STREAM,
            &argv,
            "restoring pg-globals.sql with psql",
            |l| l.contains("ERROR:") && !l.contains("already exists"),
        )?;
    }
    let argv = sources::pg_restore_argv(conninfo, a.create, a.clean);
    let (n, _) = sources::pipe_into(
        &argv,
        &format!("restoring stream {name:?} with pg_restore"),
        |w| restore_stream(repo, &snap.tree, &snap.streams, Some(&name), w),
    )
    .with_context(|| format!("restoring snapshot {}", id.short()))?;
    let secs = started.elapsed().as_secs_f64();
    report_database(
        g,
        "pg",
        id,
        &name,
        json!({}),
        n,
        secs,
        "with pg_restore",
        "",
    )
}

/// With `--create` (and no `--clean`): fails before anything is restored if
/// the database the dump creates already exists on the server, since
/// pg_restore would add the dump's rows to the rows already there.
/// The database is the one `--pg` recorded at backup, else the one the
/// dump's header names (a dump that came in through --stdin or --command).
fn refuse_existing_database(
    repo: &snap::Repository,
    snap: &Snapshot,
    stream: &str,
    conninfo: &str,
) -> Result<()> {
    let db = match recorded_database(snap, sources::KIND_PG, stream) {
        Some(db) => db,
        None => sources::pg_dump_dbname(|w| {
            restore_stream(repo, &snap.tree, &snap.streams, Some(stream), w)
        })
        .with_context(|| format!("restoring stream {stream:?} with --create"))?,
    };
    if sources::pg_database_exists(conninfo, &db, &format!("checking database {db:?}"))? {
        return Err(Error::usage(format!(
            "database {db:?} already exists: --create would add the dump's rows to it; \
             add --clean to drop and recreate it, or restore without --create into an empty database"
        ))
        .into());
    }
    Ok(())
}

fn restore_mongo(
    g: &Global,
    repo: &snap::Repository,
    id: &snap::SnapshotId,
    snap: &Snapshot,
    a: &RestoreArgs,
    uri: &str,
) -> Result<()> {
    let name = pick_stream(snap, sources::KIND_MONGO, a, "--mongo")?;
    let started = std::time::Instant::now();
    let (conn, secret) = sources::mongo_connect_args(uri)?;
    let mut argv = vec!["mongorestore".to_string(), "--archive".to_string()];
    argv.extend(conn);
    if a.drop {
        argv.push("--drop".into());
    }
    let (n, _) = sources::pipe_into(
        &argv,
        &format!("restoring stream {name:?} with mongorestore"),
        |w| restore_stream(repo, &snap.tree, &snap.streams, Some(&name), w),
    )
    .with_context(|| format!("restoring snapshot {}", id.short()))?;
    drop(secret);
    let secs = started.elapsed().as_secs_f64();
    report_database(
        g,
        "mongo",
        id,
        &name,
        json!({}),
        n,
        secs,
        "with mongorestore",
        "",
    )
}

/// `snap restore ID --mysql CONNINFO`: replays the globals stream (if any,
/// `--force`: an account that cannot be made is reported, not fatal), then
/// the dump into the target database through `mariadb`, which stops at the
/// first error. The target is CONNINFO's database, else the one recorded at
/// backup. `--create` makes it first (refused if it exists, unless
/// `--clean`); `--clean` drops and recreates it empty.
fn restore_mysql(
    g: &Global,
    repo: &snap::Repository,
    id: &snap::SnapshotId,
    snap: &Snapshot,
    a: &RestoreArgs,
    conninfo: &str,
) -> Result<()> {
    let conn = mysql::MyConn::parse(conninfo)?;
    let name = pick_stream(snap, mysql::KIND_MYSQL, a, "--mysql")?;
    let recorded = recorded_database(snap, mysql::KIND_MYSQL, &name);
    let Some(db) = conn.database.clone().or(recorded) else {
        return Err(Error::usage(format!(
            "--mysql {}: name the database to restore into (mysql://host/DATABASE)",
            conn.display()
        ))
        .into());
    };
    let started = std::time::Instant::now();
    let server = conn.with_database(None);
    let label = format!("restoring stream {name:?} into database {db:?}");
    if a.create || a.clean {
        let exists = mysql::database_exists(&server, &db, &label)?;
        if exists && !a.clean {
            return Err(Error::usage(format!(
                "database {db:?} already exists: --create would add the dump's rows to it; \
                 add --clean to drop and recreate it, or restore without --create"
            ))
            .into());
        }
        let q = mysql::quote_ident(&db);
        let sql = if a.clean {
            format!("DROP DATABASE IF EXISTS {q}; CREATE DATABASE {q}")
        } else {
            format!("CREATE DATABASE {q}")
        };
        mysql::query(&server, &sql, &label)?;
    }
    if has_stream(snap, mysql::KIND_MYSQL_GLOBALS, mysql::MYSQL_GLOBALS_STREAM) && !a.no_globals {
        let (argv, secret) = mysql::client_argv(&server, None, true)?;
        replay_globals(
            repo,
            snap,
            mysql::MYSQL_GLOBALS_STREAM,
            &argv,
            "restoring mysql-globals.sql with the mysql client",
            |l| l.starts_with("ERROR"),
        )?;
        drop(secret);
    }
    let (argv, secret) = mysql::client_argv(&conn, Some(&db), false)?;
    let (n, _) = sources::pipe_into(&argv, &label, |w| {
        restore_stream(repo, &snap.tree, &snap.streams, Some(&name), w)
    })
    .with_context(|| format!("restoring snapshot {}", id.short()))?;
    drop(secret);
    let secs = started.elapsed().as_secs_f64();
    report_database(
        g,
        "mysql",
        id,
        &name,
        json!({ "database": db }),
        n,
        secs,
        &format!("into database {db} with the mysql client"),
        "",
    )
}

fn restore_sqlite(
    g: &Global,
    repo: &snap::Repository,
    id: &snap::SnapshotId,
    snap: &Snapshot,
    a: &RestoreArgs,
    path: &std::path::Path,
) -> Result<()> {
    let name = pick_stream(snap, snap::write::sqlite::KIND_SQLITE, a, "--sqlite")?;
    let started = std::time::Instant::now();
    let n = snap::write::sqlite::restore_file(path, a.force, |w| {
        restore_stream(repo, &snap.tree, &snap.streams, Some(&name), w)
    })
    .with_context(|| format!("restoring snapshot {} to {}", id.short(), path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    report_database(
        g,
        "sqlite",
        id,
        &name,
        json!({ "path": path.to_string_lossy() }),
        n,
        secs,
        &format!("to {}", path.display()),
        " (integrity_check ok)",
    )
}

/// Reports a finished database restore of stream `name` (`n` bytes in
/// `secs` seconds): under `--json` one `{"type":"database","kind":KIND,…}`
/// line on stdout with `extra`'s fields (an object) added, else
/// `restored stream NAME (SIZE) of snapshot ID HOW in S s AFTER` on stderr.
#[allow(clippy::too_many_arguments)]
fn report_database(
    g: &Global,
    kind: &str,
    id: &snap::SnapshotId,
    name: &str,
    extra: serde_json::Value,
    n: u64,
    secs: f64,
    how: &str,
    after: &str,
) -> Result<()> {
    if g.json {
        let mut line = json!({"type": "database", "kind": kind, "snapshot": id.to_hex(), "stream": name, "bytes": n, "seconds": secs});
        if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
            line.extend(extra);
        }
        outln!("{line}")?;
    } else {
        eprintln!(
            "restored stream {name} ({}) of snapshot {} {how} in {secs:.2} s{after}",
            human(n),
            id.short()
        );
    }
    Ok(())
}
