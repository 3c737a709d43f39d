//! Database sources: PostgreSQL (`pg_dump`, `pg_dumpall --globals-only`)
//! and MongoDB (`mongodump --archive`) as backup streams, and the reverse
//! (`pg_restore`, `psql`, `mongorestore`) for restores.
//!
//! Programs are run directly (no shell), so connection strings reach them
//! unchanged as one argument. Passwords never appear in an argument list:
//! a PostgreSQL connection string holding one is refused (use `PGPASSWORD`
//! or `~/.pgpass`, which libpq reads from the environment snap runs in);
//! a MongoDB URI's password is moved into a mongo-tools `--config` YAML
//! file readable only by the user, removed when the run ends.
//!
//! PostgreSQL programs come from `$SNAP_PG_BIN` when that names a folder
//! holding them, else from `PATH`; MongoDB tools from `PATH`.

use crate::error::{Error, ErrorKind, Result};
use crate::ops::backup::StreamInput;
use crate::ops::backup::StreamSource;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Removes snap's own passwords from a child's environment: every variable
/// whose name starts with `SNAP_` and contains `PASSWORD` (`SNAP_PASSWORD`,
/// `SNAP_PASSWORD_FILE`, `SNAP_FROM_PASSWORD`, `SNAP_NEW_PASSWORD`, their
/// `_FILE` forms, …), as found in snap's environment now. For the `snap`
/// re-exec of profile jobs, which then sets the one password it needs.
pub fn scrub_passwords(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let Some(name) = k.to_str() else { continue };
        if name.starts_with("SNAP_") && name.contains("PASSWORD") {
            cmd.env_remove(&k);
        }
    }
}

/// Secret variables of the storage backend removed by [`scrub_env`]. snap
/// reads them when it opens an S3 repository, before any child starts; a
/// child (`pg_dump`, `mongodump`, a `--command`, a hook) has no use for the
/// repository's storage credentials, which can delete every backup. A child
/// that needs its own AWS access keeps `AWS_PROFILE`/`~/.aws/credentials`,
/// an instance role, and the non-secret `AWS_ACCESS_KEY_ID`, `AWS_REGION`
/// and `AWS_ENDPOINT_URL`.
pub const SECRET_ENV: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// Removes every secret snap holds from a child's environment: its
/// passwords ([`scrub_passwords`]) and the storage secrets in
/// [`SECRET_ENV`]. Used for every program snap starts except its own
/// re-exec. Variables the child's own program needs (`PGPASSWORD`,
/// `PGPASSFILE`, …) are kept.
pub fn scrub_env(cmd: &mut Command) {
    scrub_passwords(cmd);
    for k in SECRET_ENV {
        cmd.env_remove(k);
    }
}

/// `Command::new(program)` with [`scrub_env`] applied: how snap starts
/// every program other than itself.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    scrub_env(&mut c);
    c
}

/// Source kind of a `pg_dump` stream.
pub const KIND_PG: &str = "pg";
/// Source kind of a `pg_dumpall --globals-only` stream.
pub const KIND_PG_GLOBALS: &str = "pg-globals";
/// Source kind of a `mongodump --archive` stream.
pub const KIND_MONGO: &str = "mongo";
/// Stream name of the PostgreSQL globals (roles, tablespaces).
pub const PG_GLOBALS_STREAM: &str = "pg-globals.sql";

/// libpq connection keywords (PostgreSQL 17 docs, §34.1.2): a `--pg`
/// argument `WORD=...` whose WORD is one of these is a connection string,
/// not `NAME=CONNINFO`.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// True for a valid stream name: 1-255 bytes of ASCII letters, digits,
/// `-`, `_` and `.`, not `.` or `..`.
pub fn valid_stream_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Splits `NAME=VALUE` into its name and value when NAME is a valid stream
/// name and not a libpq keyword and VALUE is not empty; otherwise returns
/// `(None, spec)`.
pub fn split_name(spec: &str) -> (Option<&str>, &str) {
    if let Some((n, rest)) = spec.split_once('=') {
        if valid_stream_name(n) && !LIBPQ_KEYWORDS.contains(&n) && !rest.is_empty() {
            return (Some(n), rest);
        }
    }
    (None, spec)
}

fn is_uri(conninfo: &str) -> bool {
    conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://")
}

