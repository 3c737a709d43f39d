//! Leases (`locks/<id>`) and prune marks (`marks/<id>`), format-spec
//! §9, §10 (objects) and §19, §20 (protocol).
//!
//! A lease says "process P on host H runs operation O since S, and is alive
//! until E". Running operations refresh their lease (overwrite) every
//! [`REFRESH`] and delete it at the end; a lease whose `expires` is more than
//! [`CLOCK_SKEW`] in the past is dead. Leases are taken through
//! [`crate::session::Session`], which maps each command to a lease kind. Only
//! exclusive operations (repair, key removal and password change) refuse to start while other live leases exist; backups refuse only
//! while an exclusive lease is live; prunes refuse while another prune or an
//! exclusive operation is live. Leases never block on dead (expired) leases,
//! so a killed process cannot block anyone for longer than [`EXPIRY`].
//!
//! A mark lists packs that prune found unused. See [`Mark`] and the spec for
//! the protocol that makes deleting them safe while backups run.

use crate::crypto::{self, MasterKey, AAD_LOCK, AAD_MARK};
use crate::error::{Error, ErrorKind, Result};
pub use crate::format::lease::{Lease, Mark, Operation};
use crate::format::{PackId, MAX_METADATA_SIZE};
use crate::store::{ObjectKind, Store};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a lease stays valid after each refresh (5 minutes).
pub const EXPIRY: Duration = Duration::from_secs(300);
/// How often a running operation refreshes its lease (60 seconds).
pub const REFRESH: Duration = Duration::from_secs(60);
/// Clock difference tolerated between hosts: a lease is dead only once its
/// `expires` lies more than this in the past (60 seconds).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// A holder stops trusting its own lease (and refuses to commit) once its
/// last successful refresh is older than `EXPIRY - SAFETY` (120 seconds).
pub const SAFETY: Duration = Duration::from_secs(120);

impl Operation {
    /// Whether a live lease of `other` stops `self` from starting.
    pub fn conflicts_with(self, other: Operation) -> bool {
        match self {
            Operation::Exclusive => true,
            Operation::Prune => matches!(other, Operation::Prune | Operation::Exclusive),
            _ => other == Operation::Exclusive,
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Lease {
    /// Whether the lease is alive at `now` (unparsable expiry: alive).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        match parse_time(&self.expires) {
            Some(e) => now <= e + chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default(),
            None => true,
        }
    }

    /// "backup by pid 123 on host x since …" for messages; a non-empty
    /// detail follows the kind: "backup (import-tar) by pid …".
    pub fn describe(&self) -> String {
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.detail)
        };
        format!(
            "{}{detail} by pid {} on host {} since {}",
            format!("{:?}", self.operation).to_lowercase(),
            self.pid,
            self.host,
            self.start
        )
    }
}

/// A listed lease: object name and its content (or why it could not be read).
pub struct ListedLease {
    /// Object name under `locks/`.
    pub name: String,
    /// Decoded lease, or the error reading it (treated as live).
    pub lease: Result<Lease>,
}

impl ListedLease {
    /// Alive at `now`? Unreadable leases count as alive.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.lease.as_ref().map(|l| l.is_live(now)).unwrap_or(true)
    }
}

fn read_sealed(store: &Store, key: &MasterKey, path: &str, aad: &[u8]) -> Result<Vec<u8>> {
    let raw = store.get(path)?;
    if raw.len() > MAX_METADATA_SIZE {
        return Err(Error::corrupt(format!("{path} is larger than 256 MiB")));
    }
    key.open(aad, &raw, path)
}

/// Lists every lease under `locks/`.
pub fn list_leases(store: &Store, key: &MasterKey) -> Result<Vec<ListedLease>> {
    let mut out = Vec::new();
    for l in store.list(ObjectKind::Lock.list_prefix())? {
        let path = ObjectKind::Lock.key(&l.name);
        let lease = match read_sealed(store, key, &path, AAD_LOCK) {
            Ok(p) => crate::format::lease::decode_lease(&p)
                .map_err(|e| Error::corrupt(format!("lease {}: {e}", l.name))),
            // Deleted between list and read: finished.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => Err(e),
        };
        out.push(ListedLease {
            name: l.name,
            lease,
        });
    }
    Ok(out)
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    /// When the lease was last stored successfully.
    last_ok: Mutex<Instant>,
    failed: AtomicBool,
}

/// A held lease: refreshed by a background thread, removed on drop.
pub struct LeaseGuard {
    store: Arc<Store>,
    name: String,
    lease: Lease,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Removes the lease when a signal ends the process (crate::interrupt).
    _on_signal: crate::interrupt::Cleanup,
}

fn store_lease(store: &Store, key: &MasterKey, name: &str, lease: &Lease) -> Result<()> {
    let plain = crate::format::lease::encode_lease(lease);
    let sealed = key.seal(AAD_LOCK, &plain);
    store.put_overwrite(&ObjectKind::Lock.key(name), Bytes::from(sealed))
}

