//! Which monthly partitions of `clicks` to create and which to drop, decided from their
//! names and today's date alone (the maintenance task does what this says).
//!
//! A partition `clicks_pYYYYMM` holds the clicks of that month (UTC). It is dropped once
//! every click it can hold is older than the retention; this month's partition and the
//! next [`MONTHS_AHEAD`] are created before they are needed. Clicks of a month without a
//! partition wait in `clicks_default`: their month gets a partition (and the rows move
//! there) once it is within the retention and no further ahead than that; rows older than
//! the retention are deleted from it.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc};

pub const PARTITION_PREFIX: &str = "clicks_p";
pub const DEFAULT_PARTITION: &str = "clicks_default";

/// Months after the current one that always have a partition.
pub const MONTHS_AHEAD: u32 = 2;

/// A calendar month (UTC), held as its first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(NaiveDate);

impl Month {
    /// The month `day` falls in.
    pub fn of(day: NaiveDate) -> Self {
        Self(day.with_day(1).expect("every month has a first day"))
    }

    pub fn first_day(self) -> NaiveDate {
        self.0
    }

    pub fn next(self) -> Self {
        self.plus(1)
    }

    pub fn plus(self, months: u32) -> Self {
        Self(self.0 + Months::new(months))
    }

    /// Where the month's partition begins (inclusive) and ends (exclusive).
    pub fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (midnight(self.0), midnight(self.next().0))
    }

    pub fn partition_name(self) -> String {
        format!(
            "{PARTITION_PREFIX}{:04}{:02}",
            self.0.year(),
            self.0.month()
        )
    }

    /// The month of a partition named by [`Month::partition_name`]; `None` for any other
    /// name (the default partition, or one made by hand, which are never dropped).
    pub fn from_partition_name(name: &str) -> Option<Self> {
        let digits = name.strip_prefix(PARTITION_PREFIX)?;
        if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = digits[..4].parse().ok()?;
        let month = digits[4..].parse().ok()?;
        NaiveDate::from_ymd_opt(year, month, 1).map(Self)
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// The first day whose clicks are kept on `today`: clicks before its midnight (UTC) are
/// older than `retention_days`.
pub fn retention_start(today: NaiveDate, retention_days: u32) -> NaiveDate {
    today - Duration::days(i64::from(retention_days))
}

/// What one maintenance run does to the partitions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Months to give a partition, oldest first.
    pub create: Vec<Month>,
    /// Partitions to drop (every click they can hold is expired), oldest first.
    pub drop: Vec<String>,
    /// Rows of the default partition before this instant are expired and deleted.
    pub purge_default_before: DateTime<Utc>,
}

