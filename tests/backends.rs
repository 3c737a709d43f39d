//! Backend conformance (issue #15 "Engine boundaries"): one suite of
//! [`Store`] semantics — put-if-absent, overwrite, whole and ranged reads
//! (out-of-range included), batches of ranges, listing by prefix, deletes of
//! missing objects, sizes, concurrent readers — run against every kind of
//! store snap sits on: object_store's `InMemory`, a local folder, the S3
//! server of scripts/services.sh (moto), and `InMemory` behind a disarmed
//! [`FaultStore`]. In the manner of restic's `internal/backend/test` suite.

mod common;
use common::services;
use snap::error::ErrorKind;
use snap::store::fault::{Fault, FaultStore, Injected, Op};
use snap::store::{Store, StoreOptions};
use std::sync::Arc;

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn kind_of<T: std::fmt::Debug>(r: snap::error::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

/// The whole suite against one empty store.
fn suite(st: &Store) {
    put_if_absent(st);
    ranges(st);
    listing(st);
    deletes(st);
    concurrent_readers(st);
}

fn put_if_absent(st: &Store) {
    assert_eq!(kind_of(st.get("config")), ErrorKind::NotFound);
    assert_eq!(kind_of(st.size("config")), ErrorKind::NotFound);
    assert!(st.put_new("config", "first".into()).unwrap(), "new object");
    assert!(!st.put_new("config", "second".into()).unwrap(), "exists");
    assert_eq!(&st.get("config").unwrap()[..], b"first");
    assert_eq!(st.size("config").unwrap(), 5);
    // Overwrite replaces, whatever was there.
    st.put_overwrite("locks/l1", "one".into()).unwrap();
    st.put_overwrite("locks/l1", "three".into()).unwrap();
    assert_eq!(&st.get("locks/l1").unwrap()[..], b"three");
    assert_eq!(st.size("locks/l1").unwrap(), 5);
    // An empty object is an object.
    assert!(st.put_new("index/empty", bytes::Bytes::new()).unwrap());
    assert_eq!(st.size("index/empty").unwrap(), 0);
    assert!(st.get("index/empty").unwrap().is_empty());
}

fn ranges(st: &Store) {
    let data = bytes(7, 100_000);
    let key = "data/ab/ab01";
    assert!(st.put_new(key, data.clone().into()).unwrap());
    assert_eq!(st.size(key).unwrap(), 100_000);
    assert_eq!(&st.get_range(key, 0..10).unwrap()[..], &data[..10]);
    assert_eq!(
        &st.get_range(key, 99_000..100_000).unwrap()[..],
        &data[99_000..]
    );
    assert!(st.get_range(key, 500..500).unwrap().is_empty());
    // Past the end: the object is shorter than asked (Corrupt), whether the
    // range straddles the end or starts beyond it.
    assert_eq!(
        kind_of(st.get_range(key, 99_990..100_010)),
        ErrorKind::Corrupt
    );
    assert_eq!(
        kind_of(st.get_range(key, 200_000..200_010)),
        ErrorKind::Corrupt
    );
    assert_eq!(
        kind_of(st.get_range("data/ab/ab99", 0..10)),
        ErrorKind::NotFound
    );
    // A batch: same order as asked, duplicates and empty ranges allowed.
    let reqs: Vec<(String, std::ops::Range<u64>)> = vec![
        (key.into(), 50_000..50_100),
        (key.into(), 0..3),
        ("config".into(), 1..4),
        (key.into(), 50_000..50_100),
        (key.into(), 7..7),
    ];
    let got = st.get_ranges(&reqs).unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(&got[0][..], &data[50_000..50_100]);
    assert_eq!(&got[1][..], &data[..3]);
    assert_eq!(&got[2][..], b"irs");
    assert_eq!(got[3], got[0]);
    assert!(got[4].is_empty());
    // More requests than run at once, each its own range.
    let many: Vec<(String, std::ops::Range<u64>)> = (0..3 * Store::RANGES_IN_FLIGHT as u64)
        .map(|i| (key.to_string(), i * 1000..i * 1000 + 17))
        .collect();
    for (r, b) in many.iter().zip(st.get_ranges(&many).unwrap()) {
        assert_eq!(&b[..], &data[r.1.start as usize..r.1.end as usize]);
    }
    // One bad range fails the batch with its error.
    let bad = vec![(key.to_string(), 0..10), ("data/ab/ab99".to_string(), 0..1)];
    assert_eq!(kind_of(st.get_ranges(&bad)), ErrorKind::NotFound);
    let short = vec![(key.to_string(), 0..10), (key.to_string(), 0..100_001)];
    assert_eq!(kind_of(st.get_ranges(&short)), ErrorKind::Corrupt);
    assert!(st.get_ranges(&[]).unwrap().is_empty());
}

fn listing(st: &Store) {
    let names = |prefix: &str| {
        let mut v: Vec<(String, u64)> = st
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.size))
            .collect();
        v.sort();
        v
    };
    for (k, n) in [
        ("snapshots/s1", 3),
        ("snapshots/s2", 4),
        ("snapshotsx/s3", 5),
        ("data/cd/cd01", 6),
        ("data/ef/ef01", 7),
    ] {
        assert!(st.put_new(k, bytes(1, n).into()).unwrap());
    }
    let snaps = vec![("s1".to_string(), 3), ("s2".to_string(), 4)];
    assert_eq!(names("snapshots/"), snaps);
    // A prefix is whole path segments: no trailing slash lists the same,
    // and "snapshots" does not take in "snapshotsx".
    assert_eq!(names("snapshots"), snaps);
    // Recursive under data/, with the earlier pack from `ranges`.
    let data = names("data/");
    assert_eq!(
        data.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["ab01", "cd01", "ef01"]
    );
    assert_eq!(data[1].1, 6);
    assert_eq!(names("data/cd/"), vec![("cd01".to_string(), 6)]);
    assert!(names("nothing/").is_empty(), "missing prefix: empty");
    assert!(names("snap").is_empty(), "partial segment: nothing");
}

