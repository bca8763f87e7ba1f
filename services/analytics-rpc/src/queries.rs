//! The SQL behind the API. Counts, hour and day windows read the rollups the consumer
//! maintains (migrations: `click_totals`, `click_hourly`, `click_breakdown_*`), whose
//! size grows with hours and each dimension's distinct values (sources capped per link and
//! day), not with clicks; minute windows (at most
//! 6 hours, `request::MAX_MINUTE_RANGE`) read raw clicks through `clicks_code_time_idx`.
//! Breakdowns are cut to the top N plus one `other` entry in SQL, so an answer's size is
//! bounded whatever the data. Every read runs under `statement_timeout`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::request::{Step, Window};

/// One breakdown entry: key, clicks, and whether it is the `other` sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub clicks: u64,
    pub other: bool,
}

/// Most clicks first (ties by key), then `other` if any.
pub type Breakdown = Vec<Entry>;

/// The key of the entry summing everything after the top N.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    pub humans: u64,
    pub bots: u64,
    pub visitors: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub totals: Point,
    pub by_country: Breakdown,
    pub by_device_type: Breakdown,
    pub by_browser: Breakdown,
    pub by_os: Breakdown,
    pub by_traffic_source: Breakdown,
    /// One entry per bucket of the window, empty buckets included.
    pub series: Vec<(DateTime<Utc>, Point)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountStats {
    pub totals: Point,
    pub top_links: Breakdown,
    pub by_country: Breakdown,
    pub by_traffic_source: Breakdown,
    pub series: Vec<(DateTime<Utc>, Point)>,
}

/// A read-only repeatable-read transaction (its figures agree with each other while clicks
/// keep arriving) whose statements are cancelled after `timeout`. Begun, isolated and
/// timed in one simple-query round trip: a count's SQL takes microseconds, so each round
/// trip is a large part of a call.
async fn read_tx(
    pool: &PgPool,
    timeout: Duration,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    // SET does not take parameters; the value is a number this process formats.
    pool.begin_with(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .await
}

/// (humans, bots) ever stored for `code`: the sum of its few slot rows.
pub async fn click_count(
    pool: &PgPool,
    code: &str,
    timeout: Duration,
) -> Result<Point, sqlx::Error> {
    let mut tx = read_tx(pool, timeout).await?;
    let (humans, bots): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(humans), 0)::int8, coalesce(sum(bots), 0)::int8
         FROM click_totals WHERE short_code = $1",
    )
    .bind(code)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Point {
        humans: humans as u64,
        bots: bots as u64,
        visitors: 0,
    })
}

/// The breakdowns over a `rows` CTE (dimension, value, clicks), each ranked, the rows
/// after its top N ($top) summed into one with a NULL key. The sources folded past their
/// link's daily cap (`click_source_fold()`) always go to that sum: they are "other" sources.
fn breakdown_sql(rows: &str) -> String {
    format!(
        "WITH rows AS ({rows}),
         sums AS (
             SELECT dimension, value AS key, sum(clicks)::int8 AS clicks
             FROM rows
             GROUP BY 1, 2),
         ranked AS (
             SELECT dimension, key, clicks, key = click_source_fold() AS folded,
                    row_number() OVER (PARTITION BY dimension
                                       ORDER BY key = click_source_fold(), clicks DESC, key)
                        AS rank
             FROM sums)
         SELECT dimension::text, CASE WHEN rank <= $top AND NOT folded THEN key END AS key,
                sum(clicks)::int8, min(rank) AS first
         FROM ranked
         GROUP BY dimension, 2
         ORDER BY dimension, first"
    )
}

/// Rollup rows of whole days from the daily table, of the partial days at either end from
/// the hourly one. $1 code, $2/$3 whole days, $4/$5 and $6/$7 hour ranges, $8 exclude bots.
const ROLLUP_ROWS: &str = "\
SELECT dimension, value, clicks
FROM click_breakdown_daily
WHERE short_code = $1 AND bucket >= $2 AND bucket < $3 AND NOT (is_bot AND $8)
UNION ALL
SELECT dimension, value, clicks
FROM click_breakdown_hourly
WHERE short_code = $1 AND ((bucket >= $4 AND bucket < $5) OR (bucket >= $6 AND bucket < $7))
  AND NOT (is_bot AND $8)";

