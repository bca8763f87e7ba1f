//! Adds queued clicks to the rollups. The storing transaction queues each click it really
//! added (`click_rollup_queue`, [`crate::store`]); a pass takes up to a batch of queued
//! rows and, in the same transaction, adds them to the visitor sets, the source cap, the
//! rollups and `link_visits`, then commits. Taking (a DELETE) and counting commit together:
//! a crash or error anywhere rolls both back and the rows are taken again, so each click is
//! counted exactly once. Rows are taken with `FOR UPDATE SKIP LOCKED`, so the passes of
//! several replicas take disjoint rows; rollup rows are written in key order (no deadlock).
//!
//! Summing a large pass in memory first is what makes this cheaper than counting in the
//! storing transaction: many clicks of one link add up to one rollup row per key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pipeline::backoff_delay;
use crate::rollup;
use crate::sources;
use crate::visitors::{self, VisitorId};

/// Rows a pass takes at most, unless configured otherwise (`ROLLUP_BATCH`).
pub const DEFAULT_BATCH: u32 = 20_000;

/// Takes up to `$1` queued rows no other pass holds, deleting them (the delete commits with
/// the counts).
const TAKE: &str = "\
DELETE FROM click_rollup_queue
WHERE ctid = ANY(ARRAY(SELECT ctid FROM click_rollup_queue LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING short_code, occurred_at, country_code, device_type, browser, os, is_bot,
          traffic_source, visitor, queued_at";

/// The visitors of a pass not yet in their day's set: inserted, and returned if new.
const INSERT_VISITORS: &str = "\
INSERT INTO click_visitors (short_code, day, visitor)
SELECT * FROM UNNEST($1::text[], $2::date[], $3::bytea[])
ON CONFLICT DO NOTHING
RETURNING short_code, day, visitor";

/// Human clicks per link, what url-api checks visit limits (max_visits) against. Rows in
/// code order, so concurrent writers lock the counters in one order.
const COUNT_VISITS: &str = "\
INSERT INTO link_visits (short_code, human_visits)
SELECT * FROM UNNEST($1::text[], $2::int8[])
ON CONFLICT (short_code) DO UPDATE
    SET human_visits = link_visits.human_visits + excluded.human_visits";

/// One queued click.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Queued {
    pub short_code: String,
    pub occurred_at: DateTime<Utc>,
    pub country_code: String,
    pub device_type: String,
    pub browser: String,
    pub os: String,
    pub is_bot: bool,
    pub traffic_source: String,
    pub visitor: Option<Vec<u8>>,
    pub queued_at: DateTime<Utc>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rows taken (and counted).
    pub taken: usize,
    /// When the oldest of them was stored.
    pub oldest: Option<DateTime<Utc>>,
}

/// Takes up to `limit` queued clicks and adds them to the rollups, in one transaction.
pub async fn pass(pool: &PgPool, limit: u32) -> Result<Pass, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<Queued> = sqlx::query_as(TAKE)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    count(&mut tx, &rows, Utc::now()).await?;
    tx.commit().await?;
    Ok(Pass {
        taken: rows.len(),
        oldest: rows.iter().map(|r| r.queued_at).min(),
    })
}

/// Runs passes until one finds nothing to take: every click queued before the call (and
/// not held by another pass) is then counted.
pub async fn drain(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let p = pass(pool, DEFAULT_BATCH).await?;
        if p.taken == 0 {
            return Ok(total);
        }
        total += p.taken as u64;
    }
}

/// Adds `rows` to the visitor sets, the source cap, the rollups and `link_visits`.
pub async fn count(
    conn: &mut PgConnection,
    rows: &[Queued],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let new_visitors = new_visitors(conn, rows, now).await?;
    let day_sources: BTreeSet<sources::SourceKey<'_>> = rows
        .iter()
        .map(|r| {
            (
                r.short_code.as_str(),
                rollup::day(r.occurred_at),
                r.traffic_source.as_str(),
            )
        })
        .collect();
    let folded = sources::fold(conn, day_sources).await?;
    let deltas =
        rollup::deltas(
            rows.iter()
                .zip(new_visitors)
                .map(|(r, new_visitor)| rollup::Added {
                    short_code: &r.short_code,
                    occurred_at: r.occurred_at,
                    country_code: &r.country_code,
                    device_type: &r.device_type,
                    browser: &r.browser,
                    os: &r.os,
                    is_bot: r.is_bot,
                    new_visitor,
                    source: folded.source(
                        &r.short_code,
                        rollup::day(r.occurred_at),
                        &r.traffic_source,
                    ),
                }),
        );
    let slot = rand::rng().random_range(0..rollup::TOTAL_SLOTS);
    rollup::apply(conn, &deltas, slot).await?;
    let (codes, visits): (Vec<&str>, Vec<i64>) = deltas
        .totals
        .iter()
        .filter(|(_, c)| c.humans > 0)
        .map(|(code, c)| (*code, c.humans))
        .unzip();
    if !codes.is_empty() {
        sqlx::query(COUNT_VISITS)
            .bind(&codes)
            .bind(&visits)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Visitor set key: link, day, visitor.
pub type VisitKey<'a> = (&'a str, NaiveDate, VisitorId);

/// The visitor-set keys of `rows` with the row each one's first click (by time) is: human
/// clicks carrying a visitor, of days still counted at `now` (a day's set may be gone once
/// it is not, and a click must not count as new in a set that was deleted).
pub fn first_visits(rows: &[Queued], now: DateTime<Utc>) -> BTreeMap<VisitKey<'_>, usize> {
    let mut firsts: BTreeMap<VisitKey<'_>, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.is_bot {
            continue;
        }
        let Some(id) = r
            .visitor
            .as_deref()
            .and_then(|v| VisitorId::try_from(v).ok())
        else {
            continue;
        };
        let Some(day) = visitors::countable_day(r.occurred_at, now) else {
            continue;
        };
        firsts
            .entry((r.short_code.as_str(), day, id))
            .and_modify(|first| {
                if r.occurred_at < rows[*first].occurred_at {
                    *first = i;
                }
            })
            .or_insert(i);
    }
    firsts
}

