//! The repository façade: init/open, keys, catalog sync, reading blobs and
//! trees, storing snapshots.

use crate::catalog::{BlobLocation, Catalog};
use crate::crypto::{self, MasterKey, AAD_DICT, AAD_INDEX, AAD_SNAPSHOT};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Events, NoEvents};
use crate::format::config::{Chunking, Config};
use crate::format::index::IndexFile;
use crate::format::keyfile::KeyFile;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{
    BlobId, DictId, IndexId, KeyId, ObjectId, PackId, RepoId, SnapshotId, TypedId,
};
use crate::store::{ObjectKind, Store, StoreOptions};
use crate::write::chunker::Chunker;
use crate::write::compress::{self, Dictionary};
use crate::write::pack::BlobSaver;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Options for [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunking profiles.
    pub chunking: Chunking,
    /// Target pack size, bytes.
    pub pack_size: u32,
    /// Packs filled at once.
    pub open_packs: u32,
    /// zstd level (with `compression` auto: the level when uploads are the
    /// bottleneck).
    pub compression_level: i32,
    /// The config's `compression` field (format-spec §4); default auto.
    pub compression: Option<crate::format::config::Compression>,
    /// How to reach the storage.
    pub store: StoreOptions,
    /// Take the id key and chunker seed from this master key (so blob ids
    /// match another repository's and copies between them dedup exactly);
    /// the encryption key is always fresh. `None`: all keys random.
    pub ids_from: Option<MasterKey>,
    /// S3 Object Lock for every object written (format-spec §4, §25.8);
    /// `init` checks the bucket has Object Lock enabled.
    pub object_lock: Option<crate::format::config::ObjectLock>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunking: Chunking {
                files: Config::FILES,
                streams: Config::STREAMS,
            },
            pack_size: 16 << 20,
            open_packs: 2,
            compression_level: 3,
            compression: Some(crate::format::config::Compression::Auto),
            store: StoreOptions::default(),
            ids_from: None,
            object_lock: None,
        }
    }
}

pub use crate::store::WarningSink;

/// Objects the last catalog sync skipped because they do not authenticate
/// or decode: (object id, the error), ordered by id.
#[derive(Default, Clone)]
struct Unreadable {
    indexes: std::collections::BTreeMap<IndexId, String>,
    snapshots: std::collections::BTreeMap<SnapshotId, String>,
}

/// At most this many key files are tried when unlocking (format-spec §5):
/// forged key files can cost at most this many Argon2 evaluations.
pub const MAX_KEY_FILES_TRIED: usize = 16;

/// Name of the file in the repository's cache directory that remembers the
/// key file that opened the repository last (tried first).
const LAST_KEY_FILE: &str = "last-key";

/// An open repository.
pub struct Repository {
    store: Arc<Store>,
    config: Config,
    key: MasterKey,
    key_id: String,
    catalog: Mutex<Catalog>,
    files_chunker: Chunker,
    streams_chunker: Chunker,
    /// Tree-cache generation of the running backup; 0: not in use.
    tree_gen: std::sync::atomic::AtomicI64,
    unreadable: Mutex<Unreadable>,
    /// Dictionary objects read so far (authenticated and accepted by zstd).
    dicts: Mutex<std::collections::HashMap<DictId, Arc<Dictionary>>>,
    /// Held while a dictionary is loaded, so concurrent readers of a fresh
    /// cache fetch it once.
    dict_load: Mutex<()>,
    /// The dictionary writers compress stream chunks with: `None` until
    /// looked up, then the lookup's answer.
    stream_dict: Mutex<Option<Option<Arc<Dictionary>>>>,
    /// Directory of sealed dictionary objects kept locally
    /// (`<cache dir>/<repository id>/dicts`), re-verified on every load.
    dict_cache: PathBuf,
    /// This repository's cache directory (`<cache dir>/<repository id>`).
    cache_dir: std::path::PathBuf,
    /// Where operations on this repository report ([`Repository::set_events`]).
    events: Arc<dyn Events>,
}

/// Trees larger than this (plaintext bytes) are not kept in the tree cache.
const MAX_CACHED_TREE: usize = 4 << 20;
/// Backups whose trees the tree cache keeps.
const TREE_CACHE_BACKUPS: i64 = 3;