/// Raw clicks of a minute window, one row per click and dimension. $1 code, $2/$3 range,
/// $4 exclude bots.
const RAW_ROWS: &str = "\
SELECT d.dimension, d.value, 1 AS clicks
FROM clicks
CROSS JOIN LATERAL (VALUES ('country'::click_dimension, country_code), ('device', device_type),
                           ('browser', browser), ('os', os),
                           ('source', click_source_folded(traffic_source)))
    AS d (dimension, value)
WHERE short_code = $1 AND occurred_at >= $2 AND occurred_at < $3 AND NOT (is_bot AND $4)";

const SERIES_ROLLUP: &str = "\
SELECT date_trunc($4, hour, 'UTC') AS bucket, sum(humans)::int8, sum(bots)::int8,
       sum(visitors)::int8
FROM click_hourly
WHERE short_code = $1 AND hour >= $2 AND hour < $3
GROUP BY 1";

const SERIES_RAW: &str = "\
SELECT date_trunc($4, occurred_at, 'UTC') AS bucket, count(*) FILTER (WHERE NOT is_bot),
       count(*) FILTER (WHERE is_bot), 0::int8
FROM clicks
WHERE short_code = $1 AND occurred_at >= $2 AND occurred_at < $3
GROUP BY 1";

/// How a window splits between the daily and the hourly rollups: the whole days inside
/// it, and the hour ranges before and after them (empty ranges are `(t, t)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub days: (DateTime<Utc>, DateTime<Utc>),
    pub head: (DateTime<Utc>, DateTime<Utc>),
    pub tail: (DateTime<Utc>, DateTime<Utc>),
}

pub fn split(from: DateTime<Utc>, to: DateTime<Utc>) -> Split {
    let first_day = Step::Day.ceil(from);
    let last_day = Step::Day.truncate(to);
    if first_day >= last_day {
        return Split {
            days: (from, from),
            head: (from, to),
            tail: (to, to),
        };
    }
    Split {
        days: (first_day, last_day),
        head: (from, first_day),
        tail: (last_day, to),
    }
}

/// Breakdown name (a `click_dimension`, or `link`), key (None: other), clicks, rank.
type BreakdownRow = (String, Option<String>, i64, i64);

/// Sorts breakdown rows into the five breakdowns.
fn breakdowns(rows: Vec<BreakdownRow>, stats: &mut Stats) {
    for (dimension, key, clicks, _) in rows {
        let target = match dimension.as_str() {
            "country" => &mut stats.by_country,
            "device" => &mut stats.by_device_type,
            "browser" => &mut stats.by_browser,
            "os" => &mut stats.by_os,
            "source" => &mut stats.by_traffic_source,
            other => {
                tracing::error!(dimension = other, "unexpected breakdown");
                continue;
            }
        };
        target.push(entry(key, clicks));
    }
}

fn entry(key: Option<String>, clicks: i64) -> Entry {
    Entry {
        other: key.is_none(),
        key: key.unwrap_or_else(|| OTHER.to_string()),
        clicks: clicks as u64,
    }
}

