//! S3 Object Lock (issue #16, format-spec §4, §20.1 step 7, §25.8). Runs the built binary
//! against the moto of scripts/services.sh that enforces IAM authorization and Object Lock:
//! bucket `<bucket>-lock` (Object Lock enabled, no default retention), `<bucket>-lockdefault`
//! (default retention of 1 day) and `<bucket>` (no Object Lock); and against s3s-fs (no
//! Object Lock at all). The bucket's state is read back through the library's store
//! (`ListObjectVersions`, the retention of each version, a direct version delete), with the
//! same credentials. Under CI=true a missing server fails the test.

mod common;
use common::cli::Snap;
use common::services::{self, unique_name, S3Auth};
use snap::store::{ObjectVersion, Store, StoreOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::time::Duration;

fn snap_in(auth: &S3Auth, bucket: &str, prefix: &str) -> Snap {
    let mut s = Snap::new();
    s.repo = format!("s3://{bucket}/{prefix}");
    s.env = auth.env(&auth.full);
    s
}

/// The AWS keys and region of the environment this test binary started with (those of the
/// servers without authorization), read before [`store`] replaces them process-wide.
fn base_aws_env() -> &'static Vec<(String, String)> {
    static BASE: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect()
    })
}

/// The library's store for `repo`, with the full user's credentials (the same for every
/// test of this file, so setting them process-wide is safe; children get theirs
/// explicitly, see [`base_aws_env`]).
fn store(auth: &S3Auth, repo: &str) -> Store {
    base_aws_env();
    for (k, v) in auth.env(&auth.full) {
        // SAFETY-free in edition 2021; every test sets the same values.
        std::env::set_var(k, v);
    }
    Store::open_with(repo, false, &StoreOptions::default()).expect("opening the store")
}

/// Versions (with delete markers) under `prefix`, by key.
fn versions(st: &Store, prefix: &str) -> BTreeMap<String, Vec<ObjectVersion>> {
    let mut m: BTreeMap<String, Vec<ObjectVersion>> = BTreeMap::new();
    for v in st.list_versions(prefix).expect("ListObjectVersions") {
        m.entry(v.key.clone()).or_default().push(v);
    }
    m
}

/// Keys whose current version holds bytes (what a plain listing shows).
fn current(st: &Store, prefix: &str) -> BTreeSet<String> {
    versions(st, prefix)
        .into_iter()
        .filter(|(_, vs)| vs.iter().any(|v| v.is_latest && !v.delete_marker))
        .map(|(k, _)| k)
        .collect()
}

fn one_error_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {err}");
    assert!(lines[0].starts_with("snap: error: "), "{err}");
    lines[0]
}