fn deletes(st: &Store) {
    st.delete("snapshots/s1").unwrap();
    assert_eq!(kind_of(st.get("snapshots/s1")), ErrorKind::NotFound);
    assert_eq!(kind_of(st.size("snapshots/s1")), ErrorKind::NotFound);
    // Missing: not an error, twice over.
    st.delete("snapshots/s1").unwrap();
    st.delete("snapshots/never").unwrap();
    let left: Vec<String> = st
        .list("snapshots/")
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(left, ["s2"]);
    // A deleted content-named object can be stored again.
    assert!(st.put_new("snapshots/s1", "again".into()).unwrap());
    assert_eq!(&st.get("snapshots/s1").unwrap()[..], b"again");
}

fn concurrent_readers(st: &Store) {
    let data = bytes(7, 100_000);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let data = &data;
            s.spawn(move || {
                for i in 0..20u64 {
                    let start = (t * 7919 + i * 104_729) % 99_000;
                    let b = st.get_range("data/ab/ab01", start..start + 1000).unwrap();
                    assert_eq!(&b[..], &data[start as usize..start as usize + 1000]);
                }
            });
        }
    });
}

#[test]
fn in_memory_store() {
    let st = Store::from_object_store(Arc::new(object_store::memory::InMemory::new()), "memory")
        .unwrap();
    assert!(st.is_remote());
    suite(&st);
}

#[test]
fn local_store() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().join("repo");
    let st = Store::open(loc.to_str().unwrap(), true).unwrap();
    assert!(!st.is_remote());
    suite(&st);
}

#[test]
fn local_store_with_download_limit() {
    // A rate limit sends local reads through object_store instead of pread.
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().join("repo");
    let opts = StoreOptions {
        limit_download: Some(1 << 40),
        ..StoreOptions::default()
    };
    let st = Store::open_with(loc.to_str().unwrap(), true, &opts).unwrap();
    suite(&st);
}

#[test]
fn s3_store() {
    let Some(s3) = services::s3() else { return };
    let opts = StoreOptions {
        s3_endpoint: Some(s3.endpoint.clone()),
        ..StoreOptions::default()
    };
    let url = s3.repo_url(&services::unique_name("backends_"));
    let st = Store::open_with(&url, false, &opts).unwrap();
    assert!(st.is_remote());
    suite(&st);
}

