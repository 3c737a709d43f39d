//! The restore planner (src/read/planner.rs) over an in-memory store with
//! fault injection: each blob read once, bounded reads in flight, damage
//! confined to the files that need a missing or short pack.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use object_store::memory::InMemory;
use object_store::path::Path as OsPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use snap::error::Error;
use snap::format::{BlobId, SnapshotId};
use snap::read::planner::{restore_files, FileContent, FileSink};
use snap::repo::Repository;
use snap::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An in-memory store whose GETs can fail (NotFound) or come back short,
/// chosen by key, and that records how many GETs run at once.
#[derive(Debug, Default)]
struct FaultStore {
    inner: InMemory,
    missing: Mutex<HashSet<String>>,
    short: Mutex<HashSet<String>>,
    delay: Mutex<Duration>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// (key, start, end) of every ranged GET of `data/`.
    ranges: Mutex<Vec<(String, u64, u64)>>,
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore")
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &OsPath,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &OsPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &OsPath,
        mut options: GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let key = location.as_ref().to_string();
        if self.missing.lock().unwrap().contains(&key) {
            return Err(object_store::Error::NotFound {
                path: key,
                source: "removed by the test".into(),
            });
        }
        if let Some(GetRange::Bounded(r)) = &options.range {
            if key.starts_with("data/") {
                self.ranges
                    .lock()
                    .unwrap()
                    .push((key.clone(), r.start, r.end));
            }
            if self.short.lock().unwrap().contains(&key) && r.end - r.start > 1 {
                options.range = Some(GetRange::Bounded(r.start..r.end - 1));
            }
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let r = self.inner.get_opts(location, options).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        r
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<OsPath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<OsPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&OsPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&OsPath>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &OsPath,
        to: &OsPath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A sink that keeps each file's bytes in memory.
#[derive(Default)]
struct MemSink {
    files: Vec<Mutex<Vec<u8>>>,
    finished: Vec<Mutex<bool>>,
    damaged: Mutex<HashMap<usize, String>>,
}

impl MemSink {
    fn new(n: usize) -> MemSink {
        MemSink {
            files: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            finished: (0..n).map(|_| Mutex::new(false)).collect(),
            damaged: Mutex::new(HashMap::new()),
        }
    }
}

impl FileSink for MemSink {
    fn write(&self, file: usize, offset: u64, data: &[u8], zero: bool) -> snap::error::Result<()> {
        assert_eq!(zero, data.iter().all(|&b| b == 0));
        let mut f = self.files[file].lock().unwrap();
        let end = offset as usize + data.len();
        if f.len() < end {
            f.resize(end, 0);
        }
        f[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn finish(&self, file: usize) -> snap::error::Result<()> {
        let mut done = self.finished[file].lock().unwrap();
        assert!(!*done, "file {file} finished twice");
        *done = true;
        Ok(())
    }

    fn damaged(&self, file: usize, err: &Error) {
        self.damaged
            .lock()
            .unwrap()
            .entry(file)
            .or_insert_with(|| format!("{err:#}"));
    }
}

/// A backed-up tree copied into a [`FaultStore`], opened as a repository.
struct Fixture {
    _snap: Snap,
    repo: Repository,
    faults: Arc<FaultStore>,
    /// (content ids, size, expected bytes) per file.
    files: Vec<(Vec<BlobId>, u64, Vec<u8>)>,
}

impl Fixture {
    /// Backs up `files` (name, bytes) with 1 MiB packs, copies the
    /// repository into memory and looks the files up.
    fn new(files: Vec<(String, Vec<u8>)>) -> Fixture {
        let s = Snap::new();
        s.ok(["init", "--pack-size-mib", "1"]);
        let data = s.path("data");
        std::fs::create_dir_all(&data).unwrap();
        for (n, b) in &files {
            std::fs::write(data.join(n), b).unwrap();
        }
        let j = s.backup_json([&data]);
        let snap_id = j["snapshot"].as_str().unwrap().to_string();
        let plain = Repository::open(&s.repo, s.password.as_bytes(), &s.cache).unwrap();
        let (config, key, key_id) = (
            plain.config().clone(),
            plain.key().clone(),
            plain.key_id().to_string(),
        );
        drop(plain);
        let faults = Arc::new(FaultStore::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = std::path::Path::new(&s.repo);
        for e in walk(root) {
            let rel = e.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&e).unwrap();
            rt.block_on(faults.inner.put(&OsPath::from(rel.as_str()), bytes.into()))
                .unwrap();
        }
        let store = Store::from_object_store(faults.clone(), "memory:///planner").unwrap();
        let repo = Repository::open_with(store, config, key, key_id, &s.path("cache2")).unwrap();
        let snap = repo
            .read_snapshot(&SnapshotId::from_hex(&snap_id).unwrap())
            .unwrap();
        let mut out = Vec::new();
        for (n, b) in files {
            let p = format!("{}/{n}", data.display());
            let e = snap::read::restore::find_entry(&repo, &snap.tree, &p).unwrap();
            out.push((e.content.clone(), e.size, b));
        }
        Fixture {
            _snap: s,
            repo,
            faults,
            files: out,
        }
    }

    fn contents(&self) -> Vec<FileContent<'_>> {
        self.files
            .iter()
            .map(|(c, size, _)| FileContent::whole(c, *size))
            .collect()
    }

    fn data_gets(&self) -> (u64, u64) {
        let c = self.repo.store().stats().kind("data/");
        (
            c.get.load(Ordering::Relaxed),
            c.bytes_down.load(Ordering::Relaxed),
        )
    }

    /// Total size of the packs, bytes, and their keys.
    fn packs(&self) -> (u64, Vec<String>) {
        let l = self.repo.store().list("data/").unwrap();
        let keys = l
            .iter()
            .map(|x| format!("data/{}/{}", &x.name[..2], x.name))
            .collect();
        (l.iter().map(|x| x.size).sum(), keys)
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn shared_blobs_are_read_once_and_written_everywhere() {
    let mut rng = Rng::new(5);
    let shared = rng.bytes(300_000);
    let mut files = Vec::new();
    for i in 0..40 {
        // 40 copies of one 300 kB file (one chunk or a few), and a few
        // unique small files between them.
        files.push((format!("copy{i}"), shared.clone()));
        if i % 10 == 0 {
            files.push((format!("own{i}"), rng.bytes(20_000)));
        }
    }
    files.push(("zeros".into(), vec![0u8; 200_000]));
    files.push(("empty".into(), Vec::new()));
    let fx = Fixture::new(files);
    let (pack_bytes, _) = fx.packs();
    let (g0, b0) = fx.data_gets();
    fx.faults.ranges.lock().unwrap().clear();
    let sink = MemSink::new(fx.files.len());
    let stats = restore_files(&fx.repo, &fx.contents(), &sink, 4).unwrap();
    let (g1, b1) = fx.data_gets();
    assert!(sink.damaged.lock().unwrap().is_empty());
    for (i, (_, size, want)) in fx.files.iter().enumerate() {
        let got = sink.files[i].lock().unwrap();
        assert_eq!(got.len() as u64, *size.min(&(got.len() as u64)));
        // The sink only grows on writes: compare what it holds, padded.
        let mut got = got.clone();
        got.resize(*size as usize, 0);
        assert!(got == *want, "file {i} differs");
        assert!(*sink.finished[i].lock().unwrap(), "file {i} not finished");
    }
    // Every read is one GET; no byte of a pack is read twice.
    assert_eq!(g1 - g0, stats.reads, "{stats:?}");
    assert!(b1 - b0 <= pack_bytes, "read {} of {pack_bytes}", b1 - b0);
    // 40 × 300 kB of content, but the shared part is read once.
    assert!(b1 - b0 < 1_000_000, "read {} bytes", b1 - b0);
    let ranges = fx.faults.ranges.lock().unwrap();
    let mut seen: Vec<&(String, u64, u64)> = ranges.iter().collect();
    seen.sort();
    for w in seen.windows(2) {
        assert!(
            w[0].0 != w[1].0 || w[0].2 <= w[1].1,
            "overlapping reads {w:?}"
        );
    }
}

#[test]
fn a_missing_or_short_pack_damages_only_its_files() {
    let mut rng = Rng::new(9);
    // Incompressible, 1 MiB packs: the files spread over several packs.
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("f{i:02}"), rng.bytes(400_000)))
        .collect();
    let fx = Fixture::new(files);
    let (_, packs) = fx.packs();
    assert!(packs.len() >= 4, "{packs:?}");
    // Which packs each file needs.
    let needs: Vec<HashSet<String>> = fx
        .files
        .iter()
        .map(|(c, ..)| {
            let cat = fx.repo.catalog();
            c.iter()
                .map(|id| {
                    let l = cat.lookup(id).unwrap().unwrap();
                    format!("data/{}/{}", &l.pack.to_hex()[..2], l.pack.to_hex())
                })
                .collect()
        })
        .collect();
    let gone = needs[0].iter().next().unwrap().clone();
    let short = needs[fx.files.len() - 1]
        .iter()
        .find(|p| **p != gone)
        .unwrap()
        .clone();
    assert!(packs.contains(&gone) && packs.contains(&short));
    fx.faults.missing.lock().unwrap().insert(gone.clone());
    fx.faults.short.lock().unwrap().insert(short.clone());
    let sink = MemSink::new(fx.files.len());
    restore_files(&fx.repo, &fx.contents(), &sink, 3).unwrap();
    let damaged = sink.damaged.lock().unwrap();
    for (i, (_, _, want)) in fx.files.iter().enumerate() {
        let bad = needs[i].contains(&gone) || needs[i].contains(&short);
        assert_eq!(damaged.contains_key(&i), bad, "file {i}: {damaged:?}");
        if bad {
            let msg = &damaged[&i];
            assert!(
                msg.contains("truncated") || msg.contains("shorter") || msg.contains("reading"),
                "{msg}"
            );
        } else {
            assert!(*sink.finished[i].lock().unwrap());
            assert!(*sink.files[i].lock().unwrap() == *want, "file {i} differs");
        }
    }
    assert!(damaged.len() < fx.files.len(), "{damaged:?}");
}

#[test]
fn reads_in_flight_are_bounded() {
    let mut rng = Rng::new(13);
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("f{i}"), rng.bytes(500_000)))
        .collect();
    let fx = Fixture::new(files);
    let (_, packs) = fx.packs();
    assert!(packs.len() >= 4, "{packs:?}");
    *fx.faults.delay.lock().unwrap() = Duration::from_millis(40);
    fx.faults.max_running.store(0, Ordering::SeqCst);
    let sink = MemSink::new(fx.files.len());
    let stats = restore_files(&fx.repo, &fx.contents(), &sink, 3).unwrap();
    assert!(stats.reads >= 4, "{stats:?}");
    let max = fx.faults.max_running.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "{max} reads at once");
    assert!(sink.damaged.lock().unwrap().is_empty());

