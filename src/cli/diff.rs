//! `snap diff`: what changed between two snapshots.

use super::{human, open, Global};
use anyhow::Result;
use clap::Args;
use snap::read::find::Change;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// First (older) snapshot.
    first: String,
    /// Second (newer) snapshot.
    second: String,
}

pub fn run(g: &Global, a: &DiffArgs) -> Result<u8> {
    let repo = open(g)?;
    let (ia, sa) = repo.resolve_snapshot(&a.first)?;
    let (ib, sb) = repo.resolve_snapshot(&a.second)?;
    let items = snap::read::find::diff(&repo, &sa.tree, &sb.tree)?;
    let count = |c: Change| items.iter().filter(|i| i.change == c).count();
    let bytes = |c: Change, after: bool| -> u64 {
        items
            .iter()
            .filter(|i| i.change == c)
            .map(|i| if after { i.size_after } else { i.size_before }.unwrap_or(0))
            .sum()
    };
    let (added, removed, modified, meta) = (
        count(Change::Added),
        count(Change::Removed),
        count(Change::Modified),
        count(Change::Metadata),
    );
    if g.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "first": ia.to_hex(),
                "second": ib.to_hex(),
                "changes": items,
                "summary": {
                    "added": added, "removed": removed, "modified": modified, "metadata": meta,
                    "added_bytes": bytes(Change::Added, true),
                    "removed_bytes": bytes(Change::Removed, false),
                }
            }))?
        )?;
        return Ok(0);
    }
    for i in &items {
        let size = match (i.size_before, i.size_after) {
            (Some(x), Some(y)) if x != y => format!("{} -> {}", human(x), human(y)),
            (_, Some(y)) => human(y),
            (Some(x), None) => human(x),
            (None, None) => String::new(),
        };
        if i.kind == snap::format::tree::EntryKind::File {
            outln!(
                "{}  {}  ({size})",
                i.change.marker(),
                super::output::escape(&i.path)
            )?;
        } else {
            outln!("{}  {}", i.change.marker(), super::output::escape(&i.path))?;
        }
    }
    outln!(
        "{} -> {}: {added} added ({}), {removed} removed ({}), {modified} modified, {meta} metadata changed",
        ia.short(),
        ib.short(),
        human(bytes(Change::Added, true)),
        human(bytes(Change::Removed, false)),
    )?;
    Ok(0)
}
