//! The catalog: a SQLite cache of the repository's index and snapshot list
//! (format-spec §23, non-normative).
//!
//! Derived state only: it mirrors `index/` and `snapshots/` objects and is
//! rebuilt from them when missing, stale or of another schema version, so
//! deleting it never loses data. Lookups go to SQLite, so the index never has
//! to fit in memory.

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::format::snapshot::Snapshot;
use crate::format::{BlobId, BlobKind, IndexId, PackId, SnapshotId};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Bumped whenever the schema changes; a mismatch drops and rebuilds.
const SCHEMA_VERSION: i64 = 6;

/// A blob location row: kind, pack id, offset, length, raw length, base.
type LocationRow = (u8, Vec<u8>, u32, u32, u32, Option<Vec<u8>>);

/// Reads the first six columns of a location query.
fn location_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocationRow> {
    r.try_into()
}

/// A [`BlobLocation`] from its row. Errors ([`ErrorKind::Catalog`]): a
/// malformed base or pack id, an unknown kind.
fn location_of(row: LocationRow) -> Result<BlobLocation> {
    let (k, pack, offset, length, raw_len, base) = row;
    let base = match base {
        None => None,
        Some(b) => Some(BlobId::from_slice(&b).ok_or_else(|| {
            Error::new(
                ErrorKind::Catalog,
                "catalog holds a malformed base id; run `snap cache rebuild`",
            )
        })?),
    };
    let kind = BlobKind::from_byte(k).ok_or_else(|| {
        Error::new(
            ErrorKind::Catalog,
            "catalog holds an unknown blob kind; run `snap cache rebuild`",
        )
    })?;
    Ok(BlobLocation {
        kind,
        pack: pack_id(&pack)?,
        offset,
        length,
        raw_len,
        base,
    })
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Data or tree.
    pub kind: BlobKind,
    /// Pack holding the blob.
    pub pack: PackId,
    /// Offset of the sealed blob in the pack, bytes.
    pub offset: u32,
    /// Length of the sealed blob, bytes.
    pub length: u32,
    /// Plaintext length, bytes.
    pub raw_len: u32,
    /// Base blob of a delta blob (format-spec §13), else `None`.
    pub base: Option<BlobId>,
}

impl BlobLocation {
    /// The location of pack entry `e` (from a pack header or an index
    /// object) in pack `pack`.
    pub fn of_entry(pack: PackId, e: &crate::format::pack::PackEntry) -> BlobLocation {
        BlobLocation {
            kind: e.kind,
            pack,
            offset: e.offset,
            length: e.length,
            raw_len: e.raw_len,
            base: e.base,
        }
    }
}

