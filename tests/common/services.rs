//! Access to the external test services that `scripts/services.sh start` provides: a
//! throwaway PostgreSQL server and two S3-compatible servers (moto and s3s-fs), each with
//! a bucket.
//!
//! The script exports `SNAP_TEST_PG_HOST`, `SNAP_TEST_PG_PORT`, `SNAP_TEST_PG_USER`,
//! `SNAP_TEST_PG_BIN`, `SNAP_TEST_S3_ENDPOINT`, `SNAP_TEST_S3_BUCKET`,
//! `SNAP_TEST_S3S_ENDPOINT` and `SNAP_TEST_S3S_BUCKET` (and `SNAP_TEST_MYSQL_*` for
//! MariaDB); [`pg()`], [`s3()`], [`s3s()`] and [`mysql()`] read them. When they are missing, a plain `cargo test` skips the test (the
//! helpers print a `skipping: ...` line and return `None`), but under CI (`CI=true`) the
//! helpers panic, so that a broken service setup can never pass as a green run.
//!
//! ```ignore
//! mod common;
//! use common::services;
//!
//! #[test]
//! fn backup_of_a_database() {
//!     let Some(pg) = services::pg() else { return };
//!     let db = services::unique_name("snap_t_");
//!     pg.createdb(&db);
//!     pg.pgbench_init(&db, 1);
//!     assert_eq!(pg.psql(&db, "select count(*) from pgbench_branches"), "1");
//!     pg.dropdb(&db);
//! }
//! ```

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// True when running under CI: the `CI` variable is `true` (any case) or `1`.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("true") || v == "1"
        })
        .unwrap_or(false)
}

/// The value of an environment variable, if it is set and not blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Handles a service whose variables are missing: panics under CI, otherwise prints a
/// `skipping:` line and returns `None`.
fn missing<T>(service: &str, vars: &str) -> Option<T> {
    if in_ci() {
        panic!(
            "CI=true but the {service} test service is missing: run scripts/test.sh \
             (or `source scripts/services.sh start`); {vars} not set"
        );
    }
    eprintln!(
        "skipping: {service} test service not configured ({vars} not set); \
         run `source scripts/services.sh start` or scripts/test.sh to enable this test"
    );
    None
}

/// Runs a prepared command with stdin closed and panics, showing its output, when it cannot
/// be started or exits unsuccessfully.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
        );
    }
    out
}

/// Quotes an SQL identifier (a database name) for PostgreSQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL server to test against (trust authentication, no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pg {
    /// Host name or address of the server (`SNAP_TEST_PG_HOST`, normally `127.0.0.1`).
    pub host: String,
    /// TCP port of the server (`SNAP_TEST_PG_PORT`).
    pub port: u16,
    /// Superuser to connect as (`SNAP_TEST_PG_USER`, default `postgres`).
    pub user: String,
    /// Directory with the server's client programs: psql, pg_dump, pgbench, ...
    /// (`SNAP_TEST_PG_BIN`). Empty when unknown: the programs are then taken from `PATH`.
    pub bin: PathBuf,
}

