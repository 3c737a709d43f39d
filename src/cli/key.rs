//! `snap key`: list, add, remove and change passwords; export and import the
//! recovery code.

use super::{cache_dir, open, open_session, open_unsynced, repo_location, Global};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use snap::keys;
use snap::session::Operation;
use snap::store::Store;
use snap::{Error, Repository, Session};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Args, Debug)]
pub struct NewPassword {
    /// Read the new password from the first line of this file (else SNAP_NEW_PASSWORD, else a prompt on a TTY).
    #[arg(long, env = "SNAP_NEW_PASSWORD_FILE")]
    new_password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// List key files: id, created, host, user, and the one in use.
    List,
    /// Add a password: a new key file for the same master key.
    Add {
        /// Make a put-only key (format-spec §5.1): it makes backups with full deduplication but cannot restore, list, forget or prune. Needs a repository made with `snap init --put-only-ready`.
        #[arg(long)]
        put_only: bool,
        #[command(flatten)]
        new: NewPassword,
    },
    /// Remove a key file (not the one in use, never the last one).
    Remove {
        /// Key id or unique prefix (see `snap key list`).
        id: String,
    },
    /// Change the password: add a new key file, then remove the one in use.
    Passwd(NewPassword),
    /// Print the master key as a recovery code (a secret) to stdout.
    Export,
    /// Add a key file from a recovery code, when every password is lost.
    Import {
        /// Read the recovery code from this file [default: standard input].
        #[arg(long)]
        code_file: Option<PathBuf>,
        #[command(flatten)]
        new: NewPassword,
    },
}

/// The new password for `key add/passwd/import`: `--new-password-file`, else
/// `SNAP_NEW_PASSWORD`, else asked twice on the terminal. Never an argument.
fn new_password(n: &NewPassword) -> Result<Zeroizing<String>> {
    let pw = if let Some(f) = &n.new_password_file {
        let s = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading new password file {}", f.display()))?,
        );
        Zeroizing::new(s.lines().next().unwrap_or("").to_string())
    } else if let Ok(p) = std::env::var("SNAP_NEW_PASSWORD") {
        Zeroizing::new(p)
    } else if std::io::stderr().is_terminal() {
        let p = Zeroizing::new(rpassword::prompt_password("new password: ")?);
        let q = Zeroizing::new(rpassword::prompt_password("repeat new password: ")?);
        if *p != *q {
            return Err(Error::usage("passwords do not match").into());
        }
        p
    } else {
        return Err(Error::usage(
            "no new password given: set SNAP_NEW_PASSWORD, use --new-password-file, or run on a terminal",
        )
        .into());
    };
    if pw.is_empty() {
        return Err(Error::usage("empty new password").into());
    }
    Ok(pw)
}

pub fn run(g: &Global, a: &KeyArgs) -> Result<u8> {
    match &a.cmd {
        KeyCmd::List => list(g),
        KeyCmd::Add { put_only, new: n } => {
            // The repository's password is asked before the new one, and
            // the lease taken only once both are known.
            let repo = open_unsynced(g)?;
            let role = if *put_only {
                // Refused before asking for a password it could not use.
                repo.key().put_key_bytes()?;
                snap::crypto::KeyRole::PutOnly
            } else {
                repo.require_full_key()?;
                snap::crypto::KeyRole::Full
            };
            let pw = new_password(n)?;
            let repo = Session::start(repo, Operation::KeyAdd)?;
            let id = repo.add_key_role(pw.as_bytes(), role)?;
            drop(repo);
            report(g, if *put_only { "added put-only" } else { "added" }, &id)?;
            Ok(0)
        }
        KeyCmd::Remove { id } => {
            // Exclusive: no other operation may run while a key file goes.
            let repo = open_session(g, Operation::KeyRemove)?;
            let full = repo.remove_key(id)?;
            drop(repo);
            report(g, "removed", &full)?;
            Ok(0)
        }
        KeyCmd::Passwd(n) => {
            let repo = open_unsynced(g)?;
            let pw = new_password(n)?;
            let repo = Session::start(repo, Operation::KeyPasswd)?;
            let (id, old) = repo.change_password(pw.as_bytes())?;
            drop(repo);
            if g.json {
                outln!(
                    "{}",
                    serde_json::json!({"type": "key", "action": "passwd", "id": id, "removed": old})
                )?;
            } else {
                outln!(
                    "added key {}, removed key {}",
                    super::output::short(&id),
                    super::output::short(&old)
                )?;
            }
            Ok(0)
        }
        KeyCmd::Export => {
            let repo = open(g)?;
            repo.require_full_key()?;
            let code = keys::recovery_code(repo.config(), repo.key())?;
            eprintln!(
                "warning: this recovery code is a secret: it is the repository's master key: anyone holding it can read \
every snapshot. Store it offline; it stays valid after password changes."
            );
            if g.json {
                // Built by hand (the code is base32 and `-` only) so that no
                // unzeroized copy is left in a serde_json value.
                let line = Zeroizing::new(format!(
                    "{{\"type\":\"recovery_code\",\"repository\":\"{}\",\"code\":\"{}\"}}",
                    repo.config().id,
                    code.as_str()
                ));
                outln!("{}", line.as_str())?;
            } else {
                outln!("{}", code.as_str())?;
            }
            Ok(0)
        }
        KeyCmd::Import { code_file, new } => import(g, code_file.as_deref(), new),
    }
}

