//! Consumer SIGKILLed mid-backlog and restarted: batches written but not committed are
//! redelivered and skipped by event_id; nothing is lost, nothing is stored or counted in
//! the rollups twice.

use std::time::{Duration, Instant};

use shortener_testkit::postgres::fresh_database;

use super::database::committed;
use super::{broker_with_backlog, wait_for, FaultEnv};
use crate::clicks;
use crate::stack::ConsumerProc;

pub async fn killed_mid_batch(env: &FaultEnv) -> anyhow::Result<(bool, String)> {
    let dir = env.case_dir("consumer-kill")?;
    let db = fresh_database().await;
    let (broker, events) = broker_with_backlog(60_000, 13).await?;
    let total = events.len() as i64;

    let spec = ConsumerProc::spec(&env.bin_dir, &dir, &db.url, broker.bootstrap())
        .env("BATCH_SIZE", "2000")
        .env("CONCURRENCY", "4");
    let mut consumer = ConsumerProc::start(spec).await?;
    let at_kill = wait_for(Duration::from_secs(120), || async {
        clicks::count_clicks(&db.pool)
            .await
            .ok()
            .filter(|n| *n >= total / 5)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the consumer did not store a fifth of the backlog in 120 s"))?;
    consumer.service.kill().await;
    let stored_at_kill = clicks::count_clicks(&db.pool).await?;
    let committed_at_kill = committed(broker.bootstrap())?;

    // The new member waits for the dead one's session to expire (librdkafka default 45 s).
    let restarted = Instant::now();
    consumer.service.restart()?;
    let done = wait_for(Duration::from_secs(180), || async {
        clicks::stored_of(&db.pool, &events)
            .await
            .ok()
            .filter(|(mine, _)| *mine >= total)
    })
    .await;
    let took = restarted.elapsed().as_secs_f64();
    let (mine, all) = clicks::stored_of(&db.pool, &events).await?;
    let duplicates = consumer
        .metric("shortener_consumer_clicks_duplicate_total")
        .await
        .unwrap_or(-1.0);
    // The rollups lag the stored clicks by a pass: wait for the consumer's rollup task to
    // empty the queue (clicks the killed process queued included).
    let rolled_up = wait_for(Duration::from_secs(120), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM click_rollup_queue")
            .fetch_one(&db.pool)
            .await
            .ok()
            .filter(|n| *n == 0)
    })
    .await
    .is_some();
    consumer.service.terminate(Duration::from_secs(15)).await;
    // Exactly-once rollups: the link totals and hourly figures count every stored click
    // once, whatever was redelivered.
    let (totals, hourly, daily): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_totals),
                (SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_hourly),
                (SELECT coalesce(sum(clicks), 0)::int8 FROM click_breakdown_daily
                 WHERE dimension = 'source')",
    )
    .fetch_one(&db.pool)
    .await?;
    let rollups_ok = rolled_up && totals == all && hourly == all && daily == all;

    let pass =
        done.is_some() && mine == total && all == total && stored_at_kill < total && rollups_ok;
    Ok((
        pass,
        format!(
            "SIGKILL with {stored_at_kill}/{total} stored (first seen {at_kill}) and {committed_at_kill} committed; \
             after restart {mine}/{total} stored in {took:.1} s, {all} rows in all, {duplicates:.0} redelivered events skipped as duplicates; \
             rollups count {totals} (totals), {hourly} (hourly), {daily} (daily)"
        ),
    ))
}
