//! A reference model of what a repository must hold, and [`verify_repository`],
//! which checks a repository against it through the built binary.
//!
//! ```ignore
//! let mut model = Model::default();
//! let expected = tree_hash(&src);            // before the backup runs
//! let id = backup_id(&s.backup_json([&src]));
//! model.add(id, &src, expected);
//! verify_repository(&s, &model);             // restores every snapshot, compares hashes
//! ```

use super::cli::{restored_path, Snap};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What one snapshot must restore to: the absolute source path it was taken
/// of and the [`tree_hash`] of that path at backup time.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Absolute source path given to `snap backup`.
    pub src: PathBuf,
    /// [`tree_hash`] of `src` when the backup ran.
    pub hash: String,
}

/// Reference model: snapshot id (64 hex) → what it must restore to.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Every snapshot that a completed backup reported.
    pub snapshots: BTreeMap<String, Expected>,
}

impl Model {
    /// Records a completed snapshot.
    pub fn add(&mut self, id: &str, src: &Path, hash: String) {
        self.snapshots.insert(
            id.to_string(),
            Expected {
                src: src.to_path_buf(),
                hash,
            },
        );
    }
}

/// The snapshot id from a `backup --json` summary.
pub fn backup_id(summary: &serde_json::Value) -> String {
    summary["snapshot"]
        .as_str()
        .expect("summary names the snapshot")
        .to_string()
}

/// A BLAKE3 hash over a directory tree: every entry's relative path, type,
/// permission bits, and file content or symlink target, in sorted order.
/// Equal hashes mean byte-identical trees (modulo timestamps and owners).
pub fn tree_hash(root: &Path) -> String {
    let mut h = blake3::Hasher::new();
    fn walk(dir: &Path, rel: &Path, h: &mut blake3::Hasher) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            h.update(r.as_os_str().as_bytes());
            h.update(&[0]);
            h.update(&(m.permissions().mode() & 0o7777).to_le_bytes());
            let ft = m.file_type();
            if ft.is_symlink() {
                h.update(b"L");
                h.update(
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .as_os_str()
                        .as_bytes(),
                );
            } else if ft.is_dir() {
                h.update(b"D");
                walk(&p, &r, h);
                h.update(b"/D");
            } else if ft.is_file() {
                h.update(b"F");
                let data = std::fs::read(&p).expect("reading file");
                h.update(&(data.len() as u64).to_le_bytes());
                h.update(&data);
            } else {
                h.update(b"O");
            }
            h.update(&[0xff]);
        }
    }
    walk(root, Path::new(""), &mut h);
    h.finalize().to_hex().to_string()
}

/// Restores snapshot `id` into a fresh directory under `scratch` and returns
/// the [`tree_hash`] of the restored source path, or the error output of a
/// failed restore.
pub fn restore_hash(s: &Snap, id: &str, src: &Path, scratch: &Path) -> Result<String, String> {
    let target = scratch.join(format!("restore-{}", &id[..16]));
    let _ = std::fs::remove_dir_all(&target);
    let out = s.run([
        OsStr::new("restore"),
        OsStr::new(id),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    if !out.status.success() {
        return Err(format!(
            "restore {id} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let h = tree_hash(&restored_path(&target, src));
    let _ = std::fs::remove_dir_all(&target);
    Ok(h)
}

/// Runs `snap --json check --read-data` (every pack downloaded and every blob
/// verified) and returns `Err` with a one-line description naming the check
/// output unless it exited 0 and reported `"ok": true`.
pub fn check_read_data(s: &Snap) -> Result<(), String> {
    let out = s.run(["--json", "check", "--read-data"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let ok = report.as_ref().and_then(|v| v["ok"].as_bool()) == Some(true);
    if out.status.success() && ok {
        return Ok(());
    }
    Err(format!(
        "check --read-data exited {:?} (ok: {:?}): {} {}",
        out.status.code(),
        report.as_ref().map(|v| v["ok"].clone()),
        stdout.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Checks that the repository holds every snapshot of `model`, that each
/// restores byte-identical to what was backed up, and that
/// `check --read-data` finds no problem. Panics with every difference found.
pub fn verify_repository(s: &Snap, model: &Model) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let listed = s.snapshot_ids();
    let mut problems = Vec::new();
    for (id, exp) in &model.snapshots {
        if !listed.contains(id) {
            problems.push(format!("snapshot {id} is missing from `snap snapshots`"));
            continue;
        }
        match restore_hash(s, id, &exp.src, scratch.path()) {
            Ok(h) if h == exp.hash => {}
            Ok(h) => problems.push(format!(
                "snapshot {id} restores to tree hash {h}, expected {}",
                exp.hash
            )),
            Err(e) => problems.push(e),
        }
    }
    // ---- CHECK_READ_DATA: the single place for `snap check --read-data`. ----
    if let Err(e) = check_read_data(s) {
        problems.push(e);
    }
    assert!(
        problems.is_empty(),
        "repository does not match the reference model ({} snapshots):\n{}",
        model.snapshots.len(),
        problems.join("\n")
    );
}
