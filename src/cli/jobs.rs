//! Shared plumbing for the profile commands (`run`, `restore-test`,
//! `schedule`): loading the profile file, repository passwords, and child
//! `snap` processes with a profile's repository environment.

use super::Global;
use crate::cli::profile::Config;
use anyhow::Result;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

/// Loads the profile file named by `--config`/`SNAP_CONFIG`, else the first
/// of `./snap.toml`, `$XDG_CONFIG_HOME/snap/snap.toml`, `/etc/snap/snap.toml`.
pub fn load_config(g: &Global) -> Result<Config> {
    Ok(Config::find(g.config.as_deref())?)
}

/// Repository passwords, resolved once per repository name.
pub struct Passwords<'a> {
    g: &'a Global,
    cfg: &'a Config,
    cache: BTreeMap<String, Zeroizing<String>>,
}

impl<'a> Passwords<'a> {
    /// An empty cache for the repositories of `cfg`.
    pub fn new(g: &'a Global, cfg: &'a Config) -> Self {
        Passwords {
            g,
            cfg,
            cache: BTreeMap::new(),
        }
    }

    /// The password of repository `name`: its `password-file` or
    /// `password-command`, else `--password-file`/`SNAP_PASSWORD_FILE`,
    /// `SNAP_PASSWORD` or a prompt (as for every other command).
    pub fn get(&mut self, name: &str) -> Result<Zeroizing<String>> {
        if let Some(p) = self.cache.get(name) {
            return Ok(p.clone());
        }
        let def = self.cfg.repo(name)?;
        let pw = match def.password(name)? {
            Some(p) => p,
            None => super::password(self.g, false)?,
        };
        self.cache.insert(name.to_string(), pw.clone());
        Ok(pw)
    }
}

/// A `snap` child process (this same executable) for repository `repo`
/// (and, for copy, source repository `from`): passwords go in
/// `SNAP_PASSWORD` / `SNAP_FROM_PASSWORD` (never on the command line), the
/// repositories' `env` tables are applied, stdin is closed.
pub fn snap_child(
    cfg: &Config,
    pw: &mut Passwords<'_>,
    repo: &str,
    from: Option<&str>,
    args: &[String],
) -> Result<Command> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe);
    // Only the passwords set below: not the parent's other SNAP_*PASSWORD*.
    snap::write::sources::scrub_passwords(&mut c);
    c.args(args)
        .env_remove("SNAP_REPO")
        .env_remove("SNAP_PASSWORD_FILE")
        .env_remove("SNAP_FROM_PASSWORD_FILE")
        .stdin(Stdio::null());
    if let Some(f) = from {
        for (k, v) in &cfg.repo(f)?.env {
            c.env(k, v);
        }
        c.env("SNAP_FROM_PASSWORD", pw.get(f)?.as_str());
    }
    for (k, v) in &cfg.repo(repo)?.env {
        c.env(k, v);
    }
    c.env("SNAP_PASSWORD", pw.get(repo)?.as_str());
    Ok(c)
}

/// The message of a failed child `snap --json …`: its last JSON error
/// object on stderr, else its last non-empty stderr line.
pub fn child_error(stderr: &str) -> String {
    for line in stderr.lines().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["type"] == "error" {
                if let Some(m) = v["message"].as_str() {
                    return m.to_string();
                }
            }
        }
    }
    // clap and the plain-text mode say "error: …" / "snap: error: …".
    if let Some(l) = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("error:") || l.starts_with("snap: error:"))
    {
        return l.trim_start_matches("snap: ").to_string();
    }
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no error message")
        .to_string()
}

/// Seconds since `t`, rounded to milliseconds.
pub fn secs(t: std::time::Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_error_prefers_json() {
        let e =
            "warning: x\n{\"type\":\"error\",\"code\":10,\"message\":\"no repository at /r\"}\n";
        assert_eq!(child_error(e), "no repository at /r");
        assert_eq!(child_error("a\nerror: b\n\n"), "error: b");
        assert_eq!(
            child_error(
                "error: unrecognized subcommand 'forget'\nUsage: x\nFor more, try '--help'.\n"
            ),
            "error: unrecognized subcommand 'forget'"
        );
        assert_eq!(child_error("x\ny\n"), "y");
        assert_eq!(child_error(""), "no error message");
    }
}
