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
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = readme.find(heading).expect("heading in README");
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
