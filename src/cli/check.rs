//! `snap check`: verify structure and, with --read-data, pack contents.

use super::{human, open, Global};
use anyhow::Result;
use clap::Args;
use snap::ops::check::Subset;
use snap::Error;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Download and verify every pack.
    #[arg(long)]
    read_data: bool,
    /// Verify part of the packs: `N/M` (part N of M), `M` or `P%` (the next
    /// part of M, resp. 100/P, parts: successive runs cover every pack in turn).
    #[arg(long, value_name = "N/M|M|P%")]
    read_data_subset: Option<String>,
    /// Instead of checking the repository, compare the snapshot's copy of
    /// this file tree with the live one: list every file whose content,
    /// type, mode or owner differs, or that is missing or new, ignoring
    /// mtime-only changes (every file is read). Exit 1 if any differ.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["read_data", "read_data_subset"])]
    compare_source: Option<std::path::PathBuf>,
    /// With --compare-source: the snapshot to compare [default: the latest
    /// whose paths hold PATH].
    #[arg(long, requires = "compare_source")]
    snapshot: Option<String>,
    /// With --compare-source: skip entries matching GLOB on both sides
    /// (repeatable), with `snap backup --exclude`'s matching: no `/`
    /// matches a name at any depth, `/PATH` the whole path, `./PATH` relative to
    /// the current directory, `a/b` trailing components.
    #[arg(long = "exclude", value_name = "GLOB", requires = "compare_source")]
    excludes: Vec<String>,
    /// Write the check's result into this node_exporter textfile (the
    /// series `snap run` writes for a profile's check step:
    /// snap_last_run_success, snap_last_run_timestamp_seconds,
    /// snap_last_success_timestamp_seconds, snap_duration_seconds, labelled
    /// operation="check", repository=the repository location,
    /// profile=--metrics-name); the file's other samples are kept. A failed
    /// check (exit 1) or one that cannot run (no repository, wrong
    /// password) is written as a failure.
    #[arg(long, value_name = "FILE", conflicts_with = "compare_source")]
    metrics_file: Option<std::path::PathBuf>,
    /// With --metrics-file: the `profile` label of the samples.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "check",
        requires = "metrics_file"
    )]
    metrics_name: String,
}

fn parse_subset(g: &Global, repo: &snap::Repository, s: &str) -> Result<Subset> {
    let bad = || {
        Error::usage(format!(
            "--read-data-subset {s:?}: use N/M, M or P% (e.g. 2/10, 10, 5%)"
        ))
    };
    let (part, m) = if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(bad().into());
        }
        (None, (100.0 / p).ceil() as u32)
    } else if let Some((n, m)) = s.split_once('/') {
        let m: u32 = m.parse().map_err(|_| bad())?;
        let n: Option<u32> = if n.is_empty() {
            None
        } else {
            Some(n.parse().map_err(|_| bad())?)
        };
        (n, m)
    } else {
        (None, s.parse().map_err(|_| bad())?)
    };
    if m == 0 || part.is_some_and(|n| n == 0 || n > m) {
        return Err(bad().into());
    }
    let _ = g;
    let n = match part {
        Some(n) => n,
        None => {
            // Next part of M, remembered in the catalog's meta table.
            let key = format!("check.next_part.{m}");
            let cat = repo.catalog();
            let n: u32 = cat
                .meta(&key)?
                .and_then(|v| v.parse().ok())
                .filter(|n| (1..=m).contains(n))
                .unwrap_or(1);
            cat.set_meta(&key, &(n % m + 1).to_string())?;
            n
        }
    };
    Ok(Subset::Part(n, m))
}

pub fn run(g: &Global, a: &CheckArgs) -> Result<u8> {
    let Some(file) = &a.metrics_file else {
        return check(g, a);
    };
    let started = std::time::Instant::now();
    let r = check(g, a);
    let ok = matches!(r, Ok(0));
    let location = super::repo_location(g)?;
    let secs = started.elapsed().as_secs_f64();
    if let Err(e) = super::monitor::write_check_metrics(file, &a.metrics_name, &location, ok, secs)
    {
        eprintln!("snap: warning: --metrics-file: {e}");
    }
    r
}

