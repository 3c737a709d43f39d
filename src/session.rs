//! The one way to write to a repository: a [`Session`] owns an opened
//! [`Repository`] and the lease of the [`Operation`] it was opened for.
//!
//! [`Session::open`] opens the repository, takes the lease, then syncs the
//! catalog — the order format-spec §19 requires, so that a concurrent prune
//! either lists the lease as a blocker of its marks or this session's catalog
//! sees the prune's marks. The library's write entry points (backup, import,
//! copy, prune, repair, snapshot tag and removal, key changes) take a
//! `&Session`, so none of them can run without the lease; read-only commands
//! keep using a plain [`Repository`] (a `Session` derefs to one).
//!
//! Each operation maps to a lease kind ([`lease::Operation`], the `operation`
//! field of the lease object) and a detail naming it:
//!
//! | operation | lease kind | detail |
//! |---|---|---|
//! | backup | `backup` | |
//! | import-tar | `backup` | `import-tar` |
//! | copy (destination) | `copy` | |
//! | prune, `forget --prune` | `prune` | |
//! | forget, tag, key add | `backup` | `forget`, `tag`, `key add` |
//! | repair index / snapshots | `exclusive` | `repair index`, `repair snapshots` |
//! | key remove / passwd | `exclusive` | `key remove`, `key passwd` |

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::SnapshotId;
use crate::keys;
use crate::lease::{self, LeaseGuard};
use crate::repo::Repository;
use crate::store::{ObjectKind, StoreOptions};
use std::ops::Deref;
use std::path::Path;

/// What a [`Session`] is opened for; decides its lease kind and which write
/// entry points accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `snap backup`: writes packs, indexes and a snapshot.
    Backup,
    /// `snap import-tar`: like a backup, from a tar archive.
    ImportTar,
    /// `snap copy`, in the destination repository.
    Copy,
    /// `snap prune` and `snap forget --prune` (forget, then prune).
    Prune,
    /// `snap forget` without `--prune`: removes snapshot objects.
    Forget,
    /// `snap tag`: rewrites snapshot objects.
    Tag,
    /// `snap repair index` (exclusive).
    RepairIndex,
    /// `snap repair snapshots` (exclusive).
    RepairSnapshots,
    /// `snap key add`: a new key file.
    KeyAdd,
    /// `snap key remove` (exclusive).
    KeyRemove,
    /// `snap key passwd`: a new key file, the one in use removed (exclusive).
    KeyPasswd,
}

impl Operation {
    /// The lease kind written for this operation (format-spec §19).
    pub fn lease_kind(self) -> lease::Operation {
        match self {
            Operation::Backup
            | Operation::ImportTar
            | Operation::Forget
            | Operation::Tag
            | Operation::KeyAdd => lease::Operation::Backup,
            Operation::Copy => lease::Operation::Copy,
            Operation::Prune => lease::Operation::Prune,
            Operation::RepairIndex
            | Operation::RepairSnapshots
            | Operation::KeyRemove
            | Operation::KeyPasswd => lease::Operation::Exclusive,
        }
    }

    /// The lease's `detail`: empty where the kind already names the
    /// operation, else the command ("import-tar", "key remove", …).
    pub fn detail(self) -> &'static str {
        match self {
            Operation::Backup | Operation::Copy | Operation::Prune => "",
            Operation::ImportTar => "import-tar",
            Operation::Forget => "forget",
            Operation::Tag => "tag",
            Operation::RepairIndex => "repair index",
            Operation::RepairSnapshots => "repair snapshots",
            Operation::KeyAdd => "key add",
            Operation::KeyRemove => "key remove",
            Operation::KeyPasswd => "key passwd",
        }
    }

    /// Whether a put-only key (format-spec §5.1, §25.9) may run this
    /// operation: backup, import-tar and its own key files (add a put-only
    /// key, change its password). Everything that reads old content or
    /// deletes (forget, prune, tag, copy, repair, key remove) needs a full
    /// key.
    pub fn allowed_put_only(self) -> bool {
        matches!(
            self,
            Operation::Backup | Operation::ImportTar | Operation::KeyAdd | Operation::KeyPasswd
        )
    }

    /// The command's name for messages ("backup", "key remove", …).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Copy => "copy",
            Operation::Prune => "prune",
            o => o.detail(),
        }
    }
}

/// An open repository together with the live lease of one [`Operation`].
///
/// Dropping the session ends the operation: the lease's refresh thread
/// stops and the lease object is deleted. Derefs to [`Repository`] for
/// reads.
pub struct Session {
    // Field order: the lease is dropped (deleted) before the repository.
    lease: LeaseGuard,
    operation: Operation,
    repo: Repository,
}

impl Session {
    /// Opens the repository at `location` with `password` (as
    /// [`Repository::open_opts`]), writes the lease of `operation`, then
    /// syncs the catalog.
    ///
    /// Errors: those of opening ([`ErrorKind::NoRepository`],
    /// [`ErrorKind::WrongPassword`], …); [`ErrorKind::Locked`] naming the
    /// holder when a live lease conflicts (the new lease is removed again);
    /// the catalog sync's errors (the lease is removed again).
    pub fn open(
        location: &str,
        password: &[u8],
        cache_dir: &Path,
        store_opts: &StoreOptions,
        operation: Operation,
    ) -> Result<Session> {
        let repo = Repository::open_unsynced(location, password, cache_dir, store_opts)?;
        Self::start(repo, operation)
    }