#[test]
fn object_lock_forget_and_prune_keep_locked_bytes_then_delete_them_and_extend_live_ones() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    // Long enough that a loaded machine gets through forget and two prunes before it
    // ends; the test waits for it once.
    const PERIOD: u64 = 60;
    let bucket = format!("{}-lock", auth.bucket);
    let prefix = unique_name("objlock_");
    let s = snap_in(&auth, &bucket, &prefix);
    s.ok(["init", "--object-lock", &format!("{PERIOD}s")]);
    let st = store(&auth, &s.repo);

    let mut rng = common::gen::Rng::new(1616);
    let (a, b) = (s.path("a"), s.path("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("old.bin"), rng.bytes(400 << 10)).unwrap();
    std::fs::write(b.join("new.bin"), rng.bytes(400 << 10)).unwrap();
    s.ok([OsStr::new("backup"), a.as_os_str()]);
    s.ok([OsStr::new("backup"), b.as_os_str()]);
    let ids = s.snapshot_ids();
    assert_eq!(ids.len(), 2);

    // Every object snap wrote carries the retention, PERIOD after its write time.
    let written: BTreeMap<String, chrono::DateTime<chrono::Utc>> = versions(&st, "")
        .into_iter()
        .filter_map(|(k, vs)| {
            let v = vs.into_iter().find(|v| v.is_latest && !v.delete_marker)?;
            Some((k, v.last_modified?))
        })
        .collect();
    let packs_before = current(&st, "data/");
    assert!(packs_before.len() >= 2, "{packs_before:?}");
    for key in packs_before
        .iter()
        .chain(["config".to_string()].iter())
        .chain(current(&st, "snapshots/").iter())
        .chain(current(&st, "index/").iter())
        .chain(current(&st, "keys/").iter())
    {
        let r = st
            .retention(key, None)
            .unwrap()
            .unwrap_or_else(|| panic!("{key} has no retention"));
        assert_eq!(r.mode, snap::format::config::LockMode::Governance, "{key}");
        // LastModified has whole seconds; snap rounds the date up to one.
        // The date is taken when the upload starts and LastModified when the
        // server has it, so a slow upload on a loaded machine (CI) lands a
        // few seconds short of PERIOD; a missing or wrong period is far off.
        let after = (r.until - written[key]).num_seconds();
        assert!(
            (PERIOD as i64 - 20..=PERIOD as i64 + 2).contains(&after),
            "{key}: retain-until {} is not {PERIOD}s after the write at {}",
            r.until,
            written[key]
        );
    }

    // forget says until when the snapshot stays.
    let out = s.ok(["forget", &ids[0]]);
    assert!(
        out.contains(&format!(
            "snapshot {} is protected by Object Lock until ",
            &ids[0][..8]
        )),
        "{out}"
    );
    assert_eq!(s.snapshot_ids(), vec![ids[1].clone()]);
    // Two prunes: the first marks the unused packs, the second deletes them (grace 0).
    s.ok(["prune", "--grace", "0s"]);
    let out = s.ok(["prune", "--grace", "0s"]);
    assert!(
        out.contains("deleted object versions") && out.contains("are protected until"),
        "prune does not say what it kept and until when: {out}"
    );
    let packs_live = current(&st, "data/");
    let gone: Vec<&String> = packs_before.difference(&packs_live).collect();
    assert!(!gone.is_empty(), "prune deleted no pack: {out}");
    // Nothing was really deleted: each gone pack and the forgotten snapshot still have
    // their bytes as a (noncurrent) version under a delete marker.
    let snap_key = format!("snapshots/{}", ids[0]);
    let all = versions(&st, "");
    for key in gone.iter().map(|k| k.as_str()).chain([snap_key.as_str()]) {
        let vs = &all[key];
        assert!(
            vs.iter().any(|v| !v.delete_marker && v.size > 0),
            "{key}: bytes gone before the retention ended: {vs:?}"
        );
        assert!(vs.iter().any(|v| v.is_latest && v.delete_marker), "{vs:?}");
    }
    // The server itself refuses to delete a locked version.
    let v = all[&snap_key].iter().find(|v| !v.delete_marker).unwrap();
    let err = st
        .delete_version(&snap_key, &v.version_id)
        .expect_err("the server deleted a locked version");
    assert!(err.to_string().contains("AccessDenied"), "{err}");

    // After the retention date: prune deletes the bytes for good, and extends the
    // retention of the packs still in use. (On a slow machine the prunes above may
    // already have extended the live packs: wait for the dates as they are now.)
    let live_pack_retention: BTreeMap<String, chrono::DateTime<chrono::Utc>> = packs_live
        .iter()
        .map(|k| (k.clone(), st.retention(k, None).unwrap().unwrap().until))
        .collect();
    let mut latest = *live_pack_retention.values().max().unwrap();
    for key in gone.iter().map(|k| k.as_str()).chain([snap_key.as_str()]) {
        for v in all[key].iter().filter(|v| !v.delete_marker) {
            if let Some(r) = st.retention(key, Some(&v.version_id)).unwrap() {
                latest = latest.max(r.until);
            }
        }
    }
    let wait = (latest - chrono::Utc::now()).num_milliseconds() + 1500;
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    // check warns that live objects lost their protection.
    let out = s.run(["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("objects still in use are no longer protected"),
        "check does not warn about lapsed retention: {err}"
    );
    let out = s.ok(["prune", "--grace", "0s"]);
    assert!(
        out.contains("object lock: delete ") && out.contains("extend the retention of"),
        "{out}"
    );
    let all = versions(&st, "");
    for key in gone.iter().map(|k| k.as_str()).chain([snap_key.as_str()]) {
        assert!(
            !all.contains_key(key),
            "{key}: versions left after the retention ended: {:?}",
            all[key]
        );
    }
    for key in &packs_live {
        let now = st.retention(key, None).unwrap().unwrap().until;
        assert!(
            now > live_pack_retention[key] && now > chrono::Utc::now(),
            "{key}: retention not extended ({} → {now})",
            live_pack_retention[key]
        );
    }
    // The repository is whole, and protected again.
    let out = s.run(["check", "--read-data"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("no longer protected"), "{err}");
}

#[test]
fn init_with_object_lock_into_a_bucket_without_it_fails_in_one_line() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let s = snap_in(&auth, &auth.bucket, &unique_name("nolock_"));
    let (code, err) = s.fail(["init", "--object-lock", "30d"]);
    assert_eq!(code, 2, "{err}");
    let line = one_error_line(&err);
    assert!(
        line.contains("the bucket does not have Object Lock enabled"),
        "{err}"
    );
    let (code, err) = s.fail(["snapshots"]);
    assert_eq!(code, 10, "a repository was made: {err}");
}

#[test]
fn init_with_object_lock_on_a_server_without_object_lock_fails_in_one_line() {
    let Some(s3) = services::s3s() else {
        return;
    };
    let mut s = Snap::new();
    s.repo = format!("s3://{}/{}", s3.bucket, unique_name("s3slock_"));
    s.env = s3.env();
    s.env.extend(base_aws_env().iter().cloned());
    let (code, err) = s.fail(["init", "--object-lock", "1d,compliance"]);
    assert_ne!(code, 0);
    let line = one_error_line(&err);
    assert!(line.contains("cannot use Object Lock"), "{err}");
    let (code, err) = s.fail(["snapshots"]);
    assert_eq!(code, 10, "a repository was made: {err}");
}

#[test]
fn a_bucket_with_default_retention_takes_a_repository() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let bucket = format!("{}-lockdefault", auth.bucket);
    let s = snap_in(&auth, &bucket, &unique_name("lockdefault_"));
    s.init();
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"default retention\n".repeat(1000)).unwrap();
    s.ok([OsStr::new("backup"), src.as_os_str()]);
    s.ok(["check", "--read-data"]);
    // The bucket's default retention locked what snap wrote.
    let st = store(&auth, &s.repo);
    let pack = current(&st, "data/").into_iter().next().expect("a pack");
    assert!(st.retention(&pack, None).unwrap().is_some());
}

