//! MariaDB/MySQL sources (issue 17): `backup --mysql` against the real MariaDB server
//! of scripts/services.sh, restores into fresh databases with every table's
//! `CHECKSUM TABLE` equal, the second night's added bytes, failing dumps that record
//! nothing, and a profile whose restore-test restores into a scratch database.
//!
//! The database is real text (benches/mysql_data.py: runs of words from the licence and
//! copyright texts under /usr/share), with a view, a trigger, a procedure and a binary
//! column.

mod common;
use common::cli::Snap;
use common::services::{self, Mysql};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Posts in the test database (plus a tenth as many users and twice as many comments):
/// about 7 MB of dump.
const SCALE: u32 = 3000;

/// SQL from benches/mysql_data.py with `args`.
fn data_sql(args: &[&str]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/mysql_data.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("running python3 benches/mysql_data.py");
    assert!(
        out.status.success(),
        "mysql_data.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `CHECKSUM TABLE` of every base table of `db`, by name, plus the number of views,
/// triggers and procedures.
fn checksums(my: &Mysql, db: &str) -> Vec<String> {
    let tables = my.sql(
        "",
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' \
             AND table_type = 'BASE TABLE' ORDER BY table_name"
        ),
    );
    let mut out: Vec<String> = tables
        .lines()
        .map(|t| {
            let line = my.sql(db, &format!("CHECKSUM TABLE `{t}`"));
            // "db.table<TAB>checksum": keep the table and the checksum.
            let sum = line.split('\t').nth(1).unwrap_or("").to_string();
            assert!(!sum.is_empty() && sum != "NULL", "{line}");
            format!("{t}={sum}")
        })
        .collect();
    assert!(out.len() >= 4, "{out:?}");
    for (what, sql) in [
        (
            "views",
            "SELECT COUNT(*) FROM information_schema.views WHERE table_schema",
        ),
        (
            "triggers",
            "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema",
        ),
        (
            "routines",
            "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema",
        ),
    ] {
        out.push(format!("{what}={}", my.sql("", &format!("{sql} = '{db}'"))));
    }
    out
}

fn snapshot_json(s: &Snap, id: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .expect("snapshot listed")
}

/// A snap harness whose children write temporary files under its own folder, so the
/// test can see that the private option files are gone.
fn snap_with_tmp() -> Snap {
    let mut s = Snap::new();
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    s.env
        .push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
    s
}

fn leftover_option_files(s: &Snap) -> Vec<String> {
    std::fs::read_dir(s.path("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap-mysql-"))
        .collect()
}

/// Night 1: `--mysql` and `--mysql-globals` into a snapshot, restored with `--create`
/// into a fresh database: every table's checksum, the view, trigger and procedure equal.
/// Night 2, after 0.25% of the rows were updated and 0.1% inserted and deleted, adds at
/// most 10% of night 1's stored bytes and restores equal too; `--clean` brings night 1
/// back over it; `--create` over an existing database is refused.
#[test]
fn mysql_backup_restore_and_second_night() {
    let Some(my) = services::mysql() else { return };
    let s = snap_with_tmp();
    s.init();
    let src = services::unique_name("snap_my_");
    let dst1 = services::unique_name("snap_myr1_");
    let dst2 = services::unique_name("snap_myr2_");
    my.createdb(&src);
    my.load(&src, &data_sql(&["create", &SCALE.to_string()]));
    let sums1 = checksums(&my, &src);

    let b1 = s.backup_json(["--mysql", &my.conninfo(&src), "--mysql-globals"]);
    let id1 = b1["snapshot"].as_str().unwrap().to_string();
    let stored1 = b1["summary"]["bytes_added_stored"].as_u64().unwrap();
    let dump1 = b1["summary"]["total_bytes"].as_u64().unwrap();
    assert!(dump1 > 5 << 20, "{b1}");
    let j = snapshot_json(&s, &id1);
    let stream = format!("mysql-{src}.sql");
    assert_eq!(
        j["streams"],
        serde_json::json!([stream.clone(), "mysql-globals.sql"])
    );
    let source = &j["sources"][0];
    assert_eq!(source["kind"], "mysql");
    assert_eq!(source["details"]["database"], src.as_str());
    assert_eq!(
        source["details"]["server_version"],
        my.sql("", "SELECT VERSION()").as_str()
    );
    let cmd = source["command"].as_str().unwrap();
    assert!(
        cmd.contains("--single-transaction --quick --routines --events --triggers --hex-blob"),
        "{cmd}"
    );
    assert_eq!(j["sources"][1]["kind"], "mysql-globals");
    let pw = my.password();
    assert!(
        !j.to_string().contains(&pw),
        "password in the snapshot record"
    );
    assert_eq!(leftover_option_files(&s), Vec::<String>::new());

    // The stream is the plain SQL dump, without CREATE DATABASE / USE.
    let out = s
        .cmd(["restore", &id1, "--stdout", "--stream", &stream])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("INSERT INTO `posts` VALUES"), "not a dump");
    assert!(text.contains("TRIGGER comments_count AFTER INSERT"));
    assert!(!text.contains("CREATE DATABASE"));
    let out = s
        .cmd(["restore", &id1, "--stdout", "--stream", "mysql-globals.sql"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CREATE USER IF NOT EXISTS `snap`@"));

    // Into a fresh database.
    s.ok(["restore", &id1, "--mysql", &my.conninfo(&dst1), "--create"]);
    assert_eq!(checksums(&my, &dst1), sums1);

    // The second night.
    my.load(&src, &data_sql(&["night", "2", &SCALE.to_string()]));
    let sums2 = checksums(&my, &src);
    assert_ne!(sums1, sums2, "the night changed nothing");
    let b2 = s.backup_json(["--mysql", &my.conninfo(&src), "--mysql-globals"]);
    let id2 = b2["snapshot"].as_str().unwrap().to_string();
    let added2 = b2["summary"]["bytes_added_stored"].as_u64().unwrap();
    let pct = added2 as f64 * 100.0 / stored1 as f64;
    eprintln!(
        "night 1: dump {dump1} bytes, stored {stored1}; night 2: dump {} bytes, added {added2} ({pct:.2}% of night 1)",
        b2["summary"]["total_bytes"]
    );
    assert!(added2 > 0);
    assert!(pct <= 10.0, "night 2 added {pct:.2}% of night 1's bytes");

    s.ok(["restore", &id2, "--mysql", &my.conninfo(&dst2), "--create"]);
    assert_eq!(checksums(&my, &dst2), sums2);

    // --create over an existing database is refused, in one line, changing nothing.
    let (code, err) = s.fail(["restore", &id1, "--mysql", &my.conninfo(&dst2), "--create"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(checksums(&my, &dst2), sums2);
    // --clean gives night 1 back, exactly.
    s.ok(["restore", &id1, "--mysql", &my.conninfo(&dst2), "--clean"]);
    assert_eq!(checksums(&my, &dst2), sums1);
    // Without --create, into a database that does not exist: one line naming it.
    let missing = services::unique_name("snap_myno_");
    let (code, err) = s.fail([
        "restore",
        &id1,
        "--mysql",
        &my.conninfo(&missing),
        "--no-globals",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Unknown database"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(leftover_option_files(&s), Vec::<String>::new());

    for db in [&src, &dst1, &dst2] {
        my.dropdb(db);
    }
}

/// A wrong database and a wrong password record no snapshot and fail in one line naming
/// the source and the server's reason; a password in the connection string is refused
/// (and not echoed); MYSQL_PWD in the environment, the user's option file and the unix
/// socket work; `--allow-partial` records a partial snapshot naming the failed dump.
#[test]
fn failing_mysql_sources_record_nothing() {
    let Some(my) = services::mysql() else { return };
    let s = snap_with_tmp();
    s.init();
    let db = services::unique_name("snap_myf_");
    my.createdb(&db);
    my.sql(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one')",
    );
    std::fs::write(s.path("f.txt"), "x").unwrap();
    s.ok(["backup", &s.path("f.txt").to_string_lossy()]);
    let before = s.snapshot_ids();

    let missing = services::unique_name("snap_mynone_");
    let (code, err) = s.fail(["backup", "--mysql", &my.conninfo(&missing)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("source \"mysql-{missing}.sql\"")),
        "{err}"
    );
    assert!(err.contains("Unknown database"), "{err}");
    assert!(err.contains("no snapshot was recorded"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(s.snapshot_ids(), before);

    let wrong = s.path("wrong.pw");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let conn = format!(
        "mysql://{}@{}:{}/{db}?password-file={}",
        my.user,
        my.host,
        my.port,
        wrong.display()
    );
    let (code, err) = s.fail(["backup", "--mysql", &conn]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Access denied"), "{err}");
    assert!(err.contains("no snapshot was recorded"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(s.snapshot_ids(), before);
    assert_eq!(leftover_option_files(&s), Vec::<String>::new());

    let pw = my.password();
    let (code, err) = s.fail([
        "backup",
        "--mysql",
        &format!("mysql://{}:{pw}@{}:{}/{db}", my.user, my.host, my.port),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("MYSQL_PWD"), "{err}");
    assert!(!err.contains(&pw), "{err}");
    assert_eq!(s.snapshot_ids(), before);

    // The password from the environment, read by the client itself.
    let plain = format!(
        "host={} port={} user={} database={db}",
        my.host, my.port, my.user
    );
    let out = s
        .cmd(["--json", "backup", "--mysql", &format!("t.sql={plain}")])
        .env("MYSQL_PWD", &pw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = s.ok(["restore", "latest", "--stdout", "--stream", "t.sql"]);
    assert!(dump.contains("INSERT INTO `t` VALUES"), "{dump}");
    assert!(dump.contains("(1,'one')"), "{dump}");

    // The user's own option file, and the unix socket.
    let cnf = s.path("my.cnf");
    std::fs::write(
        &cnf,
        format!("[client]\nuser={}\npassword=\"{pw}\"\n", my.user),
    )
    .unwrap();
    let mut sources = vec![format!(
        "o.sql=host={} port={} database={db} option-file={}",
        my.host,
        my.port,
        cnf.display()
    )];
    if !my.socket.is_empty() {
        sources.push(format!(
            "s.sql=mysql://{}@/{db}?socket={}&password-file={}",
            my.user,
            my.socket,
            my.password_file.display()
        ));
    }
    let mut args = vec!["backup".to_string()];
    for src in &sources {
        args.push("--mysql".into());
        args.push(src.clone());
    }
    s.ok(&args);
    for name in ["o.sql", "s.sql"].iter().take(sources.len()) {
        let dump = s.ok(["restore", "latest", "--stdout", "--stream", name]);
        assert!(dump.contains("(1,'one')"), "{name}: {dump}");
    }

    // --allow-partial records the snapshot without the failed dump, marked.
    let (code, err) = s.fail([
        "backup",
        &s.path("f.txt").to_string_lossy(),
        "--mysql",
        &my.conninfo(&missing),
        "--allow-partial",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Unknown database"), "{err}");
    let j: Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    let last = j.as_array().unwrap().last().unwrap();
    assert_eq!(last["partial"], true, "{last}");
    assert_eq!(last["failed_sources"][0]["kind"], "mysql", "{last}");
    assert_eq!(
        last["failed_sources"][0]["name"],
        format!("mysql-{missing}.sql").as_str()
    );
    assert_eq!(leftover_option_files(&s), Vec::<String>::new());
    my.dropdb(&db);
}

/// A profile with `mysql = [...]`: `snap run` dumps it, `restore-test` restores it into a
/// scratch database, runs the SQL checks, drops the database, and fails naming a check
/// that does not hold.
#[test]
fn restore_test_with_a_mysql_profile() {
    let Some(my) = services::mysql() else { return };
    let s = Snap::new();
    s.init();
    let db = services::unique_name("snap_myp_");
    my.createdb(&db);
    my.load(&db, &data_sql(&["create", "200"]));
    let config = s.path("snap.toml");
    let body = format!(
        r#"[repository.main]
path = {:?}

[profile.shop]
repository = "main"
mysql = ["{}"]
mysql-globals = true
[profile.shop.restore-test]
sql = [
  {{ query = "SELECT COUNT(*) FROM posts", expect-min = 200, expect-max = 200 }},
  {{ query = "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()", expect = "1" }},
]
"#,
        s.repo,
        my.conninfo(&db)
    );
    std::fs::write(&config, &body).unwrap();
    let run = |args: &[&str]| {
        let o = s
            .cmd(["--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["run", "shop"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let j: Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    assert_eq!(
        j[0]["streams"],
        serde_json::json!([format!("mysql-{db}.sql"), "mysql-globals.sql"])
    );

    let (code, out, err) = run(&["--json", "restore-test", "shop"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let checks: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "check")
        .collect();
    assert_eq!(checks.len(), 3, "{out}");
    assert_eq!(checks[0]["check"], format!("mysql-restore mysql-{db}.sql"));
    assert_eq!(checks[1]["detail"], "got 200");
    assert_eq!(checks[2]["detail"], "got 1");
    let scratch = checks[0]["detail"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("snap_restore_test_"))
        .expect("scratch database name")
        .to_string();
    assert_eq!(
        my.sql(
            "",
            &format!(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{scratch}'"
            )
        ),
        "0",
        "scratch database {scratch} was not dropped"
    );

    std::fs::write(
        &config,
        body.replace("expect-min = 200, expect-max = 200", "expect-min = 1000"),
    )
    .unwrap();
    let (code, out, err) = run(&["restore-test", "shop"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("FAIL sql SELECT COUNT(*) FROM posts: got 200, expected at least 1000"),
        "{out}"
    );
    assert!(err.contains("restore-test of profile shop failed"), "{err}");
    my.dropdb(&db);
}

/// The text of docs/recipes.md from the heading starting with `heading` to the next `## `.
fn recipe_section(heading: &str) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes.md"))
            .unwrap();
    let start = text.find(heading).expect("recipe heading");
    let rest = &text[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_string()
}

/// docs/recipes.md recipe 7 (a MariaDB application): its backup block as written (the
/// option file, folder and database names swapped for the test's), then its DR steps 2
/// and 3 after the database, its account and the folder were lost: the account logs in
/// again with its old password, the rows, `.env` and the uploads are back, the excluded
/// log file is not.
#[test]
fn recipe_mariadb_application_runs_and_recovers() {
    let Some(my) = services::mysql() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let db = services::unique_name("shop_");
    let account = services::unique_name("shopu_");
    my.createdb(&db);
    my.sql(
        &db,
        &format!(
            "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2)); \
             INSERT INTO orders VALUES (1, 9.50), (2, 12.00); \
             CREATE USER '{account}'@'127.0.0.1' IDENTIFIED BY 'old-pw'; \
             GRANT ALL ON `{db}`.* TO '{account}'@'127.0.0.1'"
        ),
    );
    let app = t.join("var/www/shop");
    std::fs::create_dir_all(app.join("storage/app/public")).unwrap();
    std::fs::write(app.join(".env"), "APP_KEY=base64:recipe\n").unwrap();
    std::fs::write(app.join("storage/app/public/p1.jpg"), "photo").unwrap();
    std::fs::write(app.join("storage/app/laravel.log"), "log").unwrap();
    let cnf = t.join("snap-my.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[client]\nuser={}\npassword=\"{}\"\nhost={}\nport={}\n",
            my.user,
            my.password(),
            my.host,
            my.port
        ),
    )
    .unwrap();
    let section = recipe_section("## 7. A MariaDB");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in recipe 7");
    let swap = |s: &str| {
        s.replace("/root/.snap-my.cnf", &cnf.to_string_lossy())
            .replace("/var/www/shop", &app.to_string_lossy())
            .replace("database=shop ", &format!("database={db} "))
    };
    let run = |script: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    common::cli::snap_bin().parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("SNAP_REPO", t.join("repo"))
            .env("SNAP_PASSWORD", "recipe password")
            .env("SNAP_TEST_FAST_KDF", "1")
            .env("XDG_CACHE_HOME", t.join("cache"))
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "script failed:\n{script}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&format!("snap init\n{}", swap(block)));

    // Disaster: database, account and folder gone.
    my.dropdb(&db);
    my.sql("", &format!("DROP USER '{account}'@'127.0.0.1'"));
    std::fs::remove_dir_all(t.join("var")).unwrap();
    // DR steps 2 and 3, as written.
    let steps: Vec<String> = section
        .split('`')
        .filter(|s| s.starts_with("snap restore latest ") && s.contains("--target /"))
        .map(|s| swap(s).replace("--target /", &format!("--target {}/", t.display())))
        .collect();
    assert_eq!(steps.len(), 2, "recipe 7 DR steps: {steps:?}");
    // The dump names the database it came from: step 2 creates that one.
    run(&steps.join("\n"));
    let restored = t.join(t.strip_prefix("/").unwrap()).join("var/www/shop");
    assert_eq!(
        std::fs::read_to_string(restored.join(".env")).unwrap(),
        "APP_KEY=base64:recipe\n"
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("storage/app/public/p1.jpg")).unwrap(),
        "photo"
    );
    assert!(!restored.join("storage/app/laravel.log").exists());
    let login = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--protocol=TCP",
            &format!("--host={}", my.host),
            &format!("--port={}", my.port),
            &format!("--user={account}"),
            &format!("--database={db}"),
            "--execute",
            "SELECT SUM(total) FROM orders",
        ])
        .env("MYSQL_PWD", "old-pw")
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), "21.50");
    my.sql("", &format!("DROP USER IF EXISTS '{account}'@'127.0.0.1'"));
    my.dropdb(&db);
}
