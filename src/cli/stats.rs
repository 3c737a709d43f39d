//! `snap stats`: logical vs stored size, dedup and compression ratios.

use super::{human, open, Global};
use anyhow::Result;
use clap::Args;
use snap::read::find::{Stats, StatsWalker};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Snapshots to measure [default: all].
    snapshots: Vec<String>,
    /// Only the repository's totals (blobs, stored and raw bytes,
    /// snapshots) from the catalog: reads no tree, so it is quick on any
    /// repository.
    #[arg(long, conflicts_with = "snapshots")]
    repository: bool,
}

fn print(label: &str, s: &Stats) -> std::io::Result<()> {
    outln!(
        "{label}: {} files, logical {}, unique raw {}, stored {}, {} blobs ({} data, {} tree); dedup {:.2}x, compression {:.2}x{}",
        s.files,
        human(s.logical_size),
        human(s.raw_size),
        human(s.stored_size),
        s.blobs,
        s.data_blobs,
        s.tree_blobs,
        s.dedup_ratio,
        s.compression_ratio,
        if s.missing_blobs > 0 {
            format!("; {} blobs missing from the index (run `snap check`)", s.missing_blobs)
        } else {
            String::new()
        }
    )
}

pub fn run(g: &Global, a: &StatsArgs) -> Result<u8> {
    let repo = open(g)?;
    if a.repository {
        let (blobs, stored, raw) = repo.catalog().blob_totals()?;
        let n = repo.snapshots()?.len();
        if g.json {
            outln!(
                "{}",
                serde_json::json!({"repository": {"blobs": blobs, "stored_size": stored, "raw_size": raw, "snapshots": n}})
            )?;
        } else {
            outln!(
                "repository: {n} snapshots, {blobs} blobs indexed, {} stored, {} raw",
                human(stored),
                human(raw)
            )?;
        }
        return Ok(0);
    }
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
    let mut w = StatsWalker::new(&repo);
    let mut per = Vec::with_capacity(snaps.len());
    for (id, s) in &snaps {
        per.push((*id, s.time.clone(), w.compute(&[s.tree])?));
    }
    let roots: Vec<_> = snaps.iter().map(|(_, s)| s.tree).collect();
    let total = w.compute(&roots)?;
    let (blobs, stored, raw) = repo.catalog().blob_totals()?;
    if g.json {
        let v: Vec<_> = per
            .iter()
            .map(|(id, time, s)| {
                let mut j = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("id".into(), id.to_hex().into());
                    o.insert("short_id".into(), id.short().into());
                    o.insert("time".into(), time.clone().into());
                }
                j
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "snapshots": v,
                "total": total,
                "repository": {"blobs": blobs, "stored_size": stored, "raw_size": raw, "snapshots": repo.snapshots()?.len()},
            }))?
        )?;
        return Ok(0);
    }
    for (id, time, s) in &per {
        print(&format!("{} {time}", id.short()), s)?;
    }
    print(&format!("all {} snapshots", snaps.len()), &total)?;
    outln!(
        "repository: {blobs} blobs indexed, {} stored, {} raw",
        human(stored),
        human(raw)
    )?;
    Ok(0)
}