/// Host name of this machine (`/proc/sys/kernel/hostname`, else `$HOSTNAME`,
/// else "unknown").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// User name running snap: `$USER`, else `$LOGNAME` (empty values ignored),
/// else the passwd name of the real uid, else "unknown".
pub fn username() -> String {
    let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    env("USER")
        .or_else(|| env("LOGNAME"))
        .or_else(|| {
            // cron and systemd units often set neither: ask the passwd
            // database for the real uid's name.
            nix::unistd::User::from_uid(nix::unistd::Uid::current())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Current time, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Default cache directory: `$XDG_CACHE_HOME/snap` or `~/.cache/snap`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("snap-cache"))
        .join("snap")
}

impl Repository {
    /// Creates a repository at `location` and a first key file for
    /// `password`. Fails with [`ErrorKind::Usage`] if one already exists,
    /// also when another `init` of the same location wins a race: exactly one
    /// master key ever exists in a repository (format-spec §2, §18).
    ///
    /// Order: the key file is stored first, then `config` (create-only),
    /// which carries `key_check`, a MAC under the master key. An init that
    /// loses the race for `config` deletes its key file again; a key file
    /// left by an init that crashed is never used, because its master key
    /// does not match `key_check`.
    pub fn init(location: &str, password: &[u8], opts: &InitOptions) -> Result<RepoId> {
        let store = Store::open_with(location, true, &opts.store)?;
        Self::init_in(&store, password, opts)
    }

    /// [`Repository::init`] in an already opened store (an in-memory or
    /// fault-injecting one in tests); `opts.store` is not used.
    ///
    /// Errors: as [`Repository::init`].
    pub fn init_in(store: &Store, password: &[u8], opts: &InitOptions) -> Result<RepoId> {
        let location = store.location();
        let exists = || Error::usage(format!("repository {location} already exists"));
        match store.get("config") {
            Ok(_) => return Err(exists()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(lock) = &opts.object_lock {
            lock.validate()
                .map_err(|e| Error::usage(format!("repository {location}: {e}")))?;
            let enabled = store.object_lock_enabled().map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("repository {location}: cannot use Object Lock: {e}"),
                )
            })?;
            if !enabled {
                return Err(Error::usage(format!(
                    "repository {location}: the bucket does not have Object Lock enabled; create one with `aws s3api create-bucket --object-lock-enabled-for-bucket` (docs/offsite.md)"
                )));
            }
            store.set_object_lock(Some(*lock));
        }
        let mut rid = [0u8; 32];
        crypto::random_bytes(&mut rid);
        let mut config = Config {
            version: crate::format::FORMAT_VERSION,
            id: hex::encode(rid),
            chunking: opts.chunking,
            pack_size: opts.pack_size,
            open_packs: opts.open_packs,
            compression_level: opts.compression_level,
            compression: opts.compression,
            object_lock: opts.object_lock,
            key_check: None,
        };
        config
            .validate()
            .map_err(|e| Error::usage(format!("repository {location}: {e}")))?;
        let master = match &opts.ids_from {
            Some(k) => k.with_fresh_encryption_key(),
            None => MasterKey::generate(),
        };
        config.key_check = Some(crypto::config_key_check(&master, &config.encode()));
        let kf = crypto::wrap_master_key(&master, password, now_rfc3339(), hostname(), username())?;
        let kbytes = kf.encode();
        let kkey = ObjectKind::Key.key(&KeyId::of_object(&kbytes).to_hex());
        store.put_new(&kkey, Bytes::from(kbytes))?;
        if !store.put_new("config", Bytes::from(config.encode()))? {
            // Lost the race: leave nothing behind. A key file whose delete
            // fails is harmless (it does not match key_check). On an error
            // the key file stays: `config` may have been stored after all.
            let _ = store.delete(&kkey);
            return Err(exists());
        }
        Ok(RepoId::from_hex(&config.id).unwrap_or_default())
    }

    /// Opens a repository: reads `config`, finds a key file that `password`
    /// opens ([`ErrorKind::WrongPassword`] if none), opens the catalog in
    /// `cache_dir` and syncs it.
    pub fn open(
        location: &str,
        password: &[u8],
        cache_dir: &std::path::Path,
    ) -> Result<Repository> {
        Self::open_opts(location, password, cache_dir, &StoreOptions::default())
    }

    /// [`Repository::open`] with explicit storage options.
    pub fn open_opts(
        location: &str,
        password: &[u8],
        cache_dir: &std::path::Path,
        store_opts: &StoreOptions,
    ) -> Result<Repository> {
        let repo = Self::open_unsynced(location, password, cache_dir, store_opts)?;
        repo.sync_catalog()?;
        Ok(repo)
    }

    /// [`Repository::open_opts`] without the catalog sync: for operations
    /// that take a lease first and then call [`Repository::sync_catalog`],
    /// so that the sync sees every prune mark written before the lease.
    pub fn open_unsynced(
        location: &str,
        password: &[u8],
        cache_dir: &std::path::Path,
        store_opts: &StoreOptions,
    ) -> Result<Repository> {
        let store = Store::open_with(location, false, store_opts)?;
        let config = Self::read_config(&store)?;
        let last = cache_dir.join(&config.id).join(LAST_KEY_FILE);
        let preferred = std::fs::read_to_string(&last).ok();
        let mut warnings = Vec::new();
        let (key, key_id) = Self::unlock_with(
            &store,
            &config,
            password,
            preferred.as_deref().map(str::trim),
            &mut warnings,
        )?;
        let repo = Self::build(store, config, key, key_id, cache_dir)?;
        if preferred.as_deref().map(str::trim) != Some(repo.key_id.as_str()) {
            // Only a hint: a failed write costs the next open more Argon2 runs.
            // Private like the rest of the cache (0600).
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&last)
                .and_then(|mut f| f.write_all(repo.key_id.as_bytes()));
        }
        for w in warnings {
            repo.warn(w);
        }
        Ok(repo)
    }

    /// Reads and parses the `config` object.
    pub fn read_config(store: &Store) -> Result<Config> {
        let raw = match store.get("config") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::NoRepository,
                    format!(
                        "{} is not a snap repository (no config); create it with `snap init`",
                        store.location()
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        let config = Config::decode(&raw).map_err(|e| {
            Error::corrupt(format!(
                "config of repository {} is invalid: {}",
                store.location(),
                e.detail
            ))
        })?;
        // Every object written from here on carries the retention
        // (format-spec §25.8); `key_check` authenticates the field.
        store.set_object_lock(config.object_lock);
        Ok(config)
    }

    /// Tries the key files with `password` (at most
    /// [`MAX_KEY_FILES_TRIED`]); see [`Repository::unlock_with`]. Warnings
    /// about skipped key files are dropped.
    pub fn unlock(store: &Store, password: &[u8]) -> Result<(MasterKey, String)> {
        let config = Self::read_config(store)?;
        Self::unlock_with(store, &config, password, None, &mut Vec::new())
    }

    /// Finds a key file that `password` opens and whose master key matches
    /// `config.key_check` (format-spec §5): `preferred` (a key file name)
    /// first, then the others by name, at most [`MAX_KEY_FILES_TRIED`] in
    /// all. Key files that do not decode, are too large or wrap another
    /// master key are skipped with a warning pushed to `warnings`.
    ///
    /// Errors: [`ErrorKind::WrongPassword`] if none opens,
    /// [`ErrorKind::Corrupt`] if there is no key file or the key files the
    /// password opens all wrap another master key than `config` names
    /// (`config` modified), store errors.
    pub fn unlock_with(
        store: &Store,
        config: &Config,
        password: &[u8],
        preferred: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<(MasterKey, String)> {
        let mut keys: Vec<String> = store
            .list(ObjectKind::Key.list_prefix())?
            .into_iter()
            .map(|l| l.name)
            .filter(|n| KeyId::from_hex(n).is_some())
            .collect();
        if keys.is_empty() {
            return Err(Error::corrupt(format!(
                "repository {} has no key files",
                store.location()
            )));
        }
        keys.sort();
        if let Some(p) = preferred {
            if let Some(i) = keys.iter().position(|k| k == p) {
                let k = keys.remove(i);
                keys.insert(0, k);
            }
        }
        if keys.len() > MAX_KEY_FILES_TRIED {
            warnings.push(format!(
                "{} key files in {}: only {MAX_KEY_FILES_TRIED} are tried; remove unknown ones with `snap key remove`",
                keys.len(),
                store.location()
            ));
            keys.truncate(MAX_KEY_FILES_TRIED);
        }
        let mut foreign = 0;
        for name in &keys {
            let raw = match store.get(&ObjectKind::Key.key(name)) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::NotFound || e.kind().is_damaged_data() => {
                    warnings.push(format!("skipping key file {name}: {e:#}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let kf = match KeyFile::decode(&raw) {
                Ok(kf) => kf,
                Err(e) => {
                    warnings.push(format!("skipping key file {name}: {e}"));
                    continue;
                }
            };
            let mk = match crypto::unwrap_master_key(&kf, password) {
                Ok(mk) => mk,
                Err(e) if e.kind().is_damaged_data() => {
                    warnings.push(format!("skipping key file {name}: {e:#}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(mk) = mk {
                if crypto::config_key_matches(&mk, config) {
                    return Ok((mk, name.clone()));
                }
                foreign += 1;
                warnings.push(format!(
                    "skipping key file {name}: it wraps another master key than `config` names (left by an interrupted or concurrent `snap init`?); remove it with `snap key remove`"
                ));
            }
        }
        if foreign > 0 {
            return Err(Error::corrupt(format!(
                "`config` of {} does not match the master key this password opens ({foreign} key file(s)): `config` was modified, or those key files were left by an interrupted `snap init`",
                store.location()
            )));
        }
        Err(Error::new(
            ErrorKind::WrongPassword,
            format!(
                "wrong password: no key file in {} opens with it",
                store.location()
            ),
        ))
    }

    /// Opens with an already unlocked key and syncs the catalog.
    pub fn open_with(
        store: Store,
        config: Config,
        key: MasterKey,
        key_id: String,
        cache_dir: &std::path::Path,
    ) -> Result<Repository> {
        let repo = Self::build(store, config, key, key_id, cache_dir)?;
        repo.sync_catalog()?;
        Ok(repo)
    }

    fn build(
        store: Store,
        config: Config,
        key: MasterKey,
        key_id: String,
        cache_dir: &std::path::Path,
    ) -> Result<Repository> {
        let cat_path = cache_dir.join(&config.id).join("catalog.sqlite");
        let dict_cache = cache_dir.join(&config.id).join("dicts");
        let (catalog, recovered) = Catalog::open_or_recover(&cat_path, &config.id)?;
        let files_chunker = Chunker::new(key.chunker_seed(), config.chunking.files);
        let streams_chunker = Chunker::new(key.chunker_seed(), config.chunking.streams);
        let repo = Repository {
            store: Arc::new(store),
            config,
            key,
            key_id,
            catalog: Mutex::new(catalog),
            files_chunker,
            streams_chunker,
            tree_gen: std::sync::atomic::AtomicI64::new(0),
            unreadable: Mutex::new(Unreadable::default()),
            dicts: Mutex::new(std::collections::HashMap::new()),
            dict_load: Mutex::new(()),
            stream_dict: Mutex::new(None),
            dict_cache,
            events: Arc::new(NoEvents),
            cache_dir: cat_path
                .parent()
                .map(|d| d.to_path_buf())
                .unwrap_or_default(),
        };
        if let Some(w) = recovered {
            repo.warn(w);
        }
        repo.check_chunking()?;
        Ok(repo)
    }

    /// Warns if `config`'s chunking differs from the one this catalog
    /// recorded when it was created (format-spec §4, §25.4: `config` is never
    /// rewritten, so a difference means it was tampered with).
    fn check_chunking(&self) -> Result<()> {
        let now = serde_json::to_string(&self.config.chunking).unwrap_or_default();
        let cat = self.catalog();
        match cat.meta("chunking")? {
            None => cat.set_meta("chunking", &now)?,
            Some(was) if was != now => {
                drop(cat);
                self.warn(format!(
                    "the chunking parameters in `config` changed since this cache was created (was {was}, now {now}); `config` is never rewritten, so it may have been tampered with"
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// This repository's cache directory (`<cache dir>/<repository id>`),
    /// holding the catalog and temporary index views.
    pub fn cache_dir(&self) -> std::path::PathBuf {
        self.cache_dir.clone()
    }

    /// Path of the catalog file (`catalog.sqlite` in [`Repository::cache_dir`]).
    pub fn catalog_path(&self) -> std::path::PathBuf {
        self.cache_dir.join("catalog.sqlite")
    }

    /// The storage facade.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The repository config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// Name of the key file that opened the repository.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Chunker for file content.
    pub fn files_chunker(&self) -> &Chunker {
        &self.files_chunker
    }

    /// Chunker for streams.
    pub fn streams_chunker(&self) -> &Chunker {
        &self.streams_chunker
    }

    /// Locks the catalog for a sequence of calls.
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a warning (once per distinct message) and hands it to the
    /// warning sink, if one is set ([`Store::warn`]: the repository's store
    /// holds them, so a lease refreshed on another thread reports there too).
    pub fn warn(&self, msg: impl Into<String>) {
        self.store.warn(msg);
    }

    /// Every warning raised so far, oldest first (also those already handed
    /// to a sink).
    pub fn warnings(&self) -> Vec<String> {
        self.store.warnings()
    }

    /// Hands every warning raised so far, and each later one as it is
    /// raised, to `sink`.
    pub fn set_warning_sink(&self, sink: WarningSink) {
        self.store.set_warning_sink(sink);
    }

    /// Makes every operation on this repository (and on a [`Session`] made
    /// from it) report to `events` from now on ([`crate::events`]).
    ///
    /// [`Session`]: crate::Session
    pub fn set_events(&mut self, events: Arc<dyn Events>) {
        self.events = events;
    }

    /// Where operations report ([`NoEvents`] unless
    /// [`Repository::set_events`] was called).
    pub fn events(&self) -> &dyn Events {
        &*self.events
    }

    /// A [`BlobSaver`] for this repository's store and key that fills the
    /// configured number of packs at once, `pack_size` bytes each
    /// (config `writer_packs`), and reports each stored pack as
    /// [`crate::Event::PackUploaded`].
    pub fn blob_saver(&self) -> BlobSaver {
        let (size, open) = self.config.writer_packs();
        self.blob_saver_with(size, open)
    }

    /// As [`Repository::blob_saver`] with `open_packs` packs filled at
    /// once (1 for a rewrite that keeps blobs in order: prune, repair).
    pub fn blob_saver_with(&self, pack_size: usize, open_packs: usize) -> BlobSaver {
        BlobSaver::new(self.store.clone(), self.key.clone(), pack_size, open_packs)
            .with_events(self.events.clone())
    }

    /// Index objects the last [`Repository::sync_catalog`] skipped because
    /// they do not authenticate or decode: (id, error), ordered by id.
    pub fn unreadable_indexes(&self) -> Vec<(IndexId, String)> {
        let u = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        u.indexes.iter().map(|(i, e)| (*i, e.clone())).collect()
    }

    /// Snapshot objects the last [`Repository::sync_catalog`] skipped
    /// because they do not authenticate or decode: (id, error), ordered by id.
    pub fn unreadable_snapshots(&self) -> Vec<(SnapshotId, String)> {
        let u = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
        u.snapshots.iter().map(|(i, e)| (*i, e.clone())).collect()
    }

    /// [`ErrorKind::Corrupt`] naming the first unreadable index object if
    /// the last sync skipped any: the catalog then misses blobs that are
    /// stored, so deleting data or dropping "lost" files would be unsafe.
    /// `what` completes "refusing …" ("to prune").
    pub fn require_complete_index(&self, what: &str) -> Result<()> {
        match self.unreadable_indexes().first() {
            None => Ok(()),
            Some((id, e)) => Err(Error::corrupt(format!(
                "refusing {what}: index object {} is unreadable ({e}), so the blobs it names would look unused; run `snap repair index` first",
                id.to_hex()
            ))),
        }
    }

    /// Brings the catalog up to date with `index/` and `snapshots/`: loads
    /// only objects it has not seen; if an index it holds has vanished
    /// (prune, repair), rebuilds from scratch. Returns the number of index
    /// objects downloaded.
    pub fn sync_catalog(&self) -> Result<usize> {
        // Snapshots are listed before the index (format-spec §18): a writer
        // stores index objects before the snapshot that needs them, so every
        // snapshot seen here has its index objects in the listing below.
        let listed_snapshots: std::collections::HashSet<SnapshotId> =
            list_sealed::<SnapshotId>(&self.store)?
                .into_iter()
                .collect();
        let listed: Vec<IndexId> = list_sealed(&self.store)?;
        // Marks first: blobs loaded below prefer copies in unmarked packs.
        let marks = crate::lease::list_marks(&self.store, &self.key)?;
        let marked: std::collections::HashSet<PackId> =
            marks.iter().flat_map(|(_, m)| m.pack_ids()).collect();
        let mut cat = self.catalog();
        cat.set_marked(&marked)?;
        let known = cat.index_ids()?;
        let listed_set: std::collections::HashSet<IndexId> = listed.iter().copied().collect();
        let mut bad = Unreadable::default();
        // Index objects are loaded one at a time as read (never all in
        // memory). Ids named in a `supersedes` list read so far; an index
        // named there is recorded with no packs.
        let mut superseded: std::collections::HashSet<IndexId> = std::collections::HashSet::new();
        // Index objects loaded with their packs in this sync.
        let mut with_packs: std::collections::HashSet<IndexId> = std::collections::HashSet::new();
        // Loads index `id`; returns whether a supersedes list names an index
        // already loaded with its packs (then the catalog must be rebuilt).
        let load = |cat: &mut Catalog,
                    id: &IndexId,
                    bad: &mut Unreadable,
                    superseded: &mut std::collections::HashSet<IndexId>,
                    with_packs: &mut std::collections::HashSet<IndexId>|
         -> Result<bool> {
            let idx = match self.read_index(id) {
                Ok(idx) => idx,
                // Deleted by a concurrent prune after listing: superseded.
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) if e.kind().is_damaged_data() => {
                    bad.indexes.insert(*id, reason(ObjectKind::Index, id, &e));
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let mut stale = false;
            for s in &idx.supersedes {
                superseded.insert(*s);
                stale |= with_packs.contains(s);
            }
            if superseded.contains(id) {
                // Remembered as loaded with no packs, so it is not read again.
                cat.add_index(id, &IndexFile::default())?;
            } else {
                cat.add_index(id, &idx)?;
                with_packs.insert(*id);
            }
            Ok(stale)
        };
        let mut loaded = 0;
        let mut rebuild = known.iter().any(|k| !listed_set.contains(k));
        if !rebuild {
            for id in listed.iter().filter(|id| !known.contains(id)) {
                loaded += 1;
                rebuild |= load(&mut cat, id, &mut bad, &mut superseded, &mut with_packs)?;
            }
            rebuild |= superseded.iter().any(|s| known.contains(s));
        }
        while rebuild {
            // Rebuild: every listed index not superseded by another listed
            // one. Repeated (rarely) while an index read later in the pass
            // supersedes one loaded earlier in it.
            cat.reset()?;
            cat.set_marked(&marked)?;
            bad = Unreadable::default();
            with_packs.clear();
            rebuild = false;
            for id in &listed {
                loaded += 1;
                rebuild |= load(&mut cat, id, &mut bad, &mut superseded, &mut with_packs)?;
            }
        }
        // Snapshots.
        let listed = listed_snapshots;
        let known = cat.snapshot_ids()?;
        for id in known.difference(&listed) {
            cat.remove_snapshot(id)?;
        }
        let mut unread: Vec<&SnapshotId> = listed.difference(&known).collect();
        unread.sort();
        for id in unread {
            match self.read_snapshot(id) {
                Ok(s) => cat.add_snapshot(id, &s)?,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind().is_damaged_data() => {
                    bad.snapshots
                        .insert(*id, reason(ObjectKind::Snapshot, id, &e));
                }
                Err(e) => return Err(e),
            }
        }
        drop(cat);
        for (id, e) in &bad.indexes {
            self.warn(format!(
                "skipping index object {}: {e}; run `snap check`, then `snap repair index`",
                id.short()
            ));
        }
        for (id, e) in &bad.snapshots {
            self.warn(format!(
                "skipping snapshot {}: {e}; run `snap check`, then `snap repair snapshots`",
                id.short()
            ));
        }
        *self.unreadable.lock().unwrap_or_else(|p| p.into_inner()) = bad;
        Ok(loaded)
    }

    /// Reads, verifies (name = BLAKE3 of bytes) and opens an index object.
    pub fn read_index(&self, id: &IndexId) -> Result<IndexFile> {
        let plain = read_sealed(&self.store, &self.key, id)?;
        IndexFile::decode(&plain)
            .map_err(|e| Error::with_source(ErrorKind::Corrupt, format!("index {}", id.short()), e))
    }

    /// Reads, verifies and opens a snapshot object.
    pub fn read_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let plain = read_sealed(&self.store, &self.key, id)?;
        Snapshot::decode(&plain).map_err(|e| {
            Error::with_source(ErrorKind::Corrupt, format!("snapshot {}", id.short()), e)
        })
    }

    /// Dictionary object `id` (format-spec §12.1), authenticated and accepted
    /// by zstd: from memory, else from the local cache directory, else from
    /// the store (then kept in the cache). A cached copy is used only if its
    /// bytes hash to `id` and open with the repository key; the object's
    /// size is bounded before it is downloaded (1 MiB plus the envelope).
    ///
    /// Errors: [`ErrorKind::NotFound`] naming the object if the repository
    /// has no such dictionary; [`ErrorKind::Corrupt`] if it is too large, does
    /// not match its name or is not a zstd dictionary;
    /// [`ErrorKind::Unauthenticated`] if it does not open; store errors.
    pub fn dictionary(&self, id: &DictId) -> Result<Arc<Dictionary>> {
        if let Some(d) = self.dicts.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(d.clone());
        }
        let _loading = self.dict_load.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = self.dicts.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(d.clone());
        }
        let key = ObjectKind::Dict.key(&id.to_hex());
        let max = crate::store::max_object_size(&key) as usize;
        let cache_file = self.dict_cache.join(id.to_hex());
        // The size is checked before the read: a cache file is not trusted.
        let cached = std::fs::metadata(&cache_file)
            .ok()
            .filter(|m| m.len() <= max as u64)
            .and_then(|_| std::fs::read(&cache_file).ok())
            .filter(|b| b.len() <= max && DictId::of_object(b) == *id);
        let raw = match cached {
            Some(b) => b,
            None => {
                let b = fetch_sealed(&self.store, id).map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "dictionary {} ({key}) is missing: the blobs compressed with it cannot be read; run `snap check --read-data`",
                                id.short()
                            ),
                        )
                    } else {
                        e.context(format!("dictionary {}", id.short()))
                    }
                })?;
                let b = b.to_vec();
                self.cache_dict_object(id, &b);
                b
            }
        };
        let plain = open_sealed(&self.key, id, &raw)?;
        let d = Arc::new(Dictionary::new(*id, &plain)?);
        self.dicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, d.clone());
        Ok(d)
    }

    /// Drops the dictionaries kept in memory and in the cache directory, so
    /// that the next [`Repository::dictionary`] of each reads the store
    /// (`snap check` verifies the repository, not the cache).
    pub fn forget_cached_dictionaries(&self) {
        self.dicts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.stream_dict.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = std::fs::remove_dir_all(&self.dict_cache);
    }

    /// Keeps a sealed dictionary object in the cache directory (best
    /// effort: the cache is only a shortcut).
    fn cache_dict_object(&self, id: &DictId, sealed: &[u8]) {
        let tmp = self.dict_cache.join(format!("{}.tmp", id.to_hex()));
        let _ = std::fs::create_dir_all(&self.dict_cache)
            .and_then(|_| std::fs::write(&tmp, sealed))
            .and_then(|_| std::fs::rename(&tmp, self.dict_cache.join(id.to_hex())));
    }

    /// The dictionary writers compress stream chunks with (format-spec §12.1):
    /// among the repository's readable dictionary objects the one of the
    /// highest generation ([`Dictionary::generation`]; ties: lowest id),
    /// looked up once per process (one listing of `dicts/`, one read of each
    /// dictionary not in the local cache);
    /// `None` if there is none. An unreadable dictionary is reported with
    /// [`Repository::warn`] and passed over.
    pub fn stream_dictionary(&self) -> Result<Option<Arc<Dictionary>>> {
        let mut g = self.stream_dict.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = &*g {
            return Ok(d.clone());
        }
        let mut found: Option<Arc<Dictionary>> = None;
        for id in list_sealed::<DictId>(&self.store)? {
            match self.dictionary(&id) {
                Ok(d) => {
                    if found
                        .as_ref()
                        .is_none_or(|f| d.generation() > f.generation())
                    {
                        found = Some(d);
                    }
                }
                Err(e) => self.warn(format!(
                    "dictionary {} is unusable ({e:#}); stream chunks are compressed without it",
                    id.short()
                )),
            }
        }
        *g = Some(found.clone());
        Ok(found)
    }

    /// Stores `bytes` (a zstd dictionary, e.g. from [`Dictionary::train`]) as
    /// a new dictionary object (write-once, `dicts/<id>`) and returns it. It
    /// becomes the stream dictionary of this process if the repository had
    /// none or one of a lower generation.
    ///
    /// Errors: [`ErrorKind::Corrupt`] if zstd does not accept `bytes` or they
    /// exceed 1 MiB; store errors.
    pub fn store_dictionary(&self, bytes: &[u8]) -> Result<Arc<Dictionary>> {
        Dictionary::new(DictId([0; 32]), bytes)?;
        let (id, sealed) = write_sealed::<DictId>(&self.store, &self.key, bytes)?;
        self.cache_dict_object(&id, &sealed);
        let d = Arc::new(Dictionary::new(id, bytes)?);
        self.dicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, d.clone());
        let mut g = self.stream_dict.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cur) = &*g {
            if cur.as_ref().is_none_or(|c| d.generation() > c.generation()) {
                *g = Some(Some(d.clone()));
            }
        }
        Ok(d)
    }

    /// The id of a dictionary object of this repository whose zstd
    /// dictionary is `bytes`: an existing one if any (every listed
    /// dictionary is compared), else a new one stored with
    /// [`Repository::store_dictionary`]. Used by copy, which moves
    /// dictionary payloads between repositories unchanged but for the id.
    pub fn import_dictionary(&self, bytes: &[u8]) -> Result<DictId> {
        for id in list_sealed::<DictId>(&self.store)? {
            if let Ok(d) = self.dictionary(&id) {
                if d.bytes() == bytes {
                    return Ok(id);
                }
            }
        }
        Ok(self.store_dictionary(bytes)?.id())
    }

    /// Stores a snapshot object (after its trees and blobs are indexed) and
    /// records it in the catalog. Outside the crate only through
    /// [`crate::session::Session::save_snapshot`], i.e. under a lease.
    pub(crate) fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let (id, _) = write_sealed::<SnapshotId>(&self.store, &self.key, &snap.encode())?;
        self.catalog().add_snapshot(&id, snap)?;
        Ok(id)
    }

    /// Where a blob is stored; [`ErrorKind::NotFound`] if no index names it.
    pub fn locate(&self, id: &BlobId) -> Result<BlobLocation> {
        self.catalog().lookup(id)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("blob {} is not in any index; run `snap check`", id.short()),
            )
        })
    }

    /// Reads one blob's plaintext, verified against its id.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let sealed = self.read_sealed_blob(&loc)?;
        self.decode_blob(id, &loc, &sealed)
    }

    fn read_sealed_blob(&self, loc: &BlobLocation) -> Result<Bytes> {
        self.store.get_range(
            &ObjectKind::Pack.key(&loc.pack.to_hex()),
            loc.offset as u64..loc.offset as u64 + loc.length as u64,
        )
    }

    /// Opens, decompresses and verifies a sealed blob read from `loc`. A
    /// delta blob's base (format-spec §13) is read and decoded first; a base
    /// must itself be a plain data blob.
    ///
    /// Errors: [`ErrorKind::Corrupt`] (authentication, decompression, id
    /// mismatch, a delta whose base is a delta or disagrees with the index),
    /// [`ErrorKind::NotFound`] (a base no index names), store errors.
    pub fn decode_blob(&self, id: &BlobId, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        self.decode_blob_depth(id, loc, sealed, true, None)
    }

    /// [`Repository::decode_blob`] with the base of a delta blob already
    /// read: `base` = (its location, its sealed bytes); read from the store
    /// when `None`.
    pub fn decode_blob_with_base(
        &self,
        id: &BlobId,
        loc: &BlobLocation,
        sealed: &[u8],
        base: Option<(&BlobLocation, &[u8])>,
    ) -> Result<Vec<u8>> {
        self.decode_blob_depth(id, loc, sealed, true, base)
    }

    fn decode_blob_depth(
        &self,
        id: &BlobId,
        loc: &BlobLocation,
        sealed: &[u8],
        allow_delta: bool,
        prefetched: Option<(&BlobLocation, &[u8])>,
    ) -> Result<Vec<u8>> {
        let enc = self
            .key
            .open_blob(loc.kind, id, sealed)
            .map_err(|e| e.context(format!("pack {}", loc.pack.short())))?;
        let limit = match loc.kind {
            crate::format::BlobKind::Data => crate::format::MAX_BLOB_SIZE,
            crate::format::BlobKind::Tree => crate::format::MAX_TREE_SIZE,
        };
        let where_ = || format!("blob {} in pack {}", id.short(), loc.pack.short());
        let plain = if enc.first() == Some(&compress::ZSTD_DELTA) {
            let base = compress::delta_base(&enc)
                .ok_or_else(|| Error::corrupt(format!("{}: truncated delta payload", where_())))?;
            if !allow_delta || loc.kind != crate::format::BlobKind::Data || loc.base != Some(base) {
                return Err(Error::corrupt(format!(
                    "{}: delta base {} is not allowed here or disagrees with the index",
                    where_(),
                    base.short()
                )));
            }
            let fetched;
            let (bloc, bsealed): (BlobLocation, &[u8]) = match prefetched {
                Some((l, b)) => (*l, b),
                None => {
                    let l = self.locate(&base)?;
                    fetched = self.read_sealed_blob(&l)?;
                    (l, &fetched[..])
                }
            };
            let base_plain = self
                .decode_blob_depth(&base, &bloc, bsealed, false, None)
                .map_err(|e| e.context(format!("base of {}", where_())))?;
            compress::decode_delta(&enc, &base_plain, loc.raw_len as usize, limit)
                .map_err(|e| e.context(where_()))?
        } else if enc.first() == Some(&compress::ZSTD_DICT) {
            let did = compress::dict_of(&enc).ok_or_else(|| {
                Error::corrupt(format!("{}: truncated dictionary payload", where_()))
            })?;
            let dict = self.dictionary(&did).map_err(|e| e.context(where_()))?;
            compress::decode_dict(&enc, &dict, loc.raw_len as usize, limit)
                .map_err(|e| e.context(where_()))?
        } else {
            compress::decode_limited(&enc, loc.raw_len as usize, limit)
                .map_err(|e| e.context(where_()))?
        };
        if self.key.blob_id(&plain) != *id {
            return Err(Error::corrupt(format!(
                "blob {} in pack {} does not match its id",
                id.short(),
                loc.pack.short()
            )));
        }
        Ok(plain)
    }

    /// Starts using the catalog's tree cache for this process's backup:
    /// [`Repository::read_tree_cached`] and [`Repository::cache_tree`] keep
    /// tree plaintexts so the next backup reads its parent's trees locally
    /// (no requests to S3). Trees unused by the last 3 backups are dropped.
    pub fn begin_tree_cache(&self) -> Result<()> {
        let cat = self.catalog();
        let g = cat.next_tree_generation()?;
        cat.evict_trees(g - TREE_CACHE_BACKUPS)?;
        self.tree_gen.store(g, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Keeps a tree's plaintext in the tree cache (if in use).
    pub fn cache_tree(&self, id: &BlobId, plain: &[u8]) -> Result<()> {
        let g = self.tree_gen.load(std::sync::atomic::Ordering::Relaxed);
        if g > 0 && plain.len() <= MAX_CACHED_TREE {
            self.catalog().cache_tree(id, plain, g)?;
        }
        Ok(())
    }

    /// [`Repository::read_tree`] through the tree cache: a cached plaintext
    /// is used only if it matches `id` (keyed BLAKE3), else the tree is read
    /// from the repository and cached.
    pub fn read_tree_cached(&self, id: &BlobId) -> Result<Tree> {
        let g = self.tree_gen.load(std::sync::atomic::Ordering::Relaxed);
        if g == 0 {
            return self.read_tree(id);
        }
        let cached = self.catalog().cached_tree(id, g)?;
        let plain = match cached {
            Some(p) if self.key.blob_id(&p) == *id => p,
            _ => {
                let p = self.read_blob(id)?;
                self.cache_tree(id, &p)?;
                p
            }
        };
        decode_tree(id, &plain)
    }

    /// Reads and decodes a tree blob.
    pub fn read_tree(&self, id: &BlobId) -> Result<Tree> {
        decode_tree(id, &self.read_blob(id)?)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.catalog().snapshots()
    }

    /// Resolves "latest", "latest~N", a full id or a unique hex prefix.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let snaps = self.snapshots()?;
        if let Some(rest) = spec.strip_prefix("latest") {
            let back: usize = if rest.is_empty() {
                0
            } else {
                rest.strip_prefix('~')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        Error::usage(format!("invalid snapshot {spec:?}: use latest or latest~N"))
                    })?
            };
            let n = snaps.len();
            return snaps.into_iter().rev().nth(back).ok_or_else(|| {
                let msg = match n {
                    0 => "no snapshot in the repository".to_string(),
                    1 => {
                        format!("{spec}: the repository holds 1 snapshot (latest~0 is the newest)")
                    }
                    n => format!(
                        "{spec}: the repository holds {n} snapshots (latest~0 to latest~{})",
                        n - 1
                    ),
                };
                Error::new(ErrorKind::NotFound, msg)
            });
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<_> = snaps
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        let n = matches.len();
        let mut it = matches.into_iter();
        match (it.next(), n) {
            (Some(m), 1) => Ok(m),
            (None, _) => Err(Error::new(
                ErrorKind::NotFound,
                format!("no snapshot matches {spec:?}"),
            )),
            _ => Err(Error::usage(format!(
                "{n} snapshots match {spec:?}; give more digits"
            ))),
        }
    }
}