/// The PostgreSQL test service described by the `SNAP_TEST_PG_*` variables.
///
/// Returns `None` after printing a `skipping:` line when `SNAP_TEST_PG_HOST` or
/// `SNAP_TEST_PG_PORT` is missing; panics instead when `CI=true`. Also panics when the port
/// is not a number.
pub fn pg() -> Option<Pg> {
    let (Some(host), Some(port)) = (var("SNAP_TEST_PG_HOST"), var("SNAP_TEST_PG_PORT")) else {
        return missing("PostgreSQL", "SNAP_TEST_PG_HOST/SNAP_TEST_PG_PORT");
    };
    let port = port
        .parse()
        .unwrap_or_else(|e| panic!("SNAP_TEST_PG_PORT={port:?} is not a TCP port: {e}"));
    Some(Pg {
        host,
        port,
        user: var("SNAP_TEST_PG_USER").unwrap_or_else(|| "postgres".to_string()),
        bin: var("SNAP_TEST_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_default(),
    })
}

impl Pg {
    /// Path of one of the server's programs (`psql`, `pg_dump`, `pg_restore`, `pgbench`, ...):
    /// from [`Pg::bin`] when it is there, else the bare name, to be found on `PATH`.
    pub fn tool(&self, name: &str) -> PathBuf {
        if !self.bin.as_os_str().is_empty() {
            let path = self.bin.join(name);
            if path.is_file() {
                return path;
            }
        }
        PathBuf::from(name)
    }

    /// A [`Command`] for one of the server's programs (see [`Pg::tool`]) with
    /// PGHOST/PGPORT/PGUSER set (see [`Pg::env`]), a connect timeout, and stdin closed.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.tool(tool));
        cmd.envs(self.env())
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `sql` in database `db` with
    /// `psql -X -A -t -q -v ON_ERROR_STOP=1 -h host -p port -U user -d db -c sql` and returns
    /// its output, trimmed: unaligned, without headers, one row a line, columns separated
    /// by `|`. Panics with psql's stderr when the statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = run(
            self.command("psql").args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.host,
                "-p",
                &port,
                "-U",
                &self.user,
                "-d",
                db,
                "-c",
                sql,
            ]),
            &format!("psql -d {db} -c {sql:?}"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates database `name` (panics if it exists already or on any other error).
    pub fn createdb(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
    }

    /// Drops database `name` if it exists, disconnecting any sessions still using it.
    pub fn dropdb(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
        );
    }

    /// Fills database `db` with pgbench's tables at scale `scale`
    /// (`pgbench -i -s scale -q`; scale 1 is 100,000 rows in `pgbench_accounts`, ~15 MB).
    pub fn pgbench_init(&self, db: &str, scale: u32) {
        let port = self.port.to_string();
        let scale = scale.to_string();
        run(
            self.command("pgbench").args([
                "-i", "-s", &scale, "-q", "-h", &self.host, "-p", &port, "-U", &self.user, db,
            ]),
            &format!("pgbench -i -s {scale} {db}"),
        );
    }

    /// A libpq connection string for database `db`:
    /// `host=... port=... user=... dbname=...`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.user, db
        )
    }

    /// Environment for child processes that use libpq defaults: `PGHOST`, `PGPORT` and
    /// `PGUSER`. Pass to [`Command::envs`].
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
        ]
    }
}

/// An S3-compatible server to test against, with an existing bucket. It honours
/// conditional writes (`If-None-Match: *`, `If-Match`) and accepts any credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3 {
    /// Endpoint URL, e.g. `http://127.0.0.1:28239` (`SNAP_TEST_S3_ENDPOINT`).
    pub endpoint: String,
    /// Name of the bucket tests may write into (`SNAP_TEST_S3_BUCKET`, default `snap-test`).
    /// It is shared: give each test its own prefix with [`unique_name`].
    pub bucket: String,
}

/// The S3 test service described by the `SNAP_TEST_S3_*` variables.
///
/// Returns `None` after printing a `skipping:` line when `SNAP_TEST_S3_ENDPOINT` is
/// missing; panics instead when `CI=true`.
pub fn s3() -> Option<S3> {
    let Some(endpoint) = var("SNAP_TEST_S3_ENDPOINT") else {
        return missing("S3", "SNAP_TEST_S3_ENDPOINT");
    };
    Some(S3 {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        bucket: var("SNAP_TEST_S3_BUCKET").unwrap_or_else(|| "snap-test".to_string()),
    })
}

/// The second S3 test service, s3s-fs, described by `SNAP_TEST_S3S_ENDPOINT` and
/// `SNAP_TEST_S3S_BUCKET` (default `snap-test`); same keys and region as [`s3()`].
///
/// Returns `None` after printing a `skipping:` line when `SNAP_TEST_S3S_ENDPOINT` is
/// missing; panics instead when `CI=true`.
pub fn s3s() -> Option<S3> {
    let Some(endpoint) = var("SNAP_TEST_S3S_ENDPOINT") else {
        return missing("S3 (s3s-fs)", "SNAP_TEST_S3S_ENDPOINT");
    };
    Some(S3 {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        bucket: var("SNAP_TEST_S3S_BUCKET").unwrap_or_else(|| "snap-test".to_string()),
    })
}

