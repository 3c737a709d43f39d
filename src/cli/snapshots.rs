//! `snap snapshots`: list snapshots.

use super::output::escape;
use super::{human, open, Global};
use anyhow::Result;

pub fn run(g: &Global) -> Result<u8> {
    let repo = open(g)?;
    let snaps = repo.snapshots()?;
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
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  paths / streams",
        "id", "time", "host", "tags", "size"
    );
    for (id, s) in &snaps {
        let what: Vec<String> = s
            .paths
            .iter()
            .cloned()
            .chain(s.streams.iter().map(|n| format!("@{n}")))
            .collect();
        println!(
            "{:<8}  {:<24}  {:<12}  {:<16}  {:>10}  {}",
            id.short(),
            escape(&s.time),
            escape(&s.hostname),
            escape(&s.tags.join(",")),
            human(s.summary.total_bytes),
            escape(&what.join(" "))
        );
    }
    println!("{} snapshots", snaps.len());
    Ok(0)
}
