//! The periodic maintenance task: keeps the monthly partitions of `clicks` (the coming
//! months created, those past `CLICK_RETENTION_DAYS` dropped, as [`retention::plan`]
//! decides) and forgets the visitor keys and sets of days that can no longer be counted.
//!
//! Every replica runs the loop; a session advisory lock lets one of them work at a time
//! (the others skip that round). Each step is its own short transaction with a lock
//! timeout, so a long query holding `clicks` makes the step fail and wait for the next
//! round instead of queueing every insert behind it.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sqlx::{Acquire, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::metrics::{MaintenanceOutcome, Metrics};
use crate::retention::{self, Month, DEFAULT_PARTITION};
use crate::visitors;

/// Advisory lock key of the task ("shortene" in ASCII): any fixed number no other code of
/// the stack takes.
pub const LOCK_KEY: i64 = 0x7368_6f72_7465_6e65;

/// Longest wait for a table lock in a step; the step fails and the next round retries.
const LOCK_TIMEOUT: &str = "3s";

/// What one run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Rows moved from the default partition into a partition created for their month.
    pub moved_from_default: u64,
    /// Rows of the default partition deleted as older than the retention.
    pub purged_from_default: u64,
    /// Days whose visitor key was deleted.
    pub visitor_keys_deleted: u64,
    /// Visitor hashes deleted with them.
    pub visitor_rows_deleted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(Report),
    /// Another replica holds the lock and is doing it.
    Busy,
}

/// One run as of `today` (UTC), if no other replica is running one.
pub async fn run_once(
    pool: &PgPool,
    retention_days: u32,
    today: NaiveDate,
) -> Result<Outcome, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Outcome::Busy);
    }
    let result = steps(&mut conn, retention_days, today).await;
    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(unlocked, Ok(true)) {
        // A session lock lives as long as its connection: end it rather than pool it.
        conn.close_on_drop();
    }
    result.map(Outcome::Done)
}

async fn steps(
    conn: &mut PgConnection,
    retention_days: u32,
    today: NaiveDate,
) -> Result<Report, sqlx::Error> {
    let mut report = Report::default();
    forget_visitors(conn, today, &mut report).await?;

    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'clicks'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    let waiting: Vec<NaiveDate> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT (date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC')::date
         FROM {DEFAULT_PARTITION}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let waiting: Vec<Month> = waiting.into_iter().map(Month::of).collect();
    let plan = retention::plan(&partitions, &waiting, today, retention_days);

    for month in plan.create {
        report.moved_from_default += create_partition(conn, month).await?;
        report.created.push(month.partition_name());
    }
    // Raised before anything older is dropped: from then on such clicks are refused, so a
    // redelivery of a dropped click is not stored and counted again.
    sqlx::query(
        "INSERT INTO retention_floor (kept_from) VALUES ($1)
         ON CONFLICT (only_row) DO UPDATE
         SET kept_from = greatest(retention_floor.kept_from, excluded.kept_from)",
    )
    .bind(plan.purge_default_before)
    .execute(&mut *conn)
    .await?;
    for name in plan.drop {
        let mut tx = conn.begin().await?;
        set_lock_timeout(&mut tx).await?;
        sqlx::query(&format!("DROP TABLE {}", quoted(&name)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        report.dropped.push(name);
    }
    report.purged_from_default = sqlx::query(&format!(
        "DELETE FROM {DEFAULT_PARTITION} WHERE occurred_at < $1"
    ))
    .bind(plan.purge_default_before)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(report)
}

/// Creates `month`'s partition with the rows the default partition holds for it, in one
/// transaction: created apart, filled, then attached (which checks the default partition
/// no longer holds rows of the month). Returns the rows moved.
async fn create_partition(conn: &mut PgConnection, month: Month) -> Result<u64, sqlx::Error> {
    let name = quoted(&month.partition_name());
    let (from, to) = month.bounds();
    let mut tx = conn.begin().await?;
    set_lock_timeout(&mut tx).await?;
    sqlx::query(&format!(
        "CREATE TABLE {name} (LIKE clicks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *tx)
    .await?;
    let moved = sqlx::query(&format!(
        "WITH moved AS (DELETE FROM {DEFAULT_PARTITION}
                        WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
         INSERT INTO {name} SELECT * FROM moved"
    ))
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(&format!(
        "ALTER TABLE clicks ATTACH PARTITION {name} FOR VALUES FROM ('{}') TO ('{}')",
        from.to_rfc3339(),
        to.to_rfc3339()
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved)
}

/// Deletes the keys and visitor sets of days before the first countable one: the
/// consumer no longer counts visitors of those days, so nothing needs the key again.
async fn forget_visitors(
    conn: &mut PgConnection,
    today: NaiveDate,
    report: &mut Report,
) -> Result<(), sqlx::Error> {
    let before = visitors::first_countable_day(today);
    let mut tx = conn.begin().await?;
    report.visitor_rows_deleted = sqlx::query("DELETE FROM click_visitors WHERE day < $1")
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    report.visitor_keys_deleted = sqlx::query("DELETE FROM visitor_salts WHERE day < $1")
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await
}

async fn set_lock_timeout(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A partition name as an SQL identifier (names come from [`Month::partition_name`] or
/// the catalog, and are quoted all the same).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs [`run_once`] now and then every `interval` until `cancel`; failures are logged and
/// retried next round (the consumer keeps storing clicks meanwhile: the default partition
/// takes clicks of months without a partition).
pub async fn run_loop(
    pool: PgPool,
    retention_days: u32,
    interval: Duration,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let today = Utc::now().date_naive();
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = run_once(&pool, retention_days, today) => outcome,
        };
        match outcome {
            Ok(Outcome::Done(report)) => {
                metrics.maintenance_done(&report);
                if report != Report::default() {
                    tracing::info!(
                        created = ?report.created,
                        dropped = ?report.dropped,
                        moved_from_default = report.moved_from_default,
                        purged_from_default = report.purged_from_default,
                        visitor_keys_deleted = report.visitor_keys_deleted,
                        visitor_rows_deleted = report.visitor_rows_deleted,
                        retention_days,
                        "click maintenance"
                    );
                }
            }
            Ok(Outcome::Busy) => {
                metrics.maintenance_runs(MaintenanceOutcome::Busy).inc();
            }
            Err(e) => {
                metrics.maintenance_runs(MaintenanceOutcome::Failed).inc();
                tracing::warn!(error = %e, "click maintenance failed; retrying next round");
            }
        }
    }
}