fn check(g: &Global, a: &CheckArgs) -> Result<u8> {
    let repo = open(g)?;
    if let Some(src) = &a.compare_source {
        return compare(g, &repo, a, src);
    }
    let sub = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(parse_subset(g, &repo, s)?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let rep = snap::ops::check::check(&repo, sub)?;
    if g.json {
        let mut v = serde_json::to_value(&rep)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "check".into());
            o.insert("ok".into(), rep.problems.is_empty().into());
        }
        outln!("{v}")?;
    } else {
        for p in &rep.problems {
            outln!("error: {}", p.message)?;
            if !p.snapshots.is_empty() {
                let short: Vec<&str> = p.snapshots.iter().map(|s| &s[..8]).collect();
                outln!("  affects snapshots: {}", short.join(" "))?;
            }
            for path in p.paths.iter().take(50) {
                outln!("  affects {path}")?;
            }
            if p.paths.len() > 50 {
                outln!("  … and {} more paths", p.paths.len() - 50)?;
            }
        }
        outln!(
            "checked {} snapshots, {} trees, {} packs; read {} packs ({}, {} blobs{}) in {:.2} s: {}",
            rep.snapshots,
            rep.trees,
            rep.packs,
            rep.packs_read,
            human(rep.bytes_read),
            rep.blobs_read,
            if rep.subset.is_empty() { String::new() } else { format!(", subset {}", rep.subset) },
            rep.seconds,
            if rep.problems.is_empty() { "no errors".to_string() } else { format!("{} errors", rep.problems.len()) }
        )?;
    }
    Ok(if rep.problems.is_empty() { 0 } else { 1 })
}

fn compare(
    g: &Global,
    repo: &snap::Repository,
    a: &CheckArgs,
    src: &std::path::Path,
) -> Result<u8> {
    let path = snap::ops::backup::normalize_path(src)?;
    let (id, snap) = match &a.snapshot {
        Some(s) => repo.resolve_snapshot(s)?,
        None => repo
            .snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| {
                s.paths
                    .iter()
                    .any(|p| path.starts_with(std::path::Path::new(p)))
            })
            .ok_or_else(|| {
                Error::usage(format!(
                    "no snapshot holds {}; give --snapshot ID",
                    path.display()
                ))
            })?,
    };
    let t0 = std::time::Instant::now();
    let excludes = snap::ops::backup::ExcludeSet::from_args(&a.excludes)?;
    let rep = snap::ops::compare::compare_source(repo, &snap.tree, &path, &excludes)?;
    let secs = t0.elapsed().as_secs_f64();
    if g.json {
        for d in &rep.diffs {
            outln!(
                "{}",
                serde_json::json!({"type": "difference", "change": d.change, "path": d.path.to_string_lossy(), "detail": d.detail})
            )?;
        }
        outln!(
            "{}",
            serde_json::json!({"type": "compare", "snapshot": id.to_hex(), "source": path.to_string_lossy(), "entries": rep.entries, "files_read": rep.files_read, "bytes_read": rep.bytes_read, "differences": rep.diffs.len(), "ok": rep.diffs.is_empty(), "seconds": secs})
        )?;
    } else {
        for d in &rep.diffs {
            outln!(
                "{:<10} {}: {}",
                format!("{:?}", d.change).to_lowercase(),
                super::output::escape(&d.path.to_string_lossy()),
                d.detail
            )?;
        }
        outln!(
            "compared {} with snapshot {}: {} entries, read {} files ({}) in {secs:.2} s: {}",
            path.display(),
            id.short(),
            rep.entries,
            rep.files_read,
            human(rep.bytes_read),
            if rep.diffs.is_empty() {
                "no differences".to_string()
            } else {
                format!("{} differences", rep.diffs.len())
            }
        )?;
    }
    Ok(if rep.diffs.is_empty() { 0 } else { 1 })
}
