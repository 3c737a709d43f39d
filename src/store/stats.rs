//! Request and byte counters of a [`super::Store`], per object kind.
//!
//! Counted at the facade: one `get`/`put`/`head`/`delete` per object
//! operation (object_store's internal retries and the pages of a listing are
//! not counted separately), bytes as delivered to or from the caller.

use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// Kinds objects are counted under: the first path segment of the key.
pub const KINDS: [&str; 8] = [
    "config",
    "keys",
    "data",
    "index",
    "snapshots",
    "locks",
    "dicts",
    "other",
];

/// Counters of one kind.
#[derive(Debug, Default)]
pub struct KindCounters {
    /// Whole or ranged reads.
    pub get: AtomicU64,
    /// Bytes read.
    pub bytes_down: AtomicU64,
    /// Object writes (a multipart upload counts once).
    pub put: AtomicU64,
    /// Bytes written.
    pub bytes_up: AtomicU64,
    /// Create-only writes that found the object already there.
    pub put_existing: AtomicU64,
    /// Parts of multipart uploads.
    pub multipart_parts: AtomicU64,
    /// Listings.
    pub list: AtomicU64,
    /// Metadata requests.
    pub head: AtomicU64,
    /// Deletes.
    pub delete: AtomicU64,
}

const FIELDS: [&str; 9] = [
    "get",
    "bytes_down",
    "put",
    "bytes_up",
    "put_existing",
    "multipart_parts",
    "list",
    "head",
    "delete",
];

impl KindCounters {
    fn values(&self) -> [u64; 9] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            l(&self.get),
            l(&self.bytes_down),
            l(&self.put),
            l(&self.bytes_up),
            l(&self.put_existing),
            l(&self.multipart_parts),
            l(&self.list),
            l(&self.head),
            l(&self.delete),
        ]
    }
}

/// All counters of a store.
#[derive(Debug, Default)]
pub struct StoreStats {
    kinds: [KindCounters; KINDS.len()],
}

impl StoreStats {
    /// Counters for the object at `key` (`data/ab/…` counts as "data",
    /// `config` as "config").
    pub fn kind(&self, key: &str) -> &KindCounters {
        let first = key.split('/').next().unwrap_or("");
        let i = KINDS
            .iter()
            .position(|k| *k == first)
            .unwrap_or(KINDS.len() - 1);
        &self.kinds[i]
    }

    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as JSON: totals of every field (`get`, `put`, `list`,
    /// `head`, `delete`, `bytes_down`, `bytes_up`, `put_existing`,
    /// `multipart_parts`) and `by_kind` with the non-zero fields of each kind
    /// that saw any request.
    pub fn to_json(&self) -> Value {
        let mut totals = [0u64; 9];
        let mut by_kind = Map::new();
        for (name, k) in KINDS.iter().zip(&self.kinds) {
            let v = k.values();
            if v.iter().all(|x| *x == 0) {
                continue;
            }
            let mut m = Map::new();
            for (i, f) in FIELDS.iter().enumerate() {
                totals[i] += v[i];
                if v[i] != 0 {
                    m.insert((*f).into(), json!(v[i]));
                }
            }
            by_kind.insert((*name).into(), Value::Object(m));
        }
        let mut out = Map::new();
        for (i, f) in FIELDS.iter().enumerate() {
            out.insert((*f).into(), json!(totals[i]));
        }
        out.insert("by_kind".into(), Value::Object(by_kind));
        Value::Object(out)
    }
}
