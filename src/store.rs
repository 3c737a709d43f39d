//! Where repository bytes live: a small synchronous facade over
//! `object_store` (LocalFileSystem for paths, AmazonS3 for `s3://` URLs).
//!
//! Objects are written whole and never rewritten: content-named objects use
//! `PutMode::Create`, and "already exists" means "already stored".

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::sync::Arc;

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

/// A listed object: its name (last path segment) and size in bytes.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Last path segment (an id in hex for content-named objects).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// Synchronous facade over an `ObjectStore` plus the Tokio runtime it needs.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    location: String,
    local_root: Option<std::path::PathBuf>,
}

fn backend_err(what: String, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::with_source(ErrorKind::NotFound, what, e),
        e => {
            // Local ENOSPC surfaces through object_store as a generic error.
            let msg = e.to_string();
            if msg.contains("No space left on device") || msg.contains("os error 28") {
                Error::new(
                    ErrorKind::NoSpace,
                    format!("{what}: no space left on device"),
                )
            } else {
                Error::with_source(ErrorKind::Backend, what, e)
            }
        }
    }
}

impl Store {
    /// Opens the store for a repository location: a filesystem path or
    /// `s3://bucket[/prefix]`. With `create`, a missing local directory is
    /// created. S3 settings come from `AWS_*` environment variables
    /// (`AWS_ENDPOINT_URL` for S3-compatible servers; plain http is allowed
    /// only for loopback endpoints or with `AWS_ALLOW_HTTP=true`).
    pub fn open(location: &str, create: bool) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("snap-io")
            .build()
            .map_err(|e| Error::io("starting the I/O runtime", e))?;
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::usage(format!(
                    "repository {location:?} names no bucket"
                )));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .with_retry(object_store::RetryConfig {
                    max_retries: 8,
                    retry_timeout: std::time::Duration::from_secs(120),
                    ..Default::default()
                });
            let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
            if let Some(ep) = &endpoint {
                b = b.with_endpoint(ep.clone());
                let loopback = ep.starts_with("http://127.")
                    || ep.starts_with("http://localhost")
                    || ep.starts_with("http://[::1]");
                if loopback {
                    b = b.with_allow_http(true);
                }
                if ep.starts_with("http://") {
                    b = b.with_virtual_hosted_style_request(false);
                }
            }
            let s3 = b.build().map_err(|e| {
                Error::with_source(ErrorKind::Usage, format!("s3 repository {location}"), e)
            })?;
            let inner: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(
                    s3,
                    prefix.trim_matches('/'),
                ))
            };
            return Ok(Store {
                inner,
                rt,
                location: location.to_string(),
                local_root: None,
            });
        }
        let path = std::path::PathBuf::from(location);
        if create {
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating repository directory {location}"), e))?;
        } else if !path.is_dir() {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("repository {location} does not exist; create it with `snap init`"),
            ));
        }
        // Durability (format-spec "Durability of writes"): with `with_fsync(true)`,
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
        Ok(Store {
            inner: Arc::new(fs),
            rt,
            location: location.to_string(),
            local_root: Some(path),
        })
    }

    /// Wraps an arbitrary `ObjectStore` (tests: `InMemory`, fault injection).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, location: &str) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the I/O runtime", e))?;
        Ok(Store {
            inner,
            rt,
            location: location.to_string(),
            local_root: None,
        })
    }

    /// The location string this store was opened with.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The local directory, for local repositories.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// Writes a new object at `key`. Returns `false` if an object already
    /// exists there (for content-named objects: already stored). Durable on
    /// return (local: file and directory fsynced).
    pub fn put_new(&self, key: &str, data: Bytes) -> Result<bool> {
        let path = Path::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let r = self.rt.block_on(
            self.inner
                .put_opts(&path, PutPayload::from_bytes(data), opts),
        );
        match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(backend_err(
                format!("writing {key} to {}", self.location),
                e,
            )),
        }
    }

    /// Writes `key`, replacing any object there (leases only).
    pub fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        let path = Path::from(key);
        self.rt
            .block_on(self.inner.put(&path, PutPayload::from_bytes(data)))
            .map(|_| ())
            .map_err(|e| backend_err(format!("writing {key} to {}", self.location), e))
    }

    /// Reads a whole object; [`ErrorKind::NotFound`] if it does not exist.
    pub fn get(&self, key: &str) -> Result<Bytes> {
        let path = Path::from(key);
        self.rt
            .block_on(async { self.inner.get(&path).await?.bytes().await })
            .map_err(|e| backend_err(format!("reading {key} from {}", self.location), e))
    }

    /// Reads bytes `range` of an object; a short object is an error.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = Path::from(key);
        let want = range.end - range.start;
        let b = self
            .rt
            .block_on(self.inner.get_range(&path, range.clone()))
            .map_err(|e| {
                backend_err(
                    format!(
                        "reading {key} bytes {}..{} from {}",
                        range.start, range.end, self.location
                    ),
                    e,
                )
            })?;
        if b.len() as u64 != want {
            return Err(Error::corrupt(format!(
                "{key} is truncated: wanted bytes {}..{}",
                range.start, range.end
            )));
        }
        Ok(b)
    }

    /// Lists the objects under `prefix` (recursively).
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let path = Path::from(prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.inner.list(Some(&path)).try_collect())
            .map_err(|e| backend_err(format!("listing {prefix} in {}", self.location), e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                // LocalFileSystem may expose in-flight temporary files.
                if name.contains('#') {
                    return None;
                }
                Some(Listed { name, size: m.size })
            })
            .collect())
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        let path = Path::from(key);
        match self.rt.block_on(self.inner.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend_err(
                format!("deleting {key} from {}", self.location),
                e,
            )),
        }
    }

    /// Size of an object in bytes.
    pub fn size(&self, key: &str) -> Result<u64> {
        let path = Path::from(key);
        self.rt
            .block_on(self.inner.head(&path))
            .map(|m| m.size)
            .map_err(|e| backend_err(format!("reading {key} from {}", self.location), e))
    }
}
