//! The analytics page's range picker: 24 h, 7 d, 30 d or custom dates, hourly or daily
//! buckets, turned into the window asked of analytics-rpc.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use crate::routes::stats::{BucketParam, StatsQuery};

/// Longest custom range, in days.
pub const MAX_CUSTOM_DAYS: i64 = 366;

/// The picker's query string, as typed (`?range=7d&bucket=hour`, `?range=custom&from=...`).
#[derive(Debug, Default, Deserialize)]
pub struct RangeForm {
    pub range: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    pub from: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    pub to: Option<String>,
    pub bucket: Option<String>,
    /// Set after the shorten form created this link.
    pub created: Option<String>,
    /// Set after the edit form changed this link.
    pub edited: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Day,
    Week,
    Month,
    Custom,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Day, Preset::Week, Preset::Month, Preset::Custom];

    pub fn param(self) -> &'static str {
        match self {
            Preset::Day => "24h",
            Preset::Week => "7d",
            Preset::Month => "30d",
            Preset::Custom => "custom",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Preset::Day => "Last 24 hours",
            Preset::Week => "Last 7 days",
            Preset::Month => "Last 30 days",
            Preset::Custom => "Custom dates",
        }
    }
}

/// What the page asks analytics-rpc for, and how the picker is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub preset: Preset,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub hourly: bool,
    /// The custom dates as shown in the inputs (inclusive).
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    /// Why the custom range was not used, in plain words.
    pub problem: Option<String>,
}

impl Window {
    pub fn query(&self) -> StatsQuery {
        StatsQuery {
            from: Some(self.from),
            to: Some(self.to),
            bucket: Some(if self.hourly {
                BucketParam::Hour
            } else {
                BucketParam::Day
            }),
            top: None,
            exclude_bots: None,
        }
    }
}

fn preset_window(preset: Preset, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let width = match preset {
        Preset::Day => Duration::hours(24),
        Preset::Week => Duration::days(7),
        Preset::Month | Preset::Custom => Duration::days(30),
    };
    (now - width, now)
}

fn date(text: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text?.trim(), "%Y-%m-%d").ok()
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Resolves the picker. Unknown values fall back to the last 7 days; a bad custom range
/// falls back to 30 days and says why. Buckets default to hourly for 24 h, else daily.
pub fn resolve(form: &RangeForm, now: DateTime<Utc>) -> Window {
    let preset = match form.range.as_deref() {
        Some("24h") => Preset::Day,
        Some("30d") => Preset::Month,
        Some("custom") => Preset::Custom,
        _ => Preset::Week,
    };
    let hourly = match form.bucket.as_deref() {
        Some("hour") => true,
        Some("day") => false,
        _ => preset == Preset::Day,
    };
    let (mut from, mut to) = preset_window(preset, now);
    let mut problem = None;
    let mut from_date = from.date_naive();
    let mut to_date = to.date_naive();
    if preset == Preset::Custom {
        match (date(form.from.as_deref()), date(form.to.as_deref())) {
            (Some(f), Some(t)) if f > t => {
                problem = Some("The start date is after the end date.".to_string());
            }
            (Some(f), Some(t)) if (t - f).num_days() >= MAX_CUSTOM_DAYS => {
                problem = Some(format!(
                    "A custom range can span at most {MAX_CUSTOM_DAYS} days."
                ));
            }
            (Some(f), Some(t)) => {
                from = midnight(f);
                to = midnight(t) + Duration::days(1);
                from_date = f;
                to_date = t;
            }
            _ => problem = Some("Pick both a start and an end date.".to_string()),
        }
    }
    Window {
        preset,
        from,
        to,
        hourly,
        from_date,
        to_date,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(range: &str, from: &str, to: &str, bucket: &str) -> RangeForm {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        RangeForm {
            range: opt(range),
            from: opt(from),
            to: opt(to),
            bucket: opt(bucket),
            created: None,
            edited: None,
        }
    }

    #[test]
    fn presets_end_now_with_sensible_buckets() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:30:00Z")
            .unwrap()
            .to_utc();
        let w = resolve(&form("24h", "", "", ""), now);
        assert_eq!(
            (w.from, w.to, w.hourly),
            (now - Duration::hours(24), now, true)
        );
        let w = resolve(&form("", "", "", ""), now);
        assert_eq!((w.preset, w.hourly), (Preset::Week, false));
        let w = resolve(&form("30d", "", "", "hour"), now);
        assert_eq!((w.from, w.hourly), (now - Duration::days(30), true));
        assert_eq!(
            resolve(&form("bogus", "", "", "x"), now).preset,
            Preset::Week
        );
    }

    #[test]
    fn custom_dates_are_inclusive_utc_days_and_checked() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:30:00Z")
            .unwrap()
            .to_utc();
        let w = resolve(&form("custom", "2026-11-01", "2026-11-02", ""), now);
        assert_eq!(w.from.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(w.to.to_rfc3339(), "2026-11-03T00:00:00+00:00");
        assert_eq!(w.problem, None);
        let bad = resolve(&form("custom", "2026-11-05", "2026-11-02", ""), now);
        assert!(bad.problem.unwrap().contains("after"));
        assert_eq!(bad.to, now);
        let long = resolve(&form("custom", "2024-01-01", "2026-11-02", ""), now);
        assert!(long.problem.unwrap().contains("366"));
        let missing = resolve(&form("custom", "nope", "", ""), now);
        assert!(missing.problem.is_some());
    }
}