/// Parses a key=value connection string into pairs (libpq syntax: values
/// may be single-quoted with `\` escapes). Returns `None` when it is not in
/// that syntax (a URI or a bare database name).
pub(crate) fn conninfo_pairs(conninfo: &str) -> Option<Vec<(String, String)>> {
    if is_uri(conninfo) || !conninfo.contains('=') {
        return None;
    }
    let mut out = Vec::new();
    let mut it = conninfo.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return None;
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut val = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    Some('\\') => val.push(it.next()?),
                    Some('\'') => break,
                    Some(c) => val.push(c),
                    None => return None,
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    it.next();
                    val.push(it.next()?);
                    continue;
                }
                val.push(c);
                it.next();
            }
        }
        out.push((key, val));
    }
    Some(out)
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a URI `scheme://[userinfo@]hosts[/path][?query]` into
/// (scheme://, userinfo, hosts, rest starting at `/` or `?` or empty).
pub(crate) fn uri_parts(uri: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let p = uri.find("://")? + 3;
    let (scheme, after) = uri.split_at(p);
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    match authority.rfind('@') {
        Some(at) => Some((scheme, Some(&authority[..at]), &authority[at + 1..], rest)),
        None => Some((scheme, None, authority, rest)),
    }
}

/// The database name a PostgreSQL connection string names, if it names
/// one: `dbname=` of a key=value string, the path of a URI, or the whole
/// string when it has neither `=` nor `://`.
pub fn pg_dbname(conninfo: &str) -> Option<String> {
    if is_uri(conninfo) {
        let (_, _, _, rest) = uri_parts(conninfo)?;
        let path = rest.strip_prefix('/')?;
        let path = path.split('?').next().unwrap_or("");
        if let Some(q) = rest.split_once('?').map(|x| x.1) {
            for kv in q.split('&') {
                if let Some(v) = kv.strip_prefix("dbname=") {
                    return Some(percent_decode(v));
                }
            }
        }
        return (!path.is_empty()).then(|| percent_decode(path));
    }
    match conninfo_pairs(conninfo) {
        Some(pairs) => pairs
            .into_iter()
            .rev()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty()),
        None if !conninfo.contains('=') && !conninfo.is_empty() => Some(conninfo.to_string()),
        None => None,
    }
}

/// True when a PostgreSQL connection string carries a password
/// (`password=` or `user:password@` in a URI).
pub fn pg_has_password(conninfo: &str) -> bool {
    if is_uri(conninfo) {
        let q = conninfo.split_once('?').map(|x| x.1).unwrap_or("");
        return uri_parts(conninfo)
            .and_then(|(_, ui, _, _)| ui)
            .is_some_and(|ui| ui.contains(':'))
            || q.split('&').any(|kv| kv.starts_with("password="));
    }
    conninfo_pairs(conninfo).is_some_and(|p| p.iter().any(|(k, _)| k == "password"))
}

/// A connection string for the same server as `conninfo` but database
/// `db` (used to connect to `postgres` for `pg_restore --create`).
pub fn pg_with_dbname(conninfo: &str, db: &str) -> String {
    let quoted = format!("'{}'", db.replace('\\', "\\\\").replace('\'', "\\'"));
    if is_uri(conninfo) {
        if let Some((scheme, ui, hosts, rest)) = uri_parts(conninfo) {
            let query = rest.split_once('?').map(|x| x.1).unwrap_or("");
            let query: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("dbname="))
                .collect();
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
            let ui = ui.map(|u| format!("{u}@")).unwrap_or_default();
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{}", query.join("&"))
            };
            return format!("{scheme}{ui}{hosts}/{enc}{q}");
        }
    }
    if conninfo_pairs(conninfo).is_some() {
        // libpq takes the last value of a repeated keyword.
        return format!("{conninfo} dbname={quoted}");
    }
    format!("dbname={quoted}")
}

/// Path of a PostgreSQL client program: `$SNAP_PG_BIN/NAME` when that file
/// exists, else `NAME` (looked up on `PATH`).
pub fn pg_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAP_PG_BIN").filter(|d| !d.is_empty()) {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// The last `n` non-empty lines of a program's stderr, joined with " / ",
/// preceded by the first line mentioning "error" when that is not among
/// them (tools such as pg_restore report the cause first and a count last).
pub fn stderr_tail(err: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(err);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    let mut out: Vec<&str> = Vec::new();
    if let Some(i) = lines
        .iter()
        .position(|l| l.to_ascii_lowercase().contains("error"))
    {
        if i < start {
            out.push(lines[i]);
            if i + 1 < start {
                out.push("…");
            }
        }
    }
    out.extend_from_slice(&lines[start..]);
    out.join(" / ")
}

