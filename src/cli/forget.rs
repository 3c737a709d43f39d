//! `snap forget`: remove snapshots by id or by a retention policy
//! (restic's `forget` semantics, see `snap::ops::retention`), optionally pruning.

use super::{open, open_session, prune::PruneCommon, Global};
use anyhow::Result;
use chrono::DateTime;
use clap::Args;
use snap::format::snapshot::Snapshot;
use snap::ops::retention::{self, Item, Policy, Span};
use snap::session::Operation;
use snap::{Error, Repository, SnapshotId};
use std::collections::{BTreeMap, HashSet};

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to forget (ids or unique prefixes); no policy is applied.
    ids: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_yearly: u32,
    /// Keep snapshots newer than the group's newest minus this (e.g. 14d, 2w, 1y6m, 36h).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Group snapshots by these fields before applying the policy (host, paths, tags; comma separated).
    #[arg(long, default_value = "host,paths")]
    group_by: String,
    #[command(flatten)]
    filter: SnapshotFilter,
    /// Show what would be removed and why the rest is kept; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run `snap prune` afterwards.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    prune_args: PruneCommon,
}

/// Which snapshots a command considers (`forget`, `snapshots`): every
/// given condition must hold.
#[derive(Args, Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only snapshots with this tag (repeatable: all must be present).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only snapshots of this backup path (repeatable: all must be present).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether snapshot `s` passes every condition.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.hostname == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }

    /// The snapshots of `snaps` that pass, in their order.
    pub fn apply(&self, snaps: Vec<(SnapshotId, Snapshot)>) -> Vec<(SnapshotId, Snapshot)> {
        snaps.into_iter().filter(|(_, s)| self.matches(s)).collect()
    }
}

/// The retention group of a snapshot: the values of the `by` fields
/// (host, paths, tags), as printed in `forget`'s output.
pub fn group_key(s: &Snapshot, by: &[&str]) -> String {
    let mut parts = Vec::new();
    for f in by {
        match *f {
            "host" => parts.push(format!("host {}", s.hostname)),
            "paths" => {
                let mut p: Vec<String> = s.paths.clone();
                p.extend(s.streams.iter().map(|n| format!("@{n}")));
                p.sort();
                parts.push(format!("paths [{}]", p.join(", ")));
            }
            "tags" => parts.push(format!("tags [{}]", s.tags.join(", "))),
            _ => {}
        }
    }
    parts.join(", ")
}