    /// Takes the lease of `operation` on `repo`, then syncs its catalog
    /// (again, if it was synced before: only a sync after the lease is sure
    /// to see every prune mark that does not list the lease as a blocker).
    /// For callers that open with [`Repository::open_unsynced`] themselves,
    /// e.g. to install a warning sink first.
    ///
    /// Errors: as [`Session::open`] after the open; [`ErrorKind::PutOnly`]
    /// before any write when `repo` was opened with a put-only key and
    /// `operation` is not [`Operation::allowed_put_only`].
    pub fn start(repo: Repository, operation: Operation) -> Result<Session> {
        if !operation.allowed_put_only() {
            repo.require_full_key()?;
        }
        let lease = LeaseGuard::acquire(
            repo.store().clone(),
            repo.key(),
            operation.lease_kind(),
            operation.detail(),
        )?;
        repo.sync_catalog()?;
        Ok(Session {
            lease,
            operation,
            repo,
        })
    }

    /// Ends the operation: stops the refresh thread and deletes the lease
    /// (a failure to delete is only warned about: the lease expires). The
    /// repository stays open for reads, e.g. for a summary.
    pub fn finish(self) -> Repository {
        drop(self.lease);
        self.repo
    }

    /// As [`Repository::set_events`]: operations of this session report to
    /// `events` from now on.
    pub fn set_events(&mut self, events: std::sync::Arc<dyn crate::Events>) {
        self.repo.set_events(events);
    }

    /// What this session was opened for.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The held lease (its name, its content as written).
    pub fn lease(&self) -> &LeaseGuard {
        &self.lease
    }

    /// The repository (also reachable through `Deref`).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Fails unless this session was opened for one of `allowed`: a write
    /// entry point calls it so that, e.g., a backup's session cannot remove
    /// key files. [`ErrorKind::Usage`] names both operations.
    pub fn require(&self, allowed: &[Operation], what: &str) -> Result<()> {
        if allowed.contains(&self.operation) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Usage,
            format!(
                "{what} needs a session opened for {}, not {}",
                allowed
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.operation.name()
            ),
        ))
    }

    /// Fails with [`ErrorKind::Locked`] if the lease may have lapsed
    /// ([`LeaseGuard::check_valid`]); called before every commit.
    pub fn check_lease(&self) -> Result<()> {
        self.lease.check_valid()
    }

    /// Stores a snapshot object (after its trees and blobs are indexed) and
    /// records it in the catalog; returns its id. Refuses with
    /// [`ErrorKind::Locked`] when the lease may have lapsed, so that no
    /// snapshot is committed that a prune may already have ignored.
    /// Reports [`crate::Event::SnapshotSaved`].
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        self.check_lease()?;
        let id = self.repo.save_snapshot(snap)?;
        self.repo.events().event(&crate::Event::SnapshotSaved {
            snapshot: id.to_hex(),
        });
        Ok(id)
    }

    /// Deletes snapshot object `id` and drops it from the catalog (forget,
    /// tag, `forget --prune`, repair snapshots).
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.require(
            &[
                Operation::Forget,
                Operation::Prune,
                Operation::Tag,
                Operation::RepairSnapshots,
            ],
            "removing a snapshot",
        )?;
        self.repo
            .store()
            .delete(&ObjectKind::Snapshot.key(&id.to_hex()))?;
        self.repo.catalog().remove_snapshot(id)?;
        Ok(())
    }

    /// Adds a key file for `password` wrapping this repository's master key;
    /// returns its id ([`keys::add_key`]). Needs a [`Operation::KeyAdd`]
    /// session.
    pub fn add_key(&self, password: &[u8]) -> Result<String> {
        self.add_key_role(password, crate::crypto::KeyRole::Full)
    }

    /// [`Session::add_key`] for a key of `role` (format-spec §5.1): a
    /// put-only key file with [`crate::crypto::KeyRole::PutOnly`].
    ///
    /// Errors: as [`keys::add_key_role`].
    pub fn add_key_role(&self, password: &[u8], role: crate::crypto::KeyRole) -> Result<String> {
        self.require(&[Operation::KeyAdd], "adding a key")?;
        keys::add_key_role(self.repo.store(), self.repo.key(), password, role)
    }

    /// Removes key file `id` (full id or unique prefix): not the one in use,
    /// never the last ([`ErrorKind::Usage`]). Returns the full id. Needs a
    /// [`Operation::KeyRemove`] session (exclusive lease).
    pub fn remove_key(&self, id: &str) -> Result<String> {
        self.require(&[Operation::KeyRemove], "removing a key")?;
        self.repo.require_full_key()?;
        let keys_now = keys::list_keys(self.repo.store())?;
        let full = keys::resolve_key(&keys_now, id)?.id.clone();
        keys::remove_key(self.repo.store(), &full, self.repo.key_id())?;
        Ok(full)
    }

    /// Changes the password: adds a key file for `new_password`, then
    /// removes the key file in use. Returns (new id, removed id). Needs a
    /// [`Operation::KeyPasswd`] session (exclusive lease).
    pub fn change_password(&self, new_password: &[u8]) -> Result<(String, String)> {
        self.require(&[Operation::KeyPasswd], "changing the password")?;
        // A put-only key re-wraps its own put key (format-spec §5.1).
        let role = self.repo.role();
        let id = keys::add_key_role(self.repo.store(), self.repo.key(), new_password, role)?;
        // The new key exists now, so the old one is no longer the last.
        let old = self.repo.key_id().to_string();
        self.repo.store().delete(&ObjectKind::Key.key(&old))?;
        Ok((id, old))
    }
}

impl Deref for Session {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        &self.repo
    }
}
