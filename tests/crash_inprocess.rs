//! In-process crash tests (issue #15 "Engine boundaries"): backup, prune and
//! copy run over an in-memory store behind a [`FaultStore`] that "crashes"
//! the process at its N-th store call — that call and every later one fail —
//! for every N up to the operation's call count, once with the N-th call
//! lost before it reached the store and once with it applied but its reply
//! lost; and once more with only the N-th call failing, the process living
//! on (its error paths: salvaged indexes, released leases). After each: the repository checks clean (data read), every
//! snapshot that existed before restores byte-identical, and the same
//! operation run again succeeds and leaves a valid repository. The crashed
//! process's lease is removed before the retry, as its expiry would
//! (format-spec "Leases and two-phase prune").
//!
//! Complements tests/crash.rs, which kills the real binary at a few points
//! on a local repository: here every store call is a crash point.

mod common;
use common::gen::Rng;
use common::verify::tree_hash;
use futures::executor::block_on;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use snap::crypto::MasterKey;
use snap::format::config::Config;
use snap::format::SnapshotId;
use snap::ops::backup::{backup, BackupOptions};
use snap::ops::check::{check, Subset};
use snap::ops::copy::copy_snapshot;
use snap::ops::prune::{prune, PruneOptions};
use snap::repo::{InitOptions, Repository};
use snap::session::{Operation, Session};
use snap::store::fault::{Fault, FaultStore};
use snap::store::{ObjectKind, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PASSWORD: &[u8] = b"crash test password";

/// A temporary folder, in memory where the machine has /dev/shm: catalogs
/// and restores here are made hundreds of times, and their fsyncs are not
/// what these tests are about.
fn tmp() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A repository in memory: its objects and what opening it needs (the key
/// is unwrapped once, so no Argon2 run per open).
#[derive(Clone)]
struct MemRepo {
    objects: Arc<InMemory>,
    config: Config,
    key: MasterKey,
    key_id: String,
}

/// A copy of every object of `src`.
fn clone_objects(src: &InMemory) -> InMemory {
    let dst = InMemory::new();
    let metas: Vec<object_store::ObjectMeta> =
        block_on(src.list(None).try_collect()).expect("list");
    for m in metas {
        let b = block_on(async { src.get(&m.location).await?.bytes().await }).expect("get");
        block_on(dst.put(&m.location, b.into())).expect("put");
    }
    dst
}

fn store_over(inner: Arc<dyn ObjectStore>) -> Store {
    // One upload at a time: the call order, and so each N, is the same on
    // every run.
    let opts = StoreOptions {
        upload_concurrency: 1,
        ..StoreOptions::default()
    };
    Store::from_object_store_with(inner, "memory", &opts).expect("store")
}

impl MemRepo {
    fn init() -> MemRepo {
        let objects = Arc::new(InMemory::new());
        let store = store_over(objects.clone());
        let opts = InitOptions {
            pack_size: 1 << 20,
            ..InitOptions::default()
        };
        Repository::init_in(&store, PASSWORD, &opts).expect("init");
        let config = Repository::read_config(&store).expect("config");
        let (key, key_id) = Repository::unlock(&store, PASSWORD).expect("unlock");
        MemRepo {
            objects,
            config,
            key,
            key_id,
        }
    }

    /// The same repository in a new, separate set of objects.
    fn fork(&self) -> MemRepo {
        MemRepo {
            objects: Arc::new(clone_objects(&self.objects)),
            ..self.clone()
        }
    }

    /// Opens it through `inner` (the objects, or a fault store over them).
    fn open_via(&self, inner: Arc<dyn ObjectStore>, cache: &Path) -> snap::Result<Repository> {
        Repository::open_with(
            store_over(inner),
            self.config.clone(),
            self.key.clone(),
            self.key_id.clone(),
            cache,
        )
    }

    fn open(&self, cache: &Path) -> Repository {
        self.open_via(self.objects.clone(), cache).expect("open")
    }

    fn backup(&self, cache: &Path, dir: &Path) -> SnapshotId {
        let session = Session::start(self.open(cache), Operation::Backup).expect("session");
        backup(&session, backup_of(dir)).expect("backup").id
    }

    /// Removes every lease: a crashed process's lease, once it expires.
    fn expire_leases(&self) {
        let store = store_over(self.objects.clone());
        for l in store
            .list(ObjectKind::Lock.list_prefix())
            .expect("list locks")
        {
            store
                .delete(&ObjectKind::Lock.key(&l.name))
                .expect("delete lease");
        }
    }

    fn data_bytes(&self) -> u64 {
        let store = store_over(self.objects.clone());
        store
            .list(ObjectKind::Pack.list_prefix())
            .expect("list")
            .iter()
            .map(|l| l.size)
            .sum()
    }
}

fn backup_of(dir: &Path) -> BackupOptions {
    BackupOptions {
        paths: vec![dir.to_path_buf()],
        host: Some("crash-test".into()),
        ..BackupOptions::default()
    }
}

/// A snapshot that must survive: its id, the folder it was taken of and
/// that folder's hash.
#[derive(Clone)]
struct Kept {
    id: SnapshotId,
    dir: PathBuf,
    hash: String,
}

impl Kept {
    fn of(id: SnapshotId, dir: &Path) -> Kept {
        Kept {
            id,
            dir: dir.to_path_buf(),
            hash: tree_hash(dir),
        }
    }
}

/// Checks `repo`'s objects alone (a fresh catalog): check with every pack
/// read finds nothing, and each of `kept` restores byte-identical.
fn verify(repo: &MemRepo, kept: &[Kept], what: &str) {
    let cache = tmp();
    let r = repo.open(cache.path());
    let report = check(&r, Some(Subset::All)).unwrap_or_else(|e| panic!("{what}: check: {e:#}"));
    assert!(
        report.problems.is_empty(),
        "{what}: check found {:?}",
        report.problems
    );
    for k in kept {
        let snap = r
            .read_snapshot(&k.id)
            .unwrap_or_else(|e| panic!("{what}: snapshot {}: {e:#}", k.id.short()));
        let target = tmp();
        let sum = snap::read::restore::restore(
            &r,
            &snap.tree,
            target.path(),
            &snap::read::restore::RestoreOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: restore {}: {e:#}", k.id.short()));
        assert!(sum.damaged.is_empty(), "{what}: {:?}", sum.damaged);
        let restored = target.path().join(k.dir.strip_prefix("/").unwrap());
        assert_eq!(
            tree_hash(&restored),
            k.hash,
            "{what}: snapshot {} restores different bytes",
            k.id.short()
        );
    }
}

/// Files for a backup: `n` files of 20–71 KB from `seed`, plus the first
/// `shared` files of `like` (so two backups share packs).
fn make_dir(root: &Path, name: &str, seed: u64, n: usize, like: Option<(&Path, usize)>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let len = 20_000 + (rng.bytes(2)[0] as usize) * 200;
        let p = if i % 3 == 0 {
            dir.join("sub").join(format!("f{seed}_{i}"))
        } else {
            dir.join(format!("f{seed}_{i}"))
        };
        std::fs::write(p, rng.bytes(len)).unwrap();
    }
    std::fs::write(dir.join("small.txt"), format!("small file of {name}\n")).unwrap();
    if let Some((other, shared)) = like {
        let mut names: Vec<_> = std::fs::read_dir(other)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names.into_iter().take(shared) {
            std::fs::copy(
                other.join(&n),
                dir.join(format!("copy_{}", n.to_string_lossy())),
            )
            .unwrap();
        }
    }
    dir
}

/// What one run of an operation returns: the snapshot it made, if any.
type Op<'a> = dyn Fn(&MemRepo, Arc<dyn ObjectStore>, &Path) -> snap::Result<Option<Kept>> + 'a;

/// Runs `op` on a fork of `base` once to count its store calls, then for
/// every N up to that count and each kind of fault: fails it at call N,
/// verifies the repository keeps `kept` (and the snapshot of a run that
/// reported success all the same), retries, verifies again (with the
/// retry's snapshot), and runs `after_retry` on the result. Returns the
/// number of store calls of a clean run.
fn crash_everywhere(
    base: &MemRepo,
    kept: &[Kept],
    op: &Op<'_>,
    after_retry: &dyn Fn(&MemRepo, &str),
) -> u64 {
    let clean = base.fork();
    let fs = Arc::new(FaultStore::new(clean.objects.clone()));
    let cache = tmp();
    op(&clean, fs.clone(), cache.path()).expect("clean run");
    let total = fs.calls(None);
    assert!(total > 5, "only {total} store calls");
    for n in 1..=total {
        // A crash with the call lost, a crash with its reply lost, and a
        // single failed call that the process lives through.
        for mode in ["crash", "crash (applied)", "transient"] {
            let what = format!("{mode} at call {n}/{total}");
            let repo = base.fork();
            let fs = Arc::new(FaultStore::new(repo.objects.clone()));
            let fault = match mode {
                "crash" => Fault::crash_at(n),
                "crash (applied)" => Fault::crash_at(n).applied(),
                _ => Fault::nth(n),
            };
            fs.arm(fault);
            let cache = tmp();
            let crashed = op(&repo, fs.clone(), cache.path());
            assert!(fs.tripped(), "{what}: the fault never fired");
            fs.disarm();
            // An operation that reported success despite the crash (its
            // last calls only clean up) must have stored what it reported.
            let mut kept = kept.to_vec();
            if let Ok(Some(k)) = crashed {
                kept.push(k);
            }
            verify(&repo, &kept, &what);
            // The same machine (same cache) runs the operation again once
            // the dead process's lease has expired.
            repo.expire_leases();
            let made = op(&repo, fs.clone(), cache.path())
                .unwrap_or_else(|e| panic!("{what}: retry failed: {e:#}"));
            let mut all = kept;
            all.extend(made);
            verify(&repo, &all, &format!("{what}, after the retry"));
            after_retry(&repo, &what);
        }
    }
    total
}

#[test]
fn backup_survives_a_crash_at_every_store_call() {
    let files = tmp();
    let a = make_dir(files.path(), "a", 1, 6, None);
    let b = make_dir(files.path(), "b", 2, 4, Some((&a, 3)));
    let base = MemRepo::init();
    let cache = tmp();
    let kept = vec![Kept::of(base.backup(cache.path(), &a), &a)];
    let op = |repo: &MemRepo, via: Arc<dyn ObjectStore>, cache: &Path| {
        let session = Session::start(repo.open_via(via, cache)?, Operation::Backup)?;
        let out = backup(&session, backup_of(&b))?;
        Ok(Some(Kept::of(out.id, &b)))
    };
    let n = crash_everywhere(&base, &kept, &op, &|_, _| {});
    eprintln!("backup: {n} store calls, each a crash point");
}

#[test]
fn prune_survives_a_crash_at_every_store_call() {
    let files = tmp();
    let a = make_dir(files.path(), "a", 3, 6, None);
    let b = make_dir(files.path(), "b", 4, 3, Some((&a, 2)));
    let base = MemRepo::init();
    let cache = tmp();
    let first = base.backup(cache.path(), &a);
    let kept = vec![Kept::of(base.backup(cache.path(), &b), &b)];
    {
        let session = Session::start(base.open(cache.path()), Operation::Forget).unwrap();
        session.remove_snapshot(&first).unwrap();
    }
    let before = base.data_bytes();
    // Both phases: mark (and repack), then delete the marked packs.
    let op = |repo: &MemRepo, via: Arc<dyn ObjectStore>, cache: &Path| {
        let session = Session::start(repo.open_via(via, cache)?, Operation::Prune)?;
        let opts = PruneOptions {
            max_unused: 0.1,
            grace: std::time::Duration::ZERO,
            dry_run: false,
        };
        prune(&session, &opts)?;
        prune(&session, &opts)?;
        Ok(None)
    };
    let after_retry = |repo: &MemRepo, what: &str| {
        let after = repo.data_bytes();
        assert!(
            after < before,
            "{what}: prune freed nothing ({after} of {before} bytes left)"
        );
        let snaps: Vec<SnapshotId> = store_over(repo.objects.clone())
            .list_ids(ObjectKind::Snapshot.list_prefix())
            .unwrap();
        assert_eq!(snaps, vec![kept[0].id], "{what}: snapshots");
    };
    let n = crash_everywhere(&base, &kept, &op, &after_retry);
    eprintln!("prune: {n} store calls, each a crash point");
}

#[test]
fn copy_survives_a_crash_at_every_store_call() {
    let files = tmp();
    let a = make_dir(files.path(), "a", 5, 5, None);
    let c = make_dir(files.path(), "c", 6, 4, Some((&a, 2)));
    // The source: its own repository and keys, never faulted.
    let src = MemRepo::init();
    let src_cache = tmp();
    let src_id = src.backup(src_cache.path(), &c);
    let src_repo = src.open(src_cache.path());
    let base = MemRepo::init();
    let cache = tmp();
    let kept = vec![Kept::of(base.backup(cache.path(), &a), &a)];
    let op = |repo: &MemRepo, via: Arc<dyn ObjectStore>, cache: &Path| {
        let session = Session::start(repo.open_via(via, cache)?, Operation::Copy)?;
        let rep = copy_snapshot(&src_repo, &session, &src_id)?;
        let id = rep.copied_to.or(rep.existing).expect("a copy");
        Ok(Some(Kept::of(id, &c)))
    };
    let n = crash_everywhere(&base, &kept, &op, &|_, _| {});
    eprintln!("copy: {n} store calls, each a crash point");
}
