//! `snap snapshots`: list snapshots, optionally filtered (the filters of
//! `snap forget`).

use super::forget::{group_key, SnapshotFilter};
use super::output::escape;
use super::{human, open, Global};
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: SnapshotFilter,
    /// Only the N newest snapshots of each host and set of paths.
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
}

pub fn run(g: &Global, a: &SnapshotsArgs) -> Result<u8> {
    let repo = open(g)?;
    let mut snaps = a.filter.apply(repo.snapshots()?);
    if let Some(n) = a.latest {
        // Oldest first: keep the last n of each group.
        let mut left: HashMap<String, usize> = HashMap::new();
        let mut keep = vec![false; snaps.len()];
        for (i, (_, s)) in snaps.iter().enumerate().rev() {
            let k = left.entry(group_key(s, &["host", "paths"])).or_insert(n);
            if *k > 0 {
                *k -= 1;
                keep[i] = true;
            }
        }
        let mut it = keep.into_iter();
        snaps.retain(|_| it.next().unwrap_or(false));
    }
    if g.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                let mut j = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("id".into(), id.to_hex().into());
                    o.insert("short_id".into(), id.short().into());
                }
                j
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    outln!(
        "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  paths / streams",
        "id",
        "time",
        "host",
        "tags",
        "size"
    )?;
    for (id, s) in &snaps {
        let what: Vec<String> = s
            .paths
            .iter()
            .cloned()
            .chain(s.streams.iter().map(|n| format!("@{n}")))
            .collect();
        outln!(
            "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  {}",
            id.short(),
            escape(&s.time),
            escape(&s.hostname),
            escape(&s.tags.join(",")),
            human(s.summary.total_bytes),
            escape(&what.join(" "))
        )?;
    }
    outln!("{} snapshots", snaps.len())?;
    Ok(0)
}
