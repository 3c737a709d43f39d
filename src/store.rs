//! Where repository bytes live: a small synchronous facade over
//! `object_store` (LocalFileSystem for paths, AmazonS3 for `s3://` URLs,
//! any other `ObjectStore` — `InMemory`, [`fault::FaultStore`] — through
//! [`Store::from_object_store`]).
//!
//! The API is synchronous and free of Tokio types: put-if-absent
//! ([`Store::put_new`]), put-overwrite, get, get-range, a batch of ranges
//! ([`Store::get_ranges`], concurrent inside the store and bounded), list,
//! delete and size. Every method takes `&self` and may be called from many
//! threads at once (the store runs each call on its own I/O runtime); it
//! must not be called from inside a Tokio runtime. A local repository is
//! read with `pread` and its leftover staging files removed here, so no
//! caller needs to know whether the repository is a folder.
//!
//! Objects are written whole and never rewritten: content-named objects use
//! `PutMode::Create` (on S3 a conditional `PUT` with `If-None-Match: *`), and
//! "already exists" means "already stored". Objects larger than
//! [`StoreOptions::multipart_threshold`] go to S3 as multipart uploads (these
//! cannot be conditional; only content-named packs are that large, so an
//! overwrite would store the same bytes).
//!
//! Every request is counted per object kind ([`StoreStats`]); when the
//! program installed a [`set_stats_report`] hook (the CLI does under
//! `SNAP_STATS=1`) the counters are handed to it when the store is dropped.
//! Optional [`RateLimiter`]s cap upload and download rates.
//!
//! The store never prints: warnings about the repository it holds (from the
//! repository façade, lease refreshes, …) go to [`Store::warn`] and from
//! there to the sink the program installed ([`Store::set_warning_sink`]).

pub mod fault;
mod limit;
#[cfg(feature = "s3")]
mod s3lock;
mod stats;

pub use limit::RateLimiter;
pub use stats::{KindCounters, StoreStats};

use crate::error::{Error, ErrorKind, Result};
use crate::format::config::{LockMode, ObjectLock};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use std::sync::Arc;
use std::time::Duration;

/// The object kinds of a repository and their key prefixes (format-spec §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `data/<2 hex>/<pack id>`
    Pack,
    /// `index/<id>`
    Index,
    /// `snapshots/<id>`
    Snapshot,
    /// `keys/<id>`
    Key,
    /// `locks/<id>`
    Lock,
    /// `marks/<id>`: packs pending deletion (two-phase prune).
    Mark,
    /// `dicts/<id>`: a zstd dictionary for stream chunks (format-spec §12.1).
    Dict,
}

impl ObjectKind {
    /// Key prefix (without trailing slash).
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Pack => "data",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Key => "keys",
            ObjectKind::Lock => "locks",
            ObjectKind::Mark => "marks",
            ObjectKind::Dict => "dicts",
        }
    }

    /// The prefix to list all objects of this kind with, with its trailing
    /// `/` (`"index/"`).
    pub fn list_prefix(self) -> &'static str {
        match self {
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Key => "keys/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Mark => "marks/",
            ObjectKind::Dict => "dicts/",
        }
    }

    /// Full key of the object with hex name `name`.
    pub fn key(self, name: &str) -> String {
        match self {
            ObjectKind::Pack => format!("data/{}/{}", name.get(..2).unwrap_or("00"), name),
            k => format!("{}/{}", k.prefix(), name),
        }
    }
}

/// Largest object [`Store::get`] reads whole under `key`, bytes, by kind
/// (format-spec §17): `config` and key files 64 KiB, leases 1 MiB,
/// dictionaries 1 MiB plus the envelope (format-spec §12.1), index,
/// snapshot and mark objects (and unknown keys) 256 MiB
/// ([`crate::format::MAX_METADATA_SIZE`]), packs 2³² − 1 bytes.
pub fn max_object_size(key: &str) -> u64 {
    let meta = crate::format::MAX_METADATA_SIZE as u64;
    match key.split('/').next().unwrap_or("") {
        "config" => 64 << 10,
        "keys" => 64 << 10,
        "locks" => 1 << 20,
        "dicts" => (crate::format::dict::MAX_DICT_SIZE + crate::crypto::ENVELOPE_OVERHEAD) as u64,
        "data" => crate::format::MAX_PACK_SIZE,
        _ => meta,
    }
}

/// A listed object: its name (last path segment) and size in bytes.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Last path segment (an id in hex for content-named objects).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// One version of an object as `ListObjectVersions` lists it.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    /// Key relative to the repository prefix (`data/ab/ab12…`).
    pub key: String,
    /// The version id (`null` for an object written while versioning was
    /// off).
    pub version_id: String,
    /// Whether this is the current version of the key.
    pub is_latest: bool,
    /// A delete marker rather than stored bytes.
    pub delete_marker: bool,
    /// When the version was written.
    pub last_modified: Option<DateTime<Utc>>,
    /// Size, bytes (0 for a delete marker).
    pub size: u64,
}

/// An object version's Object Lock retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Mode.
    pub mode: LockMode,
    /// Retain-until date.
    pub until: DateTime<Utc>,
}