/// Runs a program to completion with stdin closed; returns its stdout.
/// Errors: [`ErrorKind::Source`] with `what`, the exit code and the stderr
/// tail when it cannot be run or fails.
pub(crate) fn run_capture(prog: &PathBuf, args: &[String], what: &str) -> Result<Vec<u8>> {
    let out = command(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Source,
                format!("{what}: cannot run {}", prog.display()),
                e,
            )
        })?;
    if !out.status.success() {
        let code = out
            .status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        let tail = stderr_tail(&out.stderr, 3);
        return Err(Error::new(
            ErrorKind::Source,
            format!("{what}: {} failed with {code}: {tail}", prog.display()),
        ));
    }
    Ok(out.stdout)
}

/// First line of `PROG --version`, trimmed ("pg_dump (PostgreSQL) 15.18 …").
pub(crate) fn program_version(prog: &PathBuf, what: &str) -> Result<String> {
    let out = run_capture(prog, &["--version".into()], what)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// Facts about a PostgreSQL database reached through a connection string.
#[derive(Debug, Clone)]
pub struct PgInfo {
    /// `current_database()`.
    pub dbname: String,
    /// `server_version` setting, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    pub server_version: String,
}

/// Runs one query with `psql -X -A -t -q -F TAB -v ON_ERROR_STOP=1` and
/// returns its raw output: one row a line, columns separated by tabs.
///
/// Errors: [`ErrorKind::Source`] naming `label` when psql fails.
fn psql_query(conninfo: &str, sql: &str, label: &str) -> Result<Vec<u8>> {
    run_capture(
        &pg_program("psql"),
        &[
            "-X".into(),
            "-A".into(),
            "-t".into(),
            "-q".into(),
            "-F".into(),
            "\t".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            format!("--dbname={conninfo}"),
            "-c".into(),
            sql.into(),
        ],
        label,
    )
}

/// Connects with `psql -X -A -t` and reads the database name and server
/// version. Errors: [`ErrorKind::Usage`] for a connection string holding a
/// password; [`ErrorKind::Source`] naming `label` with psql's exit code and
/// stderr tail when the server cannot be reached or the database does not
/// exist.
pub fn pg_probe(conninfo: &str, label: &str) -> Result<PgInfo> {
    if pg_has_password(conninfo) {
        return Err(Error::usage(format!(
            "{label}: the connection string holds a password; remove it and set PGPASSWORD or use ~/.pgpass"
        )));
    }
    let out = psql_query(
        conninfo,
        "select current_database(), current_setting('server_version')",
        label,
    )?;
    let text = String::from_utf8_lossy(&out);
    let line = text.lines().next().unwrap_or("");
    let (db, ver) = line.split_once('\t').ok_or_else(|| {
        Error::new(
            ErrorKind::Source,
            format!("{label}: unexpected answer from psql: {line:?}"),
        )
    })?;
    Ok(PgInfo {
        dbname: db.to_string(),
        server_version: ver.trim().to_string(),
    })
}

/// Whether database `db` exists on the server of `conninfo` (asked through
/// that server's `postgres` database with `psql`).
///
/// Errors: [`ErrorKind::Source`] naming `label` with psql's exit code and
/// stderr tail when the server cannot be reached.
pub fn pg_database_exists(conninfo: &str, db: &str, label: &str) -> Result<bool> {
    // A string literal with standard_conforming_strings (on since 9.1).
    let literal = format!("'{}'", db.replace('\'', "''"));
    let out = psql_query(
        &pg_with_dbname(conninfo, "postgres"),
        &format!("select count(*) from pg_database where datname = {literal}"),
        label,
    )?;
    Ok(String::from_utf8_lossy(&out).trim() != "0")
}

/// A `--pg [NAME=]CONNINFO` source: probes the database (name, server
/// version) and returns a stream running
/// `pg_dump --format=custom --compress=0 --dbname=CONNINFO`, named `NAME`
/// or `pg-<dbname>.dump`. Dump-internal compression is off because it
/// would defeat deduplication between successive dumps (snap compresses
/// the chunks with zstd instead).
///
/// Errors: as [`pg_probe`]; [`ErrorKind::Source`] when pg_dump cannot run.
pub fn pg_source(spec: &str) -> Result<StreamSource> {
    let (name, conninfo) = split_name(spec);
    let guess = pg_dbname(conninfo);
    let label = format!(
        "source {:?}",
        name.map(str::to_string)
            .unwrap_or_else(|| format!("pg-{}.dump", guess.as_deref().unwrap_or("?")))
    );
    let info = pg_probe(conninfo, &label)?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("pg-{}.dump", sanitize(&info.dbname)));
    let dump = pg_program("pg_dump");
    let client = program_version(&dump, &format!("source {name:?}"))?;
    let mut details = BTreeMap::new();
    details.insert("database".into(), info.dbname.clone());
    details.insert("server_version".into(), info.server_version);
    details.insert("pg_dump_version".into(), client);
    details.insert("format".into(), "custom".into());
    details.insert("compression".into(), "none".into());
    Ok(StreamSource {
        name,
        kind: KIND_PG.into(),
        input: StreamInput::Program(vec![
            dump.to_string_lossy().into_owned(),
            "--format=custom".into(),
            "--compress=0".into(),
            format!("--dbname={conninfo}"),
        ]),
        details,
    })
}