#[test]
fn fault_store_disarmed_is_transparent() {
    let fs = Arc::new(FaultStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let st = Store::from_object_store(fs.clone(), "fault").unwrap();
    suite(&st);
    assert_eq!(fs.failures(), 0);
    assert!(fs.calls(Some(Op::Put)) > 10);
    assert!(fs.calls(Some(Op::Head)) > 0);
    assert_eq!(fs.calls(Some(Op::Delete)), 3);
}

/// Local staging files (`NAME#N`, left by a killed write) are never listed,
/// and the store removes them once old enough.
#[test]
fn local_staging_files_are_hidden_and_removed_when_old() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().join("repo");
    let st = Store::open(loc.to_str().unwrap(), true).unwrap();
    assert!(st.put_new("data/ab/ab01", "x".into()).unwrap());
    let old = loc.join("data/ab/ab02#1");
    let young = loc.join("index/ff#2");
    std::fs::write(&old, "partial").unwrap();
    std::fs::create_dir_all(loc.join("index")).unwrap();
    std::fs::write(&young, "partial").unwrap();
    let hour_ago = filetime::FileTime::from_system_time(
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    filetime::set_file_mtime(&old, hour_ago).unwrap();
    let names: Vec<String> = st
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["ab01"]);
    let removed = st
        .remove_stale_staging(std::time::Duration::from_secs(900))
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!old.exists() && young.exists());
    // A remote store has none.
    let mem =
        Store::from_object_store(Arc::new(object_store::memory::InMemory::new()), "m").unwrap();
    assert_eq!(
        mem.remove_stale_staging(std::time::Duration::ZERO).unwrap(),
        0
    );
}

/// Disk full is recognised from the error's source chain (an io::Error of
/// kind StorageFull), not from its text; any other failure is a backend
/// error.
#[test]
fn full_storage_is_no_space_and_other_faults_are_backend_errors() {
    let fs = Arc::new(FaultStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let st = Store::from_object_store(fs.clone(), "fault").unwrap();
    fs.arm(
        Fault::nth(1)
            .only(Op::Put)
            .with_error(Injected::StorageFull),
    );
    let e = st.put_new("data/ab/ab01", "x".into()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e:#}");
    assert!(e.to_string().contains("no space left"), "{e}");
    // The fault was not applied: the object is not there; the next put is.
    assert_eq!(kind_of(st.get("data/ab/ab01")), ErrorKind::NotFound);
    assert!(st.put_new("data/ab/ab01", "x".into()).unwrap());
    fs.arm(Fault::nth(1).only(Op::Get));
    assert_eq!(kind_of(st.get("data/ab/ab01")), ErrorKind::Backend);
    assert!(!snap::store::is_storage_full(
        &object_store::Error::NotImplemented {
            operation: "x".into(),
            implementer: "y".into()
        }
    ));
}

/// The fault store's own contract: the N-th matching call fails, a lost
/// reply still lands, and a crash fails every later call.
#[test]
fn fault_store_counts_and_fails_the_nth_call() {
    let fs = Arc::new(FaultStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let st = Store::from_object_store(fs.clone(), "fault").unwrap();
    fs.arm(Fault::nth(3));
    assert!(st.put_new("a/1", "1".into()).is_ok());
    assert!(st.get("a/1").is_ok());
    assert!(!fs.tripped());
    assert!(st.put_new("a/2", "2".into()).is_err(), "third call");
    assert!(fs.tripped());
    assert!(
        st.put_new("a/2", "2".into()).unwrap(),
        "fourth: not applied before"
    );
    // A lost reply: the write lands although the caller sees an error.
    fs.arm(Fault::nth(1).only(Op::Put).applied());
    assert!(st.put_new("a/3", "3".into()).is_err());
    assert_eq!(&st.get("a/3").unwrap()[..], b"3");
    // A crash: everything from the 2nd delete on fails.
    fs.arm(Fault::crash_at(2).only(Op::Delete));
    st.delete("a/1").unwrap();
    assert!(st.delete("a/2").is_err());
    assert!(st.get("a/3").is_err() && st.list("a/").is_err());
    assert_eq!(fs.failures(), 5);
    fs.disarm();
    let mut left: Vec<String> = st.list("a/").unwrap().into_iter().map(|l| l.name).collect();
    left.sort();
    assert_eq!(left, ["2", "3"]);
}