/// How a [`Store`] talks to its backend.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// S3 endpoint URL for S3-compatible servers; `None`: `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` from the environment, else AWS.
    pub s3_endpoint: Option<String>,
    /// Allow a plain `http://` endpoint that is not a loopback address.
    pub s3_allow_http: bool,
    /// Uploads kept in flight at once by pack writers (1..=64); 0 picks
    /// by kind: 2 for a local directory (a disk gains nothing from more, and
    /// each holds a pack in memory), 6 for S3 (hides WAN latency).
    pub upload_concurrency: usize,
    /// Upload rate cap, bytes per second.
    pub limit_upload: Option<u64>,
    /// Download rate cap, bytes per second.
    pub limit_download: Option<u64>,
    /// Objects larger than this many bytes go to S3 as multipart uploads.
    pub multipart_threshold: usize,
    /// Part size of multipart uploads, bytes (S3 needs at least 5 MiB).
    pub multipart_part_size: usize,
    /// How long object_store keeps retrying one failed request (exponential
    /// backoff from 100 ms, at most 10 retries).
    pub retry_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            s3_endpoint: None,
            s3_allow_http: false,
            upload_concurrency: 0,
            limit_upload: None,
            limit_download: None,
            multipart_threshold: 32 << 20,
            multipart_part_size: 8 << 20,
            retry_timeout: Duration::from_secs(120),
        }
    }
}

/// True for `http(s)://` URLs whose host is `localhost` or a loopback IP.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// State shared by a [`Store`] and the futures it spawns.
struct Shared {
    inner: Arc<dyn ObjectStore>,
    location: String,
    local: bool,
    opts: StoreOptions,
    stats: StoreStats,
    up: Option<RateLimiter>,
    down: Option<RateLimiter>,
    /// Signed-request client for what object_store cannot send (S3 only).
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    direct: Direct,
    /// The repository's Object Lock (format-spec §25.8), once known.
    lock: std::sync::RwLock<Option<ObjectLock>>,
    /// Set once the bucket refused an upload without `Content-MD5`
    /// (default retention): every later upload goes through `direct`.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    md5: std::sync::atomic::AtomicBool,
}

/// Synchronous facade over an `ObjectStore` plus the Tokio runtime it needs.
pub struct Store {
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    local_root: Option<std::path::PathBuf>,
    warnings: std::sync::Mutex<Warnings>,
}

/// Receives each warning (one line, lower-case, no "warning:" prefix) as
/// it is raised; the CLI installs one that prints to stderr (plain text, or
/// a JSON object under `--json`).
pub type WarningSink = Box<dyn Fn(&str) + Send + Sync>;

/// Warnings raised so far and where they go.
#[derive(Default)]
struct Warnings {
    all: Vec<String>,
    sink: Option<WarningSink>,
}

/// Receives a dropped store's request counters: one JSON object
/// `{"type": "store_stats", "location": …, "requests": …}`.
pub type StatsReport = Box<dyn Fn(serde_json::Value) + Send + Sync>;

static STATS_REPORT: std::sync::OnceLock<StatsReport> = std::sync::OnceLock::new();

/// Hands the request counters of every store, when it is dropped, to
/// `report` (for the whole process; a second call is ignored). Without it
/// the counters are only available through [`Store::stats`].
pub fn set_stats_report(report: StatsReport) {
    let _ = STATS_REPORT.set(report);
}

/// The scheme of a URL-like location (`gs` for `gs://bucket/x`): a leading
/// `[a-z][a-z0-9+.-]*` followed by `://`; `None` for a path.
fn url_scheme(location: &str) -> Option<&str> {
    let (scheme, _) = location.split_once("://")?;
    let mut b = scheme.bytes();
    let first = b.next()?;
    (first.is_ascii_lowercase()
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(&c)))
    .then_some(scheme)
}

/// What snap says when the store refuses to delete an object for lack of
/// permission: the credentials are append-only (format-spec §19, §25).
pub const DELETE_REFUSED: &str = "the store refused DeleteObject: access denied — this repository's credentials are append-only; run prune from a machine with full credentials";

/// Whether `e` is the store refusing a request for lack of permission: HTTP
/// 401/403 (object_store's `PermissionDenied`, `Unauthenticated`), or S3's
/// `AccessDenied` code inside a generic error (object_store deletes through
/// `DeleteObjects`, whose per-key failures arrive as such).
fn is_access_denied(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => true,
        e => {
            let s = e.to_string();
            s.contains("AccessDenied") || s.contains("Access Denied")
        }
    }
}

/// Whether `e` is a delete refused by append-only credentials
/// ([`Store::delete`] failing with [`DELETE_REFUSED`]).
pub fn is_delete_refused(e: &Error) -> bool {
    e.kind() == ErrorKind::Backend && e.to_string().contains(DELETE_REFUSED)
}

/// What snap says when a bucket with a default Object Lock retention refuses
/// an upload for want of `Content-MD5` and the store has no signed-request
/// client to send it with (no static credentials; format-spec §25.8).
pub const OBJECT_LOCK_DEFAULT_UNSUPPORTED: &str = "the bucket locks every new object (Object Lock default retention) and wants a Content-MD5 header on uploads, which snap sends only with static credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";