/// The `--pg-globals` source for the server of `conninfo`:
/// `pg_dumpall --globals-only --dbname=CONNINFO` (roles and tablespaces,
/// plain SQL) named [`PG_GLOBALS_STREAM`].
pub fn pg_globals_source(conninfo: &str) -> Result<StreamSource> {
    let prog = pg_program("pg_dumpall");
    let version = program_version(&prog, &format!("source {PG_GLOBALS_STREAM:?}"))?;
    let mut details = BTreeMap::new();
    details.insert("pg_dumpall_version".into(), version);
    details.insert("format".into(), "plain".into());
    Ok(StreamSource {
        name: PG_GLOBALS_STREAM.into(),
        kind: KIND_PG_GLOBALS.into(),
        input: StreamInput::Program(vec![
            prog.to_string_lossy().into_owned(),
            "--globals-only".into(),
            format!("--dbname={conninfo}"),
        ]),
        details,
    })
}

/// Replaces characters not allowed in stream names with `_`.
pub(crate) fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "db".into()
    } else {
        out
    }
}

/// A file holding secrets for a child program, created with mode 0600 and
/// removed on drop.
pub struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    /// Writes `content` to a new file in the temporary folder.
    /// Errors: I/O errors.
    pub fn create(content: &str) -> Result<SecretFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd)
            .map_err(|e| Error::new(ErrorKind::Io, format!("random name: {e}")))?;
        let path = std::env::temp_dir().join(format!("snap-secret-{}.yaml", hex::encode(rnd)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let guard = SecretFile { path };
        f.write_all(content.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", guard.path.display()), e))?;
        Ok(guard)
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Arguments that connect a mongo tool to `uri`: `--uri=URI` when the URI
/// has no password; otherwise the password is removed from the URI and
/// put in a `--config` YAML file (mongo-tools 100.x `password:` key), which
/// is returned and must live until the tool exits.
pub fn mongo_connect_args(uri: &str) -> Result<(Vec<String>, Option<SecretFile>)> {
    if let Some((scheme, Some(ui), hosts, rest)) = uri_parts(uri) {
        if let Some((user, pw)) = ui.split_once(':') {
            let pw = percent_decode(pw);
            let yaml = format!(
                "password: \"{}\"\n",
                pw.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let file = SecretFile::create(&yaml)?;
            let args = vec![
                format!("--uri={scheme}{user}@{hosts}{rest}"),
                format!("--config={}", file.path().display()),
            ];
            return Ok((args, Some(file)));
        }
    }
    Ok((vec![format!("--uri={uri}")], None))
}

/// `uri` with any password replaced by `***`, for the record.
pub fn redact_uri(uri: &str) -> String {
    match uri_parts(uri) {
        Some((scheme, Some(ui), hosts, rest)) => match ui.split_once(':') {
            Some((user, _)) => format!("{scheme}{user}:***@{hosts}{rest}"),
            None => uri.to_string(),
        },
        _ => uri.to_string(),
    }
}

/// A `--mongo [NAME=]URI` source: `mongodump --archive URI-ARGS [--oplog]`
/// (uncompressed archive on stdout), named `NAME` or `mongo.archive`.
/// The returned [`SecretFile`], if any, must be kept until the backup ends.
///
/// Errors: [`ErrorKind::Source`] when `mongodump --version` cannot run.
pub fn mongo_source(spec: &str, oplog: bool) -> Result<(StreamSource, Option<SecretFile>)> {
    let (name, uri) = match spec.split_once('=') {
        Some((n, rest)) if valid_stream_name(n) && !n.contains(':') && !rest.is_empty() => {
            (Some(n), rest)
        }
        _ => (None, spec),
    };
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| "mongo.archive".into());
    let prog = PathBuf::from("mongodump");
    let version = program_version(&prog, &format!("source {name:?}"))?;
    let (conn, secret) = mongo_connect_args(uri)?;
    let mut argv = vec!["mongodump".to_string(), "--archive".to_string()];
    argv.extend(conn);
    if oplog {
        argv.push("--oplog".into());
    }
    let mut details = BTreeMap::new();
    details.insert("uri".into(), redact_uri(uri));
    details.insert("mongodump_version".into(), version);
    details.insert("format".into(), "archive".into());
    details.insert("oplog".into(), oplog.to_string());
    Ok((
        StreamSource {
            name,
            kind: KIND_MONGO.into(),
            input: StreamInput::Program(argv),
            details,
        },
        secret,
    ))
}

/// Runs `argv` with its stdin fed by `feed` (which gets the child's stdin);
/// stdout goes to snap's stderr (so `--stdout` restores stay clean),
/// stderr is captured. Returns the captured stderr of a successful run.
///
/// Errors: [`ErrorKind::Source`] naming `what`, the exit code and the
/// stderr tail when the program fails; the feeder's error when the program
/// succeeded but feeding failed.
pub fn pipe_into(
    argv: &[String],
    what: &str,
    feed: impl FnOnce(&mut dyn Write) -> Result<u64>,
) -> Result<(u64, Vec<u8>)> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::usage("empty command"))?;
    let mut child = command(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::with_source(ErrorKind::Source, format!("{what}: cannot run {prog}"), e)
        })?;
    // Stopped with snap on SIGINT/SIGTERM.
    let _watch = crate::interrupt::watch_child(child.id(), false);
    let mut stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let fed = match child.stdin.take() {
        Some(mut stdin) => {
            let r = feed(&mut stdin);
            drop(stdin);
            r
        }
        None => Err(Error::new(ErrorKind::Source, "no stdin")),
    };
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {prog}"), e))?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        let code = status
            .code()
            .map(|c| format!("exit code {c}"))
            .unwrap_or_else(|| "a signal".into());
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "{what}: {prog} failed with {code}: {}",
                stderr_tail(&err, 3)
            ),
        ));
    }
    Ok((fed?, err))
}