#[test]
fn bad_object_lock_options_are_refused() {
    let s = Snap::new();
    for bad in ["0s", "30d,strict", "forever"] {
        let (code, err) = s.fail(["init", "--object-lock", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
    }
    // A local folder cannot lock objects.
    let (code, err) = s.fail(["init", "--object-lock", "30d"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Object Lock needs an S3 repository"), "{err}");
}

#[test]
fn an_append_only_host_backs_up_into_an_object_lock_repository() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let bucket = format!("{}-lock", auth.bucket);
    let prefix = unique_name("lockappend_");
    let full = snap_in(&auth, &bucket, &prefix);
    full.ok(["init", "--object-lock", "1d,compliance"]);
    let mut app = snap_in(&auth, &bucket, &prefix);
    app.env = auth.env(&auth.append);
    app.cache = full.path("cache-append");
    let src = full.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), common::gen::Rng::new(7).bytes(200 << 10)).unwrap();
    let out = app.run([OsStr::new("backup"), src.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the append-only host wrote is locked in compliance mode for a day.
    let st = store(&auth, &full.repo);
    for key in current(&st, "data/")
        .iter()
        .chain(current(&st, "snapshots/").iter())
    {
        let r = st.retention(key, None).unwrap().expect("locked");
        assert_eq!(r.mode, snap::format::config::LockMode::Compliance);
        assert!((r.until - chrono::Utc::now()).num_hours() >= 23, "{key}");
    }
    // Its check passes (it may not list versions: a warning, not a failure).
    let out = app.run(["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn list_versions_reads_every_page() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let repo = format!("s3://{}-lock/{}", auth.bucket, unique_name("pages_"));
    let st = store(&auth, &repo);
    // More versions than one page holds (1000): 1010 objects plus 50 overwrites.
    const N: usize = 1010;
    std::thread::scope(|sc| {
        for t in 0..8 {
            let st = &st;
            sc.spawn(move || {
                for i in (t..N).step_by(8) {
                    let key = format!("locks/{i:05}");
                    st.put_overwrite(&key, bytes::Bytes::from(vec![1u8; 3]))
                        .unwrap();
                    if i < 50 {
                        st.put_overwrite(&key, bytes::Bytes::from(vec![2u8; 5]))
                            .unwrap();
                    }
                }
            });
        }
    });
    let all = versions(&st, "locks/");
    assert_eq!(all.len(), N);
    let n: usize = all.values().map(|v| v.len()).sum();
    assert_eq!(n, N + 50);
    for (i, (key, vs)) in all.iter().enumerate() {
        assert_eq!(key, &format!("locks/{i:05}"));
        assert_eq!(vs.iter().filter(|v| v.is_latest).count(), 1, "{key}");
        let latest = vs.iter().find(|v| v.is_latest).unwrap();
        assert_eq!(latest.size, if i < 50 { 5 } else { 3 }, "{key}");
    }
}

/// The recommended ransomware-resistant setup of docs/offsite.md, all parts at once: a
/// split-key repository under Object Lock made by the trusted machine, a backup host with a
/// put-only key and append-only credentials, and the trusted machine's restore, forget and
/// prune. The host backs up twice but can neither read nor delete; the trusted machine
/// restores byte-identical, and its forget + prune leave the forgotten snapshot's bytes in
/// the bucket until the retention date it names.
#[test]
fn put_only_host_with_append_only_credentials_in_an_object_lock_repository() {
    let Some(auth) = services::s3auth() else {
        return;
    };
    let bucket = format!("{}-lock", auth.bucket);
    let prefix = unique_name("lockputonly_");
    let full = snap_in(&auth, &bucket, &prefix);
    full.ok(["init", "--put-only-ready", "--object-lock", "1d"]);
    let out = full
        .cmd(["key", "add", "--put-only"])
        .env("SNAP_NEW_PASSWORD", "host put password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut host = snap_in(&auth, &bucket, &prefix);
    host.env = auth.env(&auth.append);
    host.password = "host put password".into();
    host.cache = full.path("cache-host");

    let src = full.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"night one\n".repeat(4000)).unwrap();
    std::fs::write(
        src.join("sub/b.bin"),
        common::gen::Rng::new(9).bytes(300 << 10),
    )
    .unwrap();
    let first = host.backup_json([src.as_os_str()]);
    let first = first["snapshot"].as_str().unwrap().to_string();
    std::fs::write(src.join("a.txt"), b"night two\n".repeat(4000)).unwrap();
    host.backup_json([src.as_os_str()]);

    // The host can neither read nor delete, whatever it tries.
    let target = full.path("restored");
    for args in [
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
        vec!["snapshots"],
        vec!["forget", "--keep-last", "1", "--prune"],
        vec!["unlock", "--all"],
    ] {
        let (code, err) = host.fail(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(one_error_line(&err).contains("put-only"), "{args:?}: {err}");
    }
    assert!(!target.exists());

    // The trusted machine restores the second night byte-identical.
    full.ok(["restore", "latest", "--target", target.to_str().unwrap()]);
    let d = common::cli::tree_diff(&src, &common::cli::restored_path(&target, &src));
    assert!(d.is_empty(), "restored tree differs: {d:?}");

    // Its forget + prune hide the first snapshot but the bucket keeps its bytes, and it
    // says until when.
    let out = full.run(["forget", "--keep-last", "1", "--prune"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "snapshot {} is protected by Object Lock until",
            &first[..8]
        )),
        "{said}"
    );
    let st = store(&auth, &full.repo);
    let key = format!("snapshots/{first}");
    let kept = versions(&st, "snapshots/");
    let vs = kept
        .get(&key)
        .unwrap_or_else(|| panic!("{key} gone: {kept:?}"));
    assert!(
        vs.iter().any(|v| !v.delete_marker),
        "{key}: no version with bytes left"
    );
    assert!(
        !current(&st, "snapshots/").contains(&key),
        "{key} still listed"
    );
    full.ok(["check", "--read-data"]);
}