/// A kind of sealed, content-named object (format-spec §3, §11): its id
/// type fixes its key prefix and its associated-data label, so an object is
/// always read and written with the right ones. The size cap of each kind
/// lives in one place, [`crate::store::max_object_size`], and is applied by
/// [`Store::get`] before the body is downloaded.
pub trait SealedObject: ObjectId {
    /// Where objects of this kind are stored.
    const KIND: ObjectKind;
    /// The envelope's associated data (format-spec §11).
    const AAD: &'static [u8];
}

impl SealedObject for IndexId {
    const KIND: ObjectKind = ObjectKind::Index;
    const AAD: &'static [u8] = AAD_INDEX;
}

impl SealedObject for SnapshotId {
    const KIND: ObjectKind = ObjectKind::Snapshot;
    const AAD: &'static [u8] = AAD_SNAPSHOT;
}

impl SealedObject for DictId {
    const KIND: ObjectKind = ObjectKind::Dict;
    const AAD: &'static [u8] = AAD_DICT;
}

/// The ids of the stored objects of kind `T`, sorted; names that are not
/// ids are left out.
///
/// Errors: store errors.
pub fn list_sealed<T: SealedObject>(store: &Store) -> Result<Vec<T>> {
    store.list_ids(T::KIND.list_prefix())
}

