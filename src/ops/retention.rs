//! Retention policies for `snap forget`: which snapshots of one group to keep.
//!
//! Pure (no I/O). Follows restic's documented `forget` semantics
//! (<https://restic.readthedocs.io/en/stable/060_forget.html>, and
//! `internal/restic/snapshot_policy.go`):
//!
//! - snapshots of a group are considered newest first;
//! - `--keep-last n` keeps the `n` newest;
//! - `--keep-hourly/daily/weekly/monthly/yearly n` divide time into buckets
//!   (hour, day, ISO week, month, year) and keep the newest snapshot of each
//!   of the `n` newest buckets *that hold a snapshot* (empty buckets do not
//!   count); if a policy still has counts left when the oldest snapshot is
//!   reached, the oldest snapshot is kept too ("oldest daily snapshot");
//! - `--keep-within d` keeps every snapshot newer than the newest snapshot's
//!   time minus `d` (`1y6m2w3d4h`: calendar years and months, weeks, days,
//!   hours);
//! - `--keep-tag t` keeps every snapshot carrying tag `t`.
//!
//! A snapshot is kept if any rule keeps it; the reasons are all the rules that
//! did. Buckets use the snapshot time in UTC (snap stores times in UTC).

use chrono::{DateTime, Datelike, Months, Utc};

/// A retention policy; zero counts are "off", `None` durations are "off".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the n newest snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the n newest hours with snapshots.
    pub hourly: u32,
    /// Same per calendar day.
    pub daily: u32,
    /// Same per ISO 8601 week.
    pub weekly: u32,
    /// Same per calendar month.
    pub monthly: u32,
    /// Same per calendar year.
    pub yearly: u32,
    /// Keep snapshots newer than the group's newest minus this.
    pub within: Option<Span>,
    /// Keep snapshots with any of these tags.
    pub tags: Vec<String>,
}

impl Policy {
    /// Whether no rule is set (forgetting with an empty policy is refused).
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// A calendar span for `--keep-within`: years, months, days (weeks are 7
/// days) and hours, as restic's `1y5m7d2h` plus `w`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Days (including 7 per week given).
    pub days: u32,
    /// Hours.
    pub hours: u32,
    /// The text it was parsed from, for reasons ("within 14d").
    pub text: String,
}

impl Span {
    /// Parses `1y6m`, `14d`, `2w`, `36h`: one or more `<number><unit>` with
    /// units y, m, w, d, h. Errors name the bad part.
    pub fn parse(s: &str) -> Result<Span, String> {
        let mut span = Span {
            text: s.to_string(),
            ..Default::default()
        };
        let mut num = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u32 = num
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: expected e.g. 14d, 2w, 1y6m"))?;
            num.clear();
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'w' => span.days += 7 * n,
                'd' => span.days += n,
                'h' => span.hours += n,
                _ => {
                    return Err(format!(
                        "invalid duration {s:?}: unit {c:?} is not one of y, m, w, d, h"
                    ))
                }
            }
            any = true;
        }
        if !num.is_empty() || !any {
            return Err(format!(
                "invalid duration {s:?}: every number needs a unit (y, m, w, d, h)"
            ));
        }
        Ok(span)
    }

    /// `t` minus this span (calendar arithmetic; saturates at the epoch).
    pub fn before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        let t = t
            .checked_sub_months(Months::new(months))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        t - chrono::Duration::days(self.days as i64) - chrono::Duration::hours(self.hours as i64)
    }
}

/// One snapshot as retention sees it.
#[derive(Debug, Clone)]
pub struct Item {
    /// Snapshot time.
    pub time: DateTime<Utc>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Why it is kept ("last snapshot", "daily snapshot", "within 14d", …);
    /// empty when it is removed.
    pub reasons: Vec<String>,
}