/// Breakdowns and series over `window`, in one snapshot.
pub async fn click_stats(
    pool: &PgPool,
    code: &str,
    window: &Window,
    top: i64,
    exclude_bots: bool,
    timeout: Duration,
) -> Result<Stats, sqlx::Error> {
    let mut tx = read_tx(pool, timeout).await?;
    let raw = window.step == Step::Minute;
    let rows: Vec<BreakdownRow> = if raw {
        sqlx::query_as(&breakdown_sql(RAW_ROWS).replace("$top", "$5"))
            .bind(code)
            .bind(window.from)
            .bind(window.to)
            .bind(exclude_bots)
            .bind(top)
            .fetch_all(&mut *tx)
            .await?
    } else {
        let s = split(window.from, window.to);
        sqlx::query_as(&breakdown_sql(ROLLUP_ROWS).replace("$top", "$9"))
            .bind(code)
            .bind(s.days.0)
            .bind(s.days.1)
            .bind(s.head.0)
            .bind(s.head.1)
            .bind(s.tail.0)
            .bind(s.tail.1)
            .bind(exclude_bots)
            .bind(top)
            .fetch_all(&mut *tx)
            .await?
    };
    let series = series(
        &mut tx,
        if raw { SERIES_RAW } else { SERIES_ROLLUP },
        code,
        window,
    )
    .await?;
    tx.commit().await?;

    let mut stats = Stats::default();
    breakdowns(rows, &mut stats);
    stats.series = series;
    for (_, p) in &stats.series {
        stats.totals.humans += p.humans;
        stats.totals.bots += p.bots;
        stats.totals.visitors += p.visitors;
    }
    Ok(stats)
}

async fn series(
    conn: &mut PgConnection,
    sql: &str,
    code: &str,
    window: &Window,
) -> Result<Vec<(DateTime<Utc>, Point)>, sqlx::Error> {
    let buckets: Vec<(DateTime<Utc>, i64, i64, i64)> = sqlx::query_as(sql)
        .bind(code)
        .bind(window.from)
        .bind(window.to)
        .bind(window.step.sql_unit())
        .fetch_all(&mut *conn)
        .await?;
    Ok(fill(buckets, window))
}

/// One point per bucket of the window, zero where nothing was counted.
fn fill(
    buckets: Vec<(DateTime<Utc>, i64, i64, i64)>,
    window: &Window,
) -> Vec<(DateTime<Utc>, Point)> {
    let counts: HashMap<DateTime<Utc>, Point> = buckets
        .into_iter()
        .map(|(t, h, b, v)| {
            (
                t,
                Point {
                    humans: h as u64,
                    bots: b as u64,
                    visitors: v as u64,
                },
            )
        })
        .collect();
    let step = window.step.duration();
    (0..window.buckets)
        .map(|i| {
            let start = window.first_bucket + step * i as i32;
            (start, counts.get(&start).copied().unwrap_or_default())
        })
        .collect()
}

/// Top links, countries and sources by human clicks over an owner's links, whole days. A
/// link's clicks are the sum of one dimension's rows (each click is in each dimension once);
/// the device rows are the fewest.
const ACCOUNT_TOP: &str = "\
WITH owned AS (SELECT short_code FROM links WHERE owner_key_id = $1),
rows AS (
    SELECT d.short_code, d.dimension, d.value, d.clicks
    FROM click_breakdown_daily d JOIN owned o USING (short_code)
    WHERE d.bucket >= $2 AND d.bucket < $3 AND NOT d.is_bot
      AND d.dimension IN ('device', 'country', 'source')),
sums AS (
    SELECT 'link' AS set, short_code AS key, sum(clicks)::int8 AS clicks
    FROM rows WHERE dimension = 'device' GROUP BY 2
    UNION ALL
    SELECT dimension::text, value, sum(clicks)::int8
    FROM rows WHERE dimension <> 'device' GROUP BY 1, 2),
ranked AS (
    SELECT set, key, clicks, set = 'source' AND key = click_source_fold() AS folded,
           row_number() OVER (PARTITION BY set
                              ORDER BY set = 'source' AND key = click_source_fold(),
                                       clicks DESC, key) AS rank
    FROM sums)
SELECT set, CASE WHEN rank <= $4 AND NOT folded THEN key END AS key, sum(clicks)::int8,
       min(rank) AS first
FROM ranked
GROUP BY set, 2
ORDER BY set, first";

const ACCOUNT_SERIES: &str = "\
SELECT date_trunc('day', h.hour, 'UTC') AS bucket, sum(h.humans)::int8, sum(h.bots)::int8,
       sum(h.visitors)::int8
FROM click_hourly h JOIN links l USING (short_code)
WHERE l.owner_key_id = $1 AND h.hour >= $2 AND h.hour < $3
GROUP BY 1";