/// Whether `e` is an upload refused because the bucket's default Object Lock
/// retention wants `Content-MD5` (moto: `MissingUploadObjectWithObjectLockHeaders`;
/// AWS: `InvalidRequest` naming Content-MD5 and Object Lock).
fn is_object_lock_upload_refused(e: &object_store::Error) -> bool {
    let s = e.to_string();
    s.contains("MissingUploadObjectWithObjectLockHeaders")
        || (s.contains("Content-MD5") && s.contains("Object Lock"))
}

fn backend_err(what: String, e: object_store::Error) -> Error {
    match e {
        e if is_object_lock_upload_refused(&e) => Error::new(
            ErrorKind::Backend,
            format!("{what}: {OBJECT_LOCK_DEFAULT_UNSUPPORTED}"),
        ),
        object_store::Error::NotFound { .. } => Error::with_source(ErrorKind::NotFound, what, e),
        // A full local disk surfaces through object_store as a generic
        // error whose source chain holds the io::Error.
        e if is_storage_full(&e) => Error::new(
            ErrorKind::NoSpace,
            format!("{what}: no space left on device"),
        ),
        e => Error::with_source(ErrorKind::Backend, what, e),
    }
}

/// Whether `e` or any error in its `source()` chain is an `io::Error` for
/// a full filesystem or an exhausted quota: `ErrorKind::StorageFull`, or
/// the OS error ENOSPC or EDQUOT.
pub fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("snap-io")
        .build()
        .map_err(|e| Error::io("starting the I/O runtime", e))
}

/// The signed-request client for Object Lock requests, when there is one.
#[cfg(feature = "s3")]
type Direct = Option<Arc<s3lock::S3Direct>>;
#[cfg(not(feature = "s3"))]
type Direct = Option<std::convert::Infallible>;

#[cfg(not(feature = "s3"))]
fn s3_store(
    location: &str,
    _rest: &str,
    _opts: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Direct)> {
    Err(Error::usage(format!(
        "repository {location}: this snap was built without S3 support (cargo feature `s3`)"
    )))
}

#[cfg(feature = "s3")]
fn s3_store(
    location: &str,
    rest: &str,
    opts: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Direct)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::usage(format!(
            "repository {location:?} names no bucket"
        )));
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let endpoint = opts
        .s3_endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
        .with_retry(object_store::RetryConfig {
            max_retries: 10,
            retry_timeout: opts.retry_timeout,
            ..Default::default()
        })
        // AWS_ALLOW_HTTP from the environment does not count: see below.
        .with_allow_http(false);
    if let Some(ep) = &endpoint {
        let lower = ep.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(Error::usage(format!(
                "s3 endpoint {ep:?} must start with https:// (or http:// for a local server)"
            )));
        }
        b = b.with_endpoint(ep.clone());
        if lower.starts_with("http://") {
            if !is_loopback_url(ep) && !opts.s3_allow_http {
                return Err(Error::usage(format!(
                    "s3 endpoint {ep} is plain http and not a loopback address: use https, or pass --s3-allow-http to send data and credentials unencrypted"
                )));
            }
            b = b
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
    }
    // Without static keys there is no signed-request client; Object Lock
    // requests then fail with the reason (`Store::direct`).
    let direct = s3lock::S3Direct::new(&b, bucket, prefix).ok().map(Arc::new);
    let s3 = b.build().map_err(|e| {
        Error::with_source(ErrorKind::Usage, format!("s3 repository {location}"), e)
    })?;
    let prefix = prefix.trim_matches('/');
    let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
    };
    Ok((inner, direct))
}

impl Store {
    /// Opens the store for a repository location with default
    /// [`StoreOptions`]; see [`Store::open_with`].
    pub fn open(location: &str, create: bool) -> Result<Store> {
        Self::open_with(location, create, &StoreOptions::default())
    }

