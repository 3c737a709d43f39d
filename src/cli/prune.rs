//! `snap prune`: delete unused data (two-phase, safe during backups).

use super::{human, open, Global};
use anyhow::Result;
use clap::Args;
use snap::lease::{LeaseGuard, Operation};
use snap::prune::PruneOptions;
use snap::{Error, Id, Repository};
use std::collections::HashSet;

#[derive(Args, Debug, Clone, Default)]
pub struct PruneArgs {
    #[command(flatten)]
    pub common: PruneCommon,
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options shared by `prune` and `forget --prune`.
#[derive(Args, Debug, Clone, Default)]
pub struct PruneCommon {
    /// Repack packs whose unused share exceeds this (percent, e.g. 10 or 10%).
    #[arg(long, default_value = "10%")]
    pub max_unused: String,
    /// Delete marked packs only once the mark is this old (e.g. 1h, 30m, 0s).
    #[arg(long, default_value = "1h")]
    pub grace: String,
}

pub fn run(g: &Global, a: &PruneArgs) -> Result<u8> {
    let repo = open(g)?;
    run_with(g, &repo, a, &HashSet::new())
}

/// Prunes `repo`; `forgotten` snapshots count as removed (the estimate of
/// `forget --prune --dry-run`, which has not removed them).
pub fn run_with(
    g: &Global,
    repo: &Repository,
    a: &PruneArgs,
    forgotten: &HashSet<Id>,
) -> Result<u8> {
    let mu: f64 = a
        .common
        .max_unused
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|v: &f64| (0.0..=100.0).contains(v))
        .ok_or_else(|| {
            Error::usage(format!(
                "--max-unused {:?}: give a percentage 0..100",
                a.common.max_unused
            ))
        })?;
    let grace = humantime::parse_duration(&a.common.grace)
        .map_err(|e| Error::usage(format!("--grace {:?}: {e}", a.common.grace)))?;
    let lease = if a.dry_run {
        None
    } else {
        Some(LeaseGuard::acquire(
            repo.store().clone(),
            repo.key(),
            Operation::Prune,
            "",
        )?)
    };
    let rep = snap::prune::prune_without(
        repo,
        &PruneOptions {
            max_unused: mu / 100.0,
            grace,
            dry_run: a.dry_run,
            own_lease: lease.as_ref().map(|l| l.name().to_string()),
        },
        forgotten,
    )?;
    drop(lease);
    if g.json {
        let mut v = serde_json::to_value(&rep)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "prune".into());
            o.insert("dry_run".into(), a.dry_run.into());
        }
        outln!("{v}")?;
    } else {
        let w = if a.dry_run { "would " } else { "" };
        outln!(
            "{} snapshots, {} blobs referenced",
            rep.snapshots,
            rep.blobs_referenced
        )?;
        outln!(
            "{w}delete {} packs ({}); {w}mark {} packs ({}) for deletion after the grace period; {w}repack {} packs ({} blobs, {} written); {} marked packs needed again",
            rep.packs_deleted,
            human(rep.bytes_freed),
            rep.packs_marked,
            human(rep.bytes_marked),
            rep.packs_repacked,
            rep.blobs_repacked,
            human(rep.bytes_repacked),
            rep.packs_unmarked
        )?;
        if rep.staging_removed > 0 {
            outln!(
                "removed {} staging files left by interrupted writes",
                rep.staging_removed
            )?;
        }
        outln!(
            "data: {} before, {} after; {} marks waiting; {:.2} s",
            human(rep.data_bytes_before),
            human(rep.data_bytes_after),
            rep.marks_waiting,
            rep.seconds
        )?;
    }
    Ok(0)
}