/// An open catalog database.
pub struct Catalog {
    conn: Connection,
    /// Ids of the packs the `marked` table held when last read (loaded on
    /// first use, dropped whenever this process changes packs or marks).
    /// Other processes sharing the catalog file may rewrite that table with
    /// an older listing of `marks/`, or reset it, at any time.
    marked_ids: std::cell::RefCell<Option<HashSet<PackId>>>,
    /// The packs this process itself last listed as marked
    /// ([`Catalog::set_marked`]); they count as marked whatever the table
    /// says now, so a concurrent rewrite can never unmark them for this
    /// process (format-spec §10, §23.4).
    own_marked: std::cell::RefCell<HashSet<PackId>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS indexes(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs(pack_no INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, index_id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blobs(id BLOB PRIMARY KEY, kind INTEGER NOT NULL, pack_no INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_len INTEGER NOT NULL, base BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots(id BLOB PRIMARY KEY, time_ms INTEGER NOT NULL, json TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees_indexed(tree BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_entries(tree BLOB NOT NULL, name BLOB NOT NULL, kind INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, subtree BLOB, PRIMARY KEY(tree, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marked(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verified(tree BLOB PRIMARY KEY, epoch INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_cache(id BLOB PRIMARY KEY, plain BLOB NOT NULL, used INTEGER NOT NULL) WITHOUT ROWID;
";

/// Starts a new blob epoch: blobs may have stopped counting as stored.
const BUMP_EPOCH: &str = "INSERT INTO meta(key,value) VALUES('blob_epoch','0') \
     ON CONFLICT(key) DO UPDATE SET value=CAST(value AS INTEGER)+1";

/// A pack id read from the catalog.
fn pack_id(raw: &[u8]) -> Result<PackId> {
    PackId::from_slice(raw).ok_or_else(|| {
        Error::new(
            ErrorKind::Catalog,
            "catalog holds a malformed pack id; run `snap cache rebuild`",
        )
    })
}

/// Whether `e` says the catalog file is not a database or is malformed.
fn is_corruption(e: &Error) -> bool {
    e.cause()
        .and_then(|c| c.downcast_ref::<rusqlite::Error>())
        .and_then(|c| c.sqlite_error_code())
        .is_some_and(|c| {
            matches!(
                c,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            )
        })
}

/// Whether the tables have every column this version uses (a catalog whose
/// `schema` says current but whose tables are older must be rebuilt).
fn columns_present(conn: &Connection) -> bool {
    [
        "SELECT id,kind,pack_no,offset,length,raw_len,base FROM blobs LIMIT 0",
        "SELECT tree,epoch FROM verified LIMIT 0",
        "SELECT id,plain,used FROM tree_cache LIMIT 0",
        "SELECT tree,name,kind,size,mtime_ns,subtree FROM tree_entries LIMIT 0",
        "SELECT pack_no,id,size,index_id FROM packs LIMIT 0",
    ]
    .iter()
    .all(|q| conn.prepare(q).is_ok())
}

impl Catalog {
    /// [`Catalog::open`], and if the file is not a SQLite database or is
    /// malformed (detected on open and by the first queries; no full
    /// integrity check), moves it and its `-wal`/`-shm` files aside to
    /// `<path>.corrupt-<unix seconds>` and opens a new, empty catalog.
    /// Returns the catalog and, after a recovery, a one-line warning naming
    /// both paths. Other errors are returned unchanged.
    pub fn open_or_recover(path: &Path, repo_id: &str) -> Result<(Catalog, Option<String>)> {
        let err = match Catalog::open(path, repo_id) {
            Ok(c) => return Ok((c, None)),
            Err(e) => e,
        };
        if !is_corruption(&err) {
            return Err(err);
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = path.with_file_name(format!(
            "{}.corrupt-{stamp}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("catalog.sqlite")
        ));
        std::fs::rename(path, &aside).map_err(|e| {
            Error::io(
                format!(
                    "catalog {} is corrupt ({err:#}) and could not be moved aside",
                    path.display()
                ),
                e,
            )
        })?;
        for ext in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(ext);
            let mut to = aside.as_os_str().to_owned();
            to.push(ext);
            if Path::new(&side).exists() {
                std::fs::rename(&side, &to)
                    .map_err(|e| Error::io(format!("moving {side:?} aside"), e))?;
            }
        }
        let cat = Catalog::open(path, repo_id)?;
        Ok((
            cat,
            Some(format!(
                "catalog {} was corrupt ({err:#}); moved it to {} and rebuilding it from the repository",
                path.display(),
                aside.display()
            )),
        ))
    }

    /// Opens (creating, mode 0600) the catalog at `path` for repository
    /// `repo_id`; a catalog of another schema version or repository is wiped.
    pub fn open(path: &Path, repo_id: &str) -> Result<Catalog> {
        if let Some(dir) = path.parent() {
            // Directories created here are private (0700): the catalog lists
            // snapshot metadata (paths, host names).
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating cache directory {}", dir.display()), e))?;
        }
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(format!("creating catalog {}", path.display()), e))?;
        }
        // Single-threaded use behind the Repository's mutex: SQLite's own
        // per-call mutex would only cost time.
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        // Query planner stability: without it, SQLite compiles a cached
        // statement again at every step whose bound parameter it compares
        // while planning (`b.id=?1` in `lookup`), which made 54,000 blob
        // lookups of a restore cost seconds (perf: sqlite3Reprepare).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // Small pages: inserting a backup's new blobs into a catalog of
        // millions dirties one leaf page per blob (ids are random), and the
        // WAL and its checkpoint write whole pages. Takes effect only when
        // the file is created.
        conn.pragma_update(None, "page_size", 1024)?;
        // WAL lets backups read while another process writes. Switching
        // needs a moment with no other connection: retry briefly if busy.
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mut tries = 0;
            loop {
                match conn.pragma_update(None, "journal_mode", "WAL") {
                    Ok(()) => break,
                    Err(e)
                        if tries < 50
                            && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
                    {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -8000)?; // 8 MiB page cache
        conn.execute_batch(SCHEMA)?;
        let mut cat = Catalog {
            conn,
            marked_ids: Default::default(),
            own_marked: Default::default(),
        };
        let ver: Option<String> = cat.meta("schema")?;
        let stale = ver.is_some() && ver.as_deref() != Some(&SCHEMA_VERSION.to_string());
        if stale || !columns_present(&cat.conn) {
            cat.recreate_tables()?;
        }
        let ver: Option<String> = cat.meta("schema")?;
        let rid: Option<String> = cat.meta("repository")?;
        if ver.as_deref() != Some(&SCHEMA_VERSION.to_string()) || rid.as_deref() != Some(repo_id) {
            cat.reset()?;
            cat.set_meta("schema", &SCHEMA_VERSION.to_string())?;
            cat.set_meta("repository", repo_id)?;
        }
        Ok(cat)
    }

    /// A catalog written by another schema version, or whose tables lack a
    /// column this version uses: every table is dropped and created again
    /// (empty; the caller then loads the repository's index). Checked again
    /// inside the write transaction, so two processes opening an old
    /// catalog at once drop it only once.
    fn recreate_tables(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ver: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if ver.as_deref() != Some(&SCHEMA_VERSION.to_string()) || !columns_present(&tx) {
            let names: Vec<String> = tx
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for n in names {
                tx.execute_batch(&format!(
                    "DROP TABLE IF EXISTS \"{}\"",
                    n.replace('"', "\"\"")
                ))?;
            }
            tx.execute_batch(SCHEMA)?;
        }
        tx.commit()?;
        *self.marked_ids.borrow_mut() = None;
        Ok(())
    }

    /// An integer value of the meta table (0 when absent or not a number).
    fn meta_i64(&self, key: &str) -> Result<i64> {
        Ok(self.meta(key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// A value of the meta table (schema, repository, check position …).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Sets a value of the meta table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)",
            [key, value],
        )?;
        Ok(())
    }

    /// Forgets everything (the next sync reloads from the repository).
    pub fn reset(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM indexes; DELETE FROM packs; DELETE FROM blobs; DELETE FROM snapshots; DELETE FROM marked; DELETE FROM trees_indexed; DELETE FROM tree_entries; DELETE FROM verified; DELETE FROM tree_cache;",
        )?;
        tx.execute(BUMP_EPOCH, [])?;
        tx.commit()?;
        *self.marked_ids.borrow_mut() = None;
        Ok(())
    }

    /// [`Catalog::reset`] for a put-only key (format-spec §13.1, §25.9):
    /// drops everything derived from the index but keeps the snapshot
    /// records and the tree cache, which such a key cannot read back from
    /// the repository (only its own snapshots are there; cached trees are
    /// checked against their keyed id on use). Snapshots that are no longer
    /// listed are removed by the sync as always.
    pub fn reset_index(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM indexes; DELETE FROM packs; DELETE FROM blobs; DELETE FROM marked; DELETE FROM verified;",
        )?;
        tx.execute(BUMP_EPOCH, [])?;
        tx.commit()?;
        *self.marked_ids.borrow_mut() = None;
        Ok(())
    }

    /// Ids of the index objects already loaded.
    pub fn index_ids(&self) -> Result<HashSet<IndexId>> {
        let mut st = self.conn.prepare("SELECT id FROM indexes")?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = HashSet::new();
        for r in rows {
            if let Some(id) = IndexId::from_slice(&r?) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Loads one index object in a single transaction. Blobs already known
    /// (stored twice) keep their first location.
    pub fn add_index(&mut self, index_id: &IndexId, idx: &IndexFile) -> Result<()> {
        *self.marked_ids.borrow_mut() = None;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins_pack = tx
                .prepare_cached("INSERT OR IGNORE INTO packs(id,size,index_id) VALUES(?1,?2,?3)")?;
            let mut get_pack = tx.prepare_cached("SELECT pack_no FROM packs WHERE id=?1")?;
            // A blob stored twice keeps its first location unless that one is
            // in a pack marked for deletion.
            let mut ins_blob = tx.prepare_cached(
                "INSERT INTO blobs(id,kind,pack_no,offset,length,raw_len,base) VALUES(?1,?2,?3,?4,?5,?6,?7) \
                 ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, pack_no=excluded.pack_no, \
                 offset=excluded.offset, length=excluded.length, raw_len=excluded.raw_len, \
                 base=excluded.base \
                 WHERE blobs.pack_no IN (SELECT p.pack_no FROM packs p JOIN marked m ON m.id=p.id) \
                 AND excluded.pack_no NOT IN (SELECT p.pack_no FROM packs p JOIN marked m ON m.id=p.id)",
            )?;
            let mut rows = Vec::with_capacity(idx.packs.iter().map(|p| p.blobs.len()).sum());
            for p in &idx.packs {
                ins_pack.execute(params![&p.id.0[..], p.size as i64, &index_id.0[..]])?;
                let pack_no: i64 = get_pack.query_row([&p.id.0[..]], |r| r.get(0))?;
                rows.extend(p.blobs.iter().map(|b| (pack_no, b)));
            }
            // In id order: consecutive inserts share the B-tree path, so a
            // large catalog reads each interior page once per index object.
            // Stable: copies of one blob keep their pack order.
            rows.sort_by_key(|r| r.1.id);
            for (pack_no, b) in rows {
                ins_blob.execute(params![
                    &b.id.0[..],
                    b.kind.to_byte(),
                    pack_no,
                    b.offset,
                    b.length,
                    b.raw_len,
                    b.base.as_ref().map(|x| &x.0[..])
                ])?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO indexes(id) VALUES(?1)",
                [&index_id.0[..]],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Where blob `id` is stored, if any pack holds it.
    pub fn lookup(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        // The pack id is read in the same statement: pack numbers are
        // reassigned when any process sharing the catalog resets it.
        let mut st = self.conn.prepare_cached(
            "SELECT b.kind, p.id, b.offset, b.length, b.raw_len, b.base FROM blobs b \
             JOIN packs p ON p.pack_no=b.pack_no WHERE b.id=?1",
        )?;
        let row = st.query_row([&id.0[..]], location_row).optional()?;
        row.map(location_of).transpose()
    }

    /// Every blob's location, in one scan of the blobs table: for a caller
    /// that needs most of the catalog (a large restore), where a query per
    /// blob ([`Catalog::lookup`]) costs several times more. Memory: about
    /// 100 bytes a blob. Errors: the catalog's, a malformed row.
    pub fn all_locations(&self) -> Result<HashMap<BlobId, BlobLocation>> {
        let mut st = self.conn.prepare(
            "SELECT b.kind, p.id, b.offset, b.length, b.raw_len, b.base, b.id FROM blobs b \
             JOIN packs p ON p.pack_no=b.pack_no",
        )?;
        let mut out = HashMap::new();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id = BlobId::from_slice(&r.get::<_, Vec<u8>>(6)?).ok_or_else(|| {
                Error::new(
                    ErrorKind::Catalog,
                    "catalog holds a malformed blob id; run `snap cache rebuild`",
                )
            })?;
            out.insert(id, location_of(location_row(r)?)?);
        }
        Ok(out)
    }

    /// Whether blob `id` is in some indexed pack that is not marked for
    /// deletion (a backup must store blobs again rather than reference a
    /// marked pack; format-spec §10, §20.2). A delta blob
    /// counts only if its base passes the same test (§13).
    pub fn contains(&self, id: &BlobId) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT p.id, b.base FROM blobs b JOIN packs p ON p.pack_no=b.pack_no WHERE b.id=?1",
        )?;
        let Some((pack, base)) = st
            .query_row([&id.0[..]], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
            })
            .optional()?
        else {
            return Ok(false);
        };
        if !self.pack_usable(&pack_id(&pack)?)? {
            return Ok(false);
        }
        match base {
            None => Ok(true),
            Some(b) => {
                let Some(pack) = st
                    .query_row([&b[..]], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                else {
                    return Ok(false);
                };
                self.pack_usable(&pack_id(&pack)?)
            }
        }
    }

    /// Whether pack `pack` is marked for deletion neither in this process's
    /// own listing of marks nor in the `marked` table.
    fn pack_usable(&self, pack: &PackId) -> Result<bool> {
        if self.own_marked.borrow().contains(pack) {
            return Ok(false);
        }
        if self.marked_ids.borrow().is_none() {
            let mut q = self.conn.prepare("SELECT id FROM marked")?;
            let ids = q
                .query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
            let ids = ids.iter().filter_map(|i| PackId::from_slice(i)).collect();
            *self.marked_ids.borrow_mut() = Some(ids);
        }
        Ok(!self
            .marked_ids
            .borrow()
            .as_ref()
            .is_some_and(|m| m.contains(pack)))
    }

    /// Whether the `marked` table holds exactly the packs of this process's
    /// own listing of marks (another process sharing the catalog may have
    /// rewritten it from an older or newer listing).
    fn own_view_is_shared(&self) -> Result<bool> {
        let table: HashSet<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT id FROM marked")?
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let own = self.own_marked.borrow();
        Ok(table.len() == own.len() && own.iter().all(|p| table.contains(&p.0[..])))
    }

    /// The blob epoch: a counter that changes whenever a blob may stop
    /// counting as stored (the catalog is reset or rebuilt, or the set of
    /// packs marked for deletion changes). Adding blobs keeps the epoch.
    pub fn blob_epoch(&self) -> Result<i64> {
        self.meta_i64("blob_epoch")
    }

    /// Records that every blob reachable from tree `tree` was stored (and not
    /// in a marked pack) at blob epoch `epoch`. Older records are dropped.
    /// Nothing is recorded while the `marked` table differs from this
    /// process's own listing of marks: the record would vouch for a view
    /// other processes do not share.
    pub fn set_verified(&self, tree: &BlobId, epoch: i64) -> Result<()> {
        if !self.own_view_is_shared()? {
            return Ok(());
        }
        self.conn
            .prepare_cached("DELETE FROM verified WHERE epoch<>?1")?
            .execute([epoch])?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO verified(tree,epoch) VALUES(?1,?2)")?
            .execute(params![&tree.0[..], epoch])?;
        Ok(())
    }

    /// Whether every blob reachable from `tree` is known to be stored now:
    /// it was verified at the current blob epoch.
    /// Never while the `marked` table differs from this process's own
    /// listing of marks (a record is only written, and only trusted, by a
    /// process whose listing equals the table; every change of the table
    /// starts a new epoch).
    pub fn is_verified(&self, tree: &BlobId) -> Result<bool> {
        if !self.own_view_is_shared()? {
            return Ok(false);
        }
        let epoch = self.blob_epoch()?;
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM verified WHERE tree=?1 AND epoch=?2")?
            .query_row(params![&tree.0[..], epoch], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Starts a backup's use of the tree cache: returns its generation (a
    /// counter stored in `meta`).
    pub fn next_tree_generation(&self) -> Result<i64> {
        let g = self.meta_i64("tree_gen")? + 1;
        self.set_meta("tree_gen", &g.to_string())?;
        Ok(g)
    }

    /// The plaintext of tree blob `id` if the tree cache holds it (marking
    /// it used by generation `generation`). Callers verify it against `id`.
    pub fn cached_tree(&self, id: &BlobId, generation: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("UPDATE tree_cache SET used=?2 WHERE id=?1 RETURNING plain")?
            .query_row(params![&id.0[..], generation], |r| r.get(0))
            .optional()?)
    }

    /// The plaintext of tree blob `id` if the tree cache holds it, without
    /// marking it used (a restore reads the cache, only backups keep it
    /// alive). Callers verify it against `id`.
    pub fn peek_tree(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT plain FROM tree_cache WHERE id=?1")?
            .query_row(params![&id.0[..]], |r| r.get(0))
            .optional()?)
    }

    /// Keeps the plaintext of tree blob `id` (already verified or just
    /// encoded) for later backups.
    pub fn cache_tree(&self, id: &BlobId, plain: &[u8], generation: i64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO tree_cache(id,plain,used) VALUES(?1,?2,?3)")?
            .execute(params![&id.0[..], plain, generation])?;
        Ok(())
    }

    /// Drops cached trees last used before generation `keep_from`.
    pub fn evict_trees(&self, keep_from: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM tree_cache WHERE used<?1")?
            .execute([keep_from])?;
        Ok(())
    }

    /// Replaces the set of packs marked for deletion.
    pub fn set_marked(&mut self, packs: &HashSet<PackId>) -> Result<()> {
        *self.marked_ids.borrow_mut() = None;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let before: HashSet<Vec<u8>> = tx
            .prepare("SELECT id FROM marked")?
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<_>>()?;
        let after: HashSet<Vec<u8>> = packs.iter().map(|p| p.0.to_vec()).collect();
        if before != after {
            // Blobs in newly marked packs stop counting as stored.
            tx.execute(BUMP_EPOCH, [])?;
        }
        tx.execute("DELETE FROM marked", [])?;
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO marked(id) VALUES(?1)")?;
            for p in packs {
                ins.execute([&p.0[..]])?;
            }
        }
        tx.commit()?;
        *self.own_marked.borrow_mut() = packs.clone();
        Ok(())
    }

    /// Every indexed pack as (id, size in bytes).
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, size FROM packs ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, size) = r?;
            if let Some(id) = PackId::from_slice(&id) {
                out.push((id, size as u64));
            }
        }
        Ok(out)
    }

    /// Number of blobs known.
    pub fn blob_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Ids of the snapshots known.
    pub fn snapshot_ids(&self) -> Result<HashSet<SnapshotId>> {
        let mut st = self.conn.prepare("SELECT id FROM snapshots")?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = HashSet::new();
        for r in rows {
            if let Some(id) = SnapshotId::from_slice(&r?) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Records a snapshot.
    pub fn add_snapshot(&self, id: &SnapshotId, snap: &Snapshot) -> Result<()> {
        let json = serde_json::to_string(snap)
            .map_err(|e| Error::with_source(ErrorKind::Catalog, "encoding snapshot", e))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO snapshots(id,time_ms,json) VALUES(?1,?2,?3)",
            params![&id.0[..], snap.time_ms(), json],
        )?;
        Ok(())
    }

    /// Forgets a snapshot that no longer exists in the repository.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.conn
            .execute("DELETE FROM snapshots WHERE id=?1", [&id.0[..]])?;
        Ok(())
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, json FROM snapshots ORDER BY time_ms, id")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (id, json) = r?;
            let id = SnapshotId::from_slice(&id).ok_or_else(|| {
                Error::new(ErrorKind::Catalog, "catalog holds a malformed snapshot id")
            })?;
            let s: Snapshot = serde_json::from_str(&json).map_err(|e| {
                Error::with_source(ErrorKind::Catalog, "catalog holds a malformed snapshot", e)
            })?;
            out.push((id, s));
        }
        Ok(out)
    }

    /// Whether tree `id` (and, by construction, every tree below it) is in
    /// the path index.
    pub fn tree_indexed(&self, id: &BlobId) -> Result<bool> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM trees_indexed WHERE tree=?1")?;
        Ok(st.exists([&id.0[..]])?)
    }

    /// Adds one tree's entries to the path index. Callers add a tree only
    /// after all its subtrees, so "indexed" implies "fully indexed below".
    pub fn index_tree(&mut self, id: &BlobId, entries: &[IndexedEntry]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO tree_entries(tree,name,kind,size,mtime_ns,subtree) VALUES(?1,?2,?3,?4,?5,?6)",
            )?;
            for e in entries {
                ins.execute(params![
                    &id.0[..],
                    &e.name,
                    e.kind,
                    e.size as i64,
                    e.mtime_ns,
                    e.subtree.as_ref().map(|s| s.0.to_vec())
                ])?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO trees_indexed(tree) VALUES(?1)",
                [&id.0[..]],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The indexed entries of tree `id`, sorted by name (empty if the tree
    /// is not indexed).
    pub fn tree_entries(&self, id: &BlobId) -> Result<Vec<IndexedEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, kind, size, mtime_ns, subtree FROM tree_entries WHERE tree=?1 ORDER BY name",
        )?;
        let rows = st.query_map([&id.0[..]], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u8>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (name, kind, size, mtime_ns, sub) = r?;
            let subtree = match sub {
                None => None,
                Some(b) => Some(BlobId::from_slice(&b).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Catalog,
                        "catalog path index holds a malformed tree id; run `snap cache rebuild`",
                    )
                })?),
            };
            out.push(IndexedEntry {
                name,
                kind,
                size: size as u64,
                mtime_ns,
                subtree,
            });
        }
        Ok(out)
    }

    /// Number of trees in the path index.
    pub fn indexed_tree_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM trees_indexed", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Totals over all indexed blobs: (count, sealed bytes, plaintext bytes).
    pub fn blob_totals(&self) -> Result<(u64, u64, u64)> {
        Ok(self.conn.query_row(
            "SELECT count(*), coalesce(sum(length),0), coalesce(sum(raw_len),0) FROM blobs",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )?)
    }
}

/// One entry of the catalog's path index (a tree's entry without content ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEntry {
    /// Name bytes.
    pub name: Vec<u8>,
    /// Entry kind byte (format-spec §14.1).
    pub kind: u8,
    /// Size, bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Subtree of a directory.
    pub subtree: Option<BlobId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::PackEntry;

