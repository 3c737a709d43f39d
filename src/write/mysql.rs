//! MariaDB and MySQL sources: `mariadb-dump` (or `mysqldump`) of one
//! database as a backup stream, `mariadb-dump --system=users` for the
//! accounts and grants, and the reverse (`mariadb`/`mysql`) for restores.
//!
//! A connection is given as a URL or as `key=value` pairs (see
//! [`MyConn::parse`]). Passwords never reach an argument list: a password
//! in the connection string is refused; the client programs read
//! `MYSQL_PWD` or the user's own option files (`~/.my.cnf`, or
//! `option-file=PATH`) themselves; a `password-file=PATH` is read by snap
//! and handed over in a `--defaults-extra-file` written with mode 0600 in a
//! private (0700) temporary folder, removed when the program has ended.
//!
//! Programs come from `$SNAP_MYSQL_BIN` when that names a folder holding
//! them, else from `PATH`: `mariadb-dump` and `mariadb` when present, else
//! `mysqldump` and `mysql`.

use super::sources::{conninfo_pairs, percent_decode, run_capture, sanitize, uri_parts};
use crate::error::{Error, ErrorKind, Result};
use crate::ops::backup::{StreamInput, StreamSource};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Source kind of a `mariadb-dump` stream of one database.
pub const KIND_MYSQL: &str = "mysql";
/// Source kind of a `mariadb-dump --system=users` stream.
pub const KIND_MYSQL_GLOBALS: &str = "mysql-globals";
/// Stream name of the accounts and grants.
pub const MYSQL_GLOBALS_STREAM: &str = "mysql-globals.sql";

/// Options of every database dump: one consistent InnoDB snapshot
/// (`--single-transaction`), rows streamed not buffered (`--quick`),
/// stored programs, events and triggers, binary columns as hex (a text
/// stream that survives any client character set). Rows stay in
/// mariadb-dump's default multi-row INSERTs of up to 1 MiB: measured night
/// to night (`benches/mysql_dump_options.sh`, `benches/results/mysql-*.md`)
/// they add no more than one INSERT per row (`--skip-extended-insert`) or
/// 16 KiB INSERTs (`--net-buffer-length=16384`) do, and restore twice as
/// fast as one INSERT per row. The dump is not compressed: snap compresses
/// the chunks.
pub const DUMP_OPTIONS: &[&str] = &[
    "--single-transaction",
    "--quick",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
];

/// Connection keys of the `key=value` form: a `--mysql` argument
/// `WORD=...` whose WORD is one of these is a connection string, not
/// `NAME=CONNINFO`.
const KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "socket",
    "database",
    "dbname",
    "db",
    "password",
    "password-file",
    "option-file",
];

/// A MariaDB/MySQL connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MyConn {
    /// Server host name or address (`--host`).
    pub host: Option<String>,
    /// TCP port (`--port`).
    pub port: Option<u16>,
    /// Unix socket path (`--socket`, with `--protocol=SOCKET`).
    pub socket: Option<String>,
    /// Account name (`--user`).
    pub user: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// A file whose first line is the password; snap reads it and passes
    /// it in a private option file.
    pub password_file: Option<PathBuf>,
    /// An option file of the user's, read after the global ones
    /// (`--defaults-extra-file`).
    pub option_file: Option<PathBuf>,
}

/// True for the start of a MariaDB/MySQL URL.
fn is_url(s: &str) -> bool {
    s.starts_with("mysql://") || s.starts_with("mariadb://")
}

/// Splits `NAME=CONNINFO` into its name and connection string when NAME is
/// a valid stream name and not a connection key; otherwise `(None, spec)`.
pub fn split_name(spec: &str) -> (Option<&str>, &str) {
    if let Some((n, rest)) = spec.split_once('=') {
        if super::sources::valid_stream_name(n) && !KEYS.contains(&n) && !rest.is_empty() {
            return (Some(n), rest);
        }
    }
    (None, spec)
}

