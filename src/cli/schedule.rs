//! `snap schedule PROFILE`: a systemd timer + service pair (or a crontab
//! line) that runs `snap run PROFILE`; printed by default, installed with
//! `--install`; `--list` shows the installed ones. snap has no daemon.

use super::jobs::load_config;
use super::Global;
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use snap::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Profile to schedule.
    #[arg(required_unless_present = "list")]
    profile: Option<String>,
    /// Every day at HH:MM (local time).
    #[arg(long, value_name = "HH:MM", group = "when")]
    daily: Option<String>,
    /// Every hour, on the hour.
    #[arg(long, group = "when")]
    hourly: bool,
    /// Every DURATION (e.g. 15m, 6h): on the clock when it divides an hour
    /// or a day, else DURATION after the previous run.
    #[arg(long, value_name = "DURATION", group = "when")]
    every: Option<String>,
    /// Every week on DAY (mon, tue, ... sun) at HH:MM.
    #[arg(long, num_args = 2, value_names = ["DAY", "HH:MM"], group = "when")]
    weekly: Vec<String>,
    /// A crontab line instead of systemd units.
    #[arg(long)]
    cron: bool,
    /// Install: write the units and `systemctl enable --now` the timer
    /// (with --cron: add the line to the user's crontab).
    #[arg(long)]
    install: bool,
    /// Per-user units in ~/.config/systemd/user (`systemctl --user`).
    #[arg(long)]
    user: bool,
    /// Directory for the unit files [default: /etc/systemd/system, or
    /// ~/.config/systemd/user with --user].
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
    /// With --install: write the unit files only; do not call systemctl.
    #[arg(long, requires = "install")]
    no_enable: bool,
    /// List the installed snap timers (and crontab lines).
    #[arg(long, conflicts_with_all = ["install", "when"])]
    list: bool,
}