/// Decides from the names of the partitions that exist, the months that have rows in
/// the default partition, today's date and the retention.
pub fn plan(
    partitions: &[String],
    default_months: &[Month],
    today: NaiveDate,
    retention_days: u32,
) -> Plan {
    let keep_from = retention_start(today, retention_days);
    let expired = |m: Month| m.next().first_day() <= keep_from;
    let existing: Vec<(Month, &String)> = partitions
        .iter()
        .filter_map(|name| Some((Month::from_partition_name(name)?, name)))
        .collect();
    let has = |m: Month| existing.iter().any(|(e, _)| *e == m);

    let this_month = Month::of(today);
    let last_ahead = this_month.plus(MONTHS_AHEAD);
    let mut create: Vec<Month> = (0..=MONTHS_AHEAD).map(|i| this_month.plus(i)).collect();
    // Far-future rows (a clock years ahead) stay in the default partition until their
    // month comes near: a partition per wild timestamp would grow the table without bound.
    create.extend(default_months.iter().copied().filter(|m| *m <= last_ahead));
    create.retain(|m| !expired(*m) && !has(*m));
    create.sort_unstable();
    create.dedup();

    let mut drop: Vec<(Month, &String)> =
        existing.into_iter().filter(|(m, _)| expired(*m)).collect();
    drop.sort_unstable();
    Plan {
        create,
        drop: drop.into_iter().map(|(_, name)| name.clone()).collect(),
        purge_default_before: midnight(keep_from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn month(s: &str) -> Month {
        Month::of(day(&format!("{s}-01")))
    }

    fn names(months: &[&str]) -> Vec<String> {
        months.iter().map(|m| month(m).partition_name()).collect()
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_ignored() {
        let m = month("2026-12");
        assert_eq!(m.partition_name(), "clicks_p202612");
        assert_eq!(Month::from_partition_name("clicks_p202612"), Some(m));
        for other in [
            "clicks_default",
            "clicks_p202613",
            "clicks_p20261",
            "clicks_p2026120",
            "clicks_p2026-1",
            "clicks_archive",
            "clicks_p+20261",
        ] {
            assert_eq!(Month::from_partition_name(other), None, "{other}");
        }
        let (from, to) = month("2026-12").bounds();
        assert_eq!(from.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn drops_only_months_entirely_older_than_the_retention() {
        // 400 days before 2026-12-01 is 2025-10-27: October 2025 still holds kept clicks.
        let today = day("2026-12-01");
        assert_eq!(retention_start(today, 400), day("2025-10-27"));
        let existing = names(&["2025-08", "2025-09", "2025-10", "2025-11", "2026-12"]);
        let p = plan(&existing, &[], today, 400);
        assert_eq!(p.drop, names(&["2025-08", "2025-09"]));
        assert_eq!(
            p.purge_default_before.to_rfc3339(),
            "2025-10-27T00:00:00+00:00"
        );
        // The day October's last click expires, October goes too.
        let p = plan(&existing, &[], day("2026-12-05"), 400);
        assert_eq!(retention_start(day("2026-12-05"), 400), day("2025-10-31"));
        assert_eq!(p.drop, names(&["2025-08", "2025-09"]));
        let p = plan(&existing, &[], day("2026-12-06"), 400);
        assert_eq!(p.drop, names(&["2025-08", "2025-09", "2025-10"]));
        // The default partition and foreign names are never dropped.
        let mut with_others = existing.clone();
        with_others.extend(["clicks_default".to_string(), "clicks_archive".to_string()]);
        assert_eq!(plan(&with_others, &[], day("2026-12-06"), 400).drop, p.drop);
    }

    #[test]
    fn creates_this_month_and_the_next_ones_once() {
        let today = day("2026-12-31");
        let p = plan(&[], &[], today, 400);
        assert_eq!(
            p.create,
            [month("2026-12"), month("2027-01"), month("2027-02")]
        );
        assert!(p.drop.is_empty());
        let p = plan(&names(&["2026-12", "2027-01"]), &[], today, 400);
        assert_eq!(p.create, [month("2027-02")]);
        let p = plan(&names(&["2026-12", "2027-01", "2027-02"]), &[], today, 400);
        assert_eq!(
            p,
            Plan {
                purge_default_before: p.purge_default_before,
                ..Plan::default()
            }
        );
    }

    #[test]
    fn rows_waiting_in_the_default_partition_get_their_month_when_it_is_kept_and_near() {
        let today = day("2026-12-10");
        let waiting = [
            month("2026-03"), // late click of a month without a partition: created
            month("2025-01"), // expired: purged from the default, not created
            month("2027-02"), // within the months ahead: created anyway
            month("2031-07"), // a clock years ahead: stays in the default for now
        ];
        let p = plan(&names(&["2026-12"]), &waiting, today, 400);
        assert_eq!(
            p.create,
            [month("2026-03"), month("2027-01"), month("2027-02")]
        );
        assert_eq!(
            p.purge_default_before.to_rfc3339(),
            "2025-11-05T00:00:00+00:00"
        );
    }

    #[test]
    fn a_short_retention_keeps_at_least_the_current_month() {
        let today = day("2026-12-01");
        let p = plan(&names(&["2026-10", "2026-11", "2026-12"]), &[], today, 1);
        assert_eq!(p.drop, names(&["2026-10"]));
        let p = plan(
            &names(&["2026-10", "2026-11", "2026-12"]),
            &[],
            day("2026-12-02"),
            1,
        );
        assert_eq!(p.drop, names(&["2026-10", "2026-11"]));
        assert!(!p.create.contains(&month("2026-11")));
    }
}
