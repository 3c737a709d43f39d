//! Disk full (issue "Reliability and security"): a backup into a repository
//! on a small filesystem (a 20 MiB tmpfs) fails with a one-line
//! "no space left" error and a non-zero exit, leaves the repository valid
//! (the earlier snapshot restores), and once space is freed the same backup
//! succeeds.
//!
//! Needs root to mount the tmpfs: without it the test fails under CI=true and
//! is skipped otherwise.

mod common;
use common::cli::Snap;
use common::gen::Rng;
use common::services::in_ci;
use common::verify::{backup_id, tree_hash, verify_repository, Model};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn backup_into_a_full_filesystem_fails_cleanly() {
    let mut s = Snap::new();
    let fs = match Tmpfs::mount(&s.path("fs"), "20m") {
        Ok(m) => m,
        Err(e) if in_ci() => {
            panic!("CI=true but a 20 MiB tmpfs cannot be mounted (needs root): {e}")
        }
        Err(e) => {
            eprintln!("skipping: cannot mount a tmpfs (needs root): {e}");
            return;
        }
    };
    s.repo = fs.0.join("repo").to_string_lossy().into_owned();
    s.ok(["init", "--pack-size-mib", "1"]);
    // Ballast: 8 MiB the user can delete later.
    let ballast = fs.0.join("ballast");
    let mut rng = Rng::new(99);
    std::fs::write(&ballast, rng.bytes(8 << 20)).unwrap();

    let mut model = Model::default();
    let small = s.path("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("a"), rng.bytes(1 << 20)).unwrap();
    std::fs::write(small.join("b"), rng.text(500_000)).unwrap();
    let h = tree_hash(&small);
    model.add(&backup_id(&s.backup_json([&small])), &small, h);

    // 14 MiB of incompressible data does not fit in the ~10 MiB left.
    let big = s.path("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..7 {
        std::fs::write(big.join(format!("f{i}")), rng.bytes(2 << 20)).unwrap();
    }
    let before = s.snapshot_ids();
    let (code, err) = s.fail([OsStr::new("backup"), big.as_os_str()]);
    eprintln!("disk full: exit {code}: {}", err.trim());
    assert_ne!(code, 0);
    assert!(err.contains("no space left"), "{err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert_eq!(
        s.snapshot_ids(),
        before,
        "a failed backup recorded a snapshot"
    );
    verify_repository(&s, &model);
    let staging = count_staging(Path::new(&s.repo));
    eprintln!("staging files left after ENOSPC: {staging}");

    // Free the space; the same backup now succeeds.
    std::fs::remove_file(&ballast).unwrap();
    let h = tree_hash(&big);
    model.add(&backup_id(&s.backup_json([&big])), &big, h);
    verify_repository(&s, &model);
}

fn count_staging(p: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                n += count_staging(&path);
            } else if path.to_string_lossy().contains('#') {
                n += 1;
            }
        }
    }
    n
}