fn report(g: &Global, what: &str, id: &str) -> std::io::Result<()> {
    if g.json {
        outln!(
            "{}",
            serde_json::json!({"type": "key", "action": what, "id": id})
        )
    } else {
        outln!("{what} key {}", &id[..id.len().min(8)])
    }
}

fn list(g: &Global) -> Result<u8> {
    let repo = open(g)?;
    let ks = keys::list_keys(repo.store())?;
    let current = repo.key_id();
    if g.json {
        let v: Vec<_> = ks
            .iter()
            .map(|k| {
                let f = k.file.as_ref();
                serde_json::json!({
                    "id": k.id,
                    "current": k.id == current,
                    "created": f.map(|f| f.created.clone()),
                    "hostname": f.map(|f| f.hostname.clone()),
                    "username": f.map(|f| f.username.clone()),
                    "role": f.map(|f| if f.is_put_only() { "put-only" } else { "full" }),
                    "valid": f.is_some(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    outln!(
        " {:<8}  {:<24}  {:<16}  {:<12}",
        "id",
        "created",
        "host",
        "user"
    )?;
    for k in &ks {
        let mark = if k.id == current { '*' } else { ' ' };
        match &k.file {
            Some(f) => outln!(
                "{mark}{:<8}  {:<24}  {:<16}  {:<12}{}",
                super::output::short(&k.id),
                f.created,
                f.hostname,
                f.username,
                if f.is_put_only() { "  put-only" } else { "" }
            )?,
            None => outln!(
                "{mark}{:<8}  (unreadable key file)",
                super::output::short(&k.id)
            )?,
        }
    }
    outln!("{} keys; * marks the key in use", ks.len())?;
    Ok(0)
}

fn import(g: &Global, code_file: Option<&std::path::Path>, n: &NewPassword) -> Result<u8> {
    let loc = repo_location(g)?;
    let store = Store::open(&loc, false)?;
    let config = Repository::read_config(&store)?;
    // Capacity up front so reading never reallocates (and leaves copies of
    // the code behind); input is bounded to MAX_CODE_INPUT bytes.
    const MAX_CODE_INPUT: u64 = 16 << 10;
    let mut code = Zeroizing::new(String::with_capacity(MAX_CODE_INPUT as usize + 1));
    match code_file {
        Some(f) => {
            std::fs::File::open(f)
                .and_then(|file| file.take(MAX_CODE_INPUT).read_to_string(&mut code))
                .with_context(|| format!("reading recovery code file {}", f.display()))?;
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("paste the recovery code, then press Ctrl-D:");
            }
            std::io::stdin()
                .take(MAX_CODE_INPUT)
                .read_to_string(&mut code)
                .context("reading the recovery code from standard input")?;
        }
    }
    let master = keys::parse_recovery_code(&config, &code)?;
    if !keys::verify_master(&store, &master)? {
        eprintln!("warning: the repository holds no snapshot yet, so the key could not be verified against data");
    }
    let pw = new_password(n)?;
    let id = keys::add_key(&store, &master, pw.as_bytes())?;
    // Prove the new key file opens the repository before reporting success.
    Repository::open(&loc, pw.as_bytes(), &cache_dir(g))?;
    report(g, "imported", &id)?;
    Ok(0)
}
