//! SQLite databases as backup streams, and their restore counterpart.
//!
//! A live SQLite file is unsafe to copy with `read(2)`: a writer may change
//! pages while they are read, and in WAL mode the newest transactions live
//! in `FILE-wal`. [`consistent_copy`] uses SQLite's online backup API
//! (<https://www.sqlite.org/backup.html>, through rusqlite's `backup`
//! module) instead: one `sqlite3_backup_step(-1)` copies every page inside
//! one read transaction of the source, so the copy is the database as one
//! committed transaction left it, whatever writers do meanwhile (in WAL
//! mode they go on writing; in rollback-journal mode they wait, through
//! their busy timeout, for the few milliseconds per megabyte the copy
//! takes). The copy goes to a private temporary file (mode 0600, in
//! `$TMPDIR`, unlinked as soon as it is open for reading) that the backup
//! then reads as a stream.
//!
//! [`restore_file`] writes a stream back to a database path through a
//! temporary file in the same folder, checked with `PRAGMA
//! integrity_check` and renamed into place, so the path holds either the
//! old file or the whole restored one.

use crate::error::{Error, ErrorKind, Result};
use crate::ops::backup::{StreamInput, StreamSource};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Source kind of a `--sqlite` stream.
pub const KIND_SQLITE: &str = "sqlite";

/// How long a copy waits for a lock held by a writer before it fails.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// The 16-byte header every SQLite 3 database file starts with.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn source_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Source, format!("{what}: {e}"))
}

/// Splits `[NAME=]PATH`: NAME is taken when it is a valid stream name and
/// PATH is not empty (a path holding `=` can be given as `NAME=PATH`).
pub fn split_spec(spec: &str) -> (Option<&str>, &str) {
    if let Some((n, rest)) = spec.split_once('=') {
        if super::sources::valid_stream_name(n) && !rest.is_empty() {
            return (Some(n), rest);
        }
    }
    (None, spec)
}

/// The stream name of a `--sqlite` argument: NAME, or `sqlite-<file name>`
/// with characters other than letters, digits, `-`, `_`, `.` replaced by `_`.
pub fn stream_name(spec: &str) -> String {
    let (name, path) = split_spec(spec);
    if let Some(n) = name {
        return n.to_string();
    }
    let base = Path::new(path)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("sqlite-{clean}")
}

/// A `--sqlite [NAME=]PATH` source: checks that PATH is a SQLite 3
/// database file and returns a stream that [`consistent_copy`] fills when
/// the backup reads it, named by [`stream_name`]. The snapshot records the
/// absolute path, the SQLite library version and the method.
///
/// Errors: [`ErrorKind::Source`] naming the stream when PATH is missing,
/// not a regular file, or not a SQLite 3 database.
pub fn sqlite_source(spec: &str) -> Result<StreamSource> {
    let name = stream_name(spec);
    let (_, path) = split_spec(spec);
    let label = format!("source {name:?}");
    let path = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    let meta = std::fs::metadata(&path)
        .map_err(|e| source_err(format!("{label}: {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::Source,
            format!("{label}: {} is not a regular file", path.display()),
        ));
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(&path)
        .and_then(|mut f| {
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            Ok(n)
        })
        .map_err(|e| source_err(format!("{label}: reading {}", path.display()), e))?;
    // An empty file is an empty database to SQLite.
    if n != 0 && (n < head.len() || &head != MAGIC) {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "{label}: {} is not a SQLite 3 database (no \"SQLite format 3\" header)",
                path.display()
            ),
        ));
    }
    let mut details = BTreeMap::new();
    details.insert("path".into(), path.to_string_lossy().into_owned());
    details.insert("sqlite_version".into(), rusqlite::version().to_string());
    details.insert("method".into(), "online-backup".into());
    Ok(StreamSource {
        name,
        kind: KIND_SQLITE.into(),
        input: StreamInput::Sqlite(path),
        details,
    })
}

/// A file removed on drop unless [`TempPath::keep`] was called.
struct TempPath(Option<PathBuf>);

impl TempPath {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
            // SQLite's own side files of the temporary database, if any.
            for ext in ["-journal", "-wal", "-shm"] {
                let mut s = p.clone().into_os_string();
                s.push(ext);
                let _ = std::fs::remove_file(s);
            }
        }
    }
}

