//! `snap copy`: copy snapshots between repositories (local or S3).

use super::{cache_dir, from_password, human, password, store_options, Global};
use anyhow::Result;
use clap::Args;
use snap::ops::copy::copy_snapshot;
use snap::session::Operation;
use snap::{Error, Repository, Session, SnapshotId};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source repository (a path or s3://bucket/prefix).
    #[arg(long, env = "SNAP_FROM_REPO", value_name = "REPO")]
    from: String,
    /// Destination repository [default: --repo].
    #[arg(long, value_name = "REPO")]
    to: Option<String>,
    /// Read the source password from the first line of this file (else SNAP_FROM_PASSWORD, else a prompt on a TTY).
    #[arg(long, env = "SNAP_FROM_PASSWORD_FILE")]
    from_password_file: Option<PathBuf>,
    /// Snapshots to copy (ids, unique prefixes, latest, latest~N) [default: all, after the filters].
    ids: Vec<String>,
    /// Copy only the newest of the selected snapshots.
    #[arg(long)]
    latest: bool,
    /// Select snapshots that have this tag (repeatable: all must match).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Select snapshots made on this host.
    #[arg(long)]
    host: Option<String>,
}

pub fn run(g: &Global, a: &CopyArgs) -> Result<u8> {
    let to = match (&a.to, &g.repo) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        (None, None) => {
            return Err(Error::usage("no destination given: use --to or --repo").into());
        }
    };
    if !a.ids.is_empty() && (a.latest || !a.tags.is_empty() || a.host.is_some()) {
        return Err(
            Error::usage("give snapshot ids or --latest/--tag/--host filters, not both").into(),
        );
    }
    let opts = store_options(g)?;
    let src_pw = from_password(a.from_password_file.as_deref())?;
    let dst_pw = password(g, false)?;
    let cache = cache_dir(g);
    let src = Repository::open_opts(&a.from, src_pw.as_bytes(), &cache, &opts)?;
    // Copying reads every snapshot and blob of the source (format-spec §25.9).
    src.require_full_key()?;
    let mut dst = Repository::open_unsynced(&to, dst_pw.as_bytes(), &cache, &opts)?;
    dst.set_events(super::progress::events(g));
    super::print_warnings(g, &src);
    super::print_warnings(g, &dst);
    if src.config().id == dst.config().id {
        return Err(Error::usage(format!("{} and {to} are the same repository", a.from)).into());
    }
    // Like a backup, the copy writes packs to the destination under a lease
    // taken before its catalog loads the prune marks: a concurrent prune
    // then lists it as a blocker of every mark it writes meanwhile, so
    // neither the copy's new packs nor the packs it deduplicates against are
    // deleted before its snapshot is visible (format-spec §19,
    // §20.2).
    let dst = Session::start(dst, Operation::Copy)?;
    let mut selected: Vec<SnapshotId> = Vec::new();
    if a.ids.is_empty() {
        let mut all: Vec<_> = src
            .snapshots()?
            .into_iter()
            .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
            .filter(|(_, s)| a.tags.iter().all(|t| s.tags.contains(t)))
            .collect();
        if a.latest {
            all = all.pop().into_iter().collect();
        }
        selected.extend(all.into_iter().map(|(id, _)| id));
    } else {
        for spec in &a.ids {
            let id = src.resolve_snapshot(spec)?.0;
            if !selected.contains(&id) {
                selected.push(id);
            }
        }
    }
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let (mut copied, mut skipped, mut stored, mut raw, mut packs, mut blobs) = (0, 0, 0, 0, 0, 0);
    for id in &selected {
        dst.check_lease()?;
        let r = copy_snapshot(&src, &dst, id)?;
        match (r.copied_to, r.existing) {
            (Some(new), _) => {
                copied += 1;
                if !g.json {
                    eprintln!(
                        "copied snapshot {} to {}: {} blobs, {} stored",
                        id.short(),
                        new.short(),
                        r.blobs,
                        human(r.stored_bytes)
                    );
                }
                rows.push(serde_json::json!({"from": id.to_hex(), "to": new.to_hex(), "status": "copied",
                    "blobs": r.blobs, "bytes_raw": r.raw_bytes, "bytes_stored": r.stored_bytes, "packs": r.packs}));
            }
            (None, existing) => {
                skipped += 1;
                let ex = existing.map(|e| e.to_hex()).unwrap_or_default();
                if !g.json {
                    eprintln!(
                        "snapshot {} is already in the destination as {}",
                        id.short(),
                        ex.get(..8).unwrap_or("")
                    );
                }
                rows.push(serde_json::json!({"from": id.to_hex(), "to": ex, "status": "exists"}));
            }
        }
        stored += r.stored_bytes;
        raw += r.raw_bytes;
        packs += r.packs;
        blobs += r.blobs;
    }
    let dst = dst.finish();
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        outln!(
            "{}",
            serde_json::json!({
                "type": "copy_summary",
                "from": a.from,
                "to": to,
                "selected": selected.len(),
                "copied": copied,
                "skipped": skipped,
                "blobs": blobs,
                "bytes_raw": raw,
                "bytes_stored": stored,
                "packs": packs,
                "seconds": (secs * 1000.0).round() / 1000.0,
                "snapshots": rows,
                "requests": {
                    "source": src.store().stats().to_json(),
                    "destination": dst.store().stats().to_json(),
                },
            })
        )?;
    } else {
        eprintln!(
            "{copied} snapshots copied, {skipped} already present; {} stored ({} of new data) in {secs:.2} s",
            human(stored),
            human(raw)
        );
    }
    Ok(0)
}
