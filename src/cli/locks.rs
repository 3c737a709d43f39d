//! `snap locks` lists leases; `snap unlock` removes expired (or all) leases.

use super::{open, Global};
use anyhow::Result;
use clap::Args;
use snap::lease::list_leases;
use snap::store::ObjectKind;

pub fn run(g: &Global) -> Result<u8> {
    let repo = open(g)?;
    let now = chrono::Utc::now();
    let leases = list_leases(repo.store(), repo.key())?;
    if g.json {
        let v: Vec<_> = leases
            .iter()
            .map(|l| match &l.lease {
                Ok(x) => serde_json::json!({"name": l.name, "live": l.is_live(now), "lease": x}),
                Err(e) => {
                    serde_json::json!({"name": l.name, "live": true, "error": format!("{e:#}")})
                }
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    for l in &leases {
        match &l.lease {
            Ok(x) => outln!(
                "{}  {:<8}  {:<9}  host {} pid {}  started {}  expires {}",
                super::output::short(&l.name),
                if l.is_live(now) { "live" } else { "expired" },
                if x.detail.is_empty() {
                    format!("{:?}", x.operation)
                } else {
                    format!("{:?} ({})", x.operation, super::output::escape(&x.detail))
                },
                super::output::escape(&x.host),
                x.pid,
                x.start,
                x.expires
            )?,
            Err(e) => outln!("{}  unreadable: {e:#}", super::output::short(&l.name))?,
        }
    }
    outln!("{} leases", leases.len())?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lease, including live ones (only when no snap process runs).
    #[arg(long)]
    all: bool,
}

pub fn run_unlock(g: &Global, a: &UnlockArgs) -> Result<u8> {
    let repo = open(g)?;
    let now = chrono::Utc::now();
    let mut n = 0;
    for l in list_leases(repo.store(), repo.key())? {
        if a.all || !l.is_live(now) {
            repo.store().delete(&ObjectKind::Lock.key(&l.name))?;
            n += 1;
        }
    }
    if g.json {
        outln!("{}", serde_json::json!({"type": "unlock", "removed": n}))?;
    } else {
        outln!("removed {n} leases")?;
    }
    Ok(0)
}