/// Applies `policy` to one group of snapshots (any order). Returns one
/// decision per input item, in input order.
pub fn apply(policy: &Policy, items: &[Item]) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Newest first; ties broken by input position for determinism.
    order.sort_by(|&a, &b| items[b].time.cmp(&items[a].time).then(a.cmp(&b)));
    let mut out = vec![
        Decision {
            keep: false,
            reasons: Vec::new()
        };
        items.len()
    ];
    let Some(&newest) = order.first() else {
        return out;
    };
    type Bucker = fn(&DateTime<Utc>, usize) -> i64;
    let buckers: [(u32, &str, Bucker); 6] = [
        (policy.last, "last", |_, nr| nr as i64),
        (policy.hourly, "hourly", |t, _| {
            (t.year() as i64 * 10000 + t.ordinal() as i64) * 100 + t.hour_of_day()
        }),
        (policy.daily, "daily", |t, _| {
            t.year() as i64 * 10000 + t.ordinal() as i64
        }),
        (policy.weekly, "weekly", |t, _| {
            let w = t.iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        (policy.monthly, "monthly", |t, _| {
            t.year() as i64 * 100 + t.month() as i64
        }),
        (policy.yearly, "yearly", |t, _| t.year() as i64),
    ];
    let mut counts: Vec<u32> = buckers.iter().map(|b| b.0).collect();
    let mut last: Vec<Option<i64>> = vec![None; buckers.len()];
    let within_from = policy.within.as_ref().map(|s| s.before(items[newest].time));
    let n = order.len();
    for (nr, &i) in order.iter().enumerate() {
        let it = &items[i];
        let mut reasons = Vec::new();
        if policy.tags.iter().any(|t| it.tags.contains(t)) {
            reasons.push("has tags".to_string());
        }
        if let (Some(from), Some(span)) = (within_from, &policy.within) {
            if it.time > from {
                reasons.push(format!("within {}", span.text));
            }
        }
        for (b, (_, name, bucker)) in buckers.iter().enumerate() {
            if counts[b] == 0 {
                continue;
            }
            let val = bucker(&it.time, nr);
            let oldest = nr == n - 1;
            if last[b] != Some(val) || oldest {
                let new_bucket = last[b] != Some(val);
                last[b] = Some(val);
                counts[b] -= 1;
                reasons.push(if new_bucket || !oldest {
                    format!("{name} snapshot")
                } else {
                    format!("oldest {name} snapshot")
                });
            }
        }
        out[i] = Decision {
            keep: !reasons.is_empty(),
            reasons,
        };
    }
    out
}

trait HourOfDay {
    fn hour_of_day(&self) -> i64;
}

impl HourOfDay for DateTime<Utc> {
    fn hour_of_day(&self) -> i64 {
        use chrono::Timelike;
        self.hour() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn items(times: &[&str]) -> Vec<Item> {
        times
            .iter()
            .map(|s| Item {
                time: t(s),
                tags: Vec::new(),
            })
            .collect()
    }

    fn kept(p: &Policy, it: &[Item]) -> Vec<usize> {
        apply(p, it)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep)
            .map(|(i, _)| i)
            .collect()
    }

    /// restic's documentation example: one snapshot per day 2018-08-01 ..
    /// 2018-08-?? is summarised here as daily snapshots over several weeks
    /// and months, checked rule by rule.
    #[test]
    fn table() {
        // Daily snapshots at 12:00 from 2024-01-01 to 2024-03-31 (91 days)
        // plus two extra snapshots on 2024-03-31 (10:00 and 11:00).
        let mut times: Vec<String> = (0..91)
            .map(|d| {
                (t("2024-01-01T12:00:00Z") + chrono::Duration::days(d))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .collect();
        times.push("2024-03-31T10:00:00Z".into());
        times.push("2024-03-31T11:00:00Z".into());
        let refs: Vec<&str> = times.iter().map(|s| s.as_str()).collect();
        let it = items(&refs);
        let idx = |s: &str| refs.iter().position(|x| *x == s).unwrap();

        struct Case {
            name: &'static str,
            policy: Policy,
            want: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "keep-last 3",
                policy: Policy {
                    last: 3,
                    ..Default::default()
                },
                want: vec![
                    "2024-03-31T10:00:00Z",
                    "2024-03-31T11:00:00Z",
                    "2024-03-31T12:00:00Z",
                ],
            },
            Case {
                // Three snapshots on the last day count as one day.
                name: "keep-daily 3",
                policy: Policy {
                    daily: 3,
                    ..Default::default()
                },
                want: vec![
                    "2024-03-29T12:00:00Z",
                    "2024-03-30T12:00:00Z",
                    "2024-03-31T12:00:00Z",
                ],
            },
            Case {
                name: "keep-hourly 2",
                policy: Policy {
                    hourly: 2,
                    ..Default::default()
                },
                want: vec!["2024-03-31T11:00:00Z", "2024-03-31T12:00:00Z"],
            },
            Case {
                // ISO weeks: 2024-03-31 is a Sunday (week 13), the newest
                // snapshot of week 12 is Sunday 2024-03-24.
                name: "keep-weekly 2",
                policy: Policy {
                    weekly: 2,
                    ..Default::default()
                },
                want: vec!["2024-03-24T12:00:00Z", "2024-03-31T12:00:00Z"],
            },
            Case {
                name: "keep-monthly 2",
                policy: Policy {
                    monthly: 2,
                    ..Default::default()
                },
                want: vec!["2024-02-29T12:00:00Z", "2024-03-31T12:00:00Z"],
            },
            Case {
                // Counts left at the oldest snapshot: it is kept too.
                name: "keep-monthly 5 (only 3 months: oldest kept)",
                policy: Policy {
                    monthly: 5,
                    ..Default::default()
                },
                want: vec![
                    "2024-01-01T12:00:00Z",
                    "2024-01-31T12:00:00Z",
                    "2024-02-29T12:00:00Z",
                    "2024-03-31T12:00:00Z",
                ],
            },
            Case {
                name: "keep-yearly 1",
                policy: Policy {
                    yearly: 1,
                    ..Default::default()
                },
                want: vec!["2024-03-31T12:00:00Z"],
            },
            Case {
                // Within 2d of the newest (03-31 12:00): strictly after
                // 03-29 12:00.
                name: "keep-within 2d",
                policy: Policy {
                    within: Some(Span::parse("2d").unwrap()),
                    ..Default::default()
                },
                want: vec![
                    "2024-03-30T12:00:00Z",
                    "2024-03-31T10:00:00Z",
                    "2024-03-31T11:00:00Z",
                    "2024-03-31T12:00:00Z",
                ],
            },
            Case {
                // Rules combine as a union: last 1 + daily 2 + monthly 2.
                name: "keep-last 1 keep-daily 2 keep-monthly 2",
                policy: Policy {
                    last: 1,
                    daily: 2,
                    monthly: 2,
                    ..Default::default()
                },
                want: vec![
                    "2024-02-29T12:00:00Z",
                    "2024-03-30T12:00:00Z",
                    "2024-03-31T12:00:00Z",
                ],
            },
        ];
        for c in cases {
            let mut want: Vec<usize> = c.want.iter().map(|s| idx(s)).collect();
            want.sort();
            assert_eq!(kept(&c.policy, &it), want, "{}", c.name);
        }
    }

    #[test]
    fn reasons_and_tags() {
        let mut it = items(&[
            "2024-01-01T00:00:00Z",
            "2024-01-02T00:00:00Z",
            "2024-01-03T00:00:00Z",
        ]);
        it[0].tags = vec!["keep".into()];
        let p = Policy {
            last: 1,
            daily: 1,
            within: Some(Span::parse("12h").unwrap()),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        let d = apply(&p, &it);
        assert_eq!(d[0].reasons, vec!["has tags"]);
        assert!(!d[1].keep, "{:?}", d[1]);
        assert_eq!(
            d[2].reasons,
            vec!["within 12h", "last snapshot", "daily snapshot"]
        );
    }

    #[test]
    fn empty_buckets_do_not_count() {
        // Snapshots in 2020, 2022 and 2024 only: keep-yearly 2 keeps 2024
        // and 2022 (2023 had none).
        let it = items(&[
            "2020-06-01T00:00:00Z",
            "2022-06-01T00:00:00Z",
            "2024-06-01T00:00:00Z",
        ]);
        let p = Policy {
            yearly: 2,
            ..Default::default()
        };
        assert_eq!(kept(&p, &it), vec![1, 2]);
    }

    #[test]
    fn span_parse() {
        let s = Span::parse("1y6m2w3d4h").unwrap();
        assert_eq!((s.years, s.months, s.days, s.hours), (1, 6, 17, 4));
        assert!(Span::parse("14").is_err());
        assert!(Span::parse("3x").is_err());
        assert!(Span::parse("").is_err());
        let from = Span::parse("1m").unwrap().before(t("2024-03-31T00:00:00Z"));
        assert_eq!(from, t("2024-02-29T00:00:00Z"));
    }
}
