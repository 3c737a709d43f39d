//! [`Profiled`]: a [`Snap`] harness plus a profile file (`snap.toml`) in the
//! same temporary directory, for the tests of `snap run`, `snap restore-test`,
//! `snap status` and monitoring (tests/profiles.rs, tests/verify.rs).

use super::cli::{snap_bin, Snap};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A repository (`[repository.main]`), optionally a second one
/// (`[repository.offsite]`), and a profile file naming them.
pub struct Profiled {
    pub s: Snap,
    pub config: PathBuf,
    /// Whether `write` adds the `[repository.offsite]` table.
    offsite: bool,
}

impl Profiled {
    /// Initialises the repository and writes `snap.toml` with `body`
    /// appended to a `[repository.main]` table for it. `{dir}` in `body`
    /// stands for the temporary directory.
    pub fn new(body: &str) -> Profiled {
        Self::make(body, false)
    }

    /// As [`Profiled::new`], plus a second initialised repository in
    /// `{dir}/offsite` named `[repository.offsite]` in the profile file.
    pub fn with_offsite(body: &str) -> Profiled {
        Self::make(body, true)
    }

    fn make(body: &str, offsite: bool) -> Profiled {
        let s = Snap::new();
        s.init();
        if offsite {
            let o = Command::new(snap_bin())
                .arg("--repo")
                .arg(s.path("offsite"))
                .arg("--cache-dir")
                .arg(&s.cache)
                .arg("init")
                .env("SNAP_PASSWORD", &s.password)
                .env("SNAP_TEST_FAST_KDF", "1")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let config = s.path("snap.toml");
        let p = Profiled { s, config, offsite };
        p.write(body);
        p
    }

    /// The temporary directory holding repository, profile file and state.
    pub fn dir(&self) -> &Path {
        self.s.dir.path()
    }

    /// Rewrites `snap.toml`: the repository tables, then `body` with
    /// `{dir}` replaced by the temporary directory.
    pub fn write(&self, body: &str) {
        let offsite = if self.offsite {
            format!(
                "[repository.offsite]\npath = {:?}\n",
                self.dir().join("offsite").to_string_lossy()
            )
        } else {
            String::new()
        };
        let text = format!(
            "[repository.main]\npath = {:?}\n{offsite}\n{}",
            self.s.repo,
            body.replace("{dir}", &self.dir().to_string_lossy())
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// `snap --config FILE ARGS` with the harness's repository, cache and
    /// password; `$XDG_STATE_HOME` (profile state) inside the temporary directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.s.cmd(["--config"]);
        c.arg(&self.config).args(args);
        c.env("XDG_STATE_HOME", self.dir().join("xdg-state"));
        c
    }

    /// Runs `cmd(args)`: (exit code or -1, stdout, stderr).
    pub fn out(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs `cmd(args)`, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.out(args);
        assert_eq!(code, 0, "snap {args:?}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// The text of `rel` under the temporary directory (panics if unreadable).
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

/// Parses JSON-lines output, one value a line.
pub fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// Reads a file holding one JSON value.
pub fn read_json(p: &Path) -> Value {
    let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(t.trim()).unwrap_or_else(|e| panic!("{}: {e}: {t}", p.display()))
}