/// When to run, independent of systemd or cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Daily at (hour, minute).
    Daily(u8, u8),
    /// Hourly at minute 0.
    Hourly,
    /// Every N minutes, N dividing 60 (N < 60).
    EveryMinutes(u32),
    /// Every N hours, N dividing 24 (N < 24).
    EveryHours(u32),
    /// Every N seconds after the previous run (systemd only).
    Interval(u64),
    /// Weekly on day (0 = sunday … 6) at (hour, minute).
    Weekly(u8, u8, u8),
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn parse_hhmm(s: &str) -> Result<(u8, u8), Error> {
    let bad = || Error::usage(format!("{s:?} is not a time HH:MM (00:00 to 23:59)"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

fn parse_day(s: &str) -> Result<u8, Error> {
    let l = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| l.len() >= 3 && d.to_ascii_lowercase().starts_with(&l[..3]))
        .filter(|_| {
            [
                "sunday",
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
            ]
            .iter()
            .any(|full| full.starts_with(&l))
        })
        .map(|i| i as u8)
        .ok_or_else(|| Error::usage(format!("{s:?} is not a weekday (mon, tue, … sun)")))
}

impl When {
    /// From the command-line options (exactly one of them).
    pub fn from_args(a: &ScheduleArgs) -> Result<When, Error> {
        if let Some(d) = &a.daily {
            let (h, m) = parse_hhmm(d)?;
            return Ok(When::Daily(h, m));
        }
        if a.hourly {
            return Ok(When::Hourly);
        }
        if let Some(e) = &a.every {
            return When::every(e);
        }
        if let [day, t] = a.weekly.as_slice() {
            let (h, m) = parse_hhmm(t)?;
            return Ok(When::Weekly(parse_day(day)?, h, m));
        }
        Err(Error::usage(
            "say when: --daily HH:MM, --hourly, --every DURATION or --weekly DAY HH:MM",
        ))
    }

    /// `--every DURATION` (humantime syntax: 15m, 6h, 1day).
    pub fn every(s: &str) -> Result<When, Error> {
        let d = humantime::parse_duration(s)
            .map_err(|e| Error::usage(format!("--every {s:?}: {e}")))?;
        let secs = d.as_secs();
        if secs < 60 || d.subsec_nanos() != 0 {
            return Err(Error::usage(format!(
                "--every {s:?}: give at least one minute"
            )));
        }
        if secs % 3600 == 0 && secs < 86400 && 86400 % secs == 0 {
            return Ok(When::EveryHours((secs / 3600) as u32));
        }
        if secs == 86400 {
            return Ok(When::Daily(0, 0));
        }
        if secs % 60 == 0 && secs < 3600 && 3600 % secs == 0 {
            return Ok(When::EveryMinutes((secs / 60) as u32));
        }
        Ok(When::Interval(secs))
    }

    /// The `[Timer]` lines for systemd (systemd.time(7) calendar events).
    pub fn systemd(&self) -> Vec<String> {
        match *self {
            When::Daily(h, m) => vec![format!("OnCalendar=*-*-* {h:02}:{m:02}:00")],
            When::Hourly => vec!["OnCalendar=*-*-* *:00:00".into()],
            When::EveryMinutes(n) => vec![format!("OnCalendar=*-*-* *:00/{n}:00")],
            When::EveryHours(n) => vec![format!("OnCalendar=*-*-* 00/{n}:00:00")],
            When::Interval(s) => vec![format!("OnActiveSec={s}s"), format!("OnUnitActiveSec={s}s")],
            When::Weekly(d, h, m) => {
                vec![format!(
                    "OnCalendar={} *-*-* {h:02}:{m:02}:00",
                    DAYS[d as usize]
                )]
            }
        }
    }

    /// The five time fields of a crontab line (crontab(5)).
    pub fn cron(&self) -> Result<String, Error> {
        Ok(match *self {
            When::Daily(h, m) => format!("{m} {h} * * *"),
            When::Hourly => "0 * * * *".into(),
            When::EveryMinutes(n) => format!("*/{n} * * * *"),
            When::EveryHours(n) => format!("0 */{n} * * *"),
            When::Weekly(d, h, m) => format!("{m} {h} * * {d}"),
            When::Interval(s) => {
                return Err(Error::usage(format!(
                    "cron cannot run every {s} seconds: use a divisor of an hour or a day, or a systemd timer"
                )))
            }
        })
    }

    /// Human description ("daily at 02:00").
    pub fn describe(&self) -> String {
        match *self {
            When::Daily(h, m) => format!("daily at {h:02}:{m:02}"),
            When::Hourly => "hourly".into(),
            When::EveryMinutes(n) => format!("every {n} minutes"),
            When::EveryHours(n) => format!("every {n} hours"),
            When::Interval(s) => format!("every {s} s after the previous run"),
            When::Weekly(d, h, m) => format!("weekly on {} at {h:02}:{m:02}", DAYS[d as usize]),
        }
    }
}

/// Quotes one word for a systemd `ExecStart=` line (systemd.service(5)
/// "Command lines"): `%` → `%%`, `$` → `$$`; words with spaces, quotes or
/// backslashes are double-quoted with C-style escapes.
pub fn systemd_quote(w: &str) -> String {
    let w = w.replace('%', "%%").replace('$', "$$");
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        return w;
    }
    format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A profile name usable in a unit name: letters, digits, `-`, `_`, `.`.
fn check_unit_name(profile: &str) -> Result<(), Error> {
    if !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "profile name {profile:?} cannot be part of a unit name: use letters, digits, - _ ."
        )))
    }
}

/// The service and timer unit texts for `snap --config CONFIG run PROFILE`.
pub fn units(exe: &Path, config: &Path, profile: &str, when: &When) -> (String, String) {
    let exec = [
        exe.to_string_lossy().into_owned(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--no-progress".into(),
        "run".into(),
        profile.to_string(),
    ]
    .iter()
    .map(|w| systemd_quote(w))
    .collect::<Vec<_>>()
    .join(" ");
    let service = format!(
        "[Unit]\n\
         Description=snap backup of profile {profile}\n\
         Documentation=man:snap(1)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         Nice=10\n\
         IOSchedulingClass=idle\n"
    );
    let timer = format!(
        "[Unit]\n\
         Description=snap backup of profile {profile}: {}\n\
         Documentation=man:snap(1)\n\
         \n\
         [Timer]\n\
         {}\n\
         Persistent=true\n\
         Unit=snap-{profile}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        when.describe(),
        when.systemd().join("\n"),
    );
    (service, timer)
}

/// The crontab line (a `# snap profile NAME` marker line, then the entry).
pub fn cron_lines(exe: &Path, config: &Path, profile: &str, when: &When) -> Result<String, Error> {
    let cmd = shell_words::join([
        exe.to_string_lossy().as_ref(),
        "--config",
        config.to_string_lossy().as_ref(),
        "--no-progress",
        "run",
        profile,
    ]);
    // `%` ends the command in crontab(5) unless escaped.
    let cmd = cmd.replace('%', "\\%");
    Ok(format!("{MARK}{profile}\n{} {cmd}\n", when.cron()?))
}

const MARK: &str = "# snap profile ";

fn unit_dir(a: &ScheduleArgs) -> PathBuf {
    if let Some(d) = &a.unit_dir {
        return d.clone();
    }
    if a.user {
        dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from(".config"))
            .join("systemd")
            .join("user")
    } else {
        PathBuf::from("/etc/systemd/system")
    }
}

