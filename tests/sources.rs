//! Database and application sources: `--pg` against a real PostgreSQL
//! server, `--mongo` against stand-in mongo tools, failing sources, and
//! `export` / `import-tar` round trips through the system `tar`.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services::{self, Pg};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The pgbench tables with an ordering that makes `string_agg` deterministic.
const TABLES: &[(&str, &str)] = &[
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "tid, bid, aid, delta, mtime"),
];

/// Row count and md5 of all rows of every pgbench table, one line per table.
fn fingerprint(pg: &Pg, db: &str) -> Vec<String> {
    TABLES
        .iter()
        .map(|(t, order)| {
            let v = pg.psql(
                db,
                &format!(
                    "select count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' order by {order})), '-') from {t} t"
                ),
            );
            format!("{t}: {v}")
        })
        .collect()
}

/// A `Snap` whose PostgreSQL programs come from the test server's folder.
fn snap_for(pg: &Pg) -> Snap {
    let mut s = Snap::new();
    if !pg.bin.as_os_str().is_empty() {
        s.env
            .push(("SNAP_PG_BIN".into(), pg.bin.to_string_lossy().into_owned()));
    }
    s.env.push(("PGCONNECT_TIMEOUT".into(), "10".into()));
    s
}

fn args(v: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    v.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn snapshot_json(s: &Snap, id: &str) -> serde_json::Value {
    let out = s.ok(["--json", "snapshots"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .expect("snapshot listed")
}

fn write_app_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("uploads/2026")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for i in 0..20u32 {
        let body: Vec<u8> = (0..(i * 3001)).map(|j| (j * 7 + i) as u8).collect();
        std::fs::write(dir.join(format!("uploads/2026/photo{i}.jpg")), body).unwrap();
    }
    std::fs::write(dir.join("config/app.json"), br#"{"debug": false}"#).unwrap();
    std::os::unix::fs::symlink("config/app.json", dir.join("current.json")).unwrap();
}

/// `cp -a` (keeps modes and mtimes for tree_diff).
fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A pgbench database plus a folder in one snapshot, the database changed
/// by `pgbench -T 3`, a second snapshot; both restore into fresh databases
/// with the exact table contents of dump time, files byte-identical.
#[test]
fn pg_and_files_two_generations_restore() {
    let Some(pg) = services::pg() else { return };
    let s = snap_for(&pg);
    s.init();
    let db = services::unique_name("snap_src_");
    pg.createdb(&db);
    pg.pgbench_init(&db, 3);
    let app = s.path("app");
    write_app_files(&app);
    let conninfo = pg.conninfo(&db);

    let fp1 = fingerprint(&pg, &db);
    let b1 = s.backup_json(args(&[
        &app,
        &"--pg",
        &conninfo,
        &"--pg-globals",
        &"--tag",
        &"db",
    ]));
    let id1 = b1["snapshot"].as_str().unwrap().to_string();
    let j1 = snapshot_json(&s, &id1);
    let stream = format!("pg-{db}.dump");
    assert_eq!(
        j1["streams"],
        serde_json::json!([stream.clone(), "pg-globals.sql"])
    );
    let src = &j1["sources"][0];
    assert_eq!(src["kind"], "pg");
    assert_eq!(src["details"]["database"], db.as_str());
    assert_eq!(src["details"]["format"], "custom");
    let server = pg.psql("postgres", "show server_version");
    assert_eq!(src["details"]["server_version"], server.as_str());
    assert!(src["details"]["pg_dump_version"]
        .as_str()
        .unwrap()
        .starts_with("pg_dump (PostgreSQL) "));
    assert!(src["command"]
        .as_str()
        .unwrap()
        .contains("--format=custom --compress=0"));
    assert_eq!(j1["sources"][1]["kind"], "pg-globals");
    let dump_len = b1["summary"]["total_bytes"].as_u64().unwrap();
    eprintln!(
        "first snapshot: {} bytes read, {} bytes added",
        b1["summary"]["bytes_read"], b1["summary"]["bytes_added_stored"]
    );

    // The dump inside is an uncompressed custom-format archive.
    let out = s
        .cmd(args(&[&"restore", &id1, &"--stdout", &"--stream", &stream]))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(&out.stdout[..5], b"PGDMP");
    let dumpfile = s.path("first.dump");
    std::fs::write(&dumpfile, &out.stdout).unwrap();
    let list = pg
        .command("pg_restore")
        .arg("-l")
        .arg(&dumpfile)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("Compression: 0") || list.contains("Compression: none"),
        "{list}"
    );
    assert!(list.contains("Format: CUSTOM"), "{list}");
    let globals = s
        .cmd(args(&[
            &"restore",
            &id1,
            &"--stdout",
            &"--stream",
            &"pg-globals.sql",
        ]))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&globals.stdout).contains("CREATE ROLE"));

    let app1 = s.path("app-at-1");
    copy_tree(&app, &app1);

    // Change the database and a file, then take the second snapshot.
    let port = pg.port.to_string();
    let st = pg
        .command("pgbench")
        .args([
            "-T", "3", "-c", "2", "-n", "-h", &pg.host, "-p", &port, "-U", &pg.user, &db,
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::write(app.join("config/app.json"), br#"{"debug": true}"#).unwrap();
    let fp2 = fingerprint(&pg, &db);
    assert_ne!(fp1, fp2, "pgbench changed nothing");
    let b2 = s.backup_json(args(&[
        &app,
        &"--pg",
        &conninfo,
        &"--pg-globals",
        &"--tag",
        &"db",
    ]));
    let id2 = b2["snapshot"].as_str().unwrap().to_string();
    let added2 = b2["summary"]["bytes_added_stored"].as_u64().unwrap();
    eprintln!(
        "second snapshot: dump {} bytes, {} bytes added ({:.1}% of the dump)",
        b2["summary"]["total_bytes"],
        added2,
        added2 as f64 * 100.0 / dump_len as f64
    );
    assert!(added2 > 0);

    // Snapshot 1 into a fresh database, and a file subset, in one command.
    let r1 = services::unique_name("snap_r1_");
    pg.createdb(&r1);
    let t1 = s.path("t1");
    let include = format!("{}/uploads/**", app.display());
    s.ok(args(&[
        &"restore",
        &id1,
        &"--pg",
        &pg.conninfo(&r1),
        &"--target",
        &t1,
        &"--include",
        &include,
    ]));
    assert_eq!(fingerprint(&pg, &r1), fp1);
    let d = tree_diff(
        &app1.join("uploads"),
        &restored_path(&t1, &app.join("uploads")),
    );
    assert!(d.is_empty(), "{d:?}");
    assert!(!restored_path(&t1, &app.join("config/app.json")).exists());
    // The whole tree of snapshot 1.
    let t1b = s.path("t1b");
    s.ok(args(&[&"restore", &id1, &"--target", &t1b]));
    let d = tree_diff(&app1, &restored_path(&t1b, &app));
    assert!(d.is_empty(), "{d:?}");

    // Snapshot 2: drop the original and let pg_restore --create recreate it.
    pg.dropdb(&db);
    let t2 = s.path("t2");
    s.ok(args(&[
        &"restore",
        &id2,
        &"--pg",
        &conninfo,
        &"--create",
        &"--target",
        &t2,
    ]));
    assert_eq!(fingerprint(&pg, &db), fp2);
    let d = tree_diff(&app, &restored_path(&t2, &app));
    assert!(d.is_empty(), "{d:?}");

    // --clean over a database holding other data gives snapshot 1's rows.
    s.ok(args(&[&"restore", &id1, &"--pg", &conninfo, &"--clean"]));
    assert_eq!(fingerprint(&pg, &db), fp1);

    // A restore into a database that does not exist fails in one line,
    // from psql replaying the globals or (without them) from pg_restore.
    let (_, err) = s.fail(args(&[
        &"restore",
        &id1,
        &"--pg",
        &pg.conninfo("snap_no_such_db"),
    ]));
    assert!(err.contains("psql failed with exit code 2"), "{err}");
    assert!(err.contains("snap_no_such_db"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (_, err) = s.fail(args(&[
        &"restore",
        &id1,
        &"--pg",
        &pg.conninfo("snap_no_such_db"),
        &"--no-globals",
    ]));
    assert!(err.contains("pg_restore failed with exit code 1"), "{err}");
    assert!(err.contains("snap_no_such_db"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    pg.dropdb(&db);
    pg.dropdb(&r1);
}

/// A wrong database name and a pg_dump that fails after writing output
/// both leave the snapshot list unchanged and name the source; with
/// --allow-partial the snapshot is recorded, tagged and marked partial.
#[test]
fn failing_pg_sources_record_nothing() {
    let Some(pg) = services::pg() else { return };
    let s = snap_for(&pg);
    s.init();
    let app = s.path("app");
    write_app_files(&app);
    s.ok(args(&[&"backup", &app]));
    let before = s.snapshot_ids();

    let missing = services::unique_name("snap_nodb_");
    let (code, err) = s.fail(args(&[&"backup", &app, &"--pg", &pg.conninfo(&missing)]));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("source \"pg-{missing}.dump\"")),
        "{err}"
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("no snapshot was recorded"), "{err}");
    assert_eq!(s.snapshot_ids(), before);

    // pg_dump fails after writing ~1 MB: the role may read the table but
    // not the large object, which is dumped last.
    let db = services::unique_name("snap_lo_");
    let role = services::unique_name("snap_ro_");
    pg.createdb(&db);
    pg.psql(
        &db,
        &format!(
            "create table a(x int); insert into a select generate_series(1, 100000); \
             select lo_from_bytea(0, 'private'::bytea); create role {role} login; \
             grant select on all tables in schema public to {role}"
        ),
    );
    let conn = format!("{} user={role}", pg.conninfo(&db));
    let (code, err) = s.fail(args(&[
        &"backup",
        &app,
        &"--pg",
        &format!("lo.dump={conn}"),
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("source \"lo.dump\""), "{err}");
    assert!(err.contains("failed with exit code 1"), "{err}");
    assert!(err.contains("permission denied for large object"), "{err}");
    assert_eq!(s.snapshot_ids(), before);

    // --allow-partial: recorded without the failed stream.
    let out = s.run(args(&[
        &"--json",
        &"backup",
        &app,
        &"--pg",
        &format!("lo.dump={conn}"),
        &"--allow-partial",
    ]));
    assert_eq!(out.status.code(), Some(3));
    let after = s.snapshot_ids();
    assert_eq!(after.len(), before.len() + 1);
    let j = snapshot_json(&s, after.last().unwrap());
    assert_eq!(j["partial"], true);
    assert_eq!(j["tags"], serde_json::json!(["partial"]));
    assert_eq!(j["streams"], serde_json::json!([]));
    assert_eq!(j["failed_sources"][0]["name"], "lo.dump");
    assert!(j["failed_sources"][0]["details"]["error"]
        .as_str()
        .unwrap()
        .contains("permission denied for large object"));
    // A password in the connection string is refused before anything runs.
    let (_, err) = s.fail(args(&[
        &"backup",
        &"--pg",
        &format!("{} password=hunter2", pg.conninfo(&db)),
    ]));
    assert!(err.contains("holds a password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    pg.dropdb(&db);
    pg.psql("postgres", &format!("drop role {role}"));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mongodump")
        .join(name)
}

/// Writes stand-in `mongodump` and `mongorestore` scripts into `dir`.
/// Each appends its arguments (tab-separated) to `dir/argv.log` and copies
/// any `--config` file it is given to `dir/config.seen`. `mongodump`
/// writes the fixture `$FIXTURE` (and with `$FAIL_AFTER` set, then fails);
/// `mongorestore` compares its stdin with `$FIXTURE` and fails if it
/// differs.
fn mongo_stand_ins(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let record = r#"log="$(dirname "$0")/argv.log"
printf '%s' "$(basename "$0")" >> "$log"
for a in "$@"; do
  printf '\t%s' "$a" >> "$log"
  case "$a" in --config=*) cp "${a#--config=}" "$(dirname "$0")/config.seen";; esac
done
printf '\n' >> "$log"
"#;
    let dump = format!(
        "#!/bin/sh\n{record}if [ \"$1\" = --version ]; then echo 'mongodump version: 100.9.4'; exit 0; fi\n\
         cat \"$FIXTURE\"\nif [ -n \"$FAIL_AFTER\" ]; then echo 'Failed: error reading from db: connection reset' >&2; exit 1; fi\n"
    );
    let restore = format!(
        "#!/bin/sh\n{record}if cmp -s - \"$FIXTURE\"; then echo 'restored' >&2; exit 0; fi\n\
         echo 'Failed: stream or file does not appear to be a mongodump archive' >&2; exit 1\n"
    );
    for (name, body) in [("mongodump", dump), ("mongorestore", restore)] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `--mongo` with stand-in tools: no MongoDB server can be installed on the
/// test machines, so `mongodump` and `mongorestore` are small shell scripts
/// (placed first on PATH) that emit and check a real mongodump archive byte
/// stream from mongo-tools' test data (tests/data/mongodump). The test
/// asserts the exact arguments snap passes, that the stream round-trips
/// byte for byte, that a URI password reaches the tool only through a
/// temporary `--config` file, and that failures record nothing.
#[test]
fn mongo_with_stand_in_tools() {
    let mut s = Snap::new();
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    mongo_stand_ins(&bin);
    let fix = fixture("timeseries-dump.archive");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    s.env.push(("PATH".into(), path));
    s.env
        .push(("FIXTURE".into(), fix.to_string_lossy().into_owned()));
    s.init();
    let log = bin.join("argv.log");
    let uri = "mongodb://127.0.0.1:27017/?replicaSet=rs0";
    let app = s.path("app");
    write_app_files(&app);

    let b = s.backup_json(args(&[&app, &"--mongo", &uri, &"--mongo-oplog"]));
    let id = b["snapshot"].as_str().unwrap().to_string();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        format!("mongodump\t--version\nmongodump\t--archive\t--uri={uri}\t--oplog\n")
    );
    let j = snapshot_json(&s, &id);
    assert_eq!(j["streams"], serde_json::json!(["mongo.archive"]));
    assert_eq!(j["sources"][0]["kind"], "mongo");
    assert_eq!(j["sources"][0]["details"]["oplog"], "true");
    assert_eq!(j["sources"][0]["details"]["format"], "archive");
    let out = s
        .cmd(args(&[&"restore", &id, &"--stdout"]))
        .output()
        .unwrap();
    assert_eq!(out.stdout, std::fs::read(&fix).unwrap());

    // Restore into "MongoDB" and files in one command.
    std::fs::remove_file(&log).unwrap();
    let target = s.path("t");
    s.ok(args(&[
        &"restore",
        &id,
        &"--mongo",
        &"mongodb://10.0.0.5:27017",
        &"--drop",
        &"--target",
        &target,
    ]));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "mongorestore\t--archive\t--uri=mongodb://10.0.0.5:27017\t--drop\n"
    );
    let d = tree_diff(&app, &restored_path(&target, &app));
    assert!(d.is_empty(), "{d:?}");

    // A password goes through a --config file, never argv or the snapshot.
    std::fs::remove_file(&log).unwrap();
    let b = s.backup_json(args(&[
        &"--mongo",
        &"shop=mongodb://app:s3cr%2Ft@db:27017/shop",
    ]));
    let id2 = b["snapshot"].as_str().unwrap().to_string();
    let calls = std::fs::read_to_string(&log).unwrap();
    let dump_line = calls.lines().nth(1).unwrap();
    let argv: Vec<&str> = dump_line.split('\t').collect();
    assert_eq!(
        argv[..3],
        [
            "mongodump",
            "--archive",
            "--uri=mongodb://app@db:27017/shop"
        ]
    );
    assert!(argv[3].starts_with("--config="), "{dump_line}");
    assert_eq!(argv.len(), 4);
    assert!(!calls.contains("s3cr"), "{calls}");
    assert_eq!(
        std::fs::read_to_string(bin.join("config.seen")).unwrap(),
        "password: \"s3cr/t\"\n"
    );
    assert!(
        !Path::new(argv[3].trim_start_matches("--config=")).exists(),
        "config file left behind"
    );
    let j = snapshot_json(&s, &id2);
    assert_eq!(j["streams"], serde_json::json!(["shop"]));
    assert!(!j.to_string().contains("s3cr"), "{j}");

    // mongorestore rejecting the input: one-line error with its exit code.
    let mut s2 = Snap::new();
    s2.repo = s.repo.clone();
    s2.cache = s.cache.clone();
    s2.env = s.env.clone();
    for (k, v) in s2.env.iter_mut() {
        if k == "FIXTURE" {
            *v = fixture("dump-w-oplog.archive")
                .to_string_lossy()
                .into_owned();
        }
    }
    let (code, err) = s2.fail(args(&[&"restore", &id, &"--mongo", &"mongodb://h"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("mongorestore failed with exit code 1"),
        "{err}"
    );
    assert!(
        err.contains("does not appear to be a mongodump archive"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // mongodump failing after writing the whole archive records nothing.
    let before = s.snapshot_ids();
    s2.env.push(("FAIL_AFTER".into(), "1".into()));
    let (code, err) = s2.fail(args(&[&"backup", &app, &"--mongo", &uri]));
    assert_eq!(code, 1);
    assert!(err.contains("source \"mongo.archive\""), "{err}");
    assert!(err.contains("exit code 1"), "{err}");
    assert!(err.contains("connection reset"), "{err}");
    assert_eq!(s.snapshot_ids(), before);
}

/// `snap export` unpacked by the system tar equals the original tree;
/// `import-tar` of that archive, restored, equals it too, and stores
/// (almost) nothing new because its chunks match the original backup's.
#[test]
fn export_and_import_tar_roundtrip() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    write_app_files(&src);
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let long = "n".repeat(120);
    std::fs::write(src.join(&long), b"long name").unwrap();
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("config"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::set_permissions(src.join("big.bin"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let mkfifo = std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    let mut cmd = s.cmd(args(&[
        &"backup",
        &src,
        &"--stdin",
        &"--stdin-name",
        &"extra.bin",
    ]));
    cmd.stdin(std::fs::File::open(src.join("big.bin")).unwrap());
    assert!(cmd.output().unwrap().status.success());

    let tarfile = s.path("out.tar");
    let out = s.cmd(["export", "latest"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&tarfile, &out.stdout).unwrap();
    let unpacked = s.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(&tarfile)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let d = tree_diff(&src, &restored_path(&unpacked, &src));
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        std::fs::read(unpacked.join("@streams/extra.bin")).unwrap(),
        big
    );

    // -o FILE writes the same bytes.
    let tar2 = s.path("out2.tar");
    s.ok(args(&[&"export", &"latest", &"-o", &tar2]));
    assert_eq!(std::fs::read(&tar2).unwrap(), out.stdout);

    // import-tar from a file, then restore: the same tree again.
    let out = s.ok(args(&[
        &"--json",
        &"import-tar",
        &tarfile,
        &"--tag",
        &"imported",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let id = v["snapshot"].as_str().unwrap().to_string();
    let added = v["summary"]["bytes_added_stored"].as_u64().unwrap();
    eprintln!(
        "import-tar of a {} byte archive added {added} bytes",
        std::fs::metadata(&tarfile).unwrap().len()
    );
    assert!(added < 64 * 1024, "import re-stored content: {added} bytes");
    let j = snapshot_json(&s, &id);
    assert_eq!(j["streams"], serde_json::json!(["extra.bin"]));
    assert_eq!(j["tags"], serde_json::json!(["imported"]));
    let target = s.path("restored");
    s.ok(args(&[&"restore", &id, &"--target", &target]));
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "{d:?}");
    let back = s
        .cmd(args(&[
            &"restore",
            &id,
            &"--stdout",
            &"--stream",
            &"extra.bin",
        ]))
        .output()
        .unwrap();
    assert_eq!(back.stdout, big);
    // Exporting the imported snapshot gives the same archive bytes.
    let tar3 = s.path("out3.tar");
    s.ok(args(&[&"export", &id, &"-o", &tar3]));
    assert_eq!(
        std::fs::read(&tar3).unwrap(),
        std::fs::read(&tarfile).unwrap()
    );

    // import-tar from standard input.
    let mut cmd = s.cmd(["import-tar", "-"]);
    cmd.stdin(std::fs::File::open(&tarfile).unwrap());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A tar entry escaping with `..` is refused and records nothing.
    let before = s.snapshot_ids();
    let evil = s.path("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Header::set_path refuses `..`, so write the name bytes directly.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"bad"[..]).unwrap();
        b.finish().unwrap();
    }
    let (_, err) = s.fail(args(&[&"import-tar", &evil]));
    assert!(err.contains(".."), "{err}");
    assert_eq!(s.snapshot_ids(), before);

    // Zip: every file with its content and mode (checked by reading it back).
    let zipfile = s.path("out.zip");
    s.ok(args(&[
        &"export",
        &"latest~2",
        &"--format",
        &"zip",
        &"-o",
        &zipfile,
    ]));
    let mut z = zip::ZipArchive::new(std::fs::File::open(&zipfile).unwrap()).unwrap();
    let rel = |p: &Path| p.strip_prefix("/").unwrap().to_string_lossy().into_owned();
    {
        let mut f = z.by_name(&rel(&src.join("big.bin"))).unwrap();
        assert_eq!(f.unix_mode().map(|m| m & 0o7777), Some(0o600));
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap();
        assert_eq!(v, big);
    }
    let link = z.by_name(&rel(&src.join("current.json"))).unwrap();
    assert!(link.is_symlink());
}
