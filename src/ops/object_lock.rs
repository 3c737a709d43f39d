//! S3 Object Lock upkeep, run by `prune` after its own deletes
//! (format-spec §20.1 step 7, §25.8).
//!
//! A bucket with Object Lock is versioned: the plain `DeleteObject` that
//! prune, forget and unlock send adds a *delete marker* — the object is gone
//! from listings (and so from the repository) at once, while its bytes stay
//! as a noncurrent version. [`maintain`] then, with one `ListObjectVersions`
//! of the repository:
//!
//! 1. purges the bytes: each noncurrent version is deleted by version id
//!    once its retain-until date has passed. Prune never sends a delete
//!    for a version whose date is still ahead: the date is known without a
//!    request when the version's write time plus the period is still ahead
//!    (retention can only be lengthened), else from a `HEAD` of the
//!    version. What stays is reported with the latest such date;
//! 2. removes delete markers that no longer hide any version;
//! 3. extends the retention of every current (still referenced) object of a
//!    locked kind whose retain-until is less than half a period ahead, to
//!    now plus the period (kopia extends retention during maintenance in the
//!    same way), so live data never loses its protection. A `HEAD` is sent
//!    only for objects written more than half a period ago (the listing
//!    does not show an extension, so those cost one `HEAD` per run);
//!    objects whose retention had already lapsed are counted.

use crate::error::{ErrorKind, Result};
use crate::format::config::ObjectLock;
use crate::store::{is_locked_kind, retain_until, ObjectVersion, Retention, Store};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::BTreeMap;

/// What [`maintain`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LockReport {
    /// Versions whose bytes were deleted for good (retention over).
    pub versions_deleted: u64,
    /// Bytes of those versions.
    pub bytes_deleted: u64,
    /// Delete markers removed (nothing left to hide).
    pub markers_removed: u64,
    /// Deleted objects whose bytes Object Lock still keeps.
    pub versions_kept: u64,
    /// Bytes of those.
    pub bytes_kept: u64,
    /// The latest retain-until date among the kept versions (RFC 3339):
    /// after it, a prune deletes them all.
    pub kept_until: Option<DateTime<Utc>>,
    /// Current objects whose retention was extended.
    pub extended: u64,
    /// Current objects of a locked kind whose retention had lapsed (or that
    /// had none) before this run extended it.
    pub lapsed: u64,
    /// The retain-until date extended objects now carry.
    pub extended_until: Option<DateTime<Utc>>,
}

/// The retain-until date known without a request: write time plus period
/// (a lower bound: retention is only ever lengthened).
fn floor_until(v: &ObjectVersion, lock: &ObjectLock) -> Option<DateTime<Utc>> {
    v.last_modified
        .map(|t| t + ChronoDuration::seconds(lock.period as i64))
}

/// Runs the upkeep described in the module documentation on `store` under
/// `lock`. With `dry_run`, only reads (lists and `HEAD`s) and reports what
/// it would do.
///
/// Errors: store errors of the listing, of a `HEAD`, a version delete or a
/// retention extension ([`ErrorKind::Backend`]).
pub fn maintain(store: &Store, lock: &ObjectLock, dry_run: bool) -> Result<LockReport> {
    let now = Utc::now();
    let mut rep = LockReport::default();
    let mut by_key: BTreeMap<String, Vec<ObjectVersion>> = BTreeMap::new();
    for v in store.list_versions("")? {
        by_key.entry(v.key.clone()).or_default().push(v);
    }
    let half = ChronoDuration::seconds((lock.period / 2) as i64);
    let new_until = retain_until(lock, now);
    for (key, versions) in &by_key {
        let latest = versions.iter().find(|v| v.is_latest);
        let hidden = latest.is_none_or(|v| v.delete_marker);
        let mut left = 0;
        for v in versions {
            if v.delete_marker || v.is_latest {
                continue;
            }
            // A noncurrent version: deleted (or overwritten) data.
            let mut until = floor_until(v, lock).filter(|_| is_locked_kind(key));
            if until.is_none_or(|u| u <= now) {
                until = match store.retention(key, Some(&v.version_id)) {
                    Ok(r) => r.map(|r| r.until),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
            }
            match until {
                Some(u) if u > now => {
                    rep.versions_kept += 1;
                    rep.bytes_kept += v.size;
                    rep.kept_until = rep.kept_until.max(Some(u));
                    left += 1;
                }
                _ => {
                    if !dry_run {
                        store.delete_version(key, &v.version_id)?;
                    }
                    rep.versions_deleted += 1;
                    rep.bytes_deleted += v.size;
                }
            }
        }
        if hidden {
            // Markers hide nothing once every version is gone; the current
            // marker is removed last, and only then.
            if left == 0 {
                for m in versions.iter().filter(|v| v.delete_marker) {
                    if !dry_run {
                        store.delete_version(key, &m.version_id)?;
                    }
                    rep.markers_removed += 1;
                }
            }
            continue;
        }
        for m in versions.iter().filter(|v| v.delete_marker) {
            if !dry_run {
                store.delete_version(key, &m.version_id)?;
            }
            rep.markers_removed += 1;
        }
        let Some(cur) = latest else { continue };
        if !is_locked_kind(key) {
            continue;
        }
        if floor_until(cur, lock).is_some_and(|u| u > now + half) {
            continue;
        }
        let have = match store.retention(key, Some(&cur.version_id)) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if have.is_some_and(|r| r.until > now + half) {
            continue;
        }
        if have.is_none_or(|r| r.until <= now) {
            rep.lapsed += 1;
        }
        if !dry_run {
            store.set_retention(
                key,
                Retention {
                    mode: have.map_or(lock.mode, |r| r.mode),
                    until: new_until,
                },
            )?;
        }
        rep.extended += 1;
        rep.extended_until = Some(new_until);
    }
    Ok(rep)
}

/// Current objects of a locked kind whose retention has lapsed (or that
/// have none): `(key, retain-until if any)`, for `check`. Sends a `HEAD`
/// only for objects written more than one period ago.
///
/// Errors: as [`maintain`].
pub fn lapsed(store: &Store, lock: &ObjectLock) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for v in store.list_versions("")? {
        if !v.is_latest || v.delete_marker || !is_locked_kind(&v.key) {
            continue;
        }
        if floor_until(&v, lock).is_some_and(|u| u > now) {
            continue;
        }
        match store.retention(&v.key, Some(&v.version_id)) {
            Ok(r) if r.is_some_and(|r| r.until > now) => {}
            Ok(r) => out.push((v.key.clone(), r.map(|r| r.until))),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The retain-until date of `key`'s current version, if it is still ahead:
/// until then a delete only hides the object (`forget` reports it).
///
/// Errors: as [`maintain`]; a missing object is `Ok(None)`.
pub fn protected_until(store: &Store, key: &str) -> Result<Option<DateTime<Utc>>> {
    match store.retention(key, None) {
        Ok(r) => Ok(r.map(|r| r.until).filter(|u| *u > Utc::now())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