pub fn run(g: &Global, a: &ForgetArgs) -> Result<u8> {
    let by: Vec<&str> = a
        .group_by
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = by.iter().find(|f| !["host", "paths", "tags"].contains(f)) {
        return Err(Error::usage(format!(
            "--group-by {bad:?} is not one of host, paths, tags"
        ))
        .into());
    }
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: match &a.keep_within {
            Some(s) => Some(Span::parse(s).map_err(Error::usage)?),
            None => None,
        },
        tags: a.keep_tag.clone(),
    };
    if a.ids.is_empty() && policy.is_empty() {
        return Err(Error::usage(
            "no snapshot ids and no policy given: use --keep-last, --keep-daily, … or name snapshots",
        )
        .into());
    }
    if !a.ids.is_empty() && !policy.is_empty() {
        return Err(Error::usage("give either snapshot ids or a policy, not both").into());
    }
    // Checked before anything is removed.
    let prune_opts = if a.prune {
        Some(super::prune::options(&a.prune_args, a.dry_run)?)
    } else {
        None
    };
    // A dry run removes nothing and takes no lease; `--prune` holds the
    // prune lease from the start, so a prune running elsewhere refuses
    // this command before it removes any snapshot.
    let session = if a.dry_run {
        None
    } else if a.prune {
        Some(open_session(g, Operation::Prune)?)
    } else {
        Some(open_session(g, Operation::Forget)?)
    };
    let plain;
    let repo: &Repository = match &session {
        Some(s) => s,
        None => {
            plain = open(g)?;
            &plain
        }
    };
    let mut remove: Vec<(SnapshotId, Snapshot)> = Vec::new();
    let mut groups_json = Vec::new();
    if !a.ids.is_empty() {
        for spec in &a.ids {
            let (id, s) = repo.resolve_snapshot(spec)?;
            if !remove.iter().any(|(r, _)| *r == id) {
                remove.push((id, s));
            }
        }
    } else {
        let snaps = a.filter.apply(repo.snapshots()?);
        let mut groups: BTreeMap<String, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
        for (id, s) in snaps {
            groups.entry(group_key(&s, &by)).or_default().push((id, s));
        }
        for (gk, members) in groups {
            let items: Vec<Item> = members
                .iter()
                .map(|(_, s)| Item {
                    time: DateTime::from_timestamp_millis(s.time_ms()).unwrap_or_default(),
                    tags: s.tags.clone(),
                })
                .collect();
            let decisions = retention::apply(&policy, &items);
            if !g.json {
                outln!("snapshots for {gk}:")?;
            }
            let mut keep_j = Vec::new();
            let mut rm_j = Vec::new();
            for ((id, s), d) in members.iter().zip(&decisions) {
                if d.keep {
                    if !g.json {
                        outln!(
                            "  keep   {}  {}  {}",
                            id.short(),
                            s.time,
                            d.reasons.join(", ")
                        )?;
                    }
                    keep_j.push(serde_json::json!({"id": id.to_hex(), "time": s.time, "reasons": d.reasons}));
                } else {
                    if !g.json {
                        outln!("  remove {}  {}", id.short(), s.time)?;
                    }
                    rm_j.push(serde_json::json!({"id": id.to_hex(), "time": s.time}));
                    remove.push((*id, s.clone()));
                }
            }
            groups_json.push(serde_json::json!({"group": gk, "keep": keep_j, "remove": rm_j}));
        }
    }
    // With Object Lock the snapshot leaves the listings now, but its object
    // (and what only it references) stays in the bucket until its
    // retain-until date (format-spec §25.8).
    let mut protected = Vec::new();
    if repo.config().object_lock.is_some() {
        for (id, _) in &remove {
            let key = snap::store::ObjectKind::Snapshot.key(&id.to_hex());
            if let Some(until) = snap::ops::object_lock::protected_until(repo.store(), &key)? {
                protected.push((*id, until));
            }
        }
    }
    if let Some(s) = &session {
        for (id, _) in &remove {
            s.remove_snapshot(id)?;
        }
    }
    let removed: Vec<String> = remove.iter().map(|(id, _)| id.to_hex()).collect();
    let date =
        |d: &chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if g.json {
        let prot: serde_json::Map<String, serde_json::Value> = protected
            .iter()
            .map(|(id, d)| (id.to_hex(), date(d).into()))
            .collect();
        outln!(
            "{}",
            serde_json::json!({"type": "forget", "dry_run": a.dry_run, "groups": groups_json, "removed": removed, "protected_until": prot})
        )?;
    } else {
        outln!(
            "{} {} snapshot(s)",
            if a.dry_run { "would remove" } else { "removed" },
            removed.len()
        )?;
        for (id, until) in &protected {
            outln!(
                "snapshot {} is protected by Object Lock until {}: {} from the snapshot list now; its object and data stay in the bucket until then, and a prune after that date deletes them",
                id.short(),
                date(until),
                if a.dry_run { "it would be gone" } else { "gone" },
            )?;
        }
    }
    if let Some(opts) = prune_opts {
        let rep = match &session {
            Some(s) => snap::ops::prune::prune(s, &opts)?,
            // A dry run removed nothing: estimate as if it had.
            None => {
                let forgotten: HashSet<SnapshotId> = remove.iter().map(|(id, _)| *id).collect();
                snap::ops::prune::estimate(repo, &opts, &forgotten)?
            }
        };
        drop(session);
        return super::prune::print(g, &rep, a.dry_run);
    }
    Ok(0)
}
