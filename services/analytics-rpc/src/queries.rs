//! The SQL behind the API. Every query filters on `short_code` and a time range, which the
//! `clicks_code_time_idx` index (short_code, occurred_at) INCLUDE (breakdown columns)
//! answers without touching the table.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::request::Window;

/// (key, clicks), most clicks first, ties by key.
pub type Breakdown = Vec<(String, u64)>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub by_country: Breakdown,
    pub by_device_type: Breakdown,
    pub by_browser: Breakdown,
    pub by_traffic_source: Breakdown,
    /// One entry per bucket of the window, empty buckets included.
    pub series: Vec<(DateTime<Utc>, u64)>,
}

pub async fn click_count(pool: &PgPool, code: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = $1")
        .bind(code)
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// One pass for the total and all four breakdowns: GROUPING() tells which grouping set a
/// row belongs to (a bit is set for each column *not* grouped in it).
const BREAKDOWNS: &str = "\
SELECT GROUPING(country_code, device_type, browser, traffic_source) AS set,
       country_code, device_type, browser, traffic_source, count(*) AS clicks
FROM clicks
WHERE short_code = $1 AND occurred_at >= $2 AND occurred_at < $3
GROUP BY GROUPING SETS ((country_code), (device_type), (browser), (traffic_source), ())";

const SERIES: &str = "\
SELECT date_trunc($4, occurred_at, 'UTC') AS bucket, count(*) AS clicks
FROM clicks
WHERE short_code = $1 AND occurred_at >= $2 AND occurred_at < $3
GROUP BY 1";

type BreakdownRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// Breakdowns and series over `window`, read in one repeatable-read snapshot so they agree
/// with each other while clicks keep arriving.
pub async fn click_stats(pool: &PgPool, code: &str, window: &Window) -> Result<Stats, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<BreakdownRow> = sqlx::query_as(BREAKDOWNS)
        .bind(code)
        .bind(window.from)
        .bind(window.to)
        .fetch_all(&mut *tx)
        .await?;
    let buckets: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(SERIES)
        .bind(code)
        .bind(window.from)
        .bind(window.to)
        .bind(window.step.sql_unit())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut stats = Stats::default();
    for (set, country, device, browser, source, clicks) in rows {
        let clicks = clicks as u64;
        let entry = |k: Option<String>| (k.unwrap_or_default(), clicks);
        match set {
            0b0111 => stats.by_country.push(entry(country)),
            0b1011 => stats.by_device_type.push(entry(device)),
            0b1101 => stats.by_browser.push(entry(browser)),
            0b1110 => stats.by_traffic_source.push(entry(source)),
            0b1111 => stats.total = clicks,
            other => tracing::error!(set = other, "unexpected grouping set"),
        }
    }
    for b in [
        &mut stats.by_country,
        &mut stats.by_device_type,
        &mut stats.by_browser,
        &mut stats.by_traffic_source,
    ] {
        b.sort_by(|(ka, ca), (kb, cb)| cb.cmp(ca).then_with(|| ka.cmp(kb)));
    }
    let counts: HashMap<DateTime<Utc>, i64> = buckets.into_iter().collect();
    let step = window.step.duration();
    stats.series = (0..window.buckets)
        .map(|i| {
            let start = window.first_bucket + step * i as i32;
            (start, counts.get(&start).copied().unwrap_or(0) as u64)
        })
        .collect();
    Ok(stats)
}
