//! Validation of requests and resolution of defaults: everything decided before SQL.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shortener_common::event::MAX_SHORT_CODE_LEN;
use shortener_common::proto::analytics::Bucket;
use shortener_common::proto::to_datetime;
use tonic::Status;

/// Default width of a stats window when `from` is not given.
pub const DEFAULT_RANGE: Duration = Duration::days(30);
/// Ranges up to this long get hourly buckets by default, longer ones daily.
pub const HOURLY_UP_TO: Duration = Duration::days(2);
/// Most buckets one series may have; a wider range needs a coarser bucket.
pub const MAX_BUCKETS: i64 = 10_000;
/// Minute buckets read raw clicks: their range is bounded so the cost is too.
pub const MAX_MINUTE_RANGE: Duration = Duration::hours(6);
/// Breakdown entries before `other`: default and most.
pub const DEFAULT_TOP: u32 = 10;
pub const MAX_TOP: u32 = 100;

/// The top N of the breakdowns: 0 means the default.
pub fn top(n: u32) -> Result<i64, Status> {
    match n {
        0 => Ok(i64::from(DEFAULT_TOP)),
        n if n <= MAX_TOP => Ok(i64::from(n)),
        _ => Err(Status::invalid_argument(format!(
            "top must be between 1 and {MAX_TOP}"
        ))),
    }
}

/// Accepted short codes: 1..=64 of `[A-Za-z0-9_-]` (what url-api generates or accepts as
/// an alias).
pub fn short_code(code: &str) -> Result<&str, Status> {
    if code.is_empty() {
        return Err(Status::invalid_argument("short_code is required"));
    }
    if code.len() > MAX_SHORT_CODE_LEN {
        return Err(Status::invalid_argument(format!(
            "short_code is longer than {MAX_SHORT_CODE_LEN} characters"
        )));
    }
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Status::invalid_argument(
            "short_code may only contain letters, digits, '-' and '_'",
        ));
    }
    Ok(code)
}

/// Width of one series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Minute,
    Hour,
    Day,
}

impl Step {
    pub fn duration(self) -> Duration {
        match self {
            Self::Minute => Duration::minutes(1),
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }

    /// The `date_trunc` field name.
    pub fn sql_unit(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn bucket(self) -> Bucket {
        match self {
            Self::Minute => Bucket::Minute,
            Self::Hour => Bucket::Hour,
            Self::Day => Bucket::Day,
        }
    }

    /// Start (UTC) of the first bucket starting at or after `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let start = self.truncate(t);
        if start == t {
            t
        } else {
            start + self.duration()
        }
    }

    /// Start (UTC) of the bucket holding `t`, the same as Postgres'
    /// `date_trunc(unit, t, 'UTC')`.
    pub fn truncate(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = self.duration().num_seconds();
        let start = t.timestamp().div_euclid(secs) * secs;
        Utc.timestamp_opt(start, 0)
            .single()
            .expect("a truncated valid timestamp is valid")
    }
}

/// A validated stats window: `[from, to)` split into `buckets` buckets of `step`,
/// the first starting at `first_bucket`. With hour and day steps `from` and `to` are bucket
/// boundaries (the rollups' grain); minute windows keep the exact range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: Step,
    pub first_bucket: DateTime<Utc>,
    pub buckets: i64,
}

/// Applies the defaults (to = now, from = to - 30 days, bucket by range width), widens
/// hour and day windows to whole buckets, and rejects what cannot be answered.
pub fn window(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
    bucket: i32,
    now: DateTime<Utc>,
) -> Result<Window, Status> {
    let to = match to {
        Some(t) => timestamp(t, "to")?,
        None => now,
    };
    let from = match from {
        Some(t) => timestamp(t, "from")?,
        None => to - DEFAULT_RANGE,
    };
    if from >= to {
        return Err(Status::invalid_argument("from must be before to"));
    }
    let step = match Bucket::try_from(bucket) {
        Ok(Bucket::Unspecified) if to - from <= HOURLY_UP_TO => Step::Hour,
        Ok(Bucket::Unspecified) => Step::Day,
        Ok(Bucket::Minute) => Step::Minute,
        Ok(Bucket::Hour) => Step::Hour,
        Ok(Bucket::Day) => Step::Day,
        Err(_) => return Err(Status::invalid_argument(format!("unknown bucket {bucket}"))),
    };
    let (from, to) = match step {
        Step::Minute if to - from > MAX_MINUTE_RANGE => {
            return Err(Status::invalid_argument(format!(
                "minute buckets cover at most {} hours: narrow the range or use hour buckets",
                MAX_MINUTE_RANGE.num_hours()
            )))
        }
        Step::Minute => (from, to),
        _ => (step.truncate(from), step.ceil(to)),
    };
    let first_bucket = step.truncate(from);
    let width = step.duration().num_seconds();
    let span = (to - first_bucket).num_seconds();
    let buckets = (span + width - 1) / width;
    if buckets > MAX_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "the range spans {buckets} {} buckets; at most {MAX_BUCKETS} are allowed: \
             narrow the range or use a coarser bucket",
            step.sql_unit()
        )));
    }
    Ok(Window {
        from,
        to,
        step,
        first_bucket,
        buckets,
    })
}

/// Years Postgres and chrono both represent; anything else is a client mistake.
const MIN_YEAR_SECS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
const MAX_YEAR_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