/// The database name a custom-format dump records (what `pg_restore
/// --create` creates), from the header `pg_restore --list` prints for the
/// dump that `feed` writes; pg_restore stops reading after the table of
/// contents, so a feeder's broken pipe is expected.
///
/// Errors: [`ErrorKind::Source`] when pg_restore cannot run or fails (not
/// a custom-format dump), or prints no database name; the feeder's other
/// errors.
pub fn pg_dump_dbname(feed: impl FnOnce(&mut dyn Write) -> Result<u64>) -> Result<String> {
    let prog = pg_program("pg_restore");
    let what = "reading the dump's database name with pg_restore --list";
    let mut child = command(&prog)
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Source,
                format!("{what}: cannot run {}", prog.display()),
                e,
            )
        })?;
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    // Stopped with snap on SIGINT/SIGTERM.
    let _watch = crate::interrupt::watch_child(child.id(), false);
    let out_thread = read_all(child.stdout.take().map(|r| Box::new(r) as _));
    let err_thread = read_all(child.stderr.take().map(|r| Box::new(r) as _));
    let fed = match child.stdin.take() {
        Some(mut stdin) => feed(&mut stdin).map(|_| ()),
        None => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {}", prog.display()), e))?;
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "{what}: {} failed with {status}: {}",
                prog.display(),
                stderr_tail(&err, 3)
            ),
        ));
    }
    match fed {
        Err(e) if !e.is_broken_pipe() => return Err(e),
        _ => {}
    }
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.strip_prefix(';'))
        .find_map(|l| {
            l.trim()
                .strip_prefix("dbname:")
                .map(|n| n.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Source,
                format!("{what}: the dump names no database"),
            )
        })
}

