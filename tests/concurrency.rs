//! Concurrent writers (issue "Reliability and security"): four `snap backup`
//! processes write into one repository at the same time, sharing one cache
//! directory (one SQLite catalog in WAL mode) or each with its own; then on
//! S3. All four snapshots restore byte-identical, also through a fresh cache.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use common::services;
use common::verify::{backup_id, tree_hash, verify_repository, Model};
use std::path::PathBuf;
use std::process::Stdio;

const WRITERS: usize = 4;

/// Four source trees that share some content (so writers race to store the
/// same blobs) and each have their own.
fn sources(s: &Snap, round: u64) -> Vec<PathBuf> {
    let mut shared = Rng::new(1000 + round);
    let shared_a = shared.bytes(1 << 20);
    let shared_b = shared.text(600_000);
    (0..WRITERS)
        .map(|w| {
            let dir = s.path(&format!("src-{round}-{w}"));
            std::fs::create_dir_all(dir.join("own")).unwrap();
            std::fs::write(dir.join("shared-a"), &shared_a).unwrap();
            std::fs::write(dir.join("shared-b"), &shared_b).unwrap();
            let mut rng = Rng::new(round * 10 + w as u64 + 1);
            for i in 0..6 {
                std::fs::write(dir.join(format!("own/f{i}")), rng.bytes(300_000)).unwrap();
            }
            dir
        })
        .collect()
}

