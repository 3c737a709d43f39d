//! `snap prune`: delete unused data (two-phase, safe during backups).

use super::{human, open, open_session, Global};
use anyhow::Result;
use clap::Args;
use snap::ops::prune::{PruneOptions, PruneReport};
use snap::session::Operation;
use snap::Error;
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
    let opts = options(&a.common, a.dry_run)?;
    // A dry run writes nothing and takes no lease.
    let rep = if a.dry_run {
        snap::ops::prune::estimate(&open(g)?, &opts, &HashSet::new())?
    } else {
        snap::ops::prune::prune(&open_session(g, Operation::Prune)?, &opts)?
    };
    print(g, &rep, a.dry_run)
}

/// The library's options from `--max-unused` and `--grace`
/// ([`Error::usage`] for a bad value).
pub fn options(common: &PruneCommon, dry_run: bool) -> Result<PruneOptions> {
    let mu: f64 = common
        .max_unused
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|v: &f64| (0.0..=100.0).contains(v))
        .ok_or_else(|| {
            Error::usage(format!(
                "--max-unused {:?}: give a percentage 0..100",
                common.max_unused
            ))
        })?;
    let grace = humantime::parse_duration(&common.grace)
        .map_err(|e| Error::usage(format!("--grace {:?}: {e}", common.grace)))?;
    Ok(PruneOptions {
        max_unused: mu / 100.0,
        grace,
        dry_run,
    })
}

/// Prints a prune's report (a `prune` JSON line with `--json`).
pub fn print(g: &Global, rep: &PruneReport, dry_run: bool) -> Result<u8> {
    if g.json {
        let mut v = serde_json::to_value(rep)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "prune".into());
            o.insert("dry_run".into(), dry_run.into());
        }
        outln!("{v}")?;
    } else {
        let w = if dry_run { "would " } else { "" };
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
        if let Some(l) = &rep.object_lock {
            let date = |d: &Option<chrono::DateTime<chrono::Utc>>| {
                d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            outln!(
                "object lock: {w}delete {} object versions ({}) whose retention is over, {w}remove {} delete markers",
                l.versions_deleted,
                human(l.bytes_deleted),
                l.markers_removed
            )?;
            if l.versions_kept > 0 {
                outln!(
                    "object lock: {} deleted object versions ({}) are protected until {} at the latest; prune after that date deletes them",
                    l.versions_kept,
                    human(l.bytes_kept),
                    date(&l.kept_until)
                )?;
            }
            if l.extended > 0 {
                outln!(
                    "object lock: {w}extend the retention of {} objects still in use to {}{}",
                    l.extended,
                    date(&l.extended_until),
                    if l.lapsed > 0 {
                        format!(" ({} had lapsed)", l.lapsed)
                    } else {
                        String::new()
                    }
                )?;
            }
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
