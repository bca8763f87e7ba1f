//! A 30 s database outage while a deep backlog arrives: the consumer fetches what fits in
//! `MAX_IN_FLIGHT_BYTES` (and librdkafka's prefetch queue of the same size) and leaves the
//! rest on the brokers, so its memory stays flat however deep the backlog; once the
//! database is back everything is stored exactly once.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::{wait_for, FaultEnv, PARTITIONS};
use crate::clicks;
use crate::outage::{FlakyBroker, PgCluster};
use crate::stack::ConsumerProc;

const OUTAGE: Duration = Duration::from_secs(30);
const IN_FLIGHT: u64 = 2 << 20;
/// ~14 MB of url-api batches: as deep as the mock cluster keeps (5 MB per partition).
const BACKLOG: usize = 80_000;

/// Resident set size of `pid` in bytes (Linux).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn flat_during_outage(env: &FaultEnv) -> anyhow::Result<(bool, String)> {
    let dir = env.case_dir("memory-outage")?;
    let pg = PgCluster::start(&dir)?;
    let mut admin = PgConnection::connect(&pg.admin_url()).await?;
    sqlx::query("CREATE DATABASE faults")
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let db_url = pg.url("faults");
    let pool = shortener_common::db::DatabaseArgs::with_url(&db_url).lazy_pool()?;
    shortener_common::db::migrate(&pool).await?;

    let broker = FlakyBroker::start();
    broker
        .create_topic("clicks", PARTITIONS)
        .map_err(anyhow::Error::msg)?;
    broker
        .create_topic("clicks.dlq", 1)
        .map_err(anyhow::Error::msg)?;
    let spec = ConsumerProc::spec(&env.bin_dir, &dir, &db_url, broker.bootstrap())
        .env("MAX_IN_FLIGHT_BYTES", IN_FLIGHT.to_string())
        .env("RETRY_MAX_BACKOFF_MS", "2000");
    let mut consumer = ConsumerProc::start(spec).await?;
    let pid = consumer
        .service
        .pid()
        .ok_or_else(|| anyhow::anyhow!("consumer has no pid"))?;
    wait_for(Duration::from_secs(60), || async {
        reqwest::get(format!("http://{}/readyz", consumer.admin))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the consumer was not ready within 60 s"))?;

    // The database goes away, then the backlog arrives.
    pg.stop()?;
    pool.close().await;
    let before = rss(pid).unwrap_or(0);
    let codes: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let events = clicks::synthetic(BACKLOG, &codes, 23);
    clicks::produce(broker.bootstrap(), "clicks", &events).await?;
    let backlog_bytes: u64 = events.iter().map(|e| e.encode().len() as u64).sum();

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut held_max = 0.0f64;
    while started.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss(pid).unwrap_or(0));
        if let Ok(held) = consumer.metric("shortener_consumer_in_flight_bytes").await {
            held_max = held_max.max(held);
        }
    }
    let consumed = consumer
        .metric("shortener_consumer_messages_consumed_total")
        .await?;
    let alive = consumer.service.is_running();
    pg.restart()?;
    let back = Instant::now();
    let pool = shortener_common::db::DatabaseArgs::with_url(&db_url).lazy_pool()?;
    let total = events.len() as i64;
    let done = wait_for(Duration::from_secs(180), || async {
        clicks::stored_of(&pool, &events)
            .await
            .ok()
            .filter(|(mine, _)| *mine >= total)
    })
    .await;
    let caught_up_s = back.elapsed().as_secs_f64();
    let (mine, all) = clicks::stored_of(&pool, &events).await?;
    consumer.service.terminate(Duration::from_secs(15)).await;

    let peak = samples.iter().copied().max().unwrap_or(0);
    let first_third = samples[..samples.len() / 3]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let rest = samples[samples.len() / 3..]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let growth = peak.saturating_sub(before);
    let messages: i64 = shortener_testkit::kafka::high_watermarks(broker.bootstrap(), "clicks")
        .iter()
        .sum();
    // Bounded: what was fetched fits the budget (plus the message the dispatcher waits
    // with), the rest stayed on the brokers. Flat: no growth after the first third of the
    // outage.
    let average = backlog_bytes as f64 / messages.max(1) as f64;
    let pass = alive
        && done.is_some()
        && mine == total
        && all == total
        && held_max <= IN_FLIGHT as f64
        && consumed * average <= IN_FLIGHT as f64 + 2.0 * average
        && rest <= first_third + (2 << 20);
    Ok((
        pass,
        format!(
            "database down {:.0} s while {BACKLOG} clicks ({:.1} MiB encoded, {messages} messages) arrived, \
             MAX_IN_FLIGHT_BYTES={:.0} MiB: {consumed:.0} messages fetched, at most {:.2} MiB held; \
             RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB), {:.1} MiB max in the first 10 s vs {:.1} MiB after; \
             after restart {mine}/{total} stored in {caught_up_s:.1} s, {all} rows in all",
            OUTAGE.as_secs_f64(),
            backlog_bytes as f64 / MIB,
            IN_FLIGHT as f64 / MIB,
            held_max / MIB,
            before as f64 / MIB,
            peak as f64 / MIB,
            growth as f64 / MIB,
            first_third as f64 / MIB,
            rest as f64 / MIB,
        ),
    ))
}
