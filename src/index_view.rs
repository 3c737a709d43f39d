//! A private, temporary view of the repository's index objects on disk, for
//! the operations that must not trust the shared catalog (prune, check;
//! format-spec §20.1) yet must not hold the whole index in memory.
//!
//! [`IndexView::load`] lists `index/` itself and reads the index objects one
//! at a time into a temporary SQLite file (in the cache directory, removed
//! on drop), so memory stays bounded whatever the number of blobs: the
//! largest single index object (≤ 256 MiB, format-spec §7) plus SQLite's
//! page cache ([`VIEW_CACHE_BYTES`]). Blobs are appended in pack order (a
//! pack's blobs are one rowid range), and the id index is built once after
//! loading (an external merge sort in SQLite, bounded memory), so loading N
//! blobs costs O(N log N) with a small constant instead of N random B-tree
//! inserts. Prune's referenced-blob set and check's seen-tree set are
//! tables of the same file.
//!
//! Supersession (format-spec §7): an index object named in another listed
//! index object's `supersedes` is ignored, and a pack named by several
//! index objects counts once (its first listing in id order).

use crate::catalog::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::format::pack::PackEntry;
use crate::format::{BlobId, BlobKind, IndexId, PackId, TypedId};
use crate::repo::Repository;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// SQLite page cache of a view, bytes (also bounds its sorter's memory).
pub const VIEW_CACHE_BYTES: i64 = 16 << 20;