    #[test]
    fn catalog_of_an_older_schema_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        {
            // Schema 3: blobs without the base column, no verified/tree_cache.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES('schema','3');
                 INSERT INTO meta VALUES('repository','old');
                 CREATE TABLE blobs(id BLOB PRIMARY KEY, kind INTEGER NOT NULL, pack_no INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_len INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO blobs VALUES(x'00', 0, 1, 0, 41, 1);",
            )
            .unwrap();
        }
        let cat = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        assert_eq!(cat.blob_count().unwrap(), 0, "old rows survived");
        drop(cat);
        // A catalog that says it is current but has an old table is rebuilt
        // too (an interrupted upgrade).
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "DROP TABLE blobs;
                 CREATE TABLE blobs(id BLOB PRIMARY KEY, kind INTEGER NOT NULL, pack_no INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_len INTEGER NOT NULL) WITHOUT ROWID;",
            )
            .unwrap();
        }
        let mut cat = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        assert_eq!(cat.blob_count().unwrap(), 0);
        let entry = PackEntry {
            kind: BlobKind::Data,
            id: BlobId([3; 32]),
            offset: 0,
            length: 41,
            raw_len: 1,
            base: Some(BlobId([4; 32])),
        };
        let idx = IndexFile {
            supersedes: Vec::new(),
            packs: vec![crate::format::index::IndexPack {
                id: PackId([5; 32]),
                size: 45,
                blobs: vec![entry],
            }],
        };
        cat.add_index(&IndexId([6; 32]), &idx).unwrap();
        assert_eq!(
            cat.lookup(&BlobId([3; 32])).unwrap().unwrap().base,
            Some(BlobId([4; 32]))
        );
        assert!(cat.is_verified(&BlobId([1; 32])).is_ok());
        assert!(cat.cached_tree(&BlobId([1; 32]), 1).unwrap().is_none());
    }

    #[test]
    fn verified_trees_expire_when_blobs_may_have_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite"), &"ab".repeat(32)).unwrap();
        let t = BlobId([1; 32]);
        let e0 = cat.blob_epoch().unwrap();
        cat.set_verified(&t, e0).unwrap();
        assert!(cat.is_verified(&t).unwrap());
        assert!(!cat.is_verified(&BlobId([2; 32])).unwrap());
        // The same marked set again changes nothing.
        cat.set_marked(&HashSet::new()).unwrap();
        assert!(cat.is_verified(&t).unwrap());
        // A newly marked pack: blobs in it no longer count as stored.
        let marked: HashSet<PackId> = [PackId([9; 32])].into_iter().collect();
        cat.set_marked(&marked).unwrap();
        assert!(!cat.is_verified(&t).unwrap());
        let e1 = cat.blob_epoch().unwrap();
        assert_ne!(e0, e1);
        cat.set_verified(&t, e1).unwrap();
        cat.set_marked(&marked).unwrap();
        assert!(cat.is_verified(&t).unwrap());
        // Unmarking changes the set too.
        cat.set_marked(&HashSet::new()).unwrap();
        assert!(!cat.is_verified(&t).unwrap());
        // A reset (cache rebuild, repair) forgets every record.
        let e2 = cat.blob_epoch().unwrap();
        cat.set_verified(&t, e2).unwrap();
        cat.reset().unwrap();
        assert!(!cat.is_verified(&t).unwrap());
        assert_ne!(cat.blob_epoch().unwrap(), e2);
    }

    /// One index object with one pack holding one data blob.
    fn one_blob_index(pack: u8, blob: u8) -> IndexFile {
        IndexFile {
            supersedes: Vec::new(),
            packs: vec![crate::format::index::IndexPack {
                id: PackId([pack; 32]),
                size: 45,
                blobs: vec![PackEntry {
                    kind: BlobKind::Data,
                    id: BlobId([blob; 32]),
                    offset: 0,
                    length: 41,
                    raw_len: 1,
                    base: None,
                }],
            }],
        }
    }

    /// One scan of every location gives what a look-up per blob gives,
    /// delta bases included.
    #[test]
    fn all_locations_agrees_with_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite"), &"ab".repeat(32)).unwrap();
        assert!(cat.all_locations().unwrap().is_empty());
        let mut idx = one_blob_index(5, 3);
        idx.packs[0].blobs.push(PackEntry {
            kind: BlobKind::Data,
            id: BlobId([4; 32]),
            offset: 41,
            length: 30,
            raw_len: 9,
            base: Some(BlobId([3; 32])),
        });
        cat.add_index(&IndexId([6; 32]), &idx).unwrap();
        cat.add_index(&IndexId([7; 32]), &one_blob_index(8, 9))
            .unwrap();
        let all = cat.all_locations().unwrap();
        assert_eq!(all.len(), 3);
        for (id, loc) in &all {
            assert_eq!(cat.lookup(id).unwrap(), Some(*loc), "{id:?}");
        }
        assert_eq!(all[&BlobId([4; 32])].base, Some(BlobId([3; 32])));
        assert_eq!(all[&BlobId([9; 32])].pack, PackId([8; 32]));
    }

    /// Two handles on one file stand for two processes sharing a cache
    /// directory: one that listed a mark (a backup that started after the
    /// mark, hence no blocker of it) and one that listed `marks/` before it.
    #[test]
    fn a_stale_rewrite_of_the_marks_by_another_process_unmarks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut seen = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        let mut stale = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        seen.add_index(&IndexId([6; 32]), &one_blob_index(5, 3))
            .unwrap();
        assert!(seen.contains(&BlobId([3; 32])).unwrap());
        let marked: HashSet<PackId> = [PackId([5; 32])].into_iter().collect();
        seen.set_marked(&marked).unwrap();
        assert!(!seen.contains(&BlobId([3; 32])).unwrap());
        // The other process finishes its sync with its older listing.
        stale.set_marked(&HashSet::new()).unwrap();
        // The blob's only copy is still marked for the first process; so is
        // a tree verified by the other one at the current epoch.
        seen.add_index(&IndexId([7; 32]), &one_blob_index(8, 9))
            .unwrap();
        assert!(!seen.contains(&BlobId([3; 32])).unwrap());
        let t = BlobId([1; 32]);
        stale.set_verified(&t, stale.blob_epoch().unwrap()).unwrap();
        assert!(!seen.is_verified(&t).unwrap());
        // The other order: the stale process records nothing while the
        // table holds a mark it did not list.
        seen.set_marked(&marked).unwrap();
        stale.set_verified(&t, stale.blob_epoch().unwrap()).unwrap();
        assert!(!seen.is_verified(&t).unwrap());
        // Agreeing views still share records.
        seen.set_verified(&t, seen.blob_epoch().unwrap()).unwrap();
        assert!(seen.is_verified(&t).unwrap());
    }

    /// Another process's rebuild renumbers the packs; a lookup in this one
    /// still names the pack that holds the blob.
    #[test]
    fn lookup_names_the_right_pack_after_another_process_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut a = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        let mut b = Catalog::open(&path, &"ab".repeat(32)).unwrap();
        a.add_index(&IndexId([6; 32]), &one_blob_index(5, 3))
            .unwrap();
        assert_eq!(
            a.lookup(&BlobId([3; 32])).unwrap().unwrap().pack,
            PackId([5; 32])
        );
        b.reset().unwrap();
        b.add_index(&IndexId([7; 32]), &one_blob_index(8, 9))
            .unwrap();
        b.add_index(&IndexId([6; 32]), &one_blob_index(5, 3))
            .unwrap();
        assert_eq!(
            a.lookup(&BlobId([9; 32])).unwrap().unwrap().pack,
            PackId([8; 32])
        );
        assert_eq!(
            a.lookup(&BlobId([3; 32])).unwrap().unwrap().pack,
            PackId([5; 32])
        );
    }
}
