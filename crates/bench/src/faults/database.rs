//! Postgres stopped under consumer load: a consumer process working through a backlog
//! loses its database (pg_ctl stop on a cluster of its own) for 10 s. It must stop
//! committing offsets, retry with backoff, and once the database is back store every
//! event exactly once.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection};

use super::{broker_with_backlog, wait_for, FaultEnv, PARTITIONS};
use crate::clicks;
use crate::outage::PgCluster;
use crate::stack::ConsumerProc;

pub const GROUP: &str = "shortener-consumer";

/// Sum of the group's committed offsets over the topic's partitions.
pub fn committed(bootstrap: &str) -> anyhow::Result<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition("clicks", p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum())
}

pub async fn stopped_under_load(env: &FaultEnv) -> anyhow::Result<(bool, String)> {
    let dir = env.case_dir("db-outage")?;
    let pg = PgCluster::start(&dir)?;
    let mut admin = PgConnection::connect(&pg.admin_url()).await?;
    sqlx::query("CREATE DATABASE faults")
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let db_url = pg.url("faults");
    let pool = shortener_common::db::DatabaseArgs::with_url(&db_url).lazy_pool()?;
    shortener_common::db::migrate(&pool).await?;

    let (broker, events) = broker_with_backlog(40_000, 11).await?;

    let spec = ConsumerProc::spec(&env.bin_dir, &dir, &db_url, broker.bootstrap())
        .env("BATCH_SIZE", "200")
        .env("CONCURRENCY", "4")
        .env("RETRY_MAX_BACKOFF_MS", "2000");
    let mut consumer = ConsumerProc::start(spec).await?;
    let total = events.len() as i64;
    // Cut the database while the consumer is well into the backlog.
    wait_for(Duration::from_secs(60), || async {
        clicks::count_clicks(&pool)
            .await
            .ok()
            .filter(|n| *n >= total / 10)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the consumer stored under a tenth of the backlog in 60 s"))?;

    pg.stop()?;
    pool.close().await;
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed_early = committed(broker.bootstrap())?;
    let retries_early = consumer
        .metric("shortener_consumer_db_retries_total")
        .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let committed_late = committed(broker.bootstrap())?;
    let retries_late = consumer
        .metric("shortener_consumer_db_retries_total")
        .await?;
    let ready = reqwest::get(format!("http://{}/readyz", consumer.admin))
        .await?
        .status();
    let alive = consumer.service.is_running();
    pg.restart()?;
    let outage_s = stopped.elapsed().as_secs_f64();
    let back = Instant::now();

    let pool = shortener_common::db::DatabaseArgs::with_url(&db_url).lazy_pool()?;
    let done = wait_for(Duration::from_secs(120), || async {
        clicks::stored_of(&pool, &events)
            .await
            .ok()
            .filter(|(mine, _)| *mine >= total)
    })
    .await;
    let caught_up_s = back.elapsed().as_secs_f64();
    let (mine, all) = clicks::stored_of(&pool, &events).await?;
    // Offsets count messages, each holding a batch of clicks.
    let messages: i64 = shortener_testkit::kafka::high_watermarks(broker.bootstrap(), "clicks")
        .iter()
        .sum();
    let committed_end = wait_for(Duration::from_secs(30), || async {
        committed(broker.bootstrap())
            .ok()
            .filter(|c| *c >= messages)
    })
    .await
    .unwrap_or(-1);
    consumer.service.terminate(Duration::from_secs(15)).await;

    let pass = done.is_some()
        && mine == total
        && all == total
        && committed_early == committed_late
        && retries_late > retries_early
        && ready == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && alive
        && committed_end == messages;
    Ok((
        pass,
        format!(
            "database down {outage_s:.0} s: committed offsets frozen at {committed_late} (was {committed_early} 8 s earlier), \
             {:.0} write retries, /readyz {}; after restart {mine}/{total} events stored in {caught_up_s:.1} s, \
             {all} rows in all (no doubles), {committed_end} of {messages} messages committed",
            retries_late - retries_early,
            ready.as_u16()
        ),
    ))
}
