//! S3 repositories and `snap copy`, on both S3 servers of scripts/services.sh: moto and
//! s3s-fs. Each main case is one function taking the server, run by a test per server
//! (`*_moto`, `*_s3s`); under CI=true a missing server fails its tests.

mod common;
use common::cli::{restored_path, tree_diff, Snap};
use common::services::{self, S3};
use serde_json::Value;
use snap::store::{Store, StoreOptions};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Compressible text of `len` bytes.
fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = seed;
    while v.len() < len {
        v.extend_from_slice(
            format!("line {i} of a compressible log file, seed {seed}\n").as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

/// A tree of about `mib` MiB: half random, half compressible, files of
/// 1 KiB .. 24 MiB in a few directories.
fn gen_tree(root: &Path, mib: usize, seed: u64) {
    let sizes = [1 << 10, 50 << 10, 700 << 10, 3 << 20, 9 << 20, 24 << 20];
    let mut total = 0usize;
    let mut n = 0u64;
    while total < mib << 20 {
        let size = sizes[(n as usize / 2) % sizes.len()].min((mib << 20) - total + 1024);
        let dir = root.join(format!("d{}", n % 5)).join(format!("s{}", n % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let data = if n % 2 == 0 {
            random_bytes(seed * 1000 + n, size)
        } else {
            text_bytes(seed * 1000 + n, size)
        };
        std::fs::write(dir.join(format!("f{n}.bin")), data).unwrap();
        total += size;
        n += 1;
    }
}

fn s3_snap(s3: &S3, prefix: &str) -> Snap {
    let mut s = Snap::new();
    s.repo = s3.repo_url(prefix);
    s.env = s3.env();
    s
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// The `store_stats` line `SNAP_STATS=1` prints for `location`.
fn stats_line(stderr: &str, location: &str) -> Value {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "store_stats" && v["location"] == location)
        .unwrap_or_else(|| panic!("no store_stats for {location} in {stderr}"))["requests"]
        .clone()
}

fn kind(req: &Value, kind: &str, field: &str) -> u64 {
    req["by_kind"][kind][field].as_u64().unwrap_or(0)
}

/// Runs snap with SNAP_STATS=1 and returns (stdout, stats of the repo).
fn with_stats(s: &Snap, args: &[OsString]) -> (String, Value) {
    let out = s.cmd(args).env("SNAP_STATS", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "snap {args:?} failed: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stats_line(&stderr, &s.repo),
    )
}

fn restore_and_compare(s: &Snap, snap_id: &str, src: &Path, name: &str) {
    let target = s.path(name);
    s.ok(os(&[&"restore", &snap_id, &"--target", &target]));
    let d = tree_diff(src, &restored_path(&target, src));
    assert!(d.is_empty(), "restore of {snap_id} differs: {d:?}");
    std::fs::remove_dir_all(&target).unwrap();
}

fn s3_store(s3: &S3, prefix: &str) -> Store {
    let opts = StoreOptions {
        s3_endpoint: Some(s3.endpoint.clone()),
        multipart_threshold: 32 << 20,
        ..StoreOptions::default()
    };
    Store::open_with(&s3.repo_url(prefix), false, &opts).expect("open s3 store")
}

#[test]
fn conditional_create_and_multipart_moto() {
    if let Some(s3) = services::s3() {
        conditional_create_and_multipart(&s3);
    }
}

#[test]
fn conditional_create_and_multipart_s3s() {
    if let Some(s3) = services::s3s() {
        conditional_create_and_multipart(&s3);
    }
}

fn conditional_create_and_multipart(s3: &S3) {
    let prefix = services::unique_name("cond_");
    let st = s3_store(s3, &prefix);
    // Create-only writes: the second one reports "exists" and changes nothing.
    assert!(st.put_new("config", "first".into()).unwrap());
    assert!(!st.put_new("config", "second".into()).unwrap());
    assert_eq!(&st.get("config").unwrap()[..], b"first");
    // The same content-named object twice: not an error.
    let key = "data/ab/ab01";
    assert!(st.put_new(key, "pack".into()).unwrap());
    assert!(!st.put_new(key, "pack".into()).unwrap());
    assert_eq!(kind(&st.stats().to_json(), "config", "put_existing"), 1);
    // 40 MiB: above the threshold, so a multipart upload of 8 MiB parts.
    let big = random_bytes(7, 40 << 20);
    assert!(st.put_new("data/cd/cd02", big.clone().into()).unwrap());
    let req = st.stats().to_json();
    assert_eq!(kind(&req, "data", "multipart_parts"), 5, "{req}");
    assert!(st.get("data/cd/cd02").unwrap() == big);
    assert_eq!(
        &st.get_range("data/cd/cd02", 1000..2000).unwrap()[..],
        &big[1000..2000]
    );

    // A second `init` on S3 neither succeeds nor replaces config.
    let s = s3_snap(s3, &services::unique_name("init_"));
    s.init();
    let st = s3_store(
        s3,
        s.repo.trim_start_matches(&format!("s3://{}/", s3.bucket)),
    );
    let config = st.get("config").unwrap();
    let (code, err) = s.fail(["init"]);
    // A refused request: a usage error, exit 2.
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(st.get("config").unwrap(), config);
    // Plain http to a non-loopback host is refused without --s3-allow-http.
    let (_, err) = s.fail(["--s3-endpoint", "http://192.0.2.1:9000", "snapshots"]);
    assert!(err.contains("--s3-allow-http"), "{err}");
}

#[test]
fn s3_backup_restore_incremental_sync_moto() {
    if let Some(s3) = services::s3() {
        s3_backup_restore_incremental_sync(&s3);
    }
}

#[test]
fn s3_backup_restore_incremental_sync_s3s() {
    if let Some(s3) = services::s3s() {
        s3_backup_restore_incremental_sync(&s3);
    }
}

fn s3_backup_restore_incremental_sync(s3: &S3) {
    let s = s3_snap(s3, &services::unique_name("bk_"));
    let src = s.path("src");
    gen_tree(&src, 220, 1);
    let stream = s.path("stream.bin");
    std::fs::write(&stream, text_bytes(99, 12 << 20)).unwrap();
    s.init();
    // A second machine: same repository, its own catalog cache.
    let mut other = s3_snap(s3, "unused");
    other.repo = s.repo.clone();
    let t = Instant::now();
    let cmd = format!("dump=cat {}", stream.display());
    let j1 = s.backup_json(os(&[&src, &"--command", &cmd]));
    let secs = t.elapsed().as_secs_f64();
    let up1 = j1["requests"]["bytes_up"].as_u64().unwrap();
    eprintln!(
        "first backup: {} bytes uploaded in {secs:.1} s ({:.1} MB/s)",
        up1,
        up1 as f64 / secs / 1e6
    );
    let stored = j1["summary"]["bytes_added_stored"].as_u64().unwrap();
    assert!(up1 >= stored && stored > 100 << 20, "{j1}");
    let idx1 = kind(&j1["requests"], "index", "put");
    assert!(idx1 >= 1);
    let id1 = j1["snapshot"].as_str().unwrap().to_string();
    restore_and_compare(&s, &id1, &src, "r1");
    let out = s.ok(["restore", &id1, "--stdout", "--stream", "dump"]);
    assert!(
        out.as_bytes() == std::fs::read(&stream).unwrap(),
        "stream differs"
    );

    // A second machine (own cache) syncs the whole catalog once.
    let (_, r) = with_stats(&other, &os(&[&"snapshots"]));
    assert_eq!(kind(&r, "index", "get"), idx1, "{r}");

    // Change a little: a new 6 MiB file and a rewritten small one.
    std::fs::write(src.join("d0/new.bin"), random_bytes(4242, 6 << 20)).unwrap();
    std::fs::write(src.join("d1/s1/f1.bin"), text_bytes(5, 60 << 10)).unwrap();
    let j2 = s.backup_json([&src]);
    let r2 = &j2["requests"];
    let up2 = r2["bytes_up"].as_u64().unwrap();
    eprintln!("second backup: {up2} bytes uploaded; requests {r2}");
    assert!(up2 < 8 << 20 && up2 > 6 << 20, "{j2}");
    assert_eq!(kind(r2, "index", "get"), 0, "own catalog is current: {r2}");
    let idx2 = kind(r2, "index", "put");
    assert!(
        kind(r2, "data", "put") >= 1 && kind(r2, "data", "put") <= 4,
        "{r2}"
    );
    // The second machine downloads exactly the new index objects.
    let (_, r) = with_stats(&other, &os(&[&"snapshots"]));
    assert_eq!(kind(&r, "index", "get"), idx2, "{r}");
    assert_eq!(kind(&r, "data", "get"), 0, "{r}");

    // No change: only the snapshot is written, nothing is downloaded but
    // config, key and the new snapshot listing.
    let j3 = s.backup_json([&src]);
    let r3 = &j3["requests"];
    eprintln!("no-change backup requests: {r3}");
    // Uploads: the snapshot and the lease, and at most one pack with a
    // re-stored tree or two (a directory whose metadata was read racily by
    // the previous backup) plus its index.
    assert_eq!(kind(r3, "snapshots", "put"), 1, "{r3}");
    assert_eq!(kind(r3, "locks", "put"), 1, "{r3}");
    assert!(kind(r3, "data", "put") <= 1, "{r3}");
    assert!(r3["put"].as_u64().unwrap() <= 4, "{r3}");
    assert!(kind(r3, "data", "bytes_up") < 64 << 10, "{r3}");
    assert_eq!(kind(r3, "index", "get"), 0, "{r3}");
    // Downloads: config, key and the parent snapshot; the parent's trees
    // come from the local tree cache, so no pack is read at all.
    assert_eq!(kind(r3, "data", "get"), 0, "{r3}");
    // Lists: keys, index, snapshots, prune marks, and leases (the backup's
    // own lease check): one each.
    assert!(r3["list"].as_u64().unwrap() <= 5, "{r3}");
    let id3 = j3["snapshot"].as_str().unwrap().to_string();
    restore_and_compare(&s, &id3, &src, "r3");
}

/// Objects under `sub` of an S3 repository.
fn count_objects(s3: &S3, repo_url: &str, sub: &str) -> usize {
    let prefix = repo_url.trim_start_matches(&format!("s3://{}/", s3.bucket));
    s3_store(s3, prefix).list(sub).map(|v| v.len()).unwrap_or(0)
}

fn copy_json(s: &Snap, args: &[OsString]) -> Value {
    let mut a = os(&[&"--json", &"copy"]);
    a.extend_from_slice(args);
    let out = s
        .cmd(&a)
        .env("SNAP_FROM_PASSWORD", "source password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

#[test]
fn copy_local_s3_roundtrip_and_resume_moto() {
    if let Some(s3) = services::s3() {
        copy_local_s3_roundtrip_and_resume(&s3);
    }
}

#[test]
fn copy_local_s3_roundtrip_and_resume_s3s() {
    if let Some(s3) = services::s3s() {
        copy_local_s3_roundtrip_and_resume(&s3);
    }
}

fn copy_local_s3_roundtrip_and_resume(s3: &S3) {
    // Source: a local repository with two snapshots.
    let mut local = Snap::new();
    local.password = "source password".into();
    let src = local.path("src");
    gen_tree(&src, 120, 2);
    local.init();
    local.backup_json([&src]);
    std::fs::write(src.join("d2/extra.bin"), random_bytes(77, 3 << 20)).unwrap();
    local.backup_json([&src]);
    let ids = local.snapshot_ids();
    assert_eq!(ids.len(), 2);

    // local → S3 (independent keys: every blob re-keyed, trees re-encoded).
    let remote = s3_snap(s3, &services::unique_name("cp_"));
    remote.init();
    let from = local.repo.clone();
    let t = Instant::now();
    let j = copy_json(&remote, &os(&[&"--from", &from]));
    let secs = t.elapsed().as_secs_f64();
    let stored = j["bytes_stored"].as_u64().unwrap();
    eprintln!(
        "copy local->s3: {} bytes stored in {secs:.1} s: {:.1} MB/s",
        stored,
        stored as f64 / secs / 1e6
    );
    assert_eq!(j["copied"], 2, "{j}");
    let copies = remote.snapshot_ids();
    assert_eq!(copies.len(), 2);
    restore_and_compare(&remote, "latest", &src, "r-remote");
    // A second copy transfers nothing.
    let j = copy_json(&remote, &os(&[&"--from", &from]));
    assert_eq!(
        (j["copied"].as_u64(), j["skipped"].as_u64()),
        (Some(0), Some(2)),
        "{j}"
    );
    let dr = &j["requests"]["destination"];
    // The only writes: the copy's lease (written once, deleted at the end).
    assert_eq!(dr["put"], 1, "{j}");
    assert_eq!(dr["by_kind"]["locks"]["put"], 1, "{j}");
    assert_eq!(
        j["requests"]["source"]["by_kind"]["data"]["get"],
        Value::Null,
        "{j}"
    );

    // S3 → a new local repository, then restore from it.
    let mut back = Snap::new();
    back.env = s3.env();
    back.init();
    let j = back
        .cmd(os(&[&"--json", &"copy", &"--from", &remote.repo]))
        .env("SNAP_FROM_PASSWORD", &remote.password)
        .output()
        .unwrap();
    assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stderr));
    assert_eq!(back.snapshot_ids().len(), 2);
    restore_and_compare(&back, "latest", &src, "r-back");

    // Killed half way, then run again: same ids (chunker params copied), so
    // the second run skips what arrived.
    let resumed = s3_snap(s3, &services::unique_name("cpk_"));
    let init = resumed
        .cmd(os(&[
            &"init",
            &"--pack-size-mib",
            &"4",
            &"--copy-chunker-params-from",
            &from,
        ]))
        .env("SNAP_FROM_PASSWORD", "source password")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut child = resumed
        .cmd(os(&[
            &"--limit-upload",
            &"8192",
            &"copy",
            &"--from",
            &from,
            &ids[0],
        ]))
        .env("SNAP_FROM_PASSWORD", "source password")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_objects(s3, &resumed.repo, "index/") == 0 {
        assert!(Instant::now() < deadline, "no index object appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "copy ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        resumed.snapshot_ids().is_empty(),
        "killed copy left no snapshot"
    );
    let packs_before = count_objects(s3, &resumed.repo, "data/");
    let j = copy_json(&resumed, &os(&[&"--from", &from, &ids[0]]));
    let packs_total = count_objects(s3, &resumed.repo, "data/");
    eprintln!(
        "resume: {packs_before} packs before, {} sent by the second run, {packs_total} in all",
        j["packs"]
    );
    assert_eq!(j["copied"], 1, "{j}");
    let second = j["packs"].as_u64().unwrap() as usize;
    assert!(packs_before >= 4 && second + 4 <= packs_total, "{j}");
    assert_eq!(resumed.snapshot_ids().len(), 1);
    let target = resumed.path("r-resumed");
    resumed.ok(os(&[&"restore", &"latest", &"--target", &target]));
    // The first snapshot lacks d2/extra.bin; everything else must match.
    std::fs::remove_file(src.join("d2/extra.bin")).unwrap();
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(
        d.is_empty() || d.iter().all(|x| x.starts_with("d2:")),
        "{d:?}"
    );
    let got = restored_path(&target, &src);
    for (a, b) in [("d0", "d0"), ("d1", "d1"), ("d3", "d3")] {
        let dd = tree_diff(&src.join(a), &got.join(b));
        assert!(dd.is_empty(), "{a}: {dd:?}");
    }
}

/// A TCP proxy to the S3 server that can be cut: while down it resets every
/// connection, new and open.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// When set, the first request whose bytes contain "PUT " and "/data/"
    /// (a pack upload) is not forwarded: the proxy goes down instead.
    trip_on_pack_put: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_string();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let trip: Arc<AtomicBool> = Arc::default();
        let (up2, conns2, trip2) = (up.clone(), conns.clone(), trip.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(c);
                    continue;
                }
                let Ok(s) = TcpStream::connect(&target) else {
                    continue;
                };
                conns2.lock().unwrap().push(c.try_clone().unwrap());
                conns2.lock().unwrap().push(s.try_clone().unwrap());
                for (up_dir, mut a, mut b) in [
                    (true, c.try_clone().unwrap(), s.try_clone().unwrap()),
                    (false, s, c),
                ] {
                    let (trip, up, conns) = (trip2.clone(), up2.clone(), conns2.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            match a.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    let data = &buf[..n];
                                    let is_pack_put = data.starts_with(b"PUT ")
                                        && data.windows(6).any(|w| w == b"/data/");
                                    if up_dir && is_pack_put && trip.swap(false, Ordering::SeqCst) {
                                        up.store(false, Ordering::SeqCst);
                                        for c in conns.lock().unwrap().drain(..) {
                                            let _ = c.shutdown(std::net::Shutdown::Both);
                                        }
                                        break;
                                    }
                                    if b.write_all(data).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            port,
            up,
            conns,
            trip_on_pack_put: trip,
        }
    }

    fn set_up(&self, on: bool) {
        self.up.store(on, Ordering::SeqCst);
        if !on {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn server_gone_mid_backup_moto() {
    if let Some(s3) = services::s3() {
        server_gone_mid_backup(&s3);
    }
}

#[test]
fn server_gone_mid_backup_s3s() {
    if let Some(s3) = services::s3s() {
        server_gone_mid_backup(&s3);
    }
}

fn server_gone_mid_backup(s3: &S3) {
    let proxy = Proxy::start(&s3.endpoint);
    let mut s = s3_snap(s3, &services::unique_name("cut_"));
    for (k, v) in s.env.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let src = s.path("src");
    gen_tree(&src, 40, 3);
    s.init();
    let first = s.backup_json([&src]);
    let id1 = first["snapshot"].as_str().unwrap().to_string();
    std::fs::write(src.join("d4/big.bin"), random_bytes(31, 60 << 20)).unwrap();
    // The server goes away exactly when the backup starts its first pack
    // upload (the proxy trips on it), and stays away: the backup must give
    // up after 4 s of retries with a clear error.
    proxy.trip_on_pack_put.store(true, Ordering::SeqCst);
    let child = s
        .cmd(os(&[&"--s3-retry-timeout", &"4", &"backup", &src]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "backup through a dead server succeeded: {err} {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let last = err.lines().last().unwrap_or("");
    eprintln!("error after the cut: {last}");
    assert!(
        last.starts_with("snap: error: ") && last.contains(&s.repo),
        "unclear error: {err}"
    );
    proxy.set_up(true);
    assert_eq!(
        s.snapshot_ids(),
        vec![id1.clone()],
        "no snapshot from the failed backup"
    );
    // The repository is still valid: the next backup works and both restore.
    let j = s.backup_json([&src]);
    let id2 = j["snapshot"].as_str().unwrap().to_string();
    restore_and_compare(&s, &id2, &src, "r2");
    let target = s.path("r1");
    s.ok(os(&[&"restore", &id1, &"--target", &target]));
    assert!(!restored_path(&target, &src).join("d4/big.bin").exists());
}
