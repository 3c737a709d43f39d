//! `snap serve`: the web console, an HTTP server with a JSON API (see
//! docs/api.md) and one page built into the binary. It opens the repository
//! of `--repo` once; long operations run as jobs ([`jobs`]).

mod api;
mod auth;
mod jobs;

use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use snap::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on; anything but a loopback address needs
    /// --tls-cert, --tls-key and --password-hash-file.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a login with the password whose Argon2 hash this file holds
    /// (written by --set-password).
    #[arg(long, env = "SNAP_CONSOLE_PASSWORD_HASH_FILE", value_name = "FILE")]
    password_hash_file: Option<PathBuf>,
    /// Write the Argon2 hash of a new console password to FILE and exit; the
    /// password comes from SNAP_CONSOLE_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    set_password: Option<PathBuf>,
    /// Folder of the systemd units `snap schedule --install --unit-dir`
    /// wrote, for the schedules shown [default: /etc/systemd/system and
    /// ~/.config/systemd/user].
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

/// Server state shared by the handlers.
pub struct State {
    pub g: Global,
    pub repo: snap::Repository,
    pub auth: auth::Auth,
    pub jobs: jobs::Jobs,
    pub tls: bool,
    /// Folder for uploaded archives while they are imported.
    pub upload_dir: PathBuf,
    /// `--unit-dir`: where installed schedules are looked for.
    pub unit_dir: Option<PathBuf>,
}

pub fn run(g: &Global, a: &ServeArgs) -> Result<u8> {
    if let Some(file) = &a.set_password {
        let pw = match std::env::var("SNAP_CONSOLE_PASSWORD") {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(_) => zeroize::Zeroizing::new(rpassword::prompt_password("console password: ")?),
        };
        if pw.is_empty() {
            return Err(Error::usage("the console password is empty").into());
        }
        let hash = auth::hash_password(&pw)?;
        std::fs::write(file, format!("{hash}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        outln!("console password hash written to {}", file.display())?;
        return Ok(0);
    }
    let hash = match &a.password_hash_file {
        Some(f) => {
            let s =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let h = s.lines().next().unwrap_or("").trim().to_string();
            argon2::password_hash::PasswordHash::new(&h).map_err(|e| {
                Error::usage(format!(
                    "{} holds no Argon2 password hash: {e}",
                    f.display()
                ))
            })?;
            Some(h)
        }
        None => None,
    };
    let tls = a.tls_cert.is_some();
    if !a.listen.ip().is_loopback() && (!tls || hash.is_none()) {
        return Err(Error::usage(format!(
            "{} is not a loopback address: give --tls-cert, --tls-key and --password-hash-file",
            a.listen
        ))
        .into());
    }
    let repo = super::open(g)?;
    let upload_dir = std::env::temp_dir().join(format!("snap-console-{}", std::process::id()));
    let state = Arc::new(State {
        g: g.clone(),
        repo,
        auth: auth::Auth::new(hash),
        jobs: jobs::Jobs::default(),
        tls,
        upload_dir,
        unit_dir: a.unit_dir.clone(),
    });
    // On SIGINT/SIGTERM the server ends; its running jobs are stopped as
    // Ctrl-C would stop them (they lead process groups of their own).
    let _stop_jobs = {
        let jobs = state.jobs.clone();
        snap::interrupt::on_exit(move || jobs.stop_all())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let app = api::router(state);
    rt.block_on(async move {
        let scheme = if tls { "https" } else { "http" };
        if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
            let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("loading TLS {} and {}", cert.display(), key.display()))?;
            let listener = std::net::TcpListener::bind(a.listen)
                .with_context(|| format!("listening on {}", a.listen))?;
            eprintln!("snap console on {scheme}://{}/", listener.local_addr()?);
            axum_server::from_tcp_rustls(listener, cfg)
                .serve(app.into_make_service())
                .await?;
        } else {
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("listening on {}", a.listen))?;
            eprintln!("snap console on {scheme}://{}/", listener.local_addr()?);
            axum::serve(listener, app).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(0)
}