/// Account-wide figures of `owner` over a day-aligned `window`.
pub async fn account_stats(
    pool: &PgPool,
    owner: &str,
    window: &Window,
    top: i64,
    timeout: Duration,
) -> Result<AccountStats, sqlx::Error> {
    debug_assert_eq!(window.step, Step::Day);
    let mut tx = read_tx(pool, timeout).await?;
    let rows: Vec<BreakdownRow> = sqlx::query_as(ACCOUNT_TOP)
        .bind(owner)
        .bind(window.from)
        .bind(window.to)
        .bind(top)
        .fetch_all(&mut *tx)
        .await?;
    let buckets: Vec<(DateTime<Utc>, i64, i64, i64)> = sqlx::query_as(ACCOUNT_SERIES)
        .bind(owner)
        .bind(window.from)
        .bind(window.to)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut stats = AccountStats {
        series: fill(buckets, window),
        ..AccountStats::default()
    };
    for (_, p) in &stats.series {
        stats.totals.humans += p.humans;
        stats.totals.bots += p.bots;
        stats.totals.visitors += p.visitors;
    }
    for (set, key, clicks, _) in rows {
        let target = match set.as_str() {
            "link" => &mut stats.top_links,
            "country" => &mut stats.by_country,
            "source" => &mut stats.by_traffic_source,
            other => {
                tracing::error!(set = other, "unexpected breakdown");
                continue;
            }
        };
        target.push(entry(key, clicks));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        (b - a).num_hours()
    }

    #[test]
    fn a_window_splits_into_whole_days_and_hour_edges() {
        let s = split(t("2026-03-01T10:00:00Z"), t("2026-03-04T05:00:00Z"));
        assert_eq!(
            s.days,
            (t("2026-03-02T00:00:00Z"), t("2026-03-04T00:00:00Z"))
        );
        assert_eq!(
            s.head,
            (t("2026-03-01T10:00:00Z"), t("2026-03-02T00:00:00Z"))
        );
        assert_eq!(
            s.tail,
            (t("2026-03-04T00:00:00Z"), t("2026-03-04T05:00:00Z"))
        );
        assert_eq!(hours(s.head.0, s.head.1) + hours(s.tail.0, s.tail.1), 19);
    }

    #[test]
    fn day_aligned_windows_need_no_hours_and_short_ones_no_days() {
        let s = split(t("2026-03-01T00:00:00Z"), t("2026-03-31T00:00:00Z"));
        assert_eq!(
            s.days,
            (t("2026-03-01T00:00:00Z"), t("2026-03-31T00:00:00Z"))
        );
        assert_eq!(s.head.0, s.head.1);
        assert_eq!(s.tail.0, s.tail.1);
        let s = split(t("2026-03-01T10:00:00Z"), t("2026-03-01T20:00:00Z"));
        assert_eq!(s.days.0, s.days.1);
        assert_eq!(
            s.head,
            (t("2026-03-01T10:00:00Z"), t("2026-03-01T20:00:00Z"))
        );
        // Across midnight but no whole day: all hours.
        let s = split(t("2026-03-01T10:00:00Z"), t("2026-03-02T05:00:00Z"));
        assert_eq!(s.days.0, s.days.1);
        assert_eq!(
            s.head,
            (t("2026-03-01T10:00:00Z"), t("2026-03-02T05:00:00Z"))
        );
    }

    #[tokio::test]
    async fn read_transactions_are_repeatable_read_read_only_and_timed() {
        let db = shortener_testkit::postgres::fresh_database().await;
        let mut tx = read_tx(&db.pool, Duration::from_millis(123)).await.unwrap();
        for (setting, want) in [
            ("transaction_isolation", "repeatable read"),
            ("transaction_read_only", "on"),
            ("statement_timeout", "123ms"),
        ] {
            let got: String = sqlx::query_scalar(&format!("SHOW {setting}"))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(got, want, "{setting}");
        }
        tx.commit().await.unwrap();
        // SET LOCAL ends with the transaction: the pooled connection keeps no timeout.
        let after: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(after, "0");
    }
}