/// `pg_restore` arguments for restoring a custom-format dump from stdin
/// into `conninfo`: `--dbname=CONNINFO`, or with `create` the `postgres`
/// database of that server plus `--create` (pg_restore then creates the
/// database named in the dump); `clean` adds `--clean --if-exists`.
/// pg_restore stops at the first error (`--exit-on-error`), and without
/// `create` restores in one transaction (`--single-transaction`, which
/// pg_restore does not allow with `--create`), so a failed restore leaves
/// the database as it was.
pub fn pg_restore_argv(conninfo: &str, create: bool, clean: bool) -> Vec<String> {
    let mut argv = vec![pg_program("pg_restore").to_string_lossy().into_owned()];
    argv.push("--exit-on-error".into());
    if !create {
        argv.push("--single-transaction".into());
    }
    if create {
        argv.push("--create".into());
        argv.push(format!("--dbname={}", pg_with_dbname(conninfo, "postgres")));
    } else {
        argv.push(format!("--dbname={conninfo}"));
    }
    if clean {
        argv.push("--clean".into());
        argv.push("--if-exists".into());
    }
    argv
}

/// `psql` arguments for replaying the globals SQL from stdin: `-X -q
/// --dbname=CONNINFO` (statements that fail, such as `CREATE ROLE` for a
/// role that exists, are reported and skipped).
pub fn psql_globals_argv(conninfo: &str) -> Vec<String> {
    vec![
        pg_program("psql").to_string_lossy().into_owned(),
        "-X".into(),
        "-q".into(),
        format!("--dbname={conninfo}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_conninfo() {
        assert_eq!(split_name("app=dbname=x"), (Some("app"), "dbname=x"));
        assert_eq!(split_name("host=h dbname=x"), (None, "host=h dbname=x"));
        assert_eq!(split_name("mydb"), (None, "mydb"));
        assert_eq!(
            split_name("main.dump=postgresql://h/db"),
            (Some("main.dump"), "postgresql://h/db")
        );
        assert_eq!(
            pg_dbname("host=h dbname='my db' user=u").as_deref(),
            Some("my db")
        );
        assert_eq!(
            pg_dbname("postgresql://u@h:5/shop?sslmode=off").as_deref(),
            Some("shop")
        );
        assert_eq!(pg_dbname("shop").as_deref(), Some("shop"));
        assert_eq!(pg_dbname("host=h"), None);
        assert!(pg_has_password("host=h password=x"));
        assert!(pg_has_password("postgresql://u:p@h/db"));
        assert!(!pg_has_password("postgresql://u@h/db"));
        assert_eq!(
            pg_with_dbname("host=h dbname=a", "postgres"),
            "host=h dbname=a dbname='postgres'"
        );
        assert_eq!(
            pg_with_dbname("postgresql://u@h:5/a?sslmode=off&dbname=z", "postgres"),
            "postgresql://u@h:5/postgres?sslmode=off"
        );
        assert_eq!(pg_with_dbname("a", "postgres"), "dbname='postgres'");
    }

    #[test]
    fn mongo_password_leaves_argv() {
        let (args, secret) = mongo_connect_args("mongodb://app:s%40cret@h:27017/db").unwrap();
        assert_eq!(args[0], "--uri=mongodb://app@h:27017/db");
        let f = secret.unwrap();
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "password: \"s@cret\"\n"
        );
        assert!(!args.join(" ").contains("s%40cret") && !args.join(" ").contains("s@cret"));
        assert_eq!(redact_uri("mongodb://app:x@h/db"), "mongodb://app:***@h/db");
        let (args, secret) = mongo_connect_args("mongodb://h/db").unwrap();
        assert_eq!(args, vec!["--uri=mongodb://h/db".to_string()]);
        assert!(secret.is_none());
    }
}