/// The S3 server of scripts/services.sh that enforces IAM authorization (a second moto):
/// `SNAP_TEST_S3AUTH_ENDPOINT`, `SNAP_TEST_S3AUTH_BUCKET` (bucket `<bucket>-lock` has Object
/// Lock enabled) and the keys of two users: `SNAP_TEST_S3AUTH_FULL_{KEY,SECRET}` (s3:*) and
/// `SNAP_TEST_S3AUTH_APPEND_{KEY,SECRET}` (s3:PutObject, s3:GetObject, s3:ListBucket only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Auth {
    /// Endpoint URL.
    pub endpoint: String,
    /// Bucket without Object Lock.
    pub bucket: String,
    /// (access key id, secret) of the user allowed everything.
    pub full: (String, String),
    /// (access key id, secret) of the user without s3:DeleteObject.
    pub append: (String, String),
}

/// The authorizing S3 service; `None` after a `skipping:` line when its variables are
/// missing, a panic instead when `CI=true`.
pub fn s3auth() -> Option<S3Auth> {
    let names = [
        "SNAP_TEST_S3AUTH_ENDPOINT",
        "SNAP_TEST_S3AUTH_FULL_KEY",
        "SNAP_TEST_S3AUTH_FULL_SECRET",
        "SNAP_TEST_S3AUTH_APPEND_KEY",
        "SNAP_TEST_S3AUTH_APPEND_SECRET",
    ];
    let vals: Vec<Option<String>> = names.iter().map(|n| var(n)).collect();
    if vals.iter().any(|v| v.is_none()) {
        return missing("S3 with authorization (moto)", &names.join(", "));
    }
    let v: Vec<String> = vals.into_iter().flatten().collect();
    Some(S3Auth {
        endpoint: v[0].trim_end_matches('/').to_string(),
        bucket: var("SNAP_TEST_S3AUTH_BUCKET").unwrap_or_else(|| "snap-test".to_string()),
        full: (v[1].clone(), v[2].clone()),
        append: (v[3].clone(), v[4].clone()),
    })
}

impl S3Auth {
    /// Environment for a child process using `keys` (one of [`S3Auth::full`],
    /// [`S3Auth::append`]).
    pub fn env(&self, keys: &(String, String)) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), keys.0.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), keys.1.clone()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ]
    }
}

impl S3 {
    /// Repository URL for a prefix in the test bucket: `s3://bucket/prefix`.
    pub fn repo_url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_matches('/'))
    }

    /// Environment for child processes (object_store's `AmazonS3Builder::from_env` reads
    /// these): `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`
    /// and `AWS_ALLOW_HTTP=true`. Keys and region come from the environment when set
    /// (scripts/services.sh exports `test`/`test`/`us-east-1`), else those defaults.
    pub fn env(&self) -> Vec<(String, String)> {
        let or = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_string());
        vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint.clone()),
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                or("AWS_ACCESS_KEY_ID", "test"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                or("AWS_SECRET_ACCESS_KEY", "test"),
            ),
            ("AWS_REGION".to_string(), or("AWS_REGION", "us-east-1")),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ]
    }
}

/// A MariaDB server to test against: an account with every privilege and a password kept
/// in a file (`scripts/services.sh` makes both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mysql {
    /// Host address (`SNAP_TEST_MYSQL_HOST`, normally `127.0.0.1`).
    pub host: String,
    /// TCP port (`SNAP_TEST_MYSQL_PORT`).
    pub port: u16,
    /// Unix socket path (`SNAP_TEST_MYSQL_SOCKET`; may be empty).
    pub socket: String,
    /// Account name (`SNAP_TEST_MYSQL_USER`, default `snap`).
    pub user: String,
    /// File whose first line is the account's password (`SNAP_TEST_MYSQL_PASSWORD_FILE`).
    pub password_file: PathBuf,
}

/// The MariaDB test service described by the `SNAP_TEST_MYSQL_*` variables.
///
/// Returns `None` after printing a `skipping:` line when `SNAP_TEST_MYSQL_PORT` or
/// `SNAP_TEST_MYSQL_PASSWORD_FILE` is missing; panics instead when `CI=true`.
pub fn mysql() -> Option<Mysql> {
    let (Some(port), Some(pw)) = (
        var("SNAP_TEST_MYSQL_PORT"),
        var("SNAP_TEST_MYSQL_PASSWORD_FILE"),
    ) else {
        return missing(
            "MariaDB",
            "SNAP_TEST_MYSQL_PORT/SNAP_TEST_MYSQL_PASSWORD_FILE",
        );
    };
    Some(Mysql {
        host: var("SNAP_TEST_MYSQL_HOST").unwrap_or_else(|| "127.0.0.1".to_string()),
        port: port
            .parse()
            .unwrap_or_else(|e| panic!("SNAP_TEST_MYSQL_PORT={port:?} is not a TCP port: {e}")),
        socket: var("SNAP_TEST_MYSQL_SOCKET").unwrap_or_default(),
        user: var("SNAP_TEST_MYSQL_USER").unwrap_or_else(|| "snap".to_string()),
        password_file: PathBuf::from(pw),
    })
}