fn systemctl(user: bool, args: &[&str]) -> Result<()> {
    let mut c = snap::write::sources::command("systemctl");
    if user {
        c.arg("--user");
    }
    c.args(args);
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(Error::usage(format!(
            "systemctl {}{} failed: {}",
            if user { "--user " } else { "" },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    Ok(())
}

fn read_crontab() -> Result<String> {
    let out = snap::write::sources::command("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .context("running crontab -l (is cron installed?)")?;
    // "no crontab for USER" exits 1: treat as empty.
    Ok(if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    })
}

/// `crontab` text with the entry of `profile` (marker line + next line) removed.
pub fn without_profile(crontab: &str, profile: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in crontab.lines() {
        if skip {
            skip = false;
            continue;
        }
        if line.trim_end() == format!("{MARK}{profile}") {
            skip = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn run(g: &Global, a: &ScheduleArgs) -> Result<u8> {
    if a.list {
        return list(g, a);
    }
    let profile = a.profile.as_deref().unwrap_or_default();
    let cfg = load_config(g)?;
    let p = cfg.get(profile)?;
    check_unit_name(profile)?;
    let when = When::from_args(a)?;
    let exe = std::env::current_exe()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    // The timer's service has none of this shell's environment.
    let mut repos = vec![p.repository.clone()];
    repos.extend(p.copy_to.clone());
    for r in &repos {
        let def = cfg.repo(r)?;
        if def.password_file.is_none() && def.password_command.is_none() {
            eprintln!(
                "snap: warning: repository {r:?} has no password-file or password-command in {}; \
                 the scheduled job will not see SNAP_PASSWORD from this shell",
                cfg.path.display()
            );
        }
    }
    if a.cron {
        let text = cron_lines(&exe, &cfg.path, profile, &when)?;
        if a.install {
            let mut tab = without_profile(&read_crontab()?, profile);
            tab.push_str(&text);
            let mut child = snap::write::sources::command("crontab")
                .arg("-")
                .stdin(Stdio::piped())
                .spawn()
                .context("running crontab - (is cron installed?)")?;
            child
                .stdin
                .take()
                .map(|mut w| w.write_all(tab.as_bytes()))
                .transpose()?;
            let st = child.wait()?;
            if !st.success() {
                return Err(Error::usage(format!("crontab - failed ({st})")).into());
            }
        }
        if g.json {
            outln!(
                "{}",
                json!({"type": "schedule", "kind": "cron", "profile": profile, "when": when.describe(),
                       "line": text.lines().nth(1), "installed": a.install})
            )?;
        } else if a.install {
            outln!(
                "installed in the crontab: {}",
                text.lines().nth(1).unwrap_or("")
            )?;
        } else {
            super::stdout().write_all(text.as_bytes())?;
        }
        return Ok(0);
    }
    let (service, timer) = units(&exe, &cfg.path, profile, &when);
    let dir = unit_dir(a);
    let sname = format!("snap-{profile}.service");
    let tname = format!("snap-{profile}.timer");
    if a.install {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (n, t) in [(&sname, &service), (&tname, &timer)] {
            let path = dir.join(n);
            std::fs::write(&path, t).with_context(|| format!("writing {}", path.display()))?;
        }
        if !a.no_enable {
            systemctl(a.user, &["daemon-reload"])?;
            systemctl(a.user, &["enable", "--now", &tname])?;
        }
    }
    if g.json {
        outln!(
            "{}",
            json!({"type": "schedule", "kind": "systemd", "profile": profile, "when": when.describe(),
                   "dir": dir, "service_name": sname, "service": service,
                   "timer_name": tname, "timer": timer, "installed": a.install,
                   "enabled": a.install && !a.no_enable})
        )?;
    } else if a.install {
        outln!(
            "installed {} and {} in {}{}",
            sname,
            tname,
            dir.display(),
            if a.no_enable {
                String::new()
            } else {
                format!(
                    "; enabled (see: systemctl {}list-timers {tname})",
                    if a.user { "--user " } else { "" }
                )
            }
        )?;
    } else {
        write!(
            super::stdout(),
            "# {}\n{service}\n# {}\n{timer}",
            dir.join(&sname).display(),
            dir.join(&tname).display()
        )?;
    }
    Ok(0)
}

/// The installed `snap run` schedules: systemd timers `snap-PROFILE.timer`
/// in `unit_dir` (default: /etc/systemd/system and the user's
/// ~/.config/systemd/user) and the marked lines of the user's crontab, as
/// `[{kind: "systemd"|"cron", profile, file, schedule, command}]`.
/// Unreadable folders and a missing `crontab` give no rows.
pub fn installed(unit_dir: Option<&Path>) -> Vec<serde_json::Value> {
    let mut dirs_: Vec<PathBuf> = Vec::new();
    if let Some(d) = unit_dir {
        dirs_.push(d.to_path_buf());
    } else {
        dirs_.push(PathBuf::from("/etc/systemd/system"));
        if let Some(c) = dirs::config_dir() {
            dirs_.push(c.join("systemd").join("user"));
        }
    }
    let mut rows = Vec::new();
    for d in &dirs_ {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap-") && n.ends_with(".timer"))
            .collect();
        names.sort();
        for n in names {
            let profile = n["snap-".len()..n.len() - ".timer".len()].to_string();
            let text = std::fs::read_to_string(d.join(&n)).unwrap_or_default();
            let when: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("OnCalendar=") || l.starts_with("OnUnitActiveSec="))
                .map(str::to_string)
                .collect();
            let svc = std::fs::read_to_string(d.join(format!("snap-{profile}.service")))
                .unwrap_or_default();
            let exec = svc
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or("")
                .to_string();
            rows.push(
                json!({"kind": "systemd", "profile": profile, "file": d.join(&n),
                             "schedule": when.join(" "), "command": exec}),
            );
        }
    }
    if let Ok(tab) = snap::write::sources::command("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        let text = String::from_utf8_lossy(&tab.stdout);
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if let Some(profile) = l.strip_prefix(MARK) {
                let entry = lines.next().unwrap_or("");
                let fields: Vec<&str> = entry.split_whitespace().collect();
                rows.push(json!({"kind": "cron", "profile": profile.trim(), "file": "crontab",
                                 "schedule": fields.iter().take(5).cloned().collect::<Vec<_>>().join(" "),
                                 "command": fields.iter().skip(5).cloned().collect::<Vec<_>>().join(" ")}));
            }
        }
    }
    rows
}

fn list(g: &Global, a: &ScheduleArgs) -> Result<u8> {
    let rows = installed(a.unit_dir.as_deref());
    if g.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    if rows.is_empty() {
        outln!("no snap timers installed")?;
    }
    for r in &rows {
        outln!(
            "{:<16} {:<8} {:<32} {}",
            r["profile"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["schedule"].as_str().unwrap_or(""),
            r["file"].as_str().unwrap_or("")
        )?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(When::every("6h").unwrap(), When::EveryHours(6));
        assert_eq!(When::every("15m").unwrap(), When::EveryMinutes(15));
        assert_eq!(When::every("7h").unwrap(), When::Interval(7 * 3600));
        assert_eq!(When::every("1day").unwrap(), When::Daily(0, 0));
        assert!(When::every("30s").is_err());
        assert_eq!(When::EveryHours(6).cron().unwrap(), "0 */6 * * *");
        assert_eq!(
            When::EveryHours(6).systemd(),
            ["OnCalendar=*-*-* 00/6:00:00"]
        );
        assert_eq!(When::Daily(2, 5).cron().unwrap(), "5 2 * * *");
        assert_eq!(When::Weekly(0, 0, 0).cron().unwrap(), "0 0 * * 0");
        assert_eq!(
            When::Weekly(0, 0, 0).systemd(),
            ["OnCalendar=Sun *-*-* 00:00:00"]
        );
        assert!(When::Interval(7 * 3600).cron().is_err());
        assert_eq!(parse_day("sun").unwrap(), 0);
        assert_eq!(parse_day("Saturday").unwrap(), 6);
        assert!(parse_day("sunny").is_err());
        assert!(parse_day("su").is_err());
        assert!(parse_hhmm("24:00").is_err());
        assert_eq!(parse_hhmm("2:00").unwrap(), (2, 0));
    }

    #[test]
    fn quoting() {
        assert_eq!(systemd_quote("/usr/bin/snap"), "/usr/bin/snap");
        assert_eq!(systemd_quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(systemd_quote("50%$"), "\"50%%$$\"");
    }

    #[test]
    fn crontab_edit() {
        let tab = "MAILTO=x\n# snap profile a\n0 2 * * * snap run a\n# snap profile b\n0 3 * * * snap run b\n";
        assert_eq!(
            without_profile(tab, "a"),
            "MAILTO=x\n# snap profile b\n0 3 * * * snap run b\n"
        );
    }
}
