//! `snap repair index|snapshots` under an exclusive lease.

use super::{open_session, Global};
use anyhow::Result;
use clap::Subcommand;
use snap::session::Operation;

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers (replaces every index object).
    Index {
        /// Download and verify every pack; salvage the good blobs of damaged
        /// packs into new packs and delete the damaged packs.
        #[arg(long)]
        read_data: bool,
    },
    /// Rewrite snapshots that reference lost data without the lost files.
    Snapshots {
        /// List what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(g: &Global, c: &RepairCommand) -> Result<u8> {
    let repo = open_session(
        g,
        match c {
            RepairCommand::Index { .. } => Operation::RepairIndex,
            RepairCommand::Snapshots { .. } => Operation::RepairSnapshots,
        },
    )?;
    match c {
        RepairCommand::Index { read_data } => {
            let r = snap::ops::repair::repair_index(&repo, *read_data)?;
            if g.json {
                let mut v = serde_json::to_value(&r)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), "repair_index".into());
                }
                outln!("{v}")?;
            } else {
                for p in &r.packs_salvaged {
                    outln!(
                        "salvaged damaged pack {} (its good blobs were copied, the pack deleted)",
                        &p[..8]
                    )?;
                }
                for p in &r.packs_unreadable {
                    outln!("pack {} is unreadable and left out of the index", &p[..8])?;
                }
                outln!(
                    "indexed {} of {} packs; replaced {} index objects; {} blobs lost",
                    r.packs_indexed,
                    r.packs,
                    r.indexes_replaced,
                    r.blobs_lost
                )?;
            }
        }
        RepairCommand::Snapshots { dry_run } => {
            let r = snap::ops::repair::repair_snapshots(&repo, *dry_run)?;
            if g.json {
                outln!(
                    "{}",
                    serde_json::json!({"type": "repair_snapshots", "dry_run": dry_run, "snapshots": r})
                )?;
            } else {
                for s in &r {
                    if let Some(e) = &s.unreadable {
                        let verb = if *dry_run {
                            "would be removed"
                        } else {
                            "removed"
                        };
                        outln!(
                            "snapshot object {} is unreadable ({e}): {verb}",
                            &s.old[..8]
                        )?;
                        continue;
                    }
                    if *dry_run {
                        outln!("snapshot {} would lose:", &s.old[..8])?;
                    } else {
                        outln!(
                            "snapshot {} rewritten as {}, lost:",
                            &s.old[..8],
                            &s.new[..8]
                        )?;
                    }
                    for l in &s.lost {
                        outln!("  {l}")?;
                    }
                }
                outln!(
                    "{} snapshots {}",
                    r.len(),
                    if *dry_run { "need repair" } else { "repaired" }
                )?;
            }
        }
    }
    Ok(0)
}