const SCHEMA: &str = "
CREATE TABLE indexes(idx_no INTEGER PRIMARY KEY, id BLOB NOT NULL);
CREATE TABLE supersedes(id BLOB NOT NULL);
CREATE TABLE packs(pack_no INTEGER PRIMARY KEY, id BLOB NOT NULL, size INTEGER NOT NULL, idx_no INTEGER NOT NULL, first INTEGER NOT NULL, count INTEGER NOT NULL, cand INTEGER NOT NULL DEFAULT 1, cover INTEGER NOT NULL DEFAULT 1);
CREATE TABLE blobs(pack_no INTEGER NOT NULL, id BLOB NOT NULL, kind INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_len INTEGER NOT NULL, base BLOB);
CREATE TABLE marked(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE trees(id BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE refs(id BLOB NOT NULL);
CREATE TABLE listed(id BLOB PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;
";

/// Rows of the pack listing read per query by [`IndexView::for_each_listed`].
const LISTED_PAGE: usize = 4096;

/// One effective pack of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewPack {
    /// Position in the view (load order).
    pub pack_no: i64,
    /// Pack id.
    pub id: PackId,
    /// Stored size the index gives, bytes.
    pub size: u64,
    /// First blob row of the pack.
    first: i64,
    /// Number of blobs the index lists for it.
    pub count: u64,
}

/// A temporary on-disk view of the index; see the module documentation.
pub struct IndexView {
    conn: Connection,
    path: PathBuf,
    refs_indexed: bool,
}

impl Drop for IndexView {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let mut j = self.path.as_os_str().to_owned();
        j.push("-journal");
        let _ = std::fs::remove_file(j);
    }
}

/// A malformed id in the view (never expected: the view writes only ids).
fn id_of<T: TypedId>(raw: &[u8]) -> Result<T> {
    T::from_slice(raw).ok_or_else(|| {
        Error::new(
            ErrorKind::Catalog,
            "temporary index view holds a malformed id",
        )
    })
}

fn pack_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_pack((pack_no, id, size, first, count): (i64, Vec<u8>, i64, i64, i64)) -> Result<ViewPack> {
    Ok(ViewPack {
        pack_no,
        id: id_of(&id)?,
        size: size.max(0) as u64,
        first,
        count: count.max(0) as u64,
    })
}

/// A blob row as read: id, kind, offset, length, raw_len, base.
type EntryRow = (Vec<u8>, u8, u32, u32, u32, Option<Vec<u8>>);

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_entry((id, kind, offset, length, raw_len, base): EntryRow) -> Result<PackEntry> {
    Ok(PackEntry {
        kind: BlobKind::from_byte(kind).unwrap_or(BlobKind::Data),
        id: id_of(&id)?,
        offset,
        length,
        raw_len,
        base: base.as_deref().map(id_of).transpose()?,
    })
}

/// What [`IndexView::load`] returns: the view, the readable index ids
/// (listing order), and the index objects that do not authenticate or
/// decode, with their errors, ordered by id.
pub type LoadedView = (IndexView, Vec<IndexId>, Vec<(IndexId, Error)>);

impl IndexView {
    /// An empty view in a new temporary file under `dir` (created 0700 if
    /// missing). Errors: [`ErrorKind::Io`], [`ErrorKind::Catalog`].
    pub fn create(dir: &Path) -> Result<IndexView> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating cache directory {}", dir.display()), e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("view-{}-{nanos}.sqlite", std::process::id()));
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        let view = IndexView {
            conn,
            path,
            refs_indexed: false,
        };
        // A scratch file: no journal, no fsync; a crash leaves a stale file
        // that nothing reads.
        view.conn.pragma_update(None, "journal_mode", "OFF")?;
        view.conn.pragma_update(None, "synchronous", "OFF")?;
        view.conn.pragma_update(None, "temp_store", "FILE")?;
        view.conn
            .pragma_update(None, "cache_size", -(VIEW_CACHE_BYTES / 1024))?;
        view.conn.execute_batch(SCHEMA)?;
        Ok(view)
    }

    /// Lists `index/` and loads every index object into a new view under
    /// the repository's cache directory, one object in memory at a time.
    /// Index objects deleted after listing are skipped (superseded).
    /// Errors: store errors other than NotFound; view errors.
    pub fn load(repo: &Repository) -> Result<LoadedView> {
        let mut view = IndexView::create(&repo.cache_dir())?;
        let listed: Vec<IndexId> = crate::repo::list_sealed(repo.store())?;
        let mut ids = Vec::new();
        let mut bad = Vec::new();
        for id in &listed {
            match repo.read_index(id) {
                Ok(f) => {
                    view.add_index(id, &f)?;
                    ids.push(*id);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind().is_damaged_data() => bad.push((*id, e)),
                Err(e) => return Err(e),
            }
        }
        view.finish_load()?;
        Ok((view, ids, bad))
    }

    /// Appends one index object (its packs and blobs in pack order).
    pub fn add_index(&mut self, id: &IndexId, f: &IndexFile) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("INSERT INTO indexes(id) VALUES(?1)", [&id.0[..]])?;
        let idx_no = tx.last_insert_rowid();
        {
            let mut sup = tx.prepare_cached("INSERT INTO supersedes(id) VALUES(?1)")?;
            for s in &f.supersedes {
                sup.execute([&s.0[..]])?;
            }
            let mut ins_pack = tx.prepare_cached(
                "INSERT INTO packs(id,size,idx_no,first,count) VALUES(?1,?2,?3,?4,?5)",
            )?;
            let mut ins_blob = tx.prepare_cached(
                "INSERT INTO blobs(pack_no,id,kind,offset,length,raw_len,base) VALUES(?1,?2,?3,?4,?5,?6,?7)",
            )?;
            let mut next_blob: i64 =
                tx.query_row("SELECT coalesce(max(rowid),0)+1 FROM blobs", [], |r| {
                    r.get(0)
                })?;
            for p in &f.packs {
                ins_pack.execute(params![
                    &p.id.0[..],
                    p.size as i64,
                    idx_no,
                    next_blob,
                    p.blobs.len() as i64
                ])?;
                let pack_no = tx.last_insert_rowid();
                for b in &p.blobs {
                    ins_blob.execute(params![
                        pack_no,
                        &b.id.0[..],
                        b.kind.to_byte(),
                        b.offset,
                        b.length,
                        b.raw_len,
                        b.base.as_ref().map(|x| &x.0[..])
                    ])?;
                }
                next_blob += p.blobs.len() as i64;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops superseded index objects' packs and repeated packs, then
    /// builds the id indexes.
    pub fn finish_load(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "CREATE INDEX packs_id ON packs(id);
             CREATE TEMP TABLE dropped AS SELECT pack_no, first, count FROM packs
               WHERE idx_no IN (SELECT i.idx_no FROM indexes i JOIN supersedes s ON s.id=i.id)
               OR pack_no NOT IN (SELECT min(pack_no) FROM packs
                   WHERE idx_no NOT IN (SELECT i.idx_no FROM indexes i JOIN supersedes s ON s.id=i.id)
                   GROUP BY id);",
        )?;
        {
            let mut st = tx.prepare("SELECT first, count FROM temp.dropped")?;
            let ranges: Vec<(i64, i64)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut del = tx.prepare("DELETE FROM blobs WHERE rowid>=?1 AND rowid<?2")?;
            for (first, count) in ranges {
                del.execute([first, first + count])?;
            }
        }
        tx.execute_batch(
            "DELETE FROM packs WHERE pack_no IN (SELECT pack_no FROM temp.dropped);
             DROP TABLE temp.dropped;
             CREATE INDEX blobs_id ON blobs(id);",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Number of effective packs.
    pub fn pack_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM packs", [], |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    }

    /// Number of blob entries of the effective packs (copies count).
    pub fn blob_count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    }

    /// Calls `f` for each effective pack in load order; stops at its first
    /// error.
    pub fn for_each_pack(&self, mut f: impl FnMut(&ViewPack) -> Result<()>) -> Result<()> {
        let mut st = self
            .conn
            .prepare("SELECT pack_no,id,size,first,count FROM packs ORDER BY pack_no")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(&to_pack(pack_row(r)?)?)?;
        }
        Ok(())
    }

    /// Lists the packs under `data/` into the view (id and size in bytes),
    /// as the listing arrives: memory does not grow with the number of
    /// packs. Names that are not pack ids are skipped; a pack listed twice
    /// counts once. Returns (packs listed, their total size in bytes).
    /// Errors: store listing errors; view errors.
    pub fn list_packs(&mut self, store: &crate::store::Store) -> Result<(u64, u64)> {
        let tx = self.conn.transaction()?;
        let (mut count, mut bytes) = (0u64, 0u64);
        {
            let mut ins =
                tx.prepare_cached("INSERT OR IGNORE INTO listed(id, size) VALUES(?1, ?2)")?;
            store.list_each(crate::store::ObjectKind::Pack.list_prefix(), |l| {
                let Some(id) = PackId::from_hex(&l.name) else {
                    return Ok(());
                };
                let size = i64::try_from(l.size).unwrap_or(i64::MAX);
                if ins.execute(params![&id.0[..], size])? == 1 {
                    count += 1;
                    bytes = bytes.saturating_add(l.size);
                }
                Ok(())
            })?;
        }
        tx.commit()?;
        Ok((count, bytes))
    }

    /// Size in bytes of pack `id` in the listing [`IndexView::list_packs`]
    /// made; `None` if it was not listed.
    pub fn listed_size(&self, id: &PackId) -> Result<Option<u64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT size FROM listed WHERE id=?1")?
            .query_row([&id.0[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|s| s.max(0) as u64))
    }

    /// Calls `f` with each listed pack (id, size in bytes) in id order; with
    /// `unindexed`, only those the view holds no effective pack for. Rows
    /// are read a page at a time, so `f` may use the view. Stops at the
    /// first error of `f`.
    pub fn for_each_listed(
        &self,
        unindexed: bool,
        mut f: impl FnMut(&PackId, u64) -> Result<()>,
    ) -> Result<()> {
        let sql = if unindexed {
            "SELECT l.id, l.size FROM listed l WHERE l.id > ?1 AND NOT EXISTS(SELECT 1 FROM packs p WHERE p.id=l.id) ORDER BY l.id LIMIT ?2"
        } else {
            "SELECT id, size FROM listed WHERE id > ?1 ORDER BY id LIMIT ?2"
        };
        let mut after: Vec<u8> = Vec::new();
        loop {
            let page: Vec<(Vec<u8>, i64)> = self
                .conn
                .prepare_cached(sql)?
                .query_map(params![&after[..], LISTED_PAGE as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (id, size) in &page {
                f(&id_of::<PackId>(id)?, (*size).max(0) as u64)?;
            }
            match page.last() {
                Some((id, _)) if page.len() == LISTED_PAGE => after = id.clone(),
                _ => return Ok(()),
            }
        }
    }

    /// The effective pack `id`, if the view holds it.
    pub fn pack(&self, id: &PackId) -> Result<Option<ViewPack>> {
        let row = self
            .conn
            .prepare_cached("SELECT pack_no,id,size,first,count FROM packs WHERE id=?1")?
            .query_row([&id.0[..]], pack_row)
            .optional()?;
        row.map(to_pack).transpose()
    }

    /// The blobs the index lists for pack `p`, in index order.
    pub fn pack_blobs(&self, p: &ViewPack) -> Result<Vec<PackEntry>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id,kind,offset,length,raw_len,base FROM blobs WHERE rowid>=?1 AND rowid<?2 ORDER BY rowid",
        )?;
        let rows = st
            .query_map([p.first, p.first + p.count as i64], entry_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(to_entry).collect()
    }

    /// Records the packs of prune marks: [`IndexView::locate`] prefers
    /// copies outside them.
    pub fn set_marked<'a>(&mut self, ids: impl IntoIterator<Item = &'a PackId>) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare("INSERT OR IGNORE INTO marked(id) VALUES(?1)")?;
            for id in ids {
                st.execute([&id.0[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Where blob `id` is stored: the first copy (load order) in a pack
    /// outside the marked ones, else the first copy; `None` if no effective
    /// pack holds it.
    pub fn locate(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT b.id,b.kind,b.offset,b.length,b.raw_len,b.base,p.id FROM blobs b \
                 JOIN packs p ON p.pack_no=b.pack_no WHERE b.id=?1 \
                 ORDER BY EXISTS(SELECT 1 FROM marked m WHERE m.id=p.id), b.pack_no LIMIT 1",
            )?
            .query_row([&id.0[..]], |r| {
                Ok((entry_row(r)?, r.get::<_, Vec<u8>>(6)?))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((e, pack)) => Ok(Some(BlobLocation::of_entry(id_of(&pack)?, &to_entry(e)?))),
        }
    }

    /// Whether the view lists blob `id` with exactly location `l`.
    pub fn lists_at(&self, id: &BlobId, l: &BlobLocation) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM blobs b JOIN packs p ON p.pack_no=b.pack_no \
                 WHERE b.id=?1 AND p.id=?2 AND b.kind=?3 AND b.offset=?4 AND b.length=?5 \
                 AND b.raw_len=?6 AND b.base IS ?7)",
            )?
            .query_row(
                params![
                    &id.0[..],
                    &l.pack.0[..],
                    l.kind.to_byte(),
                    l.offset,
                    l.length,
                    l.raw_len,
                    l.base.as_ref().map(|b| &b.0[..])
                ],
                |r| r.get(0),
            )?)
    }

    /// Records tree `id` as seen; `true` the first time.
    pub fn see_tree(&self, id: &BlobId) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO trees(id) VALUES(?1)")?
            .execute([&id.0[..]])?
            == 1)
    }

    /// Adds `id` to the referenced blobs (duplicates allowed until
    /// [`IndexView::close_refs`]).
    pub fn add_ref(&self, id: &BlobId) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO refs(id) VALUES(?1)")?
            .execute([&id.0[..]])?;
        Ok(())
    }

    /// Starts a batch of writes (one transaction: far faster than one per
    /// row). Pair with [`IndexView::commit`].
    pub fn begin(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN")?;
        Ok(())
    }

    /// Ends the batch [`IndexView::begin`] started.
    pub fn commit(&self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Indexes the referenced blobs and adds the base of every referenced
    /// delta blob (format-spec §13; bases are never deltas, so one pass
    /// closes the set; every stored copy counts). Returns the number of
    /// distinct referenced blobs.
    pub fn close_refs(&mut self) -> Result<u64> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "CREATE INDEX refs_id ON refs(id);
             INSERT INTO refs(id) SELECT DISTINCT b.base FROM blobs b WHERE b.base IS NOT NULL
               AND EXISTS(SELECT 1 FROM refs r WHERE r.id=b.id);",
        )?;
        tx.commit()?;
        self.refs_indexed = true;
        Ok(self
            .conn
            .query_row(
                "SELECT count(*) FROM (SELECT DISTINCT id FROM refs)",
                [],
                |r| r.get::<_, i64>(0),
            )?
            .max(0) as u64)
    }

    /// Sets which packs count as covering their blobs for
    /// [`IndexView::needs_uncovered`] (`cover`) and which are prune
    /// candidates for [`IndexView::usage`] (`cand`).
    pub fn set_flags(&self, pack: &PackId, cover: bool, cand: bool) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE packs SET cover=?2, cand=?3 WHERE id=?1")?
            .execute(params![&pack.0[..], cover as i64, cand as i64])?;
        Ok(())
    }

    /// Whether pack `p` holds a referenced blob of which no covering pack
    /// holds a copy. Needs [`IndexView::close_refs`].
    pub fn needs_uncovered(&self, p: &ViewPack) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM blobs b WHERE b.rowid>=?1 AND b.rowid<?2 \
                 AND EXISTS(SELECT 1 FROM refs r WHERE r.id=b.id) \
                 AND NOT EXISTS(SELECT 1 FROM blobs c JOIN packs q ON q.pack_no=c.pack_no \
                   WHERE c.id=b.id AND q.cover=1))",
            )?
            .query_row([p.first, p.first + p.count as i64], |r| r.get(0))?)
    }

    /// For candidate pack `p`: each blob with whether `p` owns it (it is
    /// referenced and no candidate pack earlier in load order holds it).
    /// Needs [`IndexView::close_refs`].
    pub fn usage(&self, p: &ViewPack) -> Result<Vec<(PackEntry, bool)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT b.id,b.kind,b.offset,b.length,b.raw_len,b.base, \
             EXISTS(SELECT 1 FROM refs r WHERE r.id=b.id) AND NOT EXISTS( \
               SELECT 1 FROM blobs c JOIN packs q ON q.pack_no=c.pack_no \
               WHERE c.id=b.id AND c.pack_no<b.pack_no AND q.cand=1) \
             FROM blobs b WHERE b.rowid>=?1 AND b.rowid<?2 ORDER BY b.rowid",
        )?;
        let rows = st
            .query_map([p.first, p.first + p.count as i64], |r| {
                Ok((entry_row(r)?, r.get::<_, bool>(6)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(e, owned)| Ok((to_entry(e)?, owned)))
            .collect()
    }

    /// Attaches the catalog at `path` read-only as schema `cat`, for
    /// [`IndexView::compare_catalog`].
    pub fn attach_catalog(&self, path: &Path) -> Result<()> {
        let uri = format!("file:{}?mode=ro", path.display());
        self.conn
            .execute("ATTACH DATABASE ?1 AS cat", [uri.as_str()])?;
        Ok(())
    }

    /// Compares the attached catalog's blobs with the view: returns (up to
    /// `limit` example messages, total disagreements). A disagreement is a
    /// blob the view lists that the catalog lacks, a catalog blob the view
    /// lists at no location equal to the catalog's, and with `complete` a
    /// catalog blob the view does not list at all.
    pub fn compare_catalog(&self, complete: bool, limit: usize) -> Result<(Vec<String>, u64)> {
        let mut out = Vec::new();
        let mut total = 0u64;
        let mut st = self.conn.prepare(
            "SELECT DISTINCT b.id FROM blobs b WHERE NOT EXISTS(SELECT 1 FROM cat.blobs c WHERE c.id=b.id)",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            total += 1;
            if out.len() < limit {
                out.push(format!(
                    "blob {} is missing",
                    id_of::<BlobId>(&r.get::<_, Vec<u8>>(0)?)?.short()
                ));
            }
        }
        drop(rows);
        let mut st = self.conn.prepare(
            "SELECT c.id, cp.id, c.offset, \
               EXISTS(SELECT 1 FROM blobs b WHERE b.id=c.id), \
               EXISTS(SELECT 1 FROM blobs b JOIN packs p ON p.pack_no=b.pack_no \
                 WHERE b.id=c.id AND p.id=cp.id AND b.kind=c.kind AND b.offset=c.offset \
                 AND b.length=c.length AND b.raw_len=c.raw_len AND b.base IS c.base) \
             FROM cat.blobs c JOIN cat.packs cp ON cp.pack_no=c.pack_no",
        )?;
        let mut rows = st.query([])?;
        let mut unlisted = 0u64;
        while let Some(r) = rows.next()? {
            let (listed, same): (bool, bool) = (r.get(3)?, r.get(4)?);
            if same {
                continue;
            }
            if !listed {
                unlisted += 1;
                continue;
            }
            total += 1;
            if out.len() < limit {
                out.push(format!(
                    "blob {} points to pack {} offset {}, which no index lists",
                    id_of::<BlobId>(&r.get::<_, Vec<u8>>(0)?)?.short(),
                    id_of::<PackId>(&r.get::<_, Vec<u8>>(1)?)?.short(),
                    r.get::<_, i64>(2)?
                ));
            }
        }
        if complete && unlisted > 0 {
            total += 1;
            if out.len() < limit {
                out.push(format!("{unlisted} blobs that no index lists"));
            }
        }
        Ok((out, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ObjectKind, Store};
    use bytes::Bytes;
    use std::sync::Arc;

    /// More packs than one page of [`IndexView::for_each_listed`]: every
    /// listed pack is visited once, in id order, with its size; names that
    /// are not ids are skipped; `unindexed` leaves out the view's packs.
    #[test]
    fn pack_listing_is_paged_in_id_order() {
        let store =
            Store::from_object_store(Arc::new(object_store::memory::InMemory::new()), "memory")
                .unwrap();
        let n = LISTED_PAGE * 2 + 7;
        let mut ids: Vec<PackId> = (0..n as u32)
            .map(|i| PackId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let key = ObjectKind::Pack.key(&id.to_hex());
            store.put_new(&key, Bytes::from(vec![0u8; i % 5])).unwrap();
        }
        store
            .put_new("data/00/not-a-pack", Bytes::from_static(b"x"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut view = IndexView::create(dir.path()).unwrap();
        // One of them is indexed.
        let mut f = IndexFile::default();
        f.packs.push(crate::format::index::IndexPack {
            id: ids[3],
            size: 3,
            blobs: Vec::new(),
        });
        view.add_index(&IndexId([1; 32]), &f).unwrap();
        view.finish_load().unwrap();
        let want_bytes: u64 = (0..n as u64).map(|i| i % 5).sum();
        assert_eq!(view.list_packs(&store).unwrap(), (n as u64, want_bytes));
        let size_of: std::collections::HashMap<PackId, u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, (i % 5) as u64))
            .collect();
        assert_eq!(view.listed_size(&ids[9]).unwrap(), Some(9 % 5));
        assert_eq!(view.listed_size(&PackId([7; 32])).unwrap(), None);
        let mut seen = Vec::new();
        view.for_each_listed(false, |id, size| {
            assert_eq!(size, size_of[id]);
            seen.push(*id);
            Ok(())
        })
        .unwrap();
        let indexed = ids[3];
        ids.sort();
        assert_eq!(seen, ids);
        let mut unindexed = Vec::new();
        view.for_each_listed(true, |id, _| {
            unindexed.push(*id);
            Ok(())
        })
        .unwrap();
        ids.retain(|id| *id != indexed);
        assert_eq!(unindexed, ids);
    }
}
