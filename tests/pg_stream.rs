//! Core issue: a real PostgreSQL database backed up through `--command
//! 'pg_dump …'` and restored with `snap restore latest --stdout | psql` into a
//! fresh database; the table contents must match.

mod common;
use common::cli::Snap;
use common::services;
use std::io::Write;
use std::process::Stdio;

/// Content fingerprint of every pgbench table: row count and md5 of all rows.
fn fingerprint(pg: &services::Pg, db: &str) -> Vec<String> {
    ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]
        .iter()
        .map(|t| {
            pg.psql(
                db,
                &format!("select '{t}', count(*), coalesce(md5(string_agg(x::text, ',' order by x::text)), '-') from {t} x"),
            )
        })
        .collect()
}

#[test]
fn pg_dump_command_roundtrip_into_fresh_database() {
    let Some(pg) = services::pg() else { return };
    let src = services::unique_name("snap_src_");
    let dst = services::unique_name("snap_dst_");
    pg.createdb(&src);
    pg.pgbench_init(&src, 1);
    pg.psql(
        &src,
        "update pgbench_accounts set filler = md5(aid::text) where aid % 97 = 0",
    );
    let before = fingerprint(&pg, &src);
    assert!(before[0].contains("|100000|"), "{before:?}");

    let s = Snap::new();
    s.init();
    let dump = format!(
        "{} -h {} -p {} -U {} --no-owner {}",
        pg.tool("pg_dump").display(),
        pg.host,
        pg.port,
        pg.user,
        src
    );
    let sum = s.backup_json(["--command", &dump, "--stdin-name", "shop.sql"]);
    assert!(
        sum["summary"]["bytes_read"].as_u64().unwrap() > 5 << 20,
        "{sum}"
    );

    // restore latest --stdout | psql into a fresh database
    pg.createdb(&dst);
    let restored = s.cmd(["restore", "latest", "--stdout"]).output().unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let port = pg.port.to_string();
    let mut psql = pg
        .command("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &pg.host,
            "-p",
            &port,
            "-U",
            &pg.user,
            "-d",
            &dst,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    psql.stdin
        .take()
        .unwrap()
        .write_all(&restored.stdout)
        .unwrap();
    let psql = psql.wait_with_output().unwrap();
    assert!(
        psql.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(fingerprint(&pg, &dst), before);

    // A second dump of the unchanged database stores almost nothing new:
    // pg_dump's random `\restrict` key changes the first and last chunk, and
    // the two trees on the way to the stream change.
    let sum2 = s.backup_json(["--command", &dump, "--stdin-name", "shop.sql"]);
    let blobs = sum2["summary"]["blobs_added"].as_u64().unwrap();
    let raw = sum2["summary"]["bytes_added_raw"].as_u64().unwrap();
    let read = sum2["summary"]["bytes_read"].as_u64().unwrap();
    // At most the first and last stream chunk (each up to the default
    // streams maximum, 512 KiB) plus the small trees.
    let max_chunk = snap::format::config::Config::STREAMS.max as u64;
    assert!(
        blobs <= 6 && raw <= 2 * max_chunk + (64 << 10) && raw * 8 < read,
        "second identical dump added {blobs} blobs, {raw} of {read} bytes"
    );

    // A failing pg_dump (no such database) records no snapshot.
    let bad = dump.replace(&src, "no_such_database_here");
    let (code, err) = s.fail(["backup", "--command", &bad]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no_such_database_here") && err.contains("exit code"),
        "{err}"
    );
    assert_eq!(s.snapshot_ids().len(), 2);
    pg.dropdb(&src);
    pg.dropdb(&dst);
}
