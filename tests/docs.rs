//! The README's Quick start, run as written by a new user would run it: the
//! `sh` block under "## Quick start" goes through bash with the built `snap`
//! on PATH, a real PostgreSQL server, and only its machine-specific names
//! replaced (paths under a temporary directory, database names made unique,
//! the example id prefix by the id it stands for). Every command in the
//! docs is also checked to parse (`src/cli/doc_commands.rs`).

mod common;

use common::cli::{snap_bin, tree_diff};
use common::services;
use std::process::Command;

/// The first ```sh block after `heading` in README.md.
fn readme_block(heading: &str) -> String {
    doc_block("README.md", heading)
}

/// The first ```sh block after `heading` in the markdown file `file`
/// (relative to the project root).
fn doc_block(file: &str, heading: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(&path).expect("doc file");
    let at = readme.find(heading).expect("heading in the doc file");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("end of block");
    rest[start..start + end].to_string()
}

#[test]
fn readme_quick_start_runs_as_written() {
    let Some(pg) = services::pg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let shop = services::unique_name("shop");
    let copy = services::unique_name("shop_copy");
    pg.createdb(&shop);
    pg.psql(
        &shop,
        "CREATE TABLE orders (id int primary key, item text); \
         INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 1000) g",
    );
    // The folders the Quick start backs up.
    for (rel, body) in [
        ("uploads/a.txt", "first upload\n"),
        ("uploads/sub/b.bin", "second upload\n"),
        ("etcapp/app.conf", "key = value\n"),
    ] {
        let p = t.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(t.join("pw"), "quick start password\n").unwrap();

    let block = readme_block("## Quick start");
    assert!(
        block.contains("snap init"),
        "Quick start lost its init line"
    );
    let mut script = String::from("set -euo pipefail\n");
    for line in block.lines() {
        if line.starts_with("cargo build") {
            continue; // the test has built snap already; PATH is set below
        }
        let line = line
            .replace("/srv/snap", &format!("{}/repo", t.display()))
            .replace("/srv/app/uploads", &format!("{}/uploads", t.display()))
            .replace("/etc/app", &format!("{}/etcapp", t.display()))
            .replace("~/.snap-pw", &format!("{}/pw", t.display()))
            .replace("/tmp/restore", &format!("{}/restore", t.display()))
            .replace("shop_copy", &copy)
            .replace(" shop ", &format!(" {shop} "))
            .replace("-d shop'", &format!("-d {shop}'"))
            .replace("> shop.sql", &format!("> {}/shop.sql", t.display()))
            // The example id prefix stands for the second snapshot of the block.
            .replace("3fa2c1d0", "latest~1");
        script.push_str(&line);
        script.push('\n');
    }
    let path = format!(
        "{}:{}:{}",
        snap_bin().parent().unwrap().display(),
        pg.tool("pg_dump").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("HOME", t)
        .env("XDG_CACHE_HOME", t.join("cache"))
        .env("SNAP_TEST_FAST_KDF", "1")
        .env_remove("SNAP_PASSWORD")
        .env_remove("SNAP_REPO")
        .envs(pg.env())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Quick start failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // The file tree came back under its absolute paths.
    for (src, rel) in [("uploads", "uploads"), ("etcapp", "etcapp")] {
        let restored = t
            .join("restore")
            .join(t.strip_prefix("/").unwrap())
            .join(rel);
        let diff = tree_diff(&t.join(src), &restored);
        assert!(diff.is_empty(), "restored {rel} differs: {diff:?}");
    }
    // The -Fc dump restored into the copy database with every row.
    assert_eq!(pg.psql(&copy, "SELECT count(*) FROM orders"), "1000");
    // The plain SQL stream came back as pg_dump wrote it.
    let sql = std::fs::read_to_string(t.join("shop.sql")).unwrap();
    assert!(
        sql.contains("CREATE TABLE public.orders"),
        "shop.sql: {}",
        &sql[..sql.len().min(300)]
    );
    // `snap snapshots` listed the three snapshots, `snap ls latest` the stream.
    assert!(stdout.contains("shop.sql"), "stdout: {stdout}");
    pg.dropdb(&copy);
    pg.dropdb(&shop);
}

/// Runs `script` with bash, the built `snap` and PostgreSQL's programs on
/// PATH; panics with the script and its output when it fails.
fn run_script(script: &str, home: &std::path::Path, pg: &services::Pg) -> String {
    let path = format!(
        "{}:{}:{}",
        snap_bin().parent().unwrap().display(),
        pg.tool("pg_dump").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .env("PATH", path)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("SNAP_TEST_FAST_KDF", "1")
        .envs(pg.env())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "script failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// docs/recipes.md recipe 2 (PostgreSQL + JSON files, per-kind retention):
/// its backup and retention block as written, then its DR order — the ids
/// looked up with `snap snapshots --tag T --latest 1`, the database
/// recreated with `restore --pg "dbname=postgres" --create` after it was
/// lost, the files restored.
#[test]
fn recipe_postgres_and_files_runs_and_recovers() {
    let Some(pg) = services::pg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let db = services::unique_name("orders");
    pg.createdb(&db);
    pg.psql(
        &db,
        "CREATE TABLE orders (id int primary key, doc jsonb); \
         INSERT INTO orders SELECT g, jsonb_build_object('n', g) FROM generate_series(1, 5000) g",
    );
    let data = t.join("srv/orders/data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..50 {
        std::fs::write(
            data.join(format!("{i}.json")),
            format!("{{\"order\": {i}}}\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(t.join("srv/orders/etc")).unwrap();
    std::fs::write(t.join("srv/orders/etc/app.conf"), "port = 8080\n").unwrap();

    let env = format!(
        "export SNAP_REPO={0}/repo SNAP_PASSWORD_FILE={0}/pw\nsnap init\n",
        t.display()
    );
    std::fs::write(t.join("pw"), "recipe password\n").unwrap();
    let block = doc_block("docs/recipes.md", "## 2. PostgreSQL")
        .replace("/srv/orders", &format!("{}/srv/orders", t.display()))
        .replace("dbname=orders", &format!("dbname={db}"));
    assert!(
        block.contains("snap forget --tag db"),
        "recipe 2 lost its retention lines"
    );
    run_script(&format!("{env}{block}"), t, &pg);

    // Disaster: the database and the files are gone.
    pg.dropdb(&db);
    std::fs::remove_dir_all(t.join("srv")).unwrap();
    let newest = |tag: &str| {
        let out = run_script(
            &format!("{env}snap snapshots --tag {tag} --latest 1 --json")
                .replace("snap init\n", ""),
            t,
            &pg,
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("snapshots --json");
        let list = v.as_array().expect("a list");
        assert_eq!(list.len(), 1, "--tag {tag} --latest 1: {out}");
        list[0]["id"].as_str().unwrap().to_string()
    };
    let (db_id, files_id) = (newest("db"), newest("files"));
    let dr = format!(
        "snap restore {db_id} --pg \"dbname=postgres\" --create\n\
         snap restore {files_id} --target {0}/r\n",
        t.display()
    );
    run_script(&format!("{env}{dr}").replace("snap init\n", ""), t, &pg);
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM orders"), "5000");
    let restored = t
        .join("r")
        .join(t.strip_prefix("/").unwrap())
        .join("srv/orders/data");
    assert_eq!(std::fs::read_dir(&restored).unwrap().count(), 50);
    assert_eq!(
        std::fs::read_to_string(restored.join("7.json")).unwrap(),
        "{\"order\": 7}\n"
    );
    // --create refuses now that the database exists again.
    let again = Command::new(snap_bin())
        .args(["restore", &db_id, "--pg", "dbname=postgres", "--create"])
        .env("SNAP_REPO", t.join("repo"))
        .env("SNAP_PASSWORD_FILE", t.join("pw"))
        .env("XDG_CACHE_HOME", t.join("cache"))
        .envs(pg.env())
        .output()
        .unwrap();
    assert!(!again.status.success(), "a second --create must refuse");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM orders"), "5000");
    pg.dropdb(&db);
}