impl MyConn {
    /// Parses a connection string:
    ///
    /// - a URL `mysql://[USER@]HOST[:PORT][/DATABASE][?KEY=VALUE&…]`
    ///   (`mariadb://` too; parts percent-encoded; query keys `socket`,
    ///   `password-file`, `option-file`);
    /// - `key=value` pairs separated by spaces (values may be single-quoted):
    ///   `host`, `port`, `user`, `socket`, `database` (or `dbname`, `db`),
    ///   `password-file`, `option-file`;
    /// - a bare database name (the client's defaults for the rest).
    ///
    /// Errors ([`ErrorKind::Usage`], naming the cause): a password in the
    /// string (`USER:PASSWORD@` or `password=`), an unknown key, a port that
    /// is not a number, a database name starting with `-`.
    pub fn parse(s: &str) -> Result<MyConn> {
        let s = s.trim();
        let refuse_pw = || {
            Error::usage(
                "the MySQL connection string holds a password; remove it and set MYSQL_PWD, \
                 use an option file (~/.my.cnf or option-file=PATH) or password-file=PATH",
            )
        };
        let mut c = MyConn::default();
        let set = |c: &mut MyConn, k: &str, v: String| -> Result<()> {
            match k {
                "host" => c.host = Some(v),
                "port" => {
                    c.port = Some(v.parse().map_err(|_| {
                        Error::usage(format!("MySQL port {v:?} is not a TCP port number"))
                    })?)
                }
                "user" => c.user = Some(v),
                "socket" => c.socket = Some(v),
                "database" | "dbname" | "db" => c.database = Some(v),
                "password-file" => c.password_file = Some(PathBuf::from(v)),
                "option-file" => c.option_file = Some(PathBuf::from(v)),
                "password" => return Err(refuse_pw()),
                _ => {
                    return Err(Error::usage(format!(
                        "unknown MySQL connection key {k:?} (known: host, port, user, socket, \
                         database, password-file, option-file)"
                    )))
                }
            }
            Ok(())
        };
        if is_url(s) {
            let (_, ui, hosts, rest) =
                uri_parts(s).ok_or_else(|| Error::usage(format!("not a MySQL URL: {s:?}")))?;
            if let Some(ui) = ui {
                if ui.contains(':') {
                    return Err(refuse_pw());
                }
                if !ui.is_empty() {
                    c.user = Some(percent_decode(ui));
                }
            }
            if !hosts.is_empty() {
                // `[IPv6]:PORT`, `[IPv6]`, `HOST:PORT` or `HOST`.
                let (h, p) = match hosts.strip_prefix('[').and_then(|r| r.split_once(']')) {
                    Some((h, rest)) => (h, rest.strip_prefix(':')),
                    None => match hosts.rsplit_once(':') {
                        Some((h, p)) => (h, Some(p)),
                        None => (hosts, None),
                    },
                };
                if !h.is_empty() {
                    c.host = Some(percent_decode(h));
                }
                if let Some(p) = p {
                    set(&mut c, "port", p.to_string())?;
                }
            }
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, q),
                None => (rest, ""),
            };
            let db = path.trim_start_matches('/');
            if !db.is_empty() {
                c.database = Some(percent_decode(db));
            }
            for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                set(&mut c, k, percent_decode(v))?;
            }
        } else if s.contains('=') {
            let pairs = conninfo_pairs(s).ok_or_else(|| {
                Error::usage(format!(
                    "cannot parse MySQL connection string {s:?}: give key=value pairs or a mysql:// URL"
                ))
            })?;
            for (k, v) in pairs {
                set(&mut c, &k, v)?;
            }
        } else if !s.is_empty() {
            c.database = Some(s.to_string());
        }
        if c.database.as_deref().is_some_and(|d| d.starts_with('-')) {
            return Err(Error::usage("a MySQL database name cannot start with '-'"));
        }
        Ok(c)
    }

    /// The same connection with database `db`.
    pub fn with_database(&self, db: Option<&str>) -> MyConn {
        MyConn {
            database: db.map(str::to_string),
            ..self.clone()
        }
    }

    /// The connection as a string without secrets, for records and messages
    /// (`mysql://user@host:port/db?socket=…`).
    pub fn display(&self) -> String {
        let mut s = "mysql://".to_string();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(self.host.as_deref().unwrap_or(""));
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s.push('/');
        s.push_str(self.database.as_deref().unwrap_or(""));
        let mut q = Vec::new();
        if let Some(x) = &self.socket {
            q.push(format!("socket={x}"));
        }
        if let Some(x) = &self.password_file {
            q.push(format!("password-file={}", x.display()));
        }
        if let Some(x) = &self.option_file {
            q.push(format!("option-file={}", x.display()));
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// Arguments that connect a client program, without the database:
    /// `--defaults-extra-file=F` first (the client requires it there) when
    /// there is a password file or an option file, then `--host`, `--port`,
    /// `--socket --protocol=SOCKET`, `--user`. The returned
    /// [`OptionFile`], if any, holds the password and must live until the
    /// program has ended.
    ///
    /// Errors: the password file cannot be read or is empty
    /// ([`ErrorKind::Usage`]); the private option file cannot be written.
    pub fn client_args(&self) -> Result<(Vec<String>, Option<OptionFile>)> {
        let mut args = Vec::new();
        let mut secret = None;
        match (&self.password_file, &self.option_file) {
            (Some(pf), of) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(pf).map_err(|e| {
                    Error::usage(format!("reading MySQL password-file {}: {e}", pf.display()))
                })?);
                let pw = text.lines().next().unwrap_or("");
                if pw.is_empty() {
                    return Err(Error::usage(format!(
                        "MySQL password-file {} is empty",
                        pf.display()
                    )));
                }
                let f = OptionFile::create(pw, of.as_deref())?;
                args.push(format!("--defaults-extra-file={}", f.path().display()));
                secret = Some(f);
            }
            (None, Some(of)) => args.push(format!("--defaults-extra-file={}", of.display())),
            (None, None) => {}
        }
        if let Some(h) = &self.host {
            args.push(format!("--host={h}"));
        }
        if let Some(p) = self.port {
            args.push(format!("--port={p}"));
        }
        if let Some(s) = &self.socket {
            args.push(format!("--socket={s}"));
            if self.host.is_none() {
                args.push("--protocol=SOCKET".into());
            }
        }
        if let Some(u) = &self.user {
            args.push(format!("--user={u}"));
        }
        Ok((args, secret))
    }
}