impl Mysql {
    /// The account's password (first line of [`Mysql::password_file`]).
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.password_file.display()))
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// A snap `--mysql` connection string for database `db`:
    /// `mysql://USER@HOST:PORT/DB?password-file=FILE`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "mysql://{}@{}:{}/{db}?password-file={}",
            self.user,
            self.host,
            self.port,
            self.password_file.display()
        )
    }

    /// A `mariadb` client command (`--no-defaults`, TCP to the server as the test account,
    /// password through `MYSQL_PWD`, batch mode without column names), stdin closed.
    pub fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.args([
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--protocol=TCP",
            &format!("--host={}", self.host),
            &format!("--port={}", self.port),
            &format!("--user={}", self.user),
        ])
        .env("MYSQL_PWD", self.password())
        .stdin(Stdio::null());
        cmd
    }

    /// Runs `sql` in database `db` (none when empty) and returns the output, trimmed: one
    /// row a line, columns separated by tabs. Panics with the client's stderr on failure.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut c = self.client();
        if !db.is_empty() {
            c.arg(format!("--database={db}"));
        }
        let out = run(
            c.arg("--execute").arg(sql),
            &format!("mariadb {db} -e {sql:?}"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Replays the SQL text `input` into database `db`; panics when the client fails.
    pub fn load(&self, db: &str, input: &[u8]) {
        use std::io::Write;
        let mut child = self
            .client()
            .arg(format!("--database={db}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mariadb");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().expect("waiting for mariadb");
        let fed = feeder.join().unwrap();
        assert!(
            out.status.success(),
            "mariadb {db} < SQL failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fed.expect("writing SQL to mariadb");
    }

    /// Creates database `name`.
    pub fn createdb(&self, name: &str) {
        self.sql("", &format!("CREATE DATABASE `{name}`"));
    }

    /// Drops database `name` if it exists.
    pub fn dropdb(&self, name: &str) {
        self.sql("", &format!("DROP DATABASE IF EXISTS `{name}`"));
    }
}

/// A name no other test (in this or another process) uses: `prefix`, then the process id,
/// a per-process counter and the current time in nanoseconds, joined by `_`, e.g.
/// `snap_t_4242_0_1763767702123456789`. Only ASCII digits and `_` are added, so it suits
/// database names (at most 63 bytes: keep `prefix` under 20) and S3 key prefixes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{}_{n}_{nanos}", std::process::id())
}

/// Debian's Chromium and its WebDriver server, for the console's browser test
/// (tests/console_browser.rs), which starts the driver itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chromium {
    /// The browser (`SNAP_TEST_CHROMIUM`, else `chromium` on `PATH`).
    pub browser: PathBuf,
    /// chromedriver (`SNAP_TEST_CHROMEDRIVER`, else `chromedriver` on `PATH`).
    pub driver: PathBuf,
}

/// An executable file named `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Chromium and chromedriver: the paths scripts/services.sh exports
/// (`SNAP_TEST_CHROMIUM`, `SNAP_TEST_CHROMEDRIVER`), or the programs found on `PATH` when a
/// variable is not set. Returns `None` after a `skipping:` line when either is missing (or
/// a variable names a file that does not exist); panics instead when `CI=true`.
pub fn chromium() -> Option<Chromium> {
    let find = |var_name: &str, program: &str| match var(var_name) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => on_path(program),
    };
    match (
        find("SNAP_TEST_CHROMIUM", "chromium"),
        find("SNAP_TEST_CHROMEDRIVER", "chromedriver"),
    ) {
        (Some(browser), Some(driver)) => Some(Chromium { browser, driver }),
        _ => missing(
            "Chromium (Debian's chromium and chromium-driver)",
            "SNAP_TEST_CHROMIUM/SNAP_TEST_CHROMEDRIVER (or chromium and chromedriver on PATH)",
        ),
    }
}