impl LeaseGuard {
    /// Writes a new lease for `op`, then checks the other live leases:
    /// if one conflicts ([`Operation::conflicts_with`]) the lease is removed
    /// and [`ErrorKind::Locked`] names the holder. Starts the refresh thread.
    pub fn acquire(
        store: Arc<Store>,
        key: &MasterKey,
        op: Operation,
        detail: &str,
    ) -> Result<LeaseGuard> {
        let mut rid = [0u8; 32];
        crypto::random_bytes(&mut rid);
        let name = hex::encode(rid);
        let now = Utc::now();
        let lease = Lease {
            version: 1,
            host: crate::repo::hostname(),
            pid: std::process::id(),
            operation: op,
            detail: detail.to_string(),
            start: rfc(now),
            refreshed: rfc(now),
            expires: rfc(now + chrono::Duration::from_std(EXPIRY).unwrap_or_default()),
        };
        store_lease(&store, key, &name, &lease)?;
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            last_ok: Mutex::new(Instant::now()),
            failed: AtomicBool::new(false),
        });
        // A SIGINT/SIGTERM that ends the process outside a graceful
        // operation still removes the lease (the refresh thread is told to
        // stop first, so it does not write it again).
        let on_signal = {
            let (store, name, shared) = (store.clone(), name.clone(), shared.clone());
            crate::interrupt::on_exit(move || {
                *shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
                shared.wake.notify_all();
                let _ = store.delete(&ObjectKind::Lock.key(&name));
            })
        };
        let mut guard = LeaseGuard {
            store: store.clone(),
            name: name.clone(),
            lease: lease.clone(),
            shared: shared.clone(),
            thread: None,
            _on_signal: on_signal,
        };
        // On error the guard's drop removes the lease.
        let others = list_leases(&store, key)?;
        let now = Utc::now();
        for o in others.iter().filter(|o| o.name != name && o.is_live(now)) {
            let conflict = match &o.lease {
                Ok(l) => op.conflicts_with(l.operation),
                Err(_) => op == Operation::Exclusive,
            };
            if conflict {
                let who = match &o.lease {
                    Ok(l) => l.describe(),
                    Err(e) => format!("unreadable lease {} ({e:#})", o.name),
                };
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "repository is in use: {who} (lease {}); wait for it, or remove a stale lease with `snap unlock`",
                        &o.name[..o.name.len().min(8)]
                    ),
                ));
            }
        }
        let key2 = key.clone();
        let mut l2 = lease;
        guard.thread = std::thread::Builder::new()
            .name("snap-lease".into())
            .spawn(move || loop {
                {
                    let stop = shared.stop.lock().unwrap_or_else(|p| p.into_inner());
                    // wait_timeout_while checks the flag first, so a stop
                    // requested before this thread waits is not missed.
                    let (stop, _) = shared
                        .wake
                        .wait_timeout_while(stop, REFRESH, |stop| !*stop)
                        .unwrap_or_else(|p| p.into_inner());
                    if *stop {
                        return;
                    }
                }
                let now = Utc::now();
                l2.refreshed = rfc(now);
                l2.expires = rfc(now + chrono::Duration::from_std(EXPIRY).unwrap_or_default());
                match store_lease(&store, &key2, &name, &l2) {
                    Ok(()) => {
                        *shared.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    }
                    Err(e) => {
                        store.warn(format!("refreshing lease {}: {e:#}", &name[..8]));
                        shared.failed.store(true, Ordering::Relaxed);
                    }
                }
            })
            .ok();
        Ok(guard)
    }

    /// The lease as first written.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Object name under `locks/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fails with [`ErrorKind::Locked`] if the lease may have lapsed (last
    /// successful refresh older than `EXPIRY - SAFETY`): others may then
    /// consider this operation dead, so it must not commit (write a snapshot).
    pub fn check_valid(&self) -> Result<()> {
        let last = *self
            .shared
            .last_ok
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.elapsed() > EXPIRY.saturating_sub(SAFETY) {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "lease {} could not be refreshed for {} s; not committing (run the operation again)",
                    &self.name[..8],
                    last.elapsed().as_secs()
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.store.delete(&ObjectKind::Lock.key(&self.name)) {
            self.store
                .warn(format!("removing lease {}: {e:#}", &self.name[..8]));
        }
    }
}

impl Mark {
    /// The mark's time (epoch if unparsable: then the grace is already over).
    pub fn time(&self) -> DateTime<Utc> {
        parse_time(&self.time).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// Pack ids, skipping malformed entries.
    pub fn pack_ids(&self) -> Vec<PackId> {
        self.packs
            .iter()
            .filter_map(|h| PackId::from_hex(h))
            .collect()
    }
}

/// Writes (or overwrites) mark `name`.
pub fn store_mark(store: &Store, key: &MasterKey, name: &str, mark: &Mark) -> Result<()> {
    let plain = crate::format::lease::encode_mark(mark);
    store.put_overwrite(
        &ObjectKind::Mark.key(name),
        Bytes::from(key.seal(AAD_MARK, &plain)),
    )
}

/// A new random mark name (64 hex digits).
pub fn new_mark_name() -> String {
    let mut rid = [0u8; 32];
    crypto::random_bytes(&mut rid);
    hex::encode(rid)
}

/// Reads every mark under `marks/` as (name, mark). An unreadable mark is an
/// error ([`ErrorKind::Corrupt`]): ignoring it could let a backup reuse a
/// pack that is about to be deleted.
pub fn list_marks(store: &Store, key: &MasterKey) -> Result<Vec<(String, Mark)>> {
    let mut out = Vec::new();
    for l in store.list(ObjectKind::Mark.list_prefix())? {
        let path = ObjectKind::Mark.key(&l.name);
        let plain = match read_sealed(store, key, &path, AAD_MARK) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let m: Mark = crate::format::lease::decode_mark(&plain)
            .map_err(|e| Error::corrupt(format!("mark {}: {e}", l.name)))?;
        out.push((l.name, m));
    }
    Ok(out)
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    rfc(Utc::now())
}