/// Downloads sealed object `id` and checks that its bytes hash to its name
/// (format-spec §3); the bytes are not opened (see [`open_sealed`]).
///
/// Errors: [`ErrorKind::NotFound`] if it does not exist;
/// [`ErrorKind::Corrupt`] if it exceeds its kind's size cap (before the
/// download) or does not match its name; store errors.
pub fn fetch_sealed<T: SealedObject>(store: &Store, id: &T) -> Result<Bytes> {
    let key = T::KIND.key(&id.to_hex());
    let raw = store.get(&key)?;
    if T::of_object(&raw) != *id {
        return Err(Error::corrupt(format!(
            "{key} does not match its name (corrupt or replaced)"
        )));
    }
    Ok(raw)
}

/// Opens the envelope of sealed object `id` (bytes `raw`, already checked
/// against the name by [`fetch_sealed`]); returns the plaintext.
///
/// Errors: [`ErrorKind::Unauthenticated`] naming the object key if the
/// envelope does not open under `key` with the kind's label.
pub fn open_sealed<T: SealedObject>(key: &MasterKey, id: &T, raw: &[u8]) -> Result<Vec<u8>> {
    key.open(T::AAD, raw, &T::KIND.key(&id.to_hex()))
}

/// Reads sealed object `id`: [`fetch_sealed`], then [`open_sealed`]; the
/// one way whole index, snapshot and dictionary objects are read.
///
/// Errors: as those two.
pub fn read_sealed<T: SealedObject>(store: &Store, key: &MasterKey, id: &T) -> Result<Vec<u8>> {
    let raw = fetch_sealed(store, id)?;
    open_sealed(key, id, &raw)
}

