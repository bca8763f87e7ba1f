//! Shared setup of the consumer's integration tests: a mock Kafka cluster, a fresh
//! database, a consumer running in-process, and polling helpers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use consumer::store::ClickRow;
use consumer::{ConsumerApp, ConsumerArgs, Enricher};
use shortener_common::db::DatabaseArgs;
use shortener_common::event::Click;
use shortener_common::event_batch::{BatchWriter, BATCH_SCHEMA_VERSION, SINGLE_SCHEMA_VERSION};
use shortener_common::kafka::{
    KafkaArgs, HEADER_DLQ_SOURCE_OFFSET, HEADER_DLQ_SOURCE_PARTITION, HEADER_SCHEMA_VERSION,
};
use shortener_testkit::kafka::{MockBroker, Received, TestMessage};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Generous: the machine is small and shared; waits poll and return as soon as they can.
pub const WAIT: Duration = Duration::from_secs(90);

pub const TOPIC: &str = "clicks";
pub const PARTITIONS: i32 = 4;

pub fn geoip_db() -> Option<PathBuf> {
    std::env::var_os("SHORTENER_TEST_GEOIP_DB").map(PathBuf::from)
}

/// Settings for a consumer of `broker` writing to `db_url`, tuned for quick tests.
pub fn args(broker: &MockBroker, db_url: &str, group: &str) -> ConsumerArgs {
    let mut args = ConsumerArgs::new(
        KafkaArgs::new(broker.bootstrap(), TOPIC),
        DatabaseArgs::with_url(db_url),
    );
    args.group_id = group.to_string();
    args.batch_size = 50;
    args.batch_max_wait_ms = 50;
    args.concurrency = 2;
    args.geoip_db_path = geoip_db();
    args.lag_refresh_interval_ms = 200;
    args.retry_max_backoff_ms = 500;
    args.database.database_acquire_timeout_ms = 500;
    args
}

pub fn broker() -> MockBroker {
    let broker = MockBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    broker.create_topic(&format!("{TOPIC}.dlq"), 2);
    broker
}

pub struct Running {
    pub admin: std::net::SocketAddr,
    pub metrics: consumer::Metrics,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), consumer::Error>>,
}

impl Running {
    /// Graceful shutdown; panics if `run` failed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("consumer stops in time")
            .expect("consumer task")
            .expect("consumer run");
    }

    /// Simulated crash: the run future is dropped mid-flight; nothing graceful happens.
    pub async fn kill(self) {
        self.task.abort();
        let err = self.task.await.expect_err("aborted");
        assert!(err.is_cancelled());
    }
}

pub async fn start(args: ConsumerArgs) -> Running {
    let app = ConsumerApp::new(args).await.expect("consumer starts");
    let admin = app.admin_addr();
    let metrics = app.metrics();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Running {
        admin,
        metrics,
        stop: Some(tx),
        task,
    }
}

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
];
const IPS: [&str; 4] = ["8.8.8.8", "194.25.0.60", "10.0.0.1", "2001:4860:4860::8888"];
const REFERERS: [Option<&str>; 4] = [
    Some("https://www.google.com/search?q=x"),
    Some("https://news.bbc.co.uk/story"),
    None,
    Some("https://t.co/abc"),
];

/// The i-th synthetic click: user agent, IP and referer cycle through four known values,
/// so the expected enrichment of click i is `expected(i)`.
pub fn click(code: &str, i: usize) -> Click {
    Click {
        event_id: Uuid::now_v7(),
        short_code: code.to_string(),
        occurred_at: Utc::now(),
        ip: Some(IPS[i % 4].parse::<IpAddr>().unwrap()),
        user_agent: Some(USER_AGENTS[i % 4].to_string()),
        referer: REFERERS[i % 4].map(str::to_string),
        matched_rule: None,
    }
}

