//! Profiles, schedules and notifications (issue "Profiles, schedules and
//! notifications"): `snap run`, hooks, `snap restore-test`, `snap schedule`,
//! completions, man page and exit codes, through the built binary.

mod common;
use common::cli::{restored_path, snap_bin, tree_diff, Snap};
use common::profiled::{lines, read_json, Profiled};
use common::services;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn make_app(root: &Path, n: usize) {
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("config.json"), br#"{"db":"shop"}"#).unwrap();
    for i in 0..n {
        std::fs::write(
            root.join("data").join(format!("f{i}.txt")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
}

/// A profile with a directory and a command stream runs end to end against
/// a local repository: hooks run in order and get the JSON summary on stdin
/// and SNAP_* variables; `--json` prints one object per step and a summary;
/// the snapshot restores to the same tree.
#[test]
fn run_profile_end_to_end_with_hooks() {
    let p = Profiled::new(
        r#"
[profile.app]
repository = "main"
paths = ["{dir}/app"]
exclude = ["*.tmp"]
command = ["motd.txt=echo hello from a command"]
tags = ["web"]
before = "cat > {dir}/before.json"
after = ["cat > {dir}/after.json", "printf '%s %s' \"$SNAP_STATUS\" \"$SNAP_SNAPSHOT_ID\" > {dir}/after.env"]
on-failure = "touch {dir}/on-failure-ran"
notify-success = "cat > {dir}/notify.json"
notify-failure = "touch {dir}/notify-failure-ran"
"#,
    );
    let app = p.dir().join("app");
    make_app(&app, 20);
    std::fs::write(app.join("skip.tmp"), b"excluded").unwrap();
    let out = p.ok(&["--json", "run", "app"]);
    let objs = lines(&out);
    let kinds: Vec<(&str, &str)> = objs
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap(),
                o["step"].as_str().or(o["hook"].as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("hook", "before"),
            ("step", "backup"),
            ("hook", "after"),
            ("hook", "after"),
            ("hook", "notify-success"),
            ("summary", "")
        ],
        "{out}"
    );
    let summary = objs.last().unwrap();
    assert_eq!(summary["status"], "success");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["profile"], "app");
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(objs[1]["snapshot_id"], id.as_str());
    // config.json + 20 data files; skip.tmp is excluded; the stream is not a file.
    assert_eq!(objs[1]["result"]["summary"]["files_new"], 21, "{out}");

    // Hooks: before sees "running", after and notify see the final summary.
    let before = read_json(&p.dir().join("before.json"));
    assert_eq!(before["status"], "running");
    assert!(before["snapshot_id"].is_null());
    let after = read_json(&p.dir().join("after.json"));
    assert_eq!(after["status"], "success");
    assert_eq!(after["snapshot_id"], id.as_str());
    assert_eq!(after["steps"][0]["step"], "backup");
    assert_eq!(
        std::fs::read_to_string(p.dir().join("after.env")).unwrap(),
        format!("success {id}")
    );
    assert_eq!(
        read_json(&p.dir().join("notify.json"))["snapshot_id"],
        id.as_str()
    );
    assert!(!p.dir().join("on-failure-ran").exists());
    assert!(!p.dir().join("notify-failure-ran").exists());

    // The snapshot carries the profile tag and restores the tree.
    let snaps: Vec<Value> = serde_json::from_str(&p.s.ok(["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.len(), 1);
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["profile:app", "web"]);
    assert_eq!(snaps[0]["streams"][0], "motd.txt");
    std::fs::remove_file(app.join("skip.tmp")).unwrap();
    let target = p.dir().join("restored");
    p.s.ok([
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
        "--exclude",
        "@streams",
    ]);
    let diff = tree_diff(&app, &restored_path(&target, &app));
    assert!(diff.is_empty(), "{diff:?}");
    let motd = p.s.ok(["restore", &id, "--stdout", "--stream", "motd.txt"]);
    assert_eq!(motd, "hello from a command\n");

    // Human output names each step; a second run is incremental.
    let human = p.ok(&["run", "app"]);
    assert!(human.contains("backup: ok"), "{human}");
    assert!(human.contains("profile app: success"), "{human}");
    // --dry-run prints the child command lines and runs nothing.
    let dry = p.ok(&["run", "app", "--dry-run"]);
    assert!(dry.starts_with("backup: snap --repo "), "{dry}");
    assert!(dry.contains("--tag profile:app"), "{dry}");
    assert_eq!(p.s.snapshot_ids().len(), 2);
}

/// A failing source (a command that exits 1) fails the job: `on-failure`
/// and `notify-failure` run with the JSON summary naming the failed step,
/// `after` and `notify-success` do not, no snapshot is recorded, and
/// `snap run` exits 1.
#[test]
fn failing_source_runs_on_failure_not_after() {
    let p = Profiled::new(
        r#"
[profile.bad]
repository = "main"
paths = ["{dir}/app"]
command = ["broken.sql=echo partial; exit 1"]
before = "touch {dir}/before-ran"
after = "touch {dir}/after-ran"
on-failure = "cat > {dir}/failure.json; env | grep '^SNAP_' | sort > {dir}/failure.env"
notify-success = "touch {dir}/notify-success-ran"
notify-failure = "cat > {dir}/notify-failure.json"
"#,
    );
    make_app(&p.dir().join("app"), 3);
    let (code, out, err) = p.out(&["--json", "run", "bad"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(p.dir().join("before-ran").exists());
    assert!(!p.dir().join("after-ran").exists(), "after ran on failure");
    assert!(!p.dir().join("notify-success-ran").exists());
    let f = read_json(&p.dir().join("failure.json"));
    assert_eq!(f["status"], "failure");
    assert_eq!(f["failed_step"], "backup");
    assert_eq!(f["profile"], "bad");
    assert!(f["snapshot_id"].is_null());
    let msg = f["error"].as_str().unwrap();
    assert!(
        msg.contains("broken.sql") || msg.contains("exit code 1"),
        "{msg}"
    );
    assert_eq!(f["steps"][0]["status"], "failed");
    let env = std::fs::read_to_string(p.dir().join("failure.env")).unwrap();
    assert!(env.contains("SNAP_PROFILE=bad\n"), "{env}");
    assert!(env.contains("SNAP_STATUS=failure\n"), "{env}");
    assert!(env.contains("SNAP_FAILED_STEP=backup\n"), "{env}");
    assert!(env.contains("SNAP_HOOK=on-failure\n"), "{env}");
    assert!(env.contains("SNAP_SNAPSHOT_ID=\n"), "{env}");
    assert!(env.contains("SNAP_ERROR="), "{env}");
    assert!(
        !env.contains(&p.s.password),
        "the repository password leaked into the hook environment"
    );
    assert_eq!(
        read_json(&p.dir().join("notify-failure.json"))["failed_step"],
        "backup"
    );
    // The last stdout line is the summary; the error also comes on stderr.
    let objs = lines(&out);
    assert_eq!(objs.last().unwrap()["status"], "failure");
    assert!(err.contains("step backup failed"), "{err}");
    assert!(p.s.snapshot_ids().is_empty());
}

/// A failing `before` hook stops the job before the backup.
#[test]
fn failing_before_hook_skips_steps() {
    let p = Profiled::new(
        r#"
[profile.p]
repository = "main"
paths = ["{dir}/app"]
before = "exit 4"
on-failure = "cat > {dir}/failure.json"
"#,
    );
    make_app(&p.dir().join("app"), 1);
    let (code, out, err) = p.out(&["--json", "run", "p"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let objs = lines(&out);
    assert_eq!(objs[1]["step"], "backup");
    assert_eq!(objs[1]["status"], "skipped");
    let f = read_json(&p.dir().join("failure.json"));
    assert_eq!(f["failed_step"], "before");
    assert!(f["error"].as_str().unwrap().contains("code 4"), "{f}");
    assert!(p.s.snapshot_ids().is_empty());
}

/// Profile file errors: unknown keys name the key and line; missing
/// profiles and repositories are named; exit 2 (usage errors).
#[test]
fn profile_file_errors() {
    let p = Profiled::new("[profile.p]\nrepository = \"main\"\npaths = [\"/x\"]\nkeep-dayly = 3\n");
    let (code, _, err) = p.out(&["run", "p"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("keep-dayly"), "{err}");
    assert!(err.contains("line 7"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    p.write("[profile.p]\nrepository = \"main\"\npaths = [\"/x\"]\n");
    let (code, _, err) = p.out(&["run", "nightly"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no profile \"nightly\"") && err.contains("defined: p"),
        "{err}"
    );
    p.write("[profile.p]\nrepository = \"elsewhere\"\npaths = [\"/x\"]\n");
    let (code, _, err) = p.out(&["run", "p"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"elsewhere\""), "{err}");
    // No --config and no snap.toml anywhere searched.
    let empty = p.dir().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(snap_bin())
        .args(["run", "p"])
        .current_dir(&empty)
        .env("XDG_CONFIG_HOME", p.dir().join("nothing"))
        .env_remove("SNAP_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !Path::new("/etc/snap/snap.toml").exists() {
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no profile file"));
    }
    // ./snap.toml is found without --config.
    std::fs::write(
        p.dir().join("snap.toml"),
        format!(
            "[repository.main]\npath = {:?}\n[profile.here]\nrepository = \"main\"\npaths = [{:?}]\n",
            p.s.repo,
            p.dir().join("cache").to_string_lossy()
        ),
    )
    .unwrap();
    let o = Command::new(snap_bin())
        .args(["run", "here", "--dry-run"])
        .current_dir(p.dir())
        .env_remove("SNAP_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `snap restore-test` passes on a good snapshot, and fails naming each
/// check that does not hold (exit 1).
#[test]
fn restore_test_passes_and_fails_naming_the_check() {
    let body = r#"
[profile.app]
repository = "main"
paths = ["{dir}/app"]
[profile.app.restore-test]
min-files = 25
files = ["{rel}/config.json", "{rel}/data/f7.txt"]
commands = ["test -s \"$SNAP_RESTORE_DIR/{rel}/config.json\""]
"#;
    let p = Profiled::new("");
    let rel = p
        .dir()
        .join("app")
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();
    p.write(&body.replace("{rel}", &rel));
    make_app(&p.dir().join("app"), 30);
    // No snapshot of the profile yet.
    let (code, _, err) = p.out(&["restore-test", "app"]);
    assert_eq!(code, 1);
    assert!(err.contains("no snapshot of profile app"), "{err}");
    p.ok(&["run", "app"]);
    let out = p.ok(&["--json", "restore-test", "app"]);
    let objs = lines(&out);
    let checks: Vec<(&str, &str)> = objs
        .iter()
        .filter(|o| o["type"] == "check")
        .map(|o| (o["check"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(checks.len(), 5, "{out}");
    assert!(checks.iter().all(|(_, s)| *s == "pass"), "{out}");
    assert_eq!(objs.last().unwrap()["status"], "pass");
    assert_eq!(
        objs.last().unwrap()["snapshot_id"],
        p.s.snapshot_ids()[0].as_str()
    );
    assert!(
        objs[1]["detail"].as_str().unwrap().starts_with("31 files"),
        "{out}"
    );

    // Now the file is gone from the source and a stricter count is asked.
    std::fs::remove_file(p.dir().join("app/data/f7.txt")).unwrap();
    p.ok(&["run", "app"]);
    p.write(
        &body
            .replace("{rel}", &rel)
            .replace("min-files = 25", "min-files = 1000"),
    );
    let (code, out, err) = p.out(&["restore-test", "app"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("FAIL min-files: 30 files, at least 1000 required"),
        "{out}"
    );
    assert!(
        out.contains(&format!("FAIL file {rel}/data/f7.txt: missing")),
        "{out}"
    );
    assert!(
        out.contains(&format!("PASS file {rel}/config.json")),
        "{out}"
    );
    assert!(err.contains("restore-test of profile app failed"), "{err}");
    assert!(
        err.contains("min-files") && err.contains("data/f7.txt"),
        "{err}"
    );
    // The older snapshot still passes the file check when named explicitly.
    let first = p.s.snapshot_ids()[0].clone();
    let (code, out, _) = p.out(&["restore-test", "app", "--snapshot", &first[..12]]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("PASS file {rel}/data/f7.txt")),
        "{out}"
    );
    // Scratch directories are removed.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("snap-restore-test-app-")
        })
        .filter(|e| {
            // Only ours: the restored tree would contain our directory.
            e.path().join(&rel).exists()
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// SQL checks restore a PostgreSQL dump stream into a scratch database,
/// query it, report, and drop the database.
#[test]
fn restore_test_sql_checks_against_postgres() {
    let Some(pg) = services::pg() else { return };
    let db = services::unique_name("snap_prof_");
    pg.createdb(&db);
    pg.psql(
        &db,
        "create table accounts(id int primary key, name text); \
         insert into accounts select g, 'n' || g from generate_series(1, 250) g",
    );
    let conn = pg.conninfo(&db);
    let pg_dump = pg.tool("pg_dump");
    let body = format!(
        r#"
[profile.db]
repository = "main"
command = ["shop.dump={} --format=custom --compress=0 --dbname='{conn}'"]
[profile.db.restore-test]
pg-server = "{}"
sql = [
  {{ query = "select count(*) from accounts", expect-min = 250, expect-max = 250 }},
  {{ query = "select name from accounts where id = 7", expect = "n7" }},
]
"#,
        pg_dump.display(),
        pg.conninfo("postgres")
    );
    let p = Profiled::new(&body);
    let pgbin = pg.bin.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let o = p.cmd(args).env("SNAP_PG_BIN", &pgbin).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["run", "db"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run(&["--json", "restore-test", "db"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let objs = lines(&out);
    let checks: Vec<&Value> = objs.iter().filter(|o| o["type"] == "check").collect();
    assert_eq!(checks.len(), 3, "{out}");
    assert_eq!(checks[0]["check"], "pg-restore shop.dump");
    assert_eq!(checks[1]["detail"], "got 250");
    assert_eq!(checks[2]["status"], "pass");
    let detail = checks[0]["detail"].as_str().unwrap();
    let scratch = detail
        .split_whitespace()
        .find(|w| w.starts_with("snap_restore_test_"))
        .expect("scratch database name")
        .to_string();
    let exists = pg.psql(
        "postgres",
        &format!("select count(*) from pg_database where datname = '{scratch}'"),
    );
    assert_eq!(exists, "0", "scratch database {scratch} was not dropped");

    // A check that does not hold fails, named.
    p.write(&body.replace("expect-min = 250, expect-max = 250", "expect-min = 1000"));
    let (code, out, err) = run(&["restore-test", "db"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("FAIL sql select count(*) from accounts: got 250, expected at least 1000"),
        "{out}"
    );
    assert!(err.contains("sql select count(*) from accounts"), "{err}");
    // A query error is a failed check too.
    p.write(&body.replace("from accounts where id = 7", "from no_such_table"));
    let (code, out, _) = run(&["restore-test", "db"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL sql select name from no_such_table"),
        "{out}"
    );
    pg.dropdb(&db);
}

/// The whole issue example: a folder and a real PostgreSQL database into a
/// local repository with retention, copied to an S3 offsite repository,
/// checked, then restore-tested.
#[test]
fn full_profile_pg_retention_copy_check() {
    let (Some(pg), Some(s3)) = (services::pg(), services::s3()) else {
        return;
    };
    let db = services::unique_name("snap_prof_");
    pg.createdb(&db);
    pg.pgbench_init(&db, 1);
    let offsite = s3.repo_url(&services::unique_name("offsite_"));
    let p = Profiled::new("");
    let mut s = Snap::new();
    s.repo = offsite.clone();
    s.env = s3.env();
    s.password = "offsite password".into();
    s.ok(["init"]);
    std::fs::write(p.dir().join("offsite-pw"), "offsite password\n").unwrap();
    let env_table = s3
        .env()
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    p.write(&format!(
        r#"
[repository.offsite]
path = "{offsite}"
password-file = "{{dir}}/offsite-pw"
env = {{ {env_table} }}

[profile.nightly]
repository = "main"
paths = ["{{dir}}/app"]
pg = ["{}"]
keep-last = 2
copy-to = "offsite"
check = true
check-read-data-subset = "5%"
after = "cat > {{dir}}/after.json"
[profile.nightly.restore-test]
min-files = 10
sql = [{{ query = "select count(*) from pgbench_accounts", expect-min = 100000 }}]
"#,
        pg.conninfo(&db)
    ));
    make_app(&p.dir().join("app"), 10);
    let pgbin = pg.bin.to_string_lossy().into_owned();
    for i in 0..3 {
        std::fs::write(p.dir().join("app/data/run.txt"), format!("run {i}")).unwrap();
        let o = p
            .cmd(&["--json", "run", "nightly"])
            .env("SNAP_PG_BIN", &pgbin)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let steps: Vec<String> = lines(&out)
            .iter()
            .filter(|v| v["type"] == "step")
            .map(|v| {
                format!(
                    "{}={}",
                    v["step"].as_str().unwrap(),
                    v["status"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            steps,
            ["backup=ok", "forget=ok", "copy=ok", "check=ok"],
            "{out}"
        );
    }
    assert_eq!(p.s.snapshot_ids().len(), 2, "keep-last = 2");
    let off = s.snapshot_ids();
    assert!(off.len() >= 2, "offsite has {off:?}");
    // A copied snapshot gets its own id and names the source snapshot in
    // `original` (format-spec §8.4).
    let after = read_json(&p.dir().join("after.json"));
    let listing: serde_json::Value = serde_json::from_str(&s.ok(["--json", "snapshots"])).unwrap();
    let originals: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["original"].as_str())
        .collect();
    let last = after["snapshot_id"].as_str().unwrap();
    assert!(
        originals
            .iter()
            .any(|o| o.starts_with(last) || last.starts_with(o)),
        "offsite copies {originals:?} do not include {last}"
    );
    let o = p
        .cmd(&["restore-test", "nightly"])
        .env("SNAP_PG_BIN", &pgbin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    pg.dropdb(&db);
}

/// Exit code 11: an exclusive operation (`repair index`) meets the lease of
/// a running backup. (Prune does not: it is designed to run beside backups,
/// format-spec §19, §20.)
#[test]
fn exit_11_when_repository_locked() {
    let p = Profiled::new(
        r#"
[profile.p]
repository = "main"
paths = ["{dir}/app"]
keep-last = 1
"#,
    );
    make_app(&p.dir().join("app"), 2);
    p.ok(&["run", "p"]);
    // A backup that holds its lease for a few seconds.
    let mut holder =
        p.s.cmd(["backup", "--command", "slow=sleep 6; echo done"])
            .spawn()
            .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = p.s.run(["repair", "index"]);
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{err}");
    assert!(err.contains("backup"), "{err}");
}

fn systemd_analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        if services::in_ci() {
            panic!("CI=true but systemd-analyze is missing: apt-get install systemd");
        }
        eprintln!("skipping: systemd-analyze not installed (apt-get install systemd)");
    }
    found
}

/// Generated timer + service pairs pass `systemd-analyze verify` for every
/// schedule form; `--list` shows the installed timer; a broken unit fails
/// verify (so the check can fail).
#[test]
fn systemd_units_pass_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let p = Profiled::new("[profile.nightly]\nrepository = \"main\"\npaths = [\"/srv/app\"]\n");
    let cases: [&[&str]; 6] = [
        &["--daily", "02:00"],
        &["--hourly"],
        &["--every", "6h"],
        &["--every", "15m"],
        &["--every", "7h"],
        &["--weekly", "sun", "00:00"],
    ];
    for (i, when) in cases.iter().enumerate() {
        let dir = p.dir().join(format!("units{i}"));
        let mut args = vec![
            "schedule",
            "nightly",
            "--install",
            "--no-enable",
            "--unit-dir",
        ];
        let d = dir.to_string_lossy().into_owned();
        args.push(&d);
        args.extend_from_slice(when);
        p.ok(&args);
        let timer = dir.join("snap-nightly.timer");
        let service = dir.join("snap-nightly.service");
        // In a container without a running systemd, verify works offline on
        // unit files in a directory; --man=false skips Documentation= lookups.
        let o = Command::new(&analyze)
            .args(["verify", "--man=false"])
            .arg(&timer)
            .arg(&service)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{when:?}: systemd-analyze verify failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&timer).unwrap()
        );
        let t = std::fs::read_to_string(&timer).unwrap();
        let s = std::fs::read_to_string(&service).unwrap();
        assert!(s.contains("Type=oneshot"));
        assert!(
            s.contains(&format!(
                "ExecStart={} --config {} --no-progress run nightly",
                std::fs::canonicalize(snap_bin()).unwrap().display(),
                p.config.display()
            )),
            "{s}"
        );
        let list = p.ok(&["--json", "schedule", "--list", "--unit-dir", &d]);
        let rows: Vec<Value> = serde_json::from_str(&list).unwrap();
        let ours: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "systemd").collect();
        assert_eq!(ours.len(), 1, "{list}");
        assert_eq!(ours[0]["profile"], "nightly");
        let sched = ours[0]["schedule"].as_str().unwrap();
        assert!(
            t.contains(sched.split(' ').next().unwrap()),
            "{sched} vs {t}"
        );
    }
    let t = std::fs::read_to_string(p.dir().join("units0/snap-nightly.timer")).unwrap();
    assert!(t.contains("OnCalendar=*-*-* 02:00:00"), "{t}");
    let t = std::fs::read_to_string(p.dir().join("units4/snap-nightly.timer")).unwrap();
    assert!(t.contains("OnUnitActiveSec=25200s"), "{t}");
    // The same verify rejects a broken unit.
    let broken = p.dir().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("snap-x.timer"),
        t.replace("OnUnitActiveSec=25200s", "OnCalendar=sometimes")
            .replace("OnActiveSec=25200s", ""),
    )
    .unwrap();
    std::fs::copy(
        p.dir().join("units4/snap-nightly.service"),
        broken.join("snap-nightly.service"),
    )
    .unwrap();
    let o = Command::new(&analyze)
        .args(["verify", "--man=false"])
        .arg(broken.join("snap-x.timer"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "verify accepted a broken timer");
    // Printing (the default) writes nothing and shows both units.
    let printed = p.ok(&["schedule", "nightly", "--daily", "02:00"]);
    assert!(printed.contains("# /etc/systemd/system/snap-nightly.service"));
    assert!(printed.contains("[Timer]\nOnCalendar=*-*-* 02:00:00\n"));
    // Bad schedules are usage errors.
    for bad in [
        &["--daily", "25:00"][..],
        &["--every", "10s"],
        &["--weekly", "funday", "01:00"],
        &[],
    ] {
        let mut a = vec!["schedule", "nightly"];
        a.extend_from_slice(bad);
        let (code, _, err) = p.out(&a);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    let (code, _, _) = p.out(&["schedule", "nightly", "--hourly", "--daily", "01:00"]);
    assert_eq!(code, 2, "two schedules are a clap usage error");
}

/// One crontab(5) time field: `*`, `*/N`, `N`, `A-B`, lists of those, in range.
fn cron_field_ok(f: &str, lo: u32, hi: u32) -> bool {
    f.split(',').all(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s >= 1 && s <= hi => (r, Some(s)),
                _ => return false,
            },
            None => (part, None),
        };
        let _ = step;
        if range == "*" {
            return true;
        }
        let nums: Vec<&str> = range.split('-').collect();
        nums.len() <= 2
            && nums
                .iter()
                .all(|n| n.parse::<u32>().is_ok_and(|v| v >= lo && v <= hi))
    })
}

fn parse_cron(line: &str) -> Result<(Vec<String>, String), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 6 {
        return Err(format!("fewer than 6 fields: {line}"));
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (f, (lo, hi)) in fields.iter().zip(ranges) {
        if !cron_field_ok(f, lo, hi) {
            return Err(format!("bad field {f:?} in {line}"));
        }
    }
    Ok((
        fields[..5].iter().map(|s| s.to_string()).collect(),
        fields[5..].join(" "),
    ))
}

/// `--cron` prints a marker comment and one line whose five time fields
/// parse (crontab(5)); `crontab -T` checks it too when installed.
#[test]
fn cron_line_parses() {
    assert!(
        parse_cron("61 * * * * x").is_err(),
        "the parser must reject bad lines"
    );
    assert!(parse_cron("* * * *").is_err());
    let p = Profiled::new("[profile.nightly]\nrepository = \"main\"\npaths = [\"/srv/app\"]\n");
    let cases: [(&[&str], &str); 5] = [
        (&["--daily", "02:00"], "0 2 * * *"),
        (&["--hourly"], "0 * * * *"),
        (&["--every", "6h"], "0 */6 * * *"),
        (&["--every", "20m"], "*/20 * * * *"),
        (&["--weekly", "sun", "00:00"], "0 0 * * 0"),
    ];
    for (when, expect) in cases {
        let mut a = vec!["schedule", "nightly", "--cron"];
        a.extend_from_slice(when);
        let out = p.ok(&a);
        let mut l = out.lines();
        assert_eq!(l.next(), Some("# snap profile nightly"), "{out}");
        let line = l.next().unwrap();
        let (fields, cmd) = parse_cron(line).unwrap();
        assert_eq!(fields.join(" "), expect, "{when:?}");
        assert!(cmd.ends_with("--no-progress run nightly"), "{cmd}");
        assert!(
            cmd.contains(&format!("--config {}", p.config.display())),
            "{cmd}"
        );
        // The command is valid sh.
        let st = Command::new("sh")
            .args(["-n", "-c", &cmd])
            .status()
            .unwrap();
        assert!(st.success());
        if Path::new("/usr/bin/crontab").exists() {
            let f = p.dir().join("tab");
            std::fs::write(&f, &out).unwrap();
            let o = Command::new("crontab").arg("-T").arg(&f).output().unwrap();
            assert!(
                o.status.success(),
                "crontab -T: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let (code, _, err) = p.out(&["schedule", "nightly", "--cron", "--every", "7h"]);
    // A usage error: exit 2.
    assert_eq!(code, 2);
    assert!(err.contains("cron cannot run every"), "{err}");
}

/// Completions and the man page come from the clap definitions.
#[test]
fn completions_and_man_page() {
    let s = Snap::new();
    for (shell, marker) in [
        ("bash", "_snap()"),
        ("zsh", "#compdef snap"),
        ("fish", "complete -c snap"),
    ] {
        let out = s.ok(["completions", shell]);
        assert!(out.contains(marker), "{shell}");
        assert!(out.contains("restore-test"), "{shell} lacks restore-test");
    }
    if Path::new("/bin/bash").exists() {
        let f = s.path("snap.bash");
        std::fs::write(&f, s.ok(["completions", "bash"])).unwrap();
        let st = Command::new("bash").arg("-n").arg(&f).status().unwrap();
        assert!(st.success(), "bash completion script does not parse");
    }
    let man = s.ok(["man"]);
    assert!(man.contains(".TH snap 1"), "{}", &man[..200.min(man.len())]);
    for verb in ["RUN", "SCHEDULE", "RESTORE-TEST", "BACKUP"] {
        assert!(
            man.contains(&format!(".SH \"{verb}\"")),
            "man page lacks {verb}"
        );
    }
    assert!(man.contains("Exit codes"), "man page lacks exit codes");
    if Path::new("/usr/bin/groff").exists() {
        let f = s.path("snap.1");
        std::fs::write(&f, &man).unwrap();
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "groff: {err}");
    }
}

/// Every documented exit code that exists in this build, through `snap run`:
/// 0 ok, 1 error, 2 usage, 3 unreadable file, 10 no repository, 12 wrong
/// password. (11 is `exit_11_when_repository_locked`.)
#[test]
fn run_exit_codes() {
    let p = Profiled::new(
        r#"
[profile.ok]
repository = "main"
paths = ["{dir}/app"]
[profile.fails]
repository = "main"
command = ["x=exit 1"]
[profile.norepo]
repository = "missing"
paths = ["{dir}/app"]
[profile.wrongpw]
repository = "wrongpw"
paths = ["{dir}/app"]
[profile.badpwcmd]
repository = "badpwcmd"
paths = ["{dir}/app"]
[repository.missing]
path = "{dir}/not-a-repo"
[repository.wrongpw]
path = "{dir}/repo"
password-command = "echo not the password"
[repository.badpwcmd]
path = "{dir}/repo"
password-command = "exit 3"
"#,
    );
    assert_eq!(p.s.repo, p.dir().join("repo").to_string_lossy());
    make_app(&p.dir().join("app"), 2);
    let code = |args: &[&str]| p.out(args).0;
    assert_eq!(code(&["run", "ok"]), 0);
    assert_eq!(code(&["run", "fails"]), 1);
    assert_eq!(code(&["run"]), 2, "missing PROFILE is a usage error");
    assert_eq!(code(&["run", "ok", "--no-such-flag"]), 2);
    let (c, _, err) = p.out(&["run", "norepo"]);
    assert_eq!(c, 10, "{err}");
    assert!(err.contains("step backup failed (exit 10)"), "{err}");
    let (c, _, err) = p.out(&["run", "wrongpw"]);
    assert_eq!(c, 12, "{err}");
    let (c, _, err) = p.out(&["run", "badpwcmd"]);
    // A failing password-command is a profile (usage) error: exit 2.
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("password-command failed"), "{err}");
    // restore-test on a missing repository: 10 as well.
    assert_eq!(code(&["restore-test", "norepo"]), 10);
}

/// Exit code 3 from `snap run`: the backup step skipped an unreadable file;
/// the job still runs `after` and reports status "partial". As root, the
/// job runs as `nobody` through setpriv (root reads any file).
#[test]
fn run_exit_3_on_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let p = Profiled::new(
        r#"
[profile.p]
repository = "main"
paths = ["{dir}/app"]
after = "cat > {dir}/after.json"
"#,
    );
    std::fs::set_permissions(p.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    make_app(&p.dir().join("app"), 2);
    let locked = p.dir().join("app/locked");
    std::fs::write(&locked, b"secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_root = unsafe { libc::geteuid() } == 0;
    let walk = |root: &Path| -> Vec<PathBuf> {
        let mut v = vec![root.to_path_buf()];
        let mut i = 0;
        while i < v.len() {
            if v[i].is_dir() && !v[i].is_symlink() {
                if let Ok(rd) = std::fs::read_dir(&v[i]) {
                    let mut kids: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                    v.append(&mut kids);
                }
            }
            i += 1;
        }
        v
    };
    let mut cmd = if as_root {
        for f in walk(p.dir()) {
            let _ = std::os::unix::fs::lchown(&f, Some(65534), Some(65534));
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(snap_bin());
        c
    } else {
        Command::new(snap_bin())
    };
    let o = cmd
        .arg("--config")
        .arg(&p.config)
        .arg("--cache-dir")
        .arg(&p.s.cache)
        .args(["--json", "run", "p"])
        .env("SNAP_PASSWORD", &p.s.password)
        .env("SNAP_TEST_FAST_KDF", "1")
        .env("HOME", p.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if as_root {
        for f in walk(p.dir()) {
            let _ = std::os::unix::fs::lchown(&f, Some(0), Some(0));
        }
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let objs = lines(&out);
    assert_eq!(objs[0]["status"], "partial");
    let w = objs[0]["warnings"].to_string();
    assert!(w.contains("locked"), "{w}");
    let after = read_json(&p.dir().join("after.json"));
    assert_eq!(after["status"], "partial");
    assert_eq!(objs.last().unwrap()["exit_code"], 3);
}

/// Whether `pid` runs (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        let state = st.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// `kill -INT <pid of snap run>` (only that process, not its group) stops
/// the running backup step cleanly: `snap run` forwards the signal to its
/// step child, which releases its lease; the job ends failed with exit 130
/// after its on-failure hook, and `snap check` passes. Before the
/// forwarding, `snap run` died at once and its backup child ran on with its
/// lease (this test timed out waiting for the source to stop).
#[test]
fn sigint_to_snap_run_stops_its_backup_step() {
    let p = Profiled::new(
        r#"
[profile.slow]
repository = "main"
paths = ["{dir}/app"]
command = ["slow.txt=echo $$ > {dir}/source.pid; echo begin; sleep 60"]
on-failure = "cat > {dir}/failure.json"
"#,
    );
    make_app(&p.dir().join("app"), 3);
    let pidfile = p.dir().join("source.pid");
    let mut child = p
        .cmd(&["--json", "run", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let sh: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(t.elapsed().as_secs() < 60, "the source never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let locks = p.ok(&["--json", "locks"]);
    let n = |t: &str| {
        serde_json::from_str::<Value>(t)
            .unwrap()
            .as_array()
            .map(Vec::len)
    };
    assert_eq!(n(&locks), Some(1), "{locks}");
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed().as_secs() > 30 {
            let _ = child.kill();
            let _ = Command::new("kill")
                .args(["-KILL", &sh.to_string()])
                .status();
            panic!("snap run did not end within 30 s of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    // The source shell was stopped with the backup, not orphaned.
    let t = std::time::Instant::now();
    while alive(sh) {
        assert!(t.elapsed().as_secs() < 10, "the source outlived the job");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let objs = lines(&stdout);
    let summary = objs.last().unwrap();
    assert_eq!(summary["type"], "summary", "{stdout}");
    assert_eq!(summary["status"], "failure", "{stdout}");
    assert_eq!(summary["failed_step"], "backup", "{stdout}");
    let f = read_json(&p.dir().join("failure.json"));
    assert_eq!(f["failed_step"], "backup", "{f}");
    // No lease is left, no snapshot was written, the repository is valid.
    let locks = p.ok(&["--json", "locks"]);
    assert_eq!(n(&locks), Some(0), "{locks}");
    assert!(p.s.snapshot_ids().is_empty());
    p.ok(&["check"]);
}