/// Creates an empty file `DIR/PREFIX<random>` with mode 0600.
fn private_file(dir: &Path, prefix: &str) -> Result<TempPath> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd)
        .map_err(|e| Error::new(ErrorKind::Io, format!("random name: {e}")))?;
    let path = dir.join(format!("{prefix}{}", hex::encode(rnd)));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    Ok(TempPath(Some(path)))
}

/// Copies the live database at `path` with the online backup API into a
/// private temporary file and returns that file, open for reading and
/// already unlinked (its space is freed when it is closed, even if snap
/// dies). Waits up to 300 s for a writer's lock (a busy database is
/// retried every 50 ms); stops on SIGINT/SIGTERM.
///
/// Errors: [`ErrorKind::Source`] when the database cannot be opened or
/// read, or stays locked; [`ErrorKind::Interrupted`]; I/O errors of the
/// temporary file ([`ErrorKind::NoSpace`] when `$TMPDIR` is full).
pub fn consistent_copy(path: &Path) -> Result<std::fs::File> {
    let what = format!("copying SQLite database {}", path.display());
    let src = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| source_err(&what, e))?;
    src.busy_timeout(Duration::from_secs(5))
        .map_err(|e| source_err(&what, e))?;
    let tmp = private_file(&std::env::temp_dir(), "snap-sqlite-")?;
    {
        let mut dst = Connection::open(tmp.path()).map_err(|e| source_err(&what, e))?;
        let backup =
            rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| source_err(&what, e))?;
        let t0 = Instant::now();
        loop {
            crate::interrupt::check()?;
            match backup.step(-1) {
                Ok(rusqlite::backup::StepResult::Done) => break,
                Ok(rusqlite::backup::StepResult::More) => continue,
                Ok(_) => {
                    // Busy or locked: a writer holds the lock.
                    if t0.elapsed() > LOCK_WAIT {
                        return Err(Error::new(
                            ErrorKind::Source,
                            format!(
                                "{what}: the database stayed locked for {} s",
                                LOCK_WAIT.as_secs()
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::DiskFull) => Error::new(
                            ErrorKind::NoSpace,
                            format!(
                                "{what}: the temporary folder {} is full (set TMPDIR)",
                                std::env::temp_dir().display()
                            ),
                        ),
                        _ => source_err(&what, e),
                    })
                }
            }
        }
    }
    let f = std::fs::File::open(tmp.path())
        .map_err(|e| Error::io(format!("opening {}", tmp.path().display()), e))?;
    drop(tmp);
    Ok(f)
}

/// Runs `PRAGMA integrity_check` on the database at `path` (opened read
/// only); `Ok(())` when it answers `ok`.
///
/// Errors: [`ErrorKind::Corrupt`] with SQLite's first complaint (and how
/// many there were) when the check fails or the file is not a database.
pub fn integrity_check(path: &Path) -> Result<()> {
    check_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// [`integrity_check`] through a connection opened with `flags`. A WAL
/// database opened read-write gets its `-wal` and `-shm` files removed
/// when the connection closes; read-only, SQLite leaves them.
fn check_with(path: &Path, flags: OpenFlags) -> Result<()> {
    let what = format!("PRAGMA integrity_check on {}", path.display());
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{what}: {e}")))?;
    let lines: Vec<String> = (|| -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("PRAGMA integrity_check")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })()
    .map_err(|e| Error::new(ErrorKind::Corrupt, format!("{what}: {e}")))?;
    match lines.as_slice() {
        [one] if one == "ok" => Ok(()),
        [] => Err(Error::new(ErrorKind::Corrupt, format!("{what}: no answer"))),
        [first, rest @ ..] => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{what}: {first}{}",
                if rest.is_empty() {
                    String::new()
                } else {
                    format!(" (and {} more)", rest.len())
                }
            ),
        )),
    }
}

/// Runs `sql` on the database at `path`, opened read only, and returns the
/// first column of the first row as text (`""` for no row or NULL; numbers
/// in their SQL text form).
///
/// Errors: [`ErrorKind::Source`] with SQLite's message.
pub fn query_value(path: &Path, sql: &str) -> Result<String> {
    use rusqlite::types::ValueRef;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| source_err(format!("opening {}", path.display()), e))?;
    let mut st = conn.prepare(sql).map_err(|e| source_err("sqlite", e))?;
    let mut rows = st.query([]).map_err(|e| source_err("sqlite", e))?;
    let Some(row) = rows.next().map_err(|e| source_err("sqlite", e))? else {
        return Ok(String::new());
    };
    Ok(match row.get_ref(0).map_err(|e| source_err("sqlite", e))? {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => hex::encode(b),
    })
}