/// Seals `plain` as an object of kind `T`, names it by the BLAKE3 of the
/// sealed bytes and stores it write-once; returns its id and the stored
/// bytes. The one way index, snapshot and dictionary objects are written.
///
/// Errors: store errors (an object of that name already stored is not an
/// error: it holds the same bytes).
pub fn write_sealed<T: SealedObject>(
    store: &Store,
    key: &MasterKey,
    plain: &[u8],
) -> Result<(T, Bytes)> {
    let sealed = Bytes::from(key.seal(T::AAD, plain));
    let id = T::of_object(&sealed);
    store.put_new(&T::KIND.key(&id.to_hex()), sealed.clone())?;
    Ok((id, sealed))
}

/// Why an object could not be read, without the object key the message of
/// [`Repository::read_index`] / [`Repository::read_snapshot`] starts with
/// (callers name the object themselves).
pub fn reason<T: TypedId>(kind: ObjectKind, id: &T, e: &Error) -> String {
    let msg = format!("{e:#}");
    let key = kind.key(&id.to_hex());
    match msg.strip_prefix(&key) {
        Some(rest) => rest.trim_start_matches([':', ' ']).to_string(),
        None => msg,
    }
}

/// Decodes the plaintext of tree blob `id`; [`ErrorKind::Corrupt`] naming the
/// tree if it is not a valid tree encoding.
pub fn decode_tree(id: &BlobId, plain: &[u8]) -> Result<Tree> {
    Tree::decode(plain)
        .map_err(|e| Error::with_source(ErrorKind::Corrupt, format!("tree {}", id.short()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_store() -> Store {
        Store::from_object_store(Arc::new(object_store::memory::InMemory::new()), "memory").unwrap()
    }

    /// The id type picks the prefix and the envelope label: an object is
    /// read back only as the kind it was written as, and only if its bytes
    /// match its name.
    #[test]
    fn sealed_objects_round_trip_only_as_their_own_kind() {
        let store = memory_store();
        let key = MasterKey::generate();
        let (id, sealed) = write_sealed::<IndexId>(&store, &key, b"an index").unwrap();
        assert_eq!(id, IndexId::of_object(&sealed));
        assert!(store.get(&format!("index/{}", id.to_hex())).is_ok());
        assert_eq!(read_sealed(&store, &key, &id).unwrap(), b"an index");

        // The same bytes under snapshots/ do not open as a snapshot: the
        // label differs (format-spec §11).
        let as_snap = SnapshotId(id.0);
        store
            .put_new(&ObjectKind::Snapshot.key(&as_snap.to_hex()), sealed.clone())
            .unwrap();
        let e = read_sealed(&store, &key, &as_snap).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        // Each kind is listed under its own prefix.
        assert_eq!(list_sealed::<IndexId>(&store).unwrap(), vec![id]);
        assert_eq!(list_sealed::<SnapshotId>(&store).unwrap(), vec![as_snap]);
        assert!(list_sealed::<DictId>(&store).unwrap().is_empty());

        // Bytes that do not hash to the name are refused before opening.
        let (other, _) = write_sealed::<IndexId>(&store, &key, b"another").unwrap();
        let wrong = IndexId(other.0.map(|b| b ^ 1));
        store
            .put_new(&ObjectKind::Index.key(&wrong.to_hex()), sealed)
            .unwrap();
        let e = read_sealed(&store, &key, &wrong).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("does not match its name"), "{e}");
        let e = read_sealed(&store, &key, &IndexId([0; 32])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
}