fn timestamp(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    let bad = || Status::invalid_argument(format!("{field} is not a valid timestamp"));
    if !(MIN_YEAR_SECS..=MAX_YEAR_SECS).contains(&t.seconds) {
        return Err(bad());
    }
    to_datetime(t).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn ts(rfc3339: &str) -> prost_types::Timestamp {
        shortener_common::proto::to_timestamp(
            DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:34:56Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn short_codes_are_checked_for_length_and_charset() {
        assert_eq!(short_code("aZ09_-").unwrap(), "aZ09_-");
        assert_eq!(short_code("").unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(
            short_code(&"a".repeat(65)).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert!(short_code(&"a".repeat(64)).is_ok());
        for bad in ["a b", "a/b", "é", "a%20", "a.b"] {
            assert_eq!(
                short_code(bad).unwrap_err().code(),
                Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn defaults_are_last_30_days_in_daily_buckets() {
        let w = window(None, None, Bucket::Unspecified as i32, now()).unwrap();
        // Widened to whole days: the day of `now` is the last bucket.
        assert_eq!(w.to.to_rfc3339(), "2026-03-11T00:00:00+00:00");
        assert_eq!(w.from.to_rfc3339(), "2026-02-08T00:00:00+00:00");
        assert_eq!(w.step, Step::Day);
        assert_eq!(w.first_bucket.to_rfc3339(), "2026-02-08T00:00:00+00:00");
        assert_eq!(w.buckets, 31);
    }

    #[test]
    fn short_ranges_default_to_hours() {
        let w = window(
            Some(&ts("2026-03-01T10:30:00Z")),
            Some(&ts("2026-03-03T10:30:00Z")),
            0,
            now(),
        )
        .unwrap();
        assert_eq!(w.step, Step::Hour);
        assert_eq!(w.first_bucket.to_rfc3339(), "2026-03-01T10:00:00+00:00");
        assert_eq!(w.to.to_rfc3339(), "2026-03-03T11:00:00+00:00");
        assert_eq!(w.buckets, 49);
        let w = window(
            Some(&ts("2026-03-01T10:30:00Z")),
            Some(&ts("2026-03-03T10:30:01Z")),
            0,
            now(),
        )
        .unwrap();
        assert_eq!(w.step, Step::Day);
    }

    #[test]
    fn explicit_bucket_wins_and_is_capped() {
        let w = window(
            Some(&ts("2026-03-01T00:00:00Z")),
            Some(&ts("2026-03-01T01:00:00Z")),
            Bucket::Minute as i32,
            now(),
        )
        .unwrap();
        assert_eq!((w.step, w.buckets), (Step::Minute, 60));
        // Minute buckets read raw clicks: 6 hours at most.
        let err = window(None, None, Bucket::Minute as i32, now()).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("at most 6 hours"),
            "{}",
            err.message()
        );
        let w = window(
            Some(&ts("2026-03-01T00:00:30Z")),
            Some(&ts("2026-03-01T06:00:30Z")),
            Bucket::Minute as i32,
            now(),
        )
        .unwrap();
        assert_eq!(w.from.to_rfc3339(), "2026-03-01T00:00:30+00:00");
        assert_eq!(w.buckets, 361);
        // 30 years of hours is far more than 10000 buckets.
        let err = window(
            Some(&ts("1996-03-01T00:00:00Z")),
            None,
            Bucket::Hour as i32,
            now(),
        )
        .unwrap_err();
        assert!(err.message().contains("at most 10000"), "{}", err.message());
        assert_eq!(
            window(None, None, 99, now()).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn top_defaults_to_10_and_is_capped_at_100() {
        assert_eq!(top(0).unwrap(), 10);
        assert_eq!(top(1).unwrap(), 1);
        assert_eq!(top(100).unwrap(), 100);
        assert_eq!(top(101).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn bad_ranges_and_timestamps_are_rejected() {
        let a = ts("2026-03-01T00:00:00Z");
        for (from, to) in [(&a, &a), (&ts("2026-03-02T00:00:00Z"), &a)] {
            let err = window(Some(from), Some(to), 0, now()).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
        }
        let bad_nanos = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            window(Some(&bad_nanos), None, 0, now()).unwrap_err().code(),
            Code::InvalidArgument
        );
        let too_big = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(
            window(None, Some(&too_big), 0, now()).unwrap_err().code(),
            Code::InvalidArgument
        );
        let nanos_overflow = prost_types::Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert_eq!(
            window(None, Some(&nanos_overflow), 0, now())
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn truncation_matches_utc_calendar_units() {
        let t = DateTime::parse_from_rfc3339("2026-03-10T12:34:56.789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Step::Minute.truncate(t).to_rfc3339(),
            "2026-03-10T12:34:00+00:00"
        );
        assert_eq!(
            Step::Hour.truncate(t).to_rfc3339(),
            "2026-03-10T12:00:00+00:00"
        );
        assert_eq!(
            Step::Day.truncate(t).to_rfc3339(),
            "2026-03-10T00:00:00+00:00"
        );
        let before_epoch = DateTime::parse_from_rfc3339("1969-12-31T23:59:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Step::Minute.truncate(before_epoch).to_rfc3339(),
            "1969-12-31T23:59:00+00:00"
        );
    }
}