    // Streams: in order, through a bounded window too.
    fx.faults.max_running.store(0, Ordering::SeqCst);
    let ids: Vec<BlobId> = fx.files.iter().flat_map(|f| f.0.clone()).collect();
    let mut out = Vec::new();
    snap::read::planner::for_each_blob_with(&fx.repo, &ids, 2, |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    let want: Vec<u8> = fx.files.iter().flat_map(|f| f.2.clone()).collect();
    assert!(out == want, "stream differs");
    let max = fx.faults.max_running.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max} stream reads at once");
}

/// A restore from S3 (moto) reads pack by pack: a few hundred small files
/// cost about one data GET per pack (plus one per folder listing), not one
/// per file, and come back byte-identical.
#[test]
fn s3_restore_reads_by_pack() {
    use common::cli::{restored_path, tree_diff};
    use common::services;
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("planner_"));
    s.env = s3.env();
    let src = s.path("src");
    let mut rng = Rng::new(21);
    let dirs = 6;
    for i in 0..300 {
        let d = src.join(format!("d{}", i % dirs));
        std::fs::create_dir_all(&d).unwrap();
        let n = rng.range(500, 20_000) as usize;
        let b = if i % 3 == 0 {
            rng.bytes(n)
        } else {
            format!("file {i}\n").repeat(n / 8).into_bytes()
        };
        std::fs::write(d.join(format!("f{i}")), b).unwrap();
    }
    s.ok(["init", "--pack-size-mib", "1"]);
    s.backup_json([&src]);
    let id = s.snapshot_ids().pop().unwrap();
    let target = s.path("target");
    let out = s
        .cmd([
            std::ffi::OsStr::new("restore"),
            id.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .env("SNAP_STATS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "restore differs: {d:?}");
    let req = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "store_stats" && v["location"] == s.repo.as_str())
        .unwrap_or_else(|| panic!("no store_stats in {stderr}"))["requests"]
        .clone();
    let gets = req["by_kind"]["data"]["get"].as_u64().unwrap();
    // Packs in the repository: count them from the store.
    let store = Store::open_with(
        &s.repo,
        false,
        &snap::store::StoreOptions {
            s3_endpoint: Some(s3.endpoint.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let packs = store.list("data/").unwrap().len() as u64;
    // Trees: the root's path down to src, plus src and its folders.
    let trees = src.components().count() as u64 + dirs as u64 + 1;
    assert!(
        gets <= 2 * packs + trees,
        "{gets} data GETs for {packs} packs and {trees} trees: {req}"
    );
}

/// Runs `snap restore ID --target TARGET` with `SNAP_STATS=1` and returns
/// the `data/` counters of its store statistics (GETs, bytes read).
fn restore_counting(s: &Snap, id: &str, target: &std::path::Path) -> (u64, u64) {
    let out = s
        .cmd([
            std::ffi::OsStr::new("restore"),
            id.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .env("SNAP_STATS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let req = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "store_stats" && v["location"] == s.repo.as_str())
        .unwrap_or_else(|| panic!("no store_stats in {stderr}"))["requests"]
        .clone();
    let data = &req["by_kind"]["data"];
    (
        data["get"].as_u64().unwrap(),
        data["bytes_down"].as_u64().unwrap(),
    )
}

/// A full restore from S3 after a backup on the same machine: the folder
/// listings come from the catalog's tree cache (checked against their ids),
/// so the restore costs at most one GET per pack and reads no pack byte
/// twice; a tree cache with a wrong plaintext is not trusted (the trees are
/// read from S3 and the restore is still exact). Before the tree cache was
/// used, this restore cost a GET per folder level and more (14 data GETs for
/// 4 packs).
#[test]
fn s3_full_restore_gets_each_pack_once_and_trees_from_the_cache() {
    use common::cli::{restored_path, tree_diff};
    use common::services;
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("planner_"));
    s.env = s3.env();
    let src = s.path("src");
    let mut rng = Rng::new(22);
    for i in 0..200 {
        // Four levels of folders below src.
        let d = src.join(format!("a{}/b{}/c{}", i % 2, i % 4, i % 8));
        std::fs::create_dir_all(&d).unwrap();
        let n = rng.range(500, 30_000) as usize;
        std::fs::write(d.join(format!("f{i}")), rng.bytes(n)).unwrap();
    }
    s.ok(["init", "--pack-size-mib", "1"]);
    s.backup_json([&src]);
    let id = s.snapshot_ids().pop().unwrap();
    let store = Store::open_with(
        &s.repo,
        false,
        &snap::store::StoreOptions {
            s3_endpoint: Some(s3.endpoint.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let packs = store.list("data/").unwrap();
    let pack_bytes: u64 = packs.iter().map(|p| p.size).sum();
    let packs = packs.len() as u64;

    let target = s.path("target");
    let (gets, bytes) = restore_counting(&s, &id, &target);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(d.is_empty(), "restore differs: {d:?}");
    assert!(gets <= packs, "{gets} data GETs for {packs} packs");
    assert!(
        bytes <= pack_bytes,
        "{bytes} bytes read from {pack_bytes} bytes of packs"
    );

    // A tree cache whose plaintexts are wrong: trees are read from S3.
    let cat_path = std::fs::read_dir(&s.cache)
        .unwrap()
        .map(|e| e.unwrap().path().join("catalog.sqlite"))
        .find(|p| p.exists())
        .expect("a catalog in the cache dir");
    let cat = rusqlite::Connection::open(cat_path).unwrap();
    let spoiled = cat
        .execute("UPDATE tree_cache SET plain = x'00'", [])
        .unwrap();
    assert!(spoiled > 4, "{spoiled} trees cached");
    drop(cat);
    let target = s.path("target2");
    let (gets2, _) = restore_counting(&s, &id, &target);
    let d = tree_diff(&src, &restored_path(&target, &src));
    assert!(
        d.is_empty(),
        "restore with a spoiled tree cache differs: {d:?}"
    );
    assert!(
        gets2 > gets,
        "{gets2} GETs with a spoiled tree cache, {gets} without"
    );
}

/// Runs `snap --json restore latest --target T` with `env` and returns
/// the summary line.
fn restore_summary(s: &Snap, target: &std::path::Path, env: &[(&str, &str)]) -> serde_json::Value {
    let mut c = s.cmd([
        std::ffi::OsStr::new("--json"),
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {stdout}"))
}

/// More files need writing than may be open at once (the limit lowered
/// from 128 to 3 through `SNAP_TEST_MAX_OPEN_FILES`): files are closed
/// after a write and opened again for the next, and every file still comes
/// back whole. The files share blobs (copies) and span packs (a second
/// backup appends to files of the first), so each is written many times,
/// interleaved with others.
#[test]
fn more_files_than_the_open_file_limit() {
    let s = Snap::new();
    s.ok(["init", "--chunk-files", "1024,4096,16384"]);
    let src = s.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(128);
    let shared = rng.bytes(64 << 10);
    for i in 0..60 {
        std::fs::write(src.join(format!("copy{i}")), &shared).unwrap();
        std::fs::write(src.join(format!("own{i}")), rng.bytes(32 << 10)).unwrap();
    }
    s.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    // Second backup: 100 more files, the shared content plus their own
    // tail (tails in a new pack, the rest in the first).
    for i in 0..100 {
        let mut c = shared.clone();
        c.extend(rng.bytes(20 << 10));
        std::fs::write(src.join(format!("tail{i}")), c).unwrap();
    }
    s.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    let t = s.path("t");
    let sum = restore_summary(&s, &t, &[("SNAP_TEST_MAX_OPEN_FILES", "3")]);
    assert_eq!(sum["files"], 220, "{sum}");
    let peak = sum["peak_open_files"].as_u64().unwrap();
    // At most the limit plus one per read in flight (4 on a local store).
    assert!((1..=3 + 4).contains(&peak), "{sum}");
    let r = common::cli::restored_path(&t, &src);
    let d = common::cli::tree_diff(&src, &r);
    assert!(d.is_empty(), "{d:?}");
    // Without the lowered limit, many more are open at once.
    let t2 = s.path("t2");
    let sum = restore_summary(&s, &t2, &[]);
    assert!(sum["peak_open_files"].as_u64().unwrap() > 7, "{sum}");
}

/// `snap export` reads file content through the planner's stream reads,
/// many files per request (before: at least one request per file, 32 blobs
/// at most, one file after the other), and the archive holds the tree.
#[test]
fn export_reads_many_files_per_request() {
    let s = Snap::new();
    s.init();
    let src = s.path("src");
    let mut rng = Rng::new(3);
    let files = 400;
    for i in 0..files {
        let d = src.join(format!("d{}", i % 8));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), rng.bytes(4096 + i * 13)).unwrap();
    }
    std::fs::write(src.join("big"), rng.bytes(3 << 20)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    s.ok([std::ffi::OsStr::new("backup"), src.as_os_str()]);
    for format in ["tar", "zip"] {
        let out_file = s.path(&format!("out.{format}"));
        let out = s
            .cmd([
                std::ffi::OsStr::new("export"),
                "latest".as_ref(),
                "--format".as_ref(),
                format.as_ref(),
                "-o".as_ref(),
                out_file.as_os_str(),
            ])
            .env("SNAP_STATS", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let gets = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "store_stats")
            .and_then(|v| v["requests"]["by_kind"]["data"]["get"].as_u64())
            .unwrap_or_else(|| panic!("no store stats: {stderr}"));
        eprintln!("export --format {format}: {gets} data GETs for {files} files");
        assert!(gets <= 20, "{format}: {gets} data GETs for {files} files");
    }
    // The tar holds the tree as backed up.
    let x = s.path("x");
    std::fs::create_dir_all(&x).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(s.path("out.tar"))
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let d = common::cli::tree_diff(&src, &common::cli::restored_path(&x, &src));
    assert!(d.is_empty(), "{d:?}");
}

/// A plan that needs most of the catalog reads every blob location in one
/// scan; a plan for one file of many looks its blobs up one by one. Both
/// write the same bytes, and a blob no index names damages its file
/// either way.
#[test]
fn a_large_plan_scans_the_catalog_a_small_one_looks_up() {
    let mut rng = Rng::new(13);
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("f{i:02}"), rng.bytes(100_000)))
        .collect();
    let fx = Fixture::new(files);
    let unknown = [BlobId([0xee; 32])];
    let check = |contents: &[FileContent<'_>], scanned: bool| {
        let sink = MemSink::new(contents.len());
        let stats = restore_files(&fx.repo, contents, &sink, 2).unwrap();
        assert_eq!(stats.scanned, scanned, "{stats:?}");
        let damaged = sink.damaged.lock().unwrap();
        for (i, c) in contents.iter().enumerate() {
            if c.content == unknown {
                assert!(damaged[&i].contains("index"), "{damaged:?}");
                continue;
            }
            assert!(!damaged.contains_key(&i), "{damaged:?}");
            assert!(*sink.files[i].lock().unwrap() == fx.files[i].2, "file {i}");
        }
    };
    let mut all = fx.contents();
    all.push(FileContent::whole(&unknown, 1));
    check(&all, true);
    check(&all[..1], false);
    let (c, size, _) = &fx.files[0];
    check(
        &[
            FileContent::whole(c, *size),
            FileContent::whole(&unknown, 1),
        ],
        false,
    );
}