/// `clicks` enriched as the consumer stores them (no GeoIP database), for tests that call
/// the storing transaction directly.
pub fn rows(clicks: &[Click]) -> Vec<ClickRow> {
    let enricher = Enricher::new(None).unwrap();
    clicks
        .iter()
        .map(|c| ClickRow {
            click: c.clone(),
            enrichment: enricher.enrich(c),
        })
        .collect()
}

/// (country, device, browser, source) that `click(_, i)` must be stored with.
pub fn expected(i: usize) -> (&'static str, &'static str, &'static str, &'static str) {
    [
        ("US", "mobile", "Safari", "google"),
        ("DE", "desktop", "Firefox", "bbc.co.uk"),
        ("Unknown", "bot", "Googlebot", "direct"),
        ("US", "tablet", "Safari", "twitter"),
    ][i % 4]
}

/// A single-click message (what dead letters and replays are): key = short code.
pub fn message(click: &Click) -> TestMessage {
    TestMessage::new(click.short_code.clone(), click.encode())
        .header(HEADER_SCHEMA_VERSION, SINGLE_SCHEMA_VERSION)
}

/// What url-api publishes: an unkeyed ClickBatch, each click with its own headers.
pub fn batch(clicks: &[Click], headers: impl Fn(usize) -> HashMap<String, String>) -> TestMessage {
    let mut writer = BatchWriter::default();
    for (i, c) in clicks.iter().enumerate() {
        writer.push(&c.to_event(), headers(i));
    }
    TestMessage {
        key: None,
        payload: writer.take().0,
        headers: vec![(HEADER_SCHEMA_VERSION.into(), BATCH_SCHEMA_VERSION.into())],
    }
}

/// Produces `messages` one after the other (so their offsets follow their order); returns
/// each one's (partition, offset).
pub async fn produce_in_order(broker: &MockBroker, messages: &[TestMessage]) -> Vec<(i32, i64)> {
    let mut positions = Vec::with_capacity(messages.len());
    for m in messages {
        let headers: Vec<(&str, &[u8])> = m
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        positions.push(
            broker
                .produce(TOPIC, m.key.as_deref(), &m.payload, &headers)
                .await,
        );
    }
    positions
}

/// The (partition, offset) a dead letter came from, from its headers.
pub fn dlq_source(dead: &Received) -> (i32, i64) {
    let header = |name| {
        dead.header(name)
            .unwrap_or_else(|| panic!("dead letter without {name}"))
            .parse::<i64>()
            .unwrap()
    };
    (
        header(HEADER_DLQ_SOURCE_PARTITION) as i32,
        header(HEADER_DLQ_SOURCE_OFFSET),
    )
}

pub async fn count(pool: &PgPool, code: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = $1")
        .bind(code)
        .fetch_one(pool)
        .await
        .expect("count clicks")
}