/// Quotes a value for a MySQL option file: in double quotes, with `\`,
/// `"`, newline, carriage return and tab escaped (MariaDB "Configuring
/// MariaDB with Option Files": escape sequences in option values).
fn option_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A private option file holding a password: `[client] password="…"`
/// (after `!include FILE` of the user's option file, if any), mode 0600 in
/// a new 0700 folder of the temporary directory; both removed on drop.
pub struct OptionFile {
    dir: PathBuf,
    path: PathBuf,
}

impl OptionFile {
    /// Writes the file. Errors: I/O errors creating the folder or file.
    pub fn create(password: &str, include: Option<&Path>) -> Result<OptionFile> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd)
            .map_err(|e| Error::new(ErrorKind::Io, format!("random name: {e}")))?;
        let dir = std::env::temp_dir().join(format!("snap-mysql-{}", hex::encode(rnd)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join("client.cnf");
        let guard = OptionFile {
            dir,
            path: path.clone(),
        };
        let mut text = zeroize::Zeroizing::new(String::new());
        if let Some(inc) = include {
            text.push_str(&format!("!include {}\n", inc.display()));
        }
        text.push_str(&format!("[client]\npassword={}\n", option_value(password)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(guard)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OptionFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Path of a client program: the first of `names` found in
/// `$SNAP_MYSQL_BIN`, else the first found on `PATH`, else the first name.
pub fn program(names: &[&str]) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAP_MYSQL_BIN").filter(|d| !d.is_empty()) {
        for n in names {
            let p = PathBuf::from(&dir).join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for n in names {
            if std::env::split_paths(&path).any(|d| d.join(n).is_file()) {
                return PathBuf::from(n);
            }
        }
    }
    PathBuf::from(names[0])
}

/// The dump program: `mariadb-dump`, else `mysqldump`.
pub fn dump_program() -> PathBuf {
    program(&["mariadb-dump", "mysqldump"])
}

/// The command-line client: `mariadb`, else `mysql`.
pub fn client_program() -> PathBuf {
    program(&["mariadb", "mysql"])
}

/// Runs `sql` with `mariadb --batch --skip-column-names` (in the
/// connection's database, if it names one); returns its output, one row a
/// line, columns separated by tabs.
///
/// Errors: [`ErrorKind::Source`] naming `label`, the exit code and the
/// client's error (`Access denied…`, `Unknown database…`) when it fails;
/// the password file errors of [`MyConn::client_args`].
pub fn query(conn: &MyConn, sql: &str, label: &str) -> Result<String> {
    let (mut args, secret) = conn.client_args()?;
    args.push("--batch".into());
    args.push("--skip-column-names".into());
    args.push("--connect-timeout=20".into());
    if let Some(db) = &conn.database {
        args.push(format!("--database={db}"));
    }
    args.push("--execute".into());
    args.push(sql.into());
    let out = run_capture(&client_program(), &args, label);
    drop(secret);
    Ok(String::from_utf8_lossy(&out?).into_owned())
}

/// Quotes an identifier with backticks.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Quotes a string literal (backslashes and quotes escaped).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether database `db` exists on the server of `conn`.
///
/// Errors: as [`query`].
pub fn database_exists(conn: &MyConn, db: &str, label: &str) -> Result<bool> {
    let out = query(
        &conn.with_database(None),
        &format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {}",
            quote_literal(db)
        ),
        label,
    )?;
    Ok(out.trim() != "0")
}

/// A `--mysql [NAME=]CONNINFO` source: checks the connection (reaches
/// the server, opens the database, reads `DATABASE()` and `VERSION()`),
/// then returns a stream running
/// `mariadb-dump CONNECTION` [`DUMP_OPTIONS`] `DATABASE`, named `NAME` or
/// `mysql-<database>.sql`. The dump has no `CREATE DATABASE`/`USE`
/// statements, so it restores into a database of any name. The returned
/// [`OptionFile`], if any, must be kept until the backup ends.
///
/// Errors: [`ErrorKind::Usage`] for a bad connection string or one naming
/// no database; [`ErrorKind::Source`] naming the source when the server
/// cannot be reached, the password is wrong, the database does not exist,
/// or the dump program cannot run.
pub fn mysql_source(spec: &str) -> Result<(StreamSource, Option<OptionFile>)> {
    let (name, conninfo) = split_name(spec);
    let conn = MyConn::parse(conninfo)?;
    let Some(db) = conn.database.clone() else {
        return Err(Error::usage(format!(
            "--mysql {}: name the database to dump (mysql://host/DATABASE or database=NAME)",
            conn.display()
        )));
    };
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("mysql-{}.sql", sanitize(&db)));
    let label = format!("source {name:?}");
    let out = query(&conn, "SELECT DATABASE(), VERSION()", &label)?;
    let line = out.lines().next().unwrap_or("");
    let (found, version) = line.split_once('\t').ok_or_else(|| {
        Error::new(
            ErrorKind::Source,
            format!("{label}: unexpected answer from the mysql client: {line:?}"),
        )
    })?;
    if found != db {
        return Err(Error::new(
            ErrorKind::Source,
            format!("{label}: the server opened database {found:?}, not {db:?}"),
        ));
    }
    let dump = dump_program();
    let dump_version = super::sources::program_version(&dump, &label)?;
    let (mut argv, secret) = conn.client_args()?;
    argv.insert(0, dump.to_string_lossy().into_owned());
    argv.extend(DUMP_OPTIONS.iter().map(|s| s.to_string()));
    argv.push(db.clone());
    let mut details = BTreeMap::new();
    details.insert("database".into(), db);
    details.insert("connection".into(), conn.display());
    details.insert("server_version".into(), version.trim().to_string());
    details.insert("dump_version".into(), dump_version);
    details.insert("format".into(), "sql".into());
    details.insert("compression".into(), "none".into());
    Ok((
        StreamSource {
            name,
            kind: KIND_MYSQL.into(),
            input: StreamInput::Program(argv),
            details,
        },
        secret,
    ))
}

/// The `--mysql-globals` source for the server of `conninfo`:
/// `mariadb-dump --system=users --insert-ignore` (every account and its
/// grants and roles as `CREATE USER IF NOT EXISTS` and `GRANT`
/// statements) named [`MYSQL_GLOBALS_STREAM`]. MariaDB's dump program
/// only: MySQL's `mysqldump` has no `--system`.
///
/// Errors: [`ErrorKind::Usage`] for a bad connection string or a dump
/// program without `--system`; [`ErrorKind::Source`] when it cannot run.
pub fn mysql_globals_source(conninfo: &str) -> Result<(StreamSource, Option<OptionFile>)> {
    let conn = MyConn::parse(conninfo)?.with_database(None);
    let dump = dump_program();
    let label = format!("source {MYSQL_GLOBALS_STREAM:?}");
    let version = super::sources::program_version(&dump, &label)?;
    if !version.contains("MariaDB") {
        return Err(Error::usage(format!(
            "--mysql-globals needs MariaDB's mariadb-dump (--system=users); {} is {version:?}",
            dump.display()
        )));
    }
    let (mut argv, secret) = conn.client_args()?;
    argv.insert(0, dump.to_string_lossy().into_owned());
    argv.extend(["--system=users".to_string(), "--insert-ignore".to_string()]);
    let mut details = BTreeMap::new();
    details.insert("connection".into(), conn.display());
    details.insert("dump_version".into(), version);
    details.insert("format".into(), "sql".into());
    Ok((
        StreamSource {
            name: MYSQL_GLOBALS_STREAM.into(),
            kind: KIND_MYSQL_GLOBALS.into(),
            input: StreamInput::Program(argv),
            details,
        },
        secret,
    ))
}

/// `mariadb` arguments that replay SQL from stdin into database `db` (or
/// no database), stopping at the first error unless `force`
/// (`--force`: report and go on, for the globals). The returned
/// [`OptionFile`] must live until the program has ended.
///
/// Errors: as [`MyConn::client_args`].
pub fn client_argv(
    conn: &MyConn,
    db: Option<&str>,
    force: bool,
) -> Result<(Vec<String>, Option<OptionFile>)> {
    let (mut argv, secret) = conn.client_args()?;
    argv.insert(0, client_program().to_string_lossy().into_owned());
    argv.push("--batch".into());
    if force {
        argv.push("--force".into());
    }
    if let Some(db) = db {
        argv.push(format!("--database={db}"));
    }
    Ok((argv, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_pairs() {
        let c = MyConn::parse("mysql://app@db.example:3307/shop?socket=/run/m.sock").unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.host.as_deref(), Some("db.example"));
        assert_eq!(c.port, Some(3307));
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.socket.as_deref(), Some("/run/m.sock"));
        assert_eq!(
            c.display(),
            "mysql://app@db.example:3307/shop?socket=/run/m.sock"
        );
        let c = MyConn::parse("host=h port=5 user=u database='my db' password-file=/p").unwrap();
        assert_eq!(c.database.as_deref(), Some("my db"));
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/p")));
        assert_eq!(
            MyConn::parse("shop").unwrap().database.as_deref(),
            Some("shop")
        );
        let c = MyConn::parse("mariadb://[::1]:9/x").unwrap();
        assert_eq!((c.host.as_deref(), c.port), (Some("::1"), Some(9)));
        let c = MyConn::parse("mysql://[::1]/x").unwrap();
        assert_eq!((c.host.as_deref(), c.port), (Some("::1"), None));
        let c = MyConn::parse("mysql://h").unwrap();
        assert_eq!((c.host.as_deref(), c.database), (Some("h"), None));
        for bad in [
            "mysql://u:pw@h/db",
            "host=h password=x",
            "host=h colour=red",
            "port=x",
            "-x",
        ] {
            assert!(MyConn::parse(bad).is_err(), "{bad}");
        }
        assert!(MyConn::parse("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string()
            .contains("password"));
        assert_eq!(
            split_name("app.sql=mysql://h/db"),
            (Some("app.sql"), "mysql://h/db")
        );
        assert_eq!(split_name("host=h database=x"), (None, "host=h database=x"));
        assert_eq!(split_name("db=x"), (None, "db=x"));
    }

    #[test]
    fn password_goes_to_a_private_file_not_argv() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pf = dir.path().join("pw");
        std::fs::write(&pf, "s\"e\\c ret#x\nignored\n").unwrap();
        let c = MyConn::parse(&format!("host=h user=u password-file={}", pf.display())).unwrap();
        let (args, secret) = c.client_args().unwrap();
        let f = secret.unwrap();
        assert_eq!(
            args[0],
            format!("--defaults-extra-file={}", f.path().display())
        );
        assert!(!args.join(" ").contains("ret#x"));
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert_eq!(text, "[client]\npassword=\"s\\\"e\\\\c ret#x\"\n");
        let meta = std::fs::metadata(f.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dmeta = std::fs::metadata(f.path().parent().unwrap()).unwrap();
        assert_eq!(dmeta.permissions().mode() & 0o777, 0o700);
        let p = f.path().to_path_buf();
        drop(f);
        assert!(!p.exists() && !p.parent().unwrap().exists());
        // With the user's option file too: it is included first.
        let c = MyConn::parse(&format!(
            "mysql://u@h/db?password-file={}&option-file=/etc/my.cnf",
            pf.display()
        ))
        .unwrap();
        let (_, secret) = c.client_args().unwrap();
        let text = std::fs::read_to_string(secret.as_ref().unwrap().path()).unwrap();
        assert!(
            text.starts_with("!include /etc/my.cnf\n[client]\n"),
            "{text}"
        );
    }
}