/// Writes a database stream to `dest`: `feed` writes the bytes into a new
/// file (mode 0600, or the mode of the file it replaces) beside `dest`,
/// which is synced, must pass [`integrity_check`], and is then renamed over
/// `dest`. An existing `dest` is refused unless `replace`; when replacing,
/// the old file's `-wal`, `-shm` and `-journal` files are removed first (a
/// stale write-ahead log would otherwise be replayed into the restored
/// database). Stop the application that uses the database before
/// replacing it. Returns the bytes written.
///
/// Errors: [`ErrorKind::Usage`] when `dest` exists and `replace` is false,
/// or its folder does not exist; [`ErrorKind::Corrupt`] when the restored
/// bytes are not a sound database (nothing is renamed); `feed`'s errors;
/// I/O errors.
pub fn restore_file(
    dest: &Path,
    replace: bool,
    feed: impl FnOnce(&mut dyn Write) -> Result<u64>,
) -> Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let old = std::fs::symlink_metadata(dest).ok();
    if old.is_some() && !replace {
        return Err(Error::usage(format!(
            "{} exists; add --force to replace it (stop the application using it first)",
            dest.display()
        )));
    }
    if old.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(Error::usage(format!(
            "{} exists and is not a regular file; remove it or restore elsewhere",
            dest.display()
        )));
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "folder {} does not exist; create it first",
            dir.display()
        )));
    }
    let base = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let tmp = private_file(&dir, &format!(".{base}.snap-restore-"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.path())
        .map_err(|e| Error::io(format!("opening {}", tmp.path().display()), e))?;
    let n = {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        let n = feed(&mut w)?;
        w.flush()
            .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
        n
    };
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", tmp.path().display()), e))?;
    drop(f);
    // Read-write (no create), so that a restored WAL-mode database leaves
    // no -wal/-shm files named after the temporary file.
    check_with(tmp.path(), OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| e.context("the restored database is damaged; nothing was replaced"))?;
    for ext in ["-wal", "-shm"] {
        let mut side = tmp.path().as_os_str().to_os_string();
        side.push(ext);
        let _ = std::fs::remove_file(side);
    }
    if let Some(m) = &old {
        let _ = std::fs::set_permissions(
            tmp.path(),
            std::fs::Permissions::from_mode(m.permissions().mode() & 0o7777),
        );
        for ext in ["-wal", "-shm", "-journal"] {
            let mut s = dest.as_os_str().to_os_string();
            s.push(ext);
            match std::fs::remove_file(&s) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("removing {}", Path::new(&s).display()),
                        e,
                    ))
                }
            }
        }
    }
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, dest) {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(Error::io(format!("renaming into {}", dest.display()), e));
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(stream_name("/srv/app/db.sqlite3"), "sqlite-db.sqlite3");
        assert_eq!(stream_name("main=/srv/a b.db"), "main");
        assert_eq!(stream_name("/x/a b.db"), "sqlite-a_b.db");
        assert_eq!(split_spec("/a=b/c.db"), (None, "/a=b/c.db"));
    }

    #[test]
    fn copy_check_query_and_restore() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("a.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("create table t(x); insert into t values (1),(2),(3);")
            .unwrap();
        let mut f = consistent_copy(&db).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        assert!(bytes.starts_with(MAGIC));
        let out = d.path().join("b.db");
        let n = restore_file(&out, false, |w: &mut dyn Write| {
            w.write_all(&bytes).unwrap();
            Ok(bytes.len() as u64)
        })
        .unwrap();
        assert_eq!(n as usize, bytes.len());
        integrity_check(&out).unwrap();
        assert_eq!(query_value(&out, "select sum(x) from t").unwrap(), "6");
        // An existing file is refused without `replace`.
        let e = restore_file(&out, false, |_| Ok(0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        // Garbage never replaces a database.
        let e = restore_file(&out, true, |w| {
            w.write_all(&[7u8; 8192]).unwrap();
            Ok(8192)
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert_eq!(query_value(&out, "select count(*) from t").unwrap(), "3");
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"not a database at all, really").unwrap();
        assert_eq!(
            sqlite_source(junk.to_str().unwrap())
                .err()
                .map(|e| e.kind()),
            Some(ErrorKind::Source)
        );
    }
}