/// The rollups count exactly the stored clicks: per link for the totals, per link and
/// hour for the hourly figures, per link, hour, dimension and value for the breakdowns
/// (sources folded past the cap only in sum), humans and bots apart; each day's breakdown
/// rows are the sums of its hours'.
pub async fn assert_rollups_match_clicks(pool: &PgPool) {
    let mismatches: Vec<(String, String)> = sqlx::query_as(
        "WITH raw AS (
             SELECT short_code, date_trunc('hour', occurred_at, 'UTC') AS hour,
                    count(*) FILTER (WHERE NOT is_bot) AS humans,
                    count(*) FILTER (WHERE is_bot) AS bots
             FROM clicks GROUP BY 1, 2),
         per_code AS (SELECT short_code, sum(humans) AS humans, sum(bots) AS bots
                      FROM raw GROUP BY 1),
         totals AS (SELECT short_code, sum(humans) AS humans, sum(bots) AS bots
                    FROM click_totals GROUP BY 1),
         raw_dims AS (
             SELECT short_code, date_trunc('hour', occurred_at, 'UTC') AS hour, d.dimension,
                    d.value, is_bot, count(*) AS clicks
             FROM clicks
             CROSS JOIN LATERAL (VALUES ('country'::click_dimension, country_code),
                                        ('device', device_type), ('browser', browser),
                                        ('os', os), ('source', traffic_source))
                 AS d (dimension, value)
             GROUP BY 1, 2, 3, 4, 5),
         hourly AS (SELECT short_code, bucket AS hour, dimension, value, is_bot, clicks
                    FROM click_breakdown_hourly),
         sums AS (SELECT short_code, hour, dimension, is_bot, sum(clicks) AS clicks
                  FROM raw_dims GROUP BY 1, 2, 3, 4),
         hourly_sums AS (SELECT short_code, hour, dimension, is_bot, sum(clicks) AS clicks
                         FROM hourly GROUP BY 1, 2, 3, 4),
         daily_of_hours AS (
             SELECT short_code, date_trunc('day', bucket, 'UTC') AS bucket, dimension, value,
                    is_bot, sum(clicks) AS clicks
             FROM click_breakdown_hourly GROUP BY 1, 2, 3, 4, 5)
         SELECT 'totals', coalesce(p.short_code, t.short_code)
         FROM per_code p FULL JOIN totals t USING (short_code)
         WHERE p.humans IS DISTINCT FROM t.humans OR p.bots IS DISTINCT FROM t.bots
         UNION ALL
         SELECT 'hourly', coalesce(r.short_code, h.short_code) || ' ' || coalesce(r.hour, h.hour)
         FROM raw r FULL JOIN click_hourly h USING (short_code, hour)
         WHERE r.humans IS DISTINCT FROM h.humans OR r.bots IS DISTINCT FROM h.bots
         UNION ALL
         SELECT 'breakdown sum', short_code || ' ' || hour || ' ' || dimension
         FROM sums r FULL JOIN hourly_sums h USING (short_code, hour, dimension, is_bot)
         WHERE r.clicks IS DISTINCT FROM h.clicks
         UNION ALL
         SELECT 'breakdown value', short_code || ' ' || hour || ' ' || dimension || ' ' || value
         FROM raw_dims r FULL JOIN hourly h USING (short_code, hour, dimension, value, is_bot)
         WHERE r.clicks IS DISTINCT FROM h.clicks
           AND NOT (dimension = 'source' AND h.clicks IS NULL)
           AND NOT (dimension = 'source' AND value = click_source_fold())
         UNION ALL
         SELECT 'daily', short_code || ' ' || bucket || ' ' || dimension || ' ' || value
         FROM daily_of_hours h FULL JOIN click_breakdown_daily d
             USING (short_code, bucket, dimension, value, is_bot)
         WHERE h.clicks IS DISTINCT FROM d.clicks",
    )
    .fetch_all(pool)
    .await
    .expect("compare rollups with clicks");
    assert!(
        mismatches.is_empty(),
        "rollups differ from the stored clicks: {mismatches:?}"
    );
}

/// Polls `check` until it returns true; panics with `what` after `WAIT`.
/// Waits until the running consumer's rollup task has counted every queued click: the
/// queue is empty once the last pass committed (a pass's delete is not visible before).
pub async fn wait_rolled_up(pool: &PgPool) {
    wait_until("the rollup queue drained", || async {
        queued(pool).await == 0
    })
    .await;
}

pub async fn queued(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM click_rollup_queue")
        .fetch_one(pool)
        .await
        .expect("count queued clicks")
}

pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("admin endpoint answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Sum of the samples of metric `name` (all label sets) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("numeric sample");
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Lag of every partition of the topic for `group`, measured by a separate client
/// (not the consumer under test). Blocking calls run on a blocking thread.
pub async fn group_lag(bootstrap: &str, group: &str) -> Vec<consumer::lag::PartitionLag> {
    let bootstrap = bootstrap.to_string();
    let group = group.to_string();
    tokio::task::spawn_blocking(move || {
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("lag client");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        consumer::lag::lag_of(&c, tpl, Duration::from_secs(10)).expect("measure lag")
    })
    .await
    .expect("lag task")
}