/// For each of `rows`: is it its visitor's first click of the day on that link?
async fn new_visitors(
    conn: &mut PgConnection,
    rows: &[Queued],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut flags = vec![false; rows.len()];
    let firsts = first_visits(rows, now);
    if firsts.is_empty() {
        return Ok(flags);
    }
    // Key order: concurrent passes insert the same keys in the same order.
    let (codes, days, ids): (Vec<&str>, Vec<NaiveDate>, Vec<&[u8]>) = firsts
        .keys()
        .map(|(c, d, v)| (*c, *d, v.as_slice()))
        .collect();
    let fresh: Vec<(String, NaiveDate, Vec<u8>)> = sqlx::query_as(INSERT_VISITORS)
        .bind(&codes)
        .bind(&days)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    for (code, day, id) in fresh {
        let Ok(id) = VisitorId::try_from(id.as_slice()) else {
            continue;
        };
        if let Some(&i) = firsts.get(&(code.as_str(), day, id)) {
            flags[i] = true;
        }
    }
    Ok(flags)
}

/// What the loop does after a pass that took `taken` of at most `limit` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The pass was full: more are likely queued.
    Again,
    /// Wait for new clicks (or the interval, for other replicas' clicks).
    Wait,
}

pub fn next(taken: usize, limit: u32) -> Next {
    if taken >= limit as usize {
        Next::Again
    } else {
        Next::Wait
    }
}

/// Least time between two log lines about failing passes.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Settings and handles of the rollup loop.
pub struct Worker {
    pub pool: PgPool,
    pub batch: u32,
    pub interval: Duration,
    pub retry_max_backoff: Duration,
    /// Notified by the store path after each batch with new clicks.
    pub nudge: Arc<Notify>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
}

/// Runs passes until cancelled: again at once while they come back full, else on a nudge
/// or after the interval. A failing pass is retried with backoff; its rows stay queued.
/// Cancellation is only looked at between passes, so a pass in hand commits.
pub async fn run_loop(w: Worker) {
    let mut attempt = 0u32;
    let mut last_logged: Option<Instant> = None;
    loop {
        if w.cancel.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let wait = match pass(&w.pool, w.batch).await {
            Ok(p) => {
                if attempt > 0 {
                    tracing::info!(
                        attempts = attempt + 1,
                        "rollup pass succeeded after retries"
                    );
                }
                attempt = 0;
                w.metrics.rolled_up.inc_by(p.taken as u64);
                w.metrics
                    .rollup_pass_seconds
                    .observe(started.elapsed().as_secs_f64());
                let lag = p
                    .oldest
                    .map(|t| (Utc::now() - t).to_std().unwrap_or_default().as_secs_f64())
                    .unwrap_or(0.0);
                w.metrics.rollup_lag_seconds.set(lag);
                match next(p.taken, w.batch) {
                    Next::Again => None,
                    Next::Wait => Some(w.interval),
                }
            }
            Err(e) => {
                attempt += 1;
                w.metrics.rollup_retries.inc();
                let delay = backoff_delay(attempt, w.retry_max_backoff);
                if last_logged.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL) {
                    tracing::warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64,
                        "rollup pass failed; its clicks stay queued, retrying");
                    last_logged = Some(Instant::now());
                }
                // A nudge does not cut a backoff short.
                tokio::select! {
                    _ = w.cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                None
            }
        };
        if let Some(interval) = wait {
            tokio::select! {
                _ = w.cancel.cancelled() => return,
                _ = w.nudge.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(code: &str, at: &str, bot: bool, visitor: Option<u8>) -> Queued {
        Queued {
            short_code: code.into(),
            occurred_at: at.parse().unwrap(),
            country_code: "DE".into(),
            device_type: "desktop".into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            is_bot: bot,
            traffic_source: "direct".into(),
            visitor: visitor.map(|v| vec![v; 16]),
            queued_at: at.parse().unwrap(),
        }
    }

    #[test]
    fn a_visitors_earliest_click_of_a_countable_day_is_its_first() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let rows = [
            queued("a", "2026-12-01T10:30:00Z", false, Some(1)),
            queued("a", "2026-12-01T10:00:00Z", false, Some(1)),
            queued("b", "2026-12-01T10:00:00Z", false, Some(1)),
            // A bot, a click without a visitor, a day no longer counted: no visit.
            queued("a", "2026-12-01T09:00:00Z", true, Some(2)),
            queued("a", "2026-12-01T09:00:00Z", false, None),
            queued("a", "2026-11-29T09:00:00Z", false, Some(3)),
            // Yesterday's set is its own.
            queued("a", "2026-11-30T23:00:00Z", false, Some(1)),
        ];
        let firsts = first_visits(&rows, now);
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let want: BTreeMap<VisitKey<'_>, usize> = [
            (("a", day("2026-12-01"), [1u8; 16]), 1),
            (("b", day("2026-12-01"), [1u8; 16]), 2),
            (("a", day("2026-11-30"), [1u8; 16]), 6),
        ]
        .into_iter()
        .collect();
        assert_eq!(firsts, want);
    }

    #[test]
    fn only_a_full_pass_runs_again_at_once() {
        assert_eq!(next(20_000, 20_000), Next::Again);
        assert_eq!(next(19_999, 20_000), Next::Wait);
        assert_eq!(next(0, 20_000), Next::Wait);
    }
}