/// Starts all writers at once (optionally each with its own cache dir) and
/// records their snapshots in `model`.
fn race(s: &Snap, round: u64, separate_caches: bool, model: &mut Model) {
    let srcs = sources(s, round);
    let children: Vec<_> = srcs
        .iter()
        .enumerate()
        .map(|(w, src)| {
            let mut c = s.cmd([
                std::ffi::OsStr::new("--json"),
                "backup".as_ref(),
                src.as_os_str(),
            ]);
            if separate_caches {
                c.arg("--cache-dir")
                    .arg(s.path(&format!("cache-{round}-{w}")));
            }
            let h = tree_hash(src);
            let child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (src.clone(), h, child)
        })
        .collect();
    for (src, h, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent backup of {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        model.add(&backup_id(&v), &src, h);
    }
    if separate_caches {
        for w in 0..WRITERS {
            let c = s.path(&format!("cache-{round}-{w}"));
            assert!(
                c.is_dir(),
                "writer {w} did not use its own cache {}",
                c.display()
            );
        }
    }
}

fn run_all(mut s: Snap) {
    s.ok(["init", "--pack-size-mib", "1"]);
    let mut model = Model::default();
    race(&s, 1, false, &mut model);
    verify_repository(&s, &model);
    race(&s, 2, true, &mut model);
    verify_repository(&s, &model);
    assert_eq!(model.snapshots.len(), 2 * WRITERS);
    // The repository alone (no cached catalog) holds everything.
    s.cache = s.path("fresh-cache");
    verify_repository(&s, &model);
    eprintln!(
        "{} concurrent writers x 2 rounds: all {} snapshots verified",
        WRITERS,
        model.snapshots.len()
    );
}

#[test]
fn four_concurrent_backups_local() {
    run_all(Snap::new());
}

#[test]
fn four_concurrent_backups_s3() {
    let Some(s3) = services::s3() else { return };
    let mut s = Snap::new();
    s.repo = s3.repo_url(&services::unique_name("conc_"));
    s.env = s3.env();
    run_all(s);
}

/// `snap copy` and `prune --grace 0s` at the same time: two prunes run while
/// a rate-limited copy uploads its packs. The first one marks the copy's
/// packs (indexed or not, no snapshot needs them yet); the copy's lease is a
/// blocker of that mark, so the second prune must not delete them. The copy
/// then completes and its snapshot restores and checks clean.
#[test]
fn prune_during_copy_keeps_the_copied_packs() {
    let src = Snap::new();
    src.ok(["init", "--pack-size-mib", "1"]);
    let mut dst = Snap::new();
    dst.env
        .push(("SNAP_FROM_PASSWORD".into(), src.password.clone()));
    dst.ok(["init", "--pack-size-mib", "1"]);
    let data = src.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = common::gen::Rng::new(7);
    for i in 0..4 {
        std::fs::write(data.join(format!("f{i}")), rng.bytes(1 << 20)).unwrap();
    }
    let mut model = Model::default();
    let h = tree_hash(&data);
    model.add(&backup_id(&src.backup_json([&data])), &data, h);
    // 4 MiB at 1 MiB/s: about 4 s of copying.
    let copy = dst
        .cmd([
            "--limit-upload",
            "1024",
            "copy",
            "--from",
            src.repo.as_str(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    dst.ok(["prune", "--grace", "0s"]);
    dst.ok(["prune", "--grace", "0s"]);
    let out = copy.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&dst.ok(["--json", "snapshots"])).unwrap();
    let copied = v[0]["id"].as_str().expect("one copied snapshot");
    let mut m = Model::default();
    m.add(
        copied,
        &data,
        model.snapshots.values().next().unwrap().hash.clone(),
    );
    verify_repository(&dst, &m);
}

/// An `ObjectStore` that runs a hook each time `index/` is listed while
/// armed, before the listing is returned.
struct HookStore {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    armed: std::sync::atomic::AtomicBool,
    on_list_index: Box<dyn Fn() + Send + Sync>,
    hooked: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookStore({})", self.inner)
    }
}

impl std::fmt::Display for HookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for HookStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        if prefix.is_some_and(|p| p.as_ref() == "index")
            && self.armed.load(std::sync::atomic::Ordering::SeqCst)
        {
            (self.on_list_index)();
            self.hooked
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Prune takes its view of the repository from its own listings (leases,
/// snapshots, then indexes), not from the catalog: the catalog is shared by
/// every process using the cache directory, and they reset and reload it at
/// any moment (a sync that finds an index vanished or superseded, `snap
/// cache rebuild`), or add the snapshot they just wrote to it. That is how
/// `forget --prune` beside backups failed with "tree … is not in any index"
/// (a backup's snapshot in the catalog, its index dropped by a reset). Here
/// another handle on the same catalog resets it every time the prune lists
/// `index/`, i.e. after prune listed the snapshots and before it walks their
/// trees. Both prune runs (mark and repack, then delete) must complete, delete
/// the forgotten snapshot's pack, and the kept snapshot must restore and
/// check clean.
#[test]
fn prune_is_not_misled_by_a_catalog_reset_by_another_process() {
    use snap::ops::prune::{prune, PruneOptions};
    use snap::repo::Repository;
    let s = Snap::new();
    s.init();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Rng::new(11);
    for i in 0..4 {
        std::fs::write(data.join(format!("f{i}")), rng.bytes(300_000)).unwrap();
    }
    s.backup_json([&data]);
    for i in 0..2 {
        std::fs::write(data.join(format!("f{i}")), rng.bytes(300_000)).unwrap();
    }
    let kept = backup_id(&s.backup_json([&data]));
    s.ok(["forget", "--keep-last", "1"]);

    let plain = Repository::open(&s.repo, s.password.as_bytes(), &s.cache).unwrap();
    let (config, key, key_id) = (
        plain.config().clone(),
        plain.key().clone(),
        plain.key_id().to_string(),
    );
    drop(plain);
    let cat_path = s.cache.join(&config.id).join("catalog.sqlite");
    let repo_id = config.id.clone();
    let hook = std::sync::Arc::new(HookStore {
        inner: std::sync::Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&s.repo).unwrap(),
        ),
        armed: false.into(),
        // Another process's sync between its reset and its reload.
        on_list_index: Box::new(move || {
            snap::catalog::Catalog::open(&cat_path, &repo_id)
                .unwrap()
                .reset()
                .unwrap();
        }),
        hooked: 0.into(),
    });
    let store = snap::store::Store::from_object_store(hook.clone(), &s.repo).unwrap();
    let repo = Repository::open_with(store, config, key, key_id, &s.cache).unwrap();
    let session = snap::session::Session::start(repo, snap::session::Operation::Prune).unwrap();
    hook.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let opts = PruneOptions {
        max_unused: 0.1,
        grace: std::time::Duration::ZERO,
        dry_run: false,
    };
    let first = prune(&session, &opts).expect("first prune (marks)");
    assert!(first.packs_marked > 0, "{first:?}");
    let second = prune(&session, &opts).expect("second prune (deletes)");
    assert!(second.packs_deleted > 0, "{second:?}");
    assert!(hook.hooked.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    drop(session);

    assert_eq!(s.snapshot_ids(), vec![kept.clone()]);
    let mut model = Model::default();
    model.add(&kept, &data, tree_hash(&data));
    verify_repository(&s, &model);
}
