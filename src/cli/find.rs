//! `snap find`: entries matching glob patterns across snapshots.

use super::{human, mtime_str, open, Global};
use anyhow::Result;
use clap::Args;
use snap::read::find::Patterns;

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Glob patterns: without `/` matched against names, with `/` against whole paths.
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Only search this snapshot (id, prefix, latest, latest~N; repeatable).
    #[arg(long = "snapshot", short = 's')]
    snapshots: Vec<String>,
    /// Match case-insensitively.
    #[arg(long, short = 'i')]
    ignore_case: bool,
}

pub fn run(g: &Global, a: &FindArgs) -> Result<u8> {
    let repo = open(g)?;
    let pats = Patterns::new(&a.patterns, a.ignore_case)?;
    let snaps = if a.snapshots.is_empty() {
        repo.snapshots()?
    } else {
        let mut v = Vec::new();
        for s in &a.snapshots {
            let r = repo.resolve_snapshot(s)?;
            if !v.iter().any(|(id, _)| *id == r.0) {
                v.push(r);
            }
        }
        v
    };
    let (found, indexed) = snap::read::find::find(&repo, &snaps, &pats)?;
    if indexed > 0 && !g.json {
        eprintln!("indexed {indexed} new folders");
    }
    let total: usize = found.iter().map(|(_, f)| f.len()).sum();
    if g.json {
        let mut v = Vec::with_capacity(total);
        for ((id, items), (_, s)) in found.iter().zip(&snaps) {
            for f in items {
                v.push(serde_json::json!({
                    "snapshot": id.to_hex(),
                    "short_id": id.short(),
                    "time": s.time,
                    "path": f.path,
                    "type": f.kind,
                    "size": f.size,
                    "mtime": mtime_str(f.mtime_ns),
                    "mtime_ns": f.mtime_ns,
                }));
            }
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    for ((id, items), (_, s)) in found.iter().zip(&snaps) {
        for f in items {
            outln!(
                "{}  {}  {:>10}  {}  {}",
                id.short(),
                super::output::escape(&s.time),
                human(f.size),
                mtime_str(f.mtime_ns),
                super::output::escape(&f.path)
            )?;
        }
    }
    eprintln!(
        "{total} matches in {} of {} snapshots",
        found.iter().filter(|(_, f)| !f.is_empty()).count(),
        snaps.len()
    );
    Ok(0)
}
