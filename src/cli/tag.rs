//! `snap tag`: change the tags of snapshots.

use super::{open_session, Global};
use anyhow::Result;
use clap::Args;
use snap::session::Operation;
use snap::Error;

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Snapshots to change (ids, prefixes, latest, latest~N).
    #[arg(required = true)]
    snapshots: Vec<String>,
    /// Add this tag (repeatable).
    #[arg(long = "add")]
    add: Vec<String>,
    /// Remove this tag (repeatable).
    #[arg(long = "remove")]
    remove: Vec<String>,
    /// Replace all tags with these (repeatable; `--set ''` clears).
    #[arg(long = "set")]
    set: Vec<String>,
}

pub fn run(g: &Global, a: &TagArgs) -> Result<u8> {
    if a.add.is_empty() && a.remove.is_empty() && a.set.is_empty() {
        return Err(Error::usage("nothing to do: give --add, --remove or --set").into());
    }
    if !a.set.is_empty() && (!a.add.is_empty() || !a.remove.is_empty()) {
        return Err(Error::usage("--set cannot be combined with --add or --remove").into());
    }
    let repo = open_session(g, Operation::Tag)?;
    let mut targets = Vec::new();
    for s in &a.snapshots {
        let r = repo.resolve_snapshot(s)?;
        if !targets.iter().any(|(id, _)| *id == r.0) {
            targets.push(r);
        }
    }
    let mut changed = Vec::new();
    for (old_id, snap) in targets {
        let mut tags: Vec<String> = if a.set.is_empty() {
            snap.tags.clone()
        } else {
            a.set.iter().filter(|t| !t.is_empty()).cloned().collect()
        };
        tags.extend(a.add.iter().cloned());
        tags.retain(|t| !a.remove.contains(t));
        tags.sort();
        tags.dedup();
        if tags == snap.tags {
            changed.push((old_id, None));
            continue;
        }
        let mut new = snap.clone();
        new.tags = tags;
        // New object first, then the old one: a crash in between leaves a
        // duplicate snapshot, never none.
        let new_id = repo.save_snapshot(&new)?;
        repo.remove_snapshot(&old_id)?;
        changed.push((old_id, Some((new_id, new.tags))));
    }
    if g.json {
        let v: Vec<_> = changed
            .iter()
            .map(|(old, n)| match n {
                Some((id, tags)) => {
                    serde_json::json!({"old": old.to_hex(), "new": id.to_hex(), "tags": tags})
                }
                None => {
                    serde_json::json!({"old": old.to_hex(), "new": old.to_hex(), "unchanged": true})
                }
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for (old, n) in &changed {
            match n {
                Some((id, tags)) => outln!(
                    "snapshot {} -> {}: tags [{}]",
                    old.short(),
                    id.short(),
                    tags.join(", ")
                )?,
                None => outln!("snapshot {}: tags unchanged", old.short())?,
            }
        }
    }
    Ok(0)
}