    /// Opens the store for a repository location: a filesystem path or
    /// `s3://bucket[/prefix]`. With `create`, a missing local directory is
    /// created. S3 credentials and region come from the standard `AWS_*`
    /// environment variables; the endpoint from `opts.s3_endpoint` or
    /// `AWS_ENDPOINT_URL`. Plain http is allowed only for loopback endpoints
    /// or with `opts.s3_allow_http` ([`ErrorKind::Usage`] otherwise). Any
    /// other `SCHEME://` location is refused ([`ErrorKind::Usage`]) rather
    /// than taken as a relative path. With `create`, a new (empty) local
    /// directory is made accessible to its owner only (mode 0700).
    pub fn open_with(location: &str, create: bool, opts: &StoreOptions) -> Result<Store> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (inner, direct) = s3_store(location, rest, opts)?;
            return Self::build(inner, location, false, None, opts, direct);
        }
        if let Some(scheme) = url_scheme(location) {
            return Err(Error::usage(format!(
                "repository {location}: unsupported scheme {scheme}://; \
                 give a local folder path or s3://BUCKET/PREFIX (S3 or an S3-compatible store)"
            )));
        }
        let path = std::path::PathBuf::from(location);
        if create {
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating repository directory {location}"), e))?;
            // A new (empty) repository folder only: a failed second init
            // leaves an existing folder as it was.
            let empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
            if empty {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).map_err(
                    |e| Error::io(format!("restricting repository directory {location}"), e),
                )?;
            }
        } else if !path.is_dir() {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("repository {location} does not exist; create it with `snap init`"),
            ));
        }
        // Durability (format-spec §18.1): with `with_fsync(true)`,
        // object_store 0.14.2's LocalFileSystem::put_opts writes the object to a
        // staging file `<key>#<n>` in the destination directory, `sync_all`s and
        // closes it, then publishes it — PutMode::Create by `hard_link` (fails
        // with AlreadyExists if the key exists), PutMode::Overwrite by `rename` —
        // and fsyncs the destination's parent directory before returning
        // (`finish_staged_hard_link` / `finish_staged_rename` → `sync_and_close`,
        // `hard_link`/`rename` → `fsync_parent_dir`). Directories it creates on
        // the way (`data/<2 hex>/`) are fsynced up to the first one that
        // existed (`create_parent_dirs`). So `put_new` returning means the
        // object's bytes and its name are on disk, and no partially written
        // object is ever visible under its final name; a crash leaves at most a
        // `#<n>` staging file, which `list` skips. Not fsynced: deletes (only
        // lifecycle code deletes) and the removal of the staging name.
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| {
                Error::with_source(ErrorKind::Io, format!("opening repository {location}"), e)
            })?
            .with_fsync(true);
        Self::build(Arc::new(fs), location, true, Some(path), opts, None)
    }

    fn build(
        inner: Arc<dyn ObjectStore>,
        location: &str,
        local: bool,
        local_root: Option<std::path::PathBuf>,
        opts: &StoreOptions,
        direct: Direct,
    ) -> Result<Store> {
        let mut opts = opts.clone();
        if opts.upload_concurrency == 0 {
            opts.upload_concurrency = if local { 2 } else { 6 };
        }
        opts.upload_concurrency = opts.upload_concurrency.clamp(1, 64);
        opts.multipart_part_size = opts.multipart_part_size.max(5 << 20);
        Ok(Store {
            shared: Arc::new(Shared {
                inner,
                location: location.to_string(),
                local,
                up: opts.limit_upload.map(RateLimiter::new),
                down: opts.limit_download.map(RateLimiter::new),
                opts,
                stats: StoreStats::default(),
                direct,
                lock: Default::default(),
                md5: Default::default(),
            }),
            rt: runtime()?,
            local_root,
            warnings: Default::default(),
        })
    }

    /// Wraps an arbitrary `ObjectStore` (tests: `InMemory`,
    /// [`fault::FaultStore`]) with default [`StoreOptions`]; `location` only
    /// names it in messages. The store counts as remote ([`Store::is_remote`]).
    ///
    /// Errors: [`ErrorKind::Io`] if the I/O runtime cannot be started.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, location: &str) -> Result<Store> {
        Self::from_object_store_with(inner, location, &StoreOptions::default())
    }

    /// [`Store::from_object_store`] with explicit options (upload
    /// concurrency, rate limits, multipart sizes).
    pub fn from_object_store_with(
        inner: Arc<dyn ObjectStore>,
        location: &str,
        opts: &StoreOptions,
    ) -> Result<Store> {
        Self::build(inner, location, false, None, opts, None)
    }

    /// The location string this store was opened with.
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    /// Whether a request costs a network round trip (S3, or any store
    /// wrapped with [`Store::from_object_store`]) rather than a local system
    /// call: readers coalesce ranges across gaps and writers expect upload
    /// waits only then.
    pub fn is_remote(&self) -> bool {
        self.local_root.is_none()
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.shared.opts
    }

    /// Uploads a pack writer should keep in flight.
    pub fn upload_concurrency(&self) -> usize {
        self.shared.opts.upload_concurrency
    }

    /// Records a warning about this repository (once per distinct message)
    /// and hands it to the warning sink, if one is set.
    pub fn warn(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if w.all.contains(&msg) {
            return;
        }
        if let Some(sink) = &w.sink {
            sink(&msg);
        }
        w.all.push(msg);
    }

    /// Every warning raised so far, oldest first (also those already handed
    /// to a sink).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .clone()
    }

    /// Hands every warning raised so far, and each later one as it is
    /// raised, to `sink`.
    pub fn set_warning_sink(&self, sink: WarningSink) {
        let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        for m in &w.all {
            sink(m);
        }
        w.sink = Some(sink);
    }

    /// Request and byte counters so far.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Writes a new object at `key` (put-if-absent). Returns `false` if an
    /// object already exists there (for content-named objects: already
    /// stored; its bytes are left as they are). Durable on return (local:
    /// file and directory fsynced). Callable from many threads at once.
    ///
    /// On a local repository, key files (`keys/…`) are made readable by
    /// their owner only (mode 0600).
    ///
    /// Errors: [`ErrorKind::NoSpace`] for a full disk or quota,
    /// [`ErrorKind::Backend`] for other store failures, [`ErrorKind::Io`]
    /// if a key file's mode cannot be set.
    pub fn put_new(&self, key: &str, data: Bytes) -> Result<bool> {
        let created = self
            .rt
            .block_on(self.shared.put(key.to_string(), data, true))?;
        if let (true, Some(root)) = (created && key.starts_with("keys/"), &self.local_root) {
            use std::os::unix::fs::PermissionsExt;
            let p = root.join(key);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(format!("restricting key file {}", p.display()), e))?;
        }
        Ok(created)
    }

    /// Writes `key`, replacing any object there (leases only).
    ///
    /// Errors: as [`Store::put_new`].
    pub fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        self.rt
            .block_on(self.shared.put(key.to_string(), data, false))
            .map(|_| ())
    }

    /// Reads a whole object; [`ErrorKind::NotFound`] if it does not exist,
    /// [`ErrorKind::Corrupt`] before downloading anything if the backend
    /// reports it larger than [`max_object_size`] for its kind.
    pub fn get(&self, key: &str) -> Result<Bytes> {
        self.rt.block_on(self.shared.get(key.to_string(), None))
    }

    /// Reads bytes `range` (offsets in bytes, end exclusive) of an object.
    /// Callable from many threads at once; on a local repository one `pread`
    /// on the calling thread.
    ///
    /// Errors: [`ErrorKind::NotFound`] if the object does not exist,
    /// [`ErrorKind::Corrupt`] if it ends before `range.end` (a range that
    /// starts at or past its end included; an empty range returns no bytes
    /// without a request), [`ErrorKind::Backend`] /
    /// [`ErrorKind::Io`] for transport failures.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        if let (Some(root), None) = (&self.local_root, &self.shared.down) {
            return self.local_get_range(root, key, range);
        }
        self.rt
            .block_on(self.shared.get(key.to_string(), Some(range)))
    }

    /// Most ranged reads [`Store::get_ranges`] keeps in flight at once on a
    /// remote store.
    pub const RANGES_IN_FLIGHT: usize = 16;

    /// Reads a batch of ranges — `(key, byte range)` pairs, in any order,
    /// duplicates allowed — and returns their bytes in the same order. A
    /// remote store runs up to [`Store::RANGES_IN_FLIGHT`] requests at once;
    /// a local one reads them with `pread` on the calling thread. Each range
    /// behaves as [`Store::get_range`].
    ///
    /// Errors: the first error of any range (the others are abandoned), as
    /// [`Store::get_range`].
    pub fn get_ranges(&self, reqs: &[(String, std::ops::Range<u64>)]) -> Result<Vec<Bytes>> {
        if self.local_root.is_some() && self.shared.down.is_none() {
            return reqs
                .iter()
                .map(|(k, r)| self.get_range(k, r.clone()))
                .collect();
        }
        let sh = &self.shared;
        self.rt.block_on(
            futures::stream::iter(reqs.iter().map(|(k, r)| async move {
                if r.start >= r.end {
                    return Ok(Bytes::new());
                }
                sh.get(k.clone(), Some(r.clone())).await
            }))
            .buffered(Self::RANGES_IN_FLIGHT)
            .try_collect(),
        )
    }

    /// Ranged read of a local object with one `pread`, without the hop
    /// through the I/O runtime (restores issue one per run of blobs). Same
    /// errors as the object_store path: NotFound, truncated (Corrupt), Io.
    fn local_get_range(
        &self,
        root: &std::path::Path,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let sh = &self.shared;
        let c = sh.stats.kind(key);
        StoreStats::inc(&c.get, 1);
        let what = || {
            format!(
                "reading {key} bytes {}..{} from {}",
                range.start, range.end, sh.location
            )
        };
        let f = std::fs::File::open(root.join(key)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::with_source(ErrorKind::NotFound, what(), e)
            } else {
                Error::io(what(), e)
            }
        })?;
        let len = range.end.saturating_sub(range.start) as usize;
        let size = f.metadata().map_err(|e| Error::io(what(), e))?.len();
        if range.end > size {
            return Err(truncated(key, &range, size));
        }
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, range.start).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!(
                    "{key} is truncated: wanted bytes {}..{}",
                    range.start, range.end
                ))
            } else {
                Error::io(what(), e)
            }
        })?;
        StoreStats::inc(&c.bytes_down, len as u64);
        Ok(Bytes::from(buf))
    }

    /// The ids (of the kind `T` the prefix holds) of the objects under `prefix` (`"index/"`, `"snapshots/"`,
    /// …), sorted; names that are not 64 hex digits are left out.
    ///
    /// Errors: as [`Store::list`].
    pub fn list_ids<T: crate::format::TypedId>(&self, prefix: &str) -> Result<Vec<T>> {
        let mut ids: Vec<T> = self
            .list(prefix)?
            .into_iter()
            .filter_map(|l| T::from_hex(&l.name))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Lists the objects under `prefix` (recursively), in no particular
    /// order. A prefix matches whole path segments: `"data/"` and `"data"`
    /// list the same objects, `"dat"` lists none. Staging files of
    /// unfinished local writes (names with `#`) are left out.
    ///
    /// Errors: [`ErrorKind::Backend`] (or [`ErrorKind::Io`]) if the listing
    /// fails.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        self.list_each(prefix, |l| {
            out.push(l);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Store::list`] one object at a time: calls `f` for each object as
    /// the listing arrives (a page of 1000 names at a time from S3), so
    /// memory does not grow with the number of objects. `f` must not call
    /// this store (it runs on the store's runtime). Stops at the first
    /// error of `f`, which is returned.
    ///
    /// Errors: as [`Store::list`]; those of `f`.
    pub fn list_each(&self, prefix: &str, mut f: impl FnMut(Listed) -> Result<()>) -> Result<()> {
        let sh = &self.shared;
        StoreStats::inc(&sh.stats.kind(prefix).list, 1);
        let path = Path::from(prefix);
        self.rt.block_on(async {
            let mut stream = sh.inner.list(Some(&path));
            while let Some(m) = stream.next().await {
                let m =
                    m.map_err(|e| backend_err(format!("listing {prefix} in {}", sh.location), e))?;
                let Some(name) = m.location.filename() else {
                    continue;
                };
                // LocalFileSystem may expose in-flight temporary files.
                if name.contains('#') {
                    continue;
                }
                f(Listed {
                    name: name.to_string(),
                    size: m.size,
                })?;
            }
            Ok(())
        })
    }

    /// Deletes an object; deleting a missing object is not an error.
    ///
    /// Errors: [`ErrorKind::Backend`] if the store refuses or fails.
    pub fn delete(&self, key: &str) -> Result<()> {
        let sh = &self.shared;
        StoreStats::inc(&sh.stats.kind(key).delete, 1);
        let path = Path::from(key);
        match self.rt.block_on(sh.inner.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) if is_access_denied(&e) => Err(Error::new(
                ErrorKind::Backend,
                format!("deleting {key} from {}: {DELETE_REFUSED}", sh.location),
            )),
            Err(e) => Err(backend_err(
                format!("deleting {key} from {}", sh.location),
                e,
            )),
        }
    }

    /// Writes every later object (but leases and marks,
    /// [`is_locked_kind`]) with `lock`'s mode and a retain-until date of the
    /// write time plus its period (format-spec §25.8); `None` writes them
    /// without. The repository sets it from `config` when it opens.
    pub fn set_object_lock(&self, lock: Option<ObjectLock>) {
        *self.shared.lock.write().unwrap_or_else(|e| e.into_inner()) = lock;
    }

    /// The Object Lock objects are written with ([`Store::set_object_lock`]).
    pub fn object_lock(&self) -> Option<ObjectLock> {
        *self.shared.lock.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The signed-request client, or why there is none.
    #[cfg(feature = "s3")]
    fn direct(&self) -> Result<&s3lock::S3Direct> {
        match &self.shared.direct {
            Some(d) => Ok(d),
            None if self.shared.location.starts_with("s3://") => Err(Error::usage(format!(
                "repository {}: S3 Object Lock needs static credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                self.shared.location
            ))),
            None => Err(Error::usage(format!(
                "repository {}: Object Lock needs an S3 repository (s3://BUCKET/PREFIX)",
                self.shared.location
            ))),
        }
    }

    /// Runs `f` with the signed-request client on the store's runtime.
    #[cfg(feature = "s3")]
    fn with_direct<'a, T, F>(&'a self, f: impl FnOnce(&'a s3lock::S3Direct) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let d = self.direct()?;
        self.rt.block_on(f(d))
    }

    #[cfg(not(feature = "s3"))]
    fn with_direct<T>(&self, _f: impl FnOnce(&std::convert::Infallible) -> T) -> Result<T> {
        Err(Error::usage(format!(
            "repository {}: this snap was built without S3 support, which Object Lock needs",
            self.shared.location
        )))
    }

    /// Whether the bucket has Object Lock enabled
    /// (`GetObjectLockConfiguration`).
    ///
    /// Errors: [`ErrorKind::Usage`] if the store is not S3 (or has no static
    /// credentials); [`ErrorKind::Backend`] if the server answers with
    /// anything but a configuration or "none" (a server without Object
    /// Lock: `NotImplemented`).
    pub fn object_lock_enabled(&self) -> Result<bool> {
        #[cfg(feature = "s3")]
        return self.with_direct(|d| d.lock_enabled());
        #[cfg(not(feature = "s3"))]
        self.with_direct(|_| false)
    }

    /// The Object Lock retention of `key` (its current version, or
    /// `version`): `None` if it has none.
    ///
    /// Errors: [`ErrorKind::NotFound`] for a missing key or version, else as
    /// [`Store::object_lock_enabled`].
    pub fn retention(&self, key: &str, version: Option<&str>) -> Result<Option<Retention>> {
        StoreStats::inc(&self.shared.stats.kind(key).head, 1);
        #[cfg(feature = "s3")]
        return self.with_direct(|d| d.retention(key, version));
        #[cfg(not(feature = "s3"))]
        {
            let _ = version;
            self.with_direct(|_| None)
        }
    }

    /// Sets the retention of `key`'s current version to `ret`
    /// (`PutObjectRetention`); S3 refuses to shorten one.
    ///
    /// Errors: [`ErrorKind::Backend`] naming the S3 error, else as
    /// [`Store::object_lock_enabled`].
    pub fn set_retention(&self, key: &str, ret: Retention) -> Result<()> {
        StoreStats::inc(&self.shared.stats.kind(key).put, 1);
        #[cfg(feature = "s3")]
        return self.with_direct(|d| d.put_retention(key, ret));
        #[cfg(not(feature = "s3"))]
        {
            let _ = ret;
            self.with_direct(|_| ())
        }
    }

    /// Every version and delete marker under `prefix` (`ListObjectVersions`,
    /// all pages), keys relative to the repository.
    ///
    /// Errors: as [`Store::set_retention`].
    pub fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>> {
        StoreStats::inc(&self.shared.stats.kind(prefix).list, 1);
        #[cfg(feature = "s3")]
        return self.with_direct(|d| d.list_versions(prefix));
        #[cfg(not(feature = "s3"))]
        self.with_direct(|_| Vec::new())
    }

    /// Deletes one version of `key` (its bytes, for good) or a delete
    /// marker; a missing version is not an error. S3 refuses while the
    /// version's retention holds.
    ///
    /// Errors: as [`Store::set_retention`].
    pub fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        StoreStats::inc(&self.shared.stats.kind(key).delete, 1);
        #[cfg(feature = "s3")]
        return self.with_direct(|d| d.delete_version(key, version_id));
        #[cfg(not(feature = "s3"))]
        {
            let _ = version_id;
            self.with_direct(|_| ())
        }
    }

    /// Removes the staging files (`NAME#N`, written before the rename that
    /// makes an object visible) that object_store's local backend leaves
    /// behind when a process is killed mid-write, if they are older than
    /// `min_age` (a write in progress is younger). They are never objects of
    /// the repository (format-spec §2: names are ids or lease and mark
    /// names, which never contain `#`). Returns how many were removed; a
    /// remote store has none (an interrupted upload is not visible).
    ///
    /// Errors: [`ErrorKind::Io`] if a folder cannot be listed or a file
    /// removed.
    pub fn remove_stale_staging(&self, min_age: Duration) -> Result<u64> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        let mut dirs = vec![(root.to_path_buf(), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                let ft = e
                    .file_type()
                    .map_err(|err| Error::io("reading a file type", err))?;
                if ft.is_dir() {
                    // data/<2 hex>/ is the deepest level snap writes.
                    if depth < 2 {
                        dirs.push((e.path(), depth + 1));
                    }
                    continue;
                }
                if !ft.is_file() || !e.file_name().as_encoded_bytes().contains(&b'#') {
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= min_age);
                if old {
                    match std::fs::remove_file(e.path()) {
                        Ok(()) => removed += 1,
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => {
                            return Err(Error::io(format!("removing {}", e.path().display()), err))
                        }
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Size of an object in bytes.
    ///
    /// Errors: [`ErrorKind::NotFound`] if it does not exist,
    /// [`ErrorKind::Backend`] for transport failures.
    pub fn size(&self, key: &str) -> Result<u64> {
        let sh = &self.shared;
        StoreStats::inc(&sh.stats.kind(key).head, 1);
        let path = Path::from(key);
        self.rt
            .block_on(sh.inner.head(&path))
            .map(|m| m.size)
            .map_err(|e| backend_err(format!("reading {key} from {}", sh.location), e))
    }
}

/// Whether objects under `key` are written with the repository's Object
/// Lock retention: everything but leases (`locks/`, refreshed and deleted
/// by every process) and prune marks (`marks/`, deleted by prune), which
/// must stay deletable (format-spec §25.8).
pub fn is_locked_kind(key: &str) -> bool {
    !(key.starts_with("locks/") || key.starts_with("marks/"))
}

/// Retain-until date for an object written now under `lock`: now plus the
/// period, rounded up to the next whole second.
pub fn retain_until(lock: &ObjectLock, now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = now.timestamp() + 1 + lock.period.min(ObjectLock::MAX_PERIOD) as i64;
    DateTime::from_timestamp(secs, 0).unwrap_or(now)
}

impl Shared {
    /// The retention to write `key` with, if any.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    fn retention_for(&self, key: &str) -> Option<Retention> {
        let lock = (*self.lock.read().unwrap_or_else(|e| e.into_inner()))?;
        is_locked_kind(key).then(|| Retention {
            mode: lock.mode,
            until: retain_until(&lock, Utc::now()),
        })
    }

    /// Uploads through the signed-request client (Object Lock headers,
    /// `Content-MD5`), counting the request as [`Shared::put`] does.
    #[cfg(feature = "s3")]
    async fn put_direct(
        &self,
        d: &s3lock::S3Direct,
        key: &str,
        data: Bytes,
        create: bool,
    ) -> Result<bool> {
        let c = self.stats.kind(key);
        let len = data.len() as u64;
        if let Some(l) = &self.up {
            l.take(len).await;
        }
        StoreStats::inc(&c.put, 1);
        let ret = self.retention_for(key);
        let created = d
            .put(key, data, create, ret)
            .await
            .map_err(|e| Error::new(e.kind(), format!("{e} ({})", self.location)))?;
        if created {
            StoreStats::inc(&c.bytes_up, len);
        } else {
            StoreStats::inc(&c.put_existing, 1);
        }
        Ok(created)
    }

    async fn put(&self, key: String, data: Bytes, create: bool) -> Result<bool> {
        #[cfg(feature = "s3")]
        if let Some(d) = &self.direct {
            let locked = self.retention_for(&key).is_some();
            if locked || self.md5.load(std::sync::atomic::Ordering::Relaxed) {
                return self.put_direct(d, &key, data, create).await;
            }
        }
        let c = self.stats.kind(&key);
        let len = data.len();
        let path = Path::from(key.as_str());
        let what = || format!("writing {key} to {}", self.location);
        if create && !self.local && len > self.opts.multipart_threshold {
            // Multipart uploads cannot be conditional; only content-named
            // objects (packs) are this large, so a repeat stores equal bytes.
            let upload = self
                .inner
                .put_multipart(&path)
                .await
                .map_err(|e| backend_err(what(), e))?;
            let part = self.opts.multipart_part_size;
            let mut w = WriteMultipart::new_with_chunk_size(upload, part);
            let mut off = 0;
            while off < len {
                let end = (off + part).min(len);
                if let Some(l) = &self.up {
                    l.take((end - off) as u64).await;
                }
                if let Err(e) = w.wait_for_capacity(4).await {
                    let _ = w.abort().await;
                    return Err(backend_err(what(), e));
                }
                w.put(data.slice(off..end));
                StoreStats::inc(&c.multipart_parts, 1);
                off = end;
            }
            w.finish().await.map_err(|e| backend_err(what(), e))?;
            StoreStats::inc(&c.put, 1);
            StoreStats::inc(&c.bytes_up, len as u64);
            return Ok(true);
        }
        if let Some(l) = &self.up {
            l.take(len as u64).await;
        }
        let opts = PutOptions {
            mode: if create {
                PutMode::Create
            } else {
                PutMode::Overwrite
            },
            ..Default::default()
        };
        StoreStats::inc(&c.put, 1);
        match self
            .inner
            .put_opts(&path, PutPayload::from_bytes(data.clone()), opts)
            .await
        {
            Ok(_) => {
                StoreStats::inc(&c.bytes_up, len as u64);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) if create => {
                StoreStats::inc(&c.put_existing, 1);
                Ok(false)
            }
            // A bucket with a default retention wants Content-MD5, which
            // object_store does not send: from now on upload through the
            // signed-request client, which does.
            #[cfg(feature = "s3")]
            Err(e) if is_object_lock_upload_refused(&e) && self.direct.is_some() => {
                self.md5.store(true, std::sync::atomic::Ordering::Relaxed);
                match &self.direct {
                    Some(d) => self.put_direct(d, &key, data, create).await,
                    None => Err(backend_err(what(), e)),
                }
            }
            Err(e) => Err(backend_err(what(), e)),
        }
    }

    async fn get(&self, key: String, range: Option<std::ops::Range<u64>>) -> Result<Bytes> {
        let c = self.stats.kind(&key);
        StoreStats::inc(&c.get, 1);
        let path = Path::from(key.as_str());
        let what = || match &range {
            Some(r) => format!(
                "reading {key} bytes {}..{} from {}",
                r.start, r.end, self.location
            ),
            None => format!("reading {key} from {}", self.location),
        };
        let opts = object_store::GetOptions {
            range: range.clone().map(Into::into),
            ..Default::default()
        };
        let res = match self.inner.get_opts(&path, opts).await {
            Ok(res) => res,
            Err(e) => {
                // Stores differ in how they refuse a range past the end
                // (S3: 416, local and memory: their own range errors); a
                // HEAD tells a short object from a failed request.
                if let (Some(r), false) =
                    (&range, matches!(e, object_store::Error::NotFound { .. }))
                {
                    if let Ok(m) = self.inner.head(&path).await {
                        if m.size < r.end {
                            return Err(truncated(&key, r, m.size));
                        }
                    }
                }
                return Err(backend_err(what(), e));
            }
        };
        // Whole objects: the size the backend reports is checked against
        // the kind's cap before a byte of the body is read.
        let max = max_object_size(&key);
        if range.is_none() && res.meta.size > max {
            return Err(Error::corrupt(format!(
                "{key} in {} is {} bytes, more than the {max} bytes allowed for its kind",
                self.location, res.meta.size
            )));
        }
        let cap = (res.range.end - res.range.start).min(max);
        let mut stream = res.into_stream();
        // Preallocate at most 64 MiB: the body may still be shorter or longer
        // than announced; growth past that is by doubling.
        let mut buf = Vec::with_capacity((cap as usize).min(64 << 20));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| backend_err(what(), e))?;
            StoreStats::inc(&c.bytes_down, chunk.len() as u64);
            if let Some(l) = &self.down {
                l.take(chunk.len() as u64).await;
            }
            if range.is_none() && (buf.len() + chunk.len()) as u64 > max {
                return Err(Error::corrupt(format!(
                    "{key} in {} is more than the {max} bytes allowed for its kind",
                    self.location
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        if let Some(r) = &range {
            if buf.len() as u64 != r.end - r.start {
                return Err(truncated(&key, r, r.start + buf.len() as u64));
            }
        }
        Ok(Bytes::from(buf))
    }
}

/// The error for an object of `size` bytes that ends before `r.end`.
fn truncated(key: &str, r: &std::ops::Range<u64>, size: u64) -> Error {
    Error::corrupt(format!(
        "{key} is truncated: wanted bytes {}..{} of {size}",
        r.start, r.end
    ))
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(report) = STATS_REPORT.get() {
            report(serde_json::json!({
                "type": "store_stats",
                "location": self.shared.location,
                "requests": self.shared.stats.to_json(),
            }));
        }
    }
}
