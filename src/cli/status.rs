//! `snap status [PROFILE…]`: per profile, the last successful backup, copy,
//! check and restore-test with their age, from the profile's state file
//! (`cli::monitor`); exit 1 naming what is older than `max-age`.
//!
//! Which operations a profile expects: backup on its repository; copy on
//! `copy-to`; check when the profile checks; restore-test when
//! `[restore-test] every` is set (and on `copy-to` with `offsite`). An
//! operation's deadline is `max-age`, plus the rotation (`check-every`,
//! `every`) for check and restore-test. Without `max-age` nothing is stale.

use super::jobs::load_config;
use super::monitor::{self, State};
use super::profile::{parse_span, Profile};
use super::Global;
use anyhow::Result;
use clap::Args;
use serde_json::json;
use snap::{Error, ErrorKind};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Profiles to show [default: every profile of the profile file].
    profiles: Vec<String>,
}

/// "3 d 4 h", "5 h 2 min", "42 s".
fn age_text(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

/// (operation, repository, deadline in seconds) a profile expects.
fn expected(p: &Profile) -> Vec<(&'static str, String, Option<u64>)> {
    let max = p.max_age.as_deref().and_then(|s| parse_span(s).ok());
    let plus = |rot: Option<&str>| -> Option<u64> {
        let r = rot
            .filter(|r| *r != "always")
            .and_then(|r| parse_span(r).ok())
            .unwrap_or(0);
        max.map(|m| m + r)
    };
    let mut v = vec![("backup", p.repository.clone(), max)];
    if let Some(c) = &p.copy_to {
        v.push(("copy", c.clone(), max));
    }
    if p.wants_check() {
        v.push((
            "check",
            p.repository.clone(),
            plus(p.check_every.as_deref()),
        ));
    }
    if let Some(every) = p.restore_test.every.as_deref() {
        v.push(("restore-test", p.repository.clone(), plus(Some(every))));
        if p.restore_test.offsite {
            if let Some(c) = &p.copy_to {
                v.push(("restore-test", c.clone(), plus(Some(every))));
            }
        }
    }
    v
}

/// The `snap status` document of profile `name`: `{profile, state_file,
/// max_age, stale, operations: [{operation, repository, last_success (RFC
/// 3339 or null), age_seconds, max_age_seconds, stale, last_run_failed,
/// error}]}`, and one line per stale operation.
///
/// Errors: the profile's state file exists but cannot be read or parsed.
pub fn profile_status(name: &str, p: &Profile) -> Result<(serde_json::Value, Vec<String>)> {
    let now = monitor::now();
    let mut stale = Vec::new();
    let path = monitor::state_path(name, p);
    let st = State::load(&path)?;
    let mut rows = Vec::new();
    let mut shown = Vec::new();
    for (op, repo, deadline) in expected(p) {
        shown.push(format!("{op}@{repo}"));
        rows.push((op.to_string(), repo, deadline));
    }
    // Operations recorded but not expected (a manual restore-test, forget).
    for r in st.ops.values() {
        let key = format!("{}@{}", r.operation, r.repository);
        if !shown.contains(&key) && r.operation != "run" {
            rows.push((r.operation.clone(), r.repository.clone(), None));
        }
    }
    let mut ops = Vec::new();
    for (op, repo, deadline) in rows {
        let rec = st.get(&op, &repo);
        let last = rec.and_then(|r| r.last_success);
        let age = last.map(|t| now - t);
        let is_stale = match (deadline, age) {
            (Some(d), Some(a)) => a > d as i64,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let last_failed = rec.is_some_and(|r| !r.ok);
        if is_stale {
            stale.push(format!(
                "profile {name}: {op} on {repo} {}",
                match age {
                    Some(a) => format!("last succeeded {} ago", age_text(a)),
                    None => "never succeeded".to_string(),
                }
            ));
        }
        let when = last
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        ops.push(json!({
            "operation": op,
            "repository": repo,
            "last_success": when,
            "age_seconds": age,
            "max_age_seconds": deadline,
            "stale": is_stale,
            "last_run_failed": last_failed,
            "error": rec.and_then(|r| r.error.clone()),
        }));
    }
    let doc = json!({
        "profile": name,
        "state_file": path.to_string_lossy(),
        "max_age": p.max_age,
        "stale": ops.iter().any(|o| o["stale"] == true),
        "operations": ops,
    });
    Ok((doc, stale))
}

pub fn run(g: &Global, a: &StatusArgs) -> Result<u8> {
    let cfg = load_config(g)?;
    let names: Vec<String> = if a.profiles.is_empty() {
        cfg.profile.keys().cloned().collect()
    } else {
        for n in &a.profiles {
            cfg.get(n)?;
        }
        a.profiles.clone()
    };
    let mut stale = Vec::new();
    let mut docs = Vec::new();
    for name in &names {
        let p = cfg.get(name)?;
        let (doc, mut st) = profile_status(name, p)?;
        stale.append(&mut st);
        if !g.json {
            outln!(
                "profile {name} (repository {}{})",
                p.repository,
                p.max_age
                    .as_deref()
                    .map(|m| format!(", max-age {m}"))
                    .unwrap_or_default()
            )?;
            for o in doc["operations"].as_array().into_iter().flatten() {
                outln!(
                    "  {:<13} {:<10} {:<21} {:<14} {}{}",
                    o["operation"].as_str().unwrap_or(""),
                    o["repository"].as_str().unwrap_or(""),
                    o["last_success"].as_str().unwrap_or("never"),
                    o["age_seconds"]
                        .as_i64()
                        .map(|a| format!("{} ago", age_text(a)))
                        .unwrap_or_default(),
                    if o["stale"] == true { "STALE" } else { "ok" },
                    if o["last_run_failed"] == true {
                        format!(
                            " (last attempt failed: {})",
                            o["error"].as_str().unwrap_or("")
                        )
                    } else {
                        String::new()
                    }
                )?;
            }
        }
        docs.push(doc);
    }
    if g.json {
        outln!("{}", serde_json::to_string_pretty(&docs)?)?;
    }
    if !stale.is_empty() {
        return Err(Error::new(ErrorKind::Source, stale.join("; ")).into());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age_text(42), "42 s");
        assert_eq!(age_text(3 * 86400 + 4 * 3600 + 5), "3 d 4 h");
        assert_eq!(age_text(3600 + 120), "1 h 2 min");
    }
}
