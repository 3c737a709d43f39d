//! Runs the built `snap` binary against a throwaway repository.
//!
//! ```ignore
//! mod common;
//! let s = common::cli::Snap::new();          // temp dir with repo/ and cache/
//! s.ok(&["init"]);
//! let out = s.ok(&["backup", path]);          // stdout as String; panics on failure
//! let (code, stderr) = s.fail(&["restore", "nope", "--target", "x"]);
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of the `snap` binary built by cargo for integration tests, or the
/// one `SNAP_TEST_BIN` names (to run a test against another build, e.g. to
/// show it fails on the code before a fix).
pub fn snap_bin() -> PathBuf {
    std::env::var_os("SNAP_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_snap")))
}

/// A temporary directory holding a repository location and a cache directory.
pub struct Snap {
    /// Keeps the temporary directory alive.
    pub dir: tempfile::TempDir,
    /// Repository location passed as `--repo` (a path, or an `s3://` URL).
    pub repo: String,
    /// Cache directory passed as `--cache-dir`.
    pub cache: PathBuf,
    /// Password given through `SNAP_PASSWORD`.
    pub password: String,
    /// Extra environment for every command (e.g. S3 credentials).
    pub env: Vec<(String, String)>,
}

impl Default for Snap {
    fn default() -> Self {
        Self::new()
    }
}

impl Snap {
    /// A fresh local repository location (not yet initialised).
    pub fn new() -> Snap {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo").to_string_lossy().into_owned();
        let cache = dir.path().join("cache");
        Snap {
            dir,
            repo,
            cache,
            password: "correct horse battery staple".into(),
            env: Vec::new(),
        }
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `snap` command with `--repo`, `--cache-dir`, the password and a fast
    /// KDF set; stdin is closed.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(snap_bin());
        c.arg("--repo")
            .arg(&self.repo)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env("SNAP_PASSWORD", &self.password)
            .env("SNAP_TEST_FAST_KDF", "1")
            .env_remove("SNAP_REPO")
            .env_remove("SNAP_PASSWORD_FILE")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs and returns the raw output.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(args).output().expect("running snap")
    }

    /// Runs with `input` on standard input and returns the raw output.
    pub fn run_stdin<I, S>(&self, args: I, input: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::io::Write;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running snap");
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("waiting for snap");
        writer.join().expect("stdin writer");
        out
    }

    /// Runs, asserts exit code 0, returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "snap {:?} failed with {:?}\nstdout: {}\nstderr: {}",
            args,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Snap::ok`], with `SNAP_FROM_PASSWORD` set (commands that open
    /// a second repository: `copy --from`, `init --copy-chunker-params-from`).
    #[allow(dead_code)]
    pub fn ok_from<I, S>(&self, args: I, from_password: &str) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self
            .cmd(args)
            .env("SNAP_FROM_PASSWORD", from_password)
            .output()
            .expect("running snap");
        assert!(
            out.status.success(),
            "snap failed with {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts a non-zero exit, returns (exit code, stderr).
    pub fn fail<I, S>(&self, args: I) -> (i32, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.run(&args);
        assert!(
            !out.status.success(),
            "snap {:?} unexpectedly succeeded\nstdout: {}",
            args,
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `snap init`.
    pub fn init(&self) {
        self.ok(["init"]);
    }

    /// Runs `backup --json ARGS` and returns the parsed summary line.
    pub fn backup_json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut a: Vec<std::ffi::OsString> = vec!["--json".into(), "backup".into()];
        a.extend(args.into_iter().map(|x| x.as_ref().to_os_string()));
        let out = self.ok(&a);
        let line = out.lines().last().expect("backup printed a summary");
        serde_json::from_str(line).expect("summary is JSON")
    }

    /// Ids (full hex) of all snapshots, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let out = self.ok(["--json", "snapshots"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("snapshots --json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }
}

/// Compares two directory trees: same names, types, file contents, modes,
/// mtimes (seconds) and symlink targets. Returns a list of differences.
pub fn tree_diff(a: &Path, b: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    fn walk(a: &Path, b: &Path, rel: &Path, out: &mut Vec<String>) {
        let ma = match std::fs::symlink_metadata(a) {
            Ok(m) => m,
            Err(e) => return out.push(format!("{}: {e}", a.display())),
        };
        let mb = match std::fs::symlink_metadata(b) {
            Ok(m) => m,
            Err(_) => return out.push(format!("{}: missing in restore", rel.display())),
        };
        if ma.file_type() != mb.file_type() {
            return out.push(format!("{}: type differs", rel.display()));
        }
        if ma.mode() != mb.mode() {
            out.push(format!(
                "{}: mode {:o} != {:o}",
                rel.display(),
                ma.mode(),
                mb.mode()
            ));
        }
        if !ma.is_dir() && ma.mtime() != mb.mtime() {
            out.push(format!("{}: mtime differs", rel.display()));
        }
        if ma.file_type().is_symlink() {
            if std::fs::read_link(a).ok() != std::fs::read_link(b).ok() {
                out.push(format!("{}: symlink target differs", rel.display()));
            }
        } else if ma.is_file() {
            if ma.len() != mb.len() || std::fs::read(a).ok() != std::fs::read(b).ok() {
                out.push(format!("{}: content differs", rel.display()));
            }
        } else if ma.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(a)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let mut names_b: Vec<_> = std::fs::read_dir(b)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names_b.sort();
            if names != names_b {
                out.push(format!(
                    "{}: entries differ: {:?} vs {:?}",
                    rel.display(),
                    names,
                    names_b
                ));
            }
            for n in names {
                walk(&a.join(&n), &b.join(&n), &rel.join(&n), out);
            }
        }
    }
    walk(a, b, Path::new(""), &mut out);
    out
}

/// Where `restore --target T` puts the absolute path `src`: `T/src`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap_or(src))
}
