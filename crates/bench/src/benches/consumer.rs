//! Consumer throughput: the consumer library in-process against librdkafka's mock cluster
//! and the private Postgres, K pre-produced events, enrichment on (GeoIP when a database
//! is given, woothee, referer), timed until every event is stored; against the ceiling of
//! inserting the same rows with the same batch size and concurrency, without Kafka and
//! without enrichment. Two ratios per configuration: stored (what the consumer acknowledges
//! to Kafka: clicks inserted and queued for the rollups), and stored and rolled up (until
//! the consumer's rollup task has counted every event: queue empty, the link totals sum to
//! the events), the price of rollups + Kafka + enrichment. Each configuration gets fresh
//! databases and a fresh cluster; the last one puts every click on one link.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consumer::rollup_worker::{self, DEFAULT_BATCH as DEFAULT_ROLLUP_BATCH};
use consumer::store::{insert_clicks, ClickRow};
use consumer::{ConsumerApp, ConsumerArgs};
use serde_json::json;
use shortener_common::event::Click;
use shortener_common::kafka::KafkaArgs;
use shortener_testkit::kafka::MockBroker;
use shortener_testkit::postgres::fresh_database;

use super::BenchEnv;
use crate::clicks;
use crate::results::Row;

/// The consumer's default BATCH_SIZE and CONCURRENCY.
const DEFAULT_BATCH: usize = 2000;
const DEFAULT_CONCURRENCY: usize = 4;

pub struct ConsumerOpts {
    pub events: usize,
    pub partitions: i32,
    pub batch_sizes: Vec<usize>,
    pub concurrencies: Vec<usize>,
    pub geoip_db: Option<PathBuf>,
}

/// One configuration's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub batch_size: usize,
    pub concurrency: usize,
    pub events: usize,
    /// From the first stored row to the last (the consumer group join is excluded).
    pub consumer_events_per_s: f64,
    /// Same, including start-up and the group join.
    pub consumer_events_per_s_from_start: f64,
    pub group_join_s: f64,
    pub ceiling_events_per_s: f64,
    pub ratio: f64,
    pub rollup_batch: u32,
    /// From the first stored row until the rollups count every event.
    pub rolled_up_events_per_s: f64,
    pub rolled_up_ratio: f64,
}

pub async fn run(env: &BenchEnv, opts: &ConsumerOpts) -> anyhow::Result<Vec<Row>> {
    let codes: Vec<String> = (0..1000).map(|i| format!("c{i:04}")).collect();
    let events = Arc::new(clicks::synthetic(opts.events, &codes, 42));
    let mut points = Vec::new();
    let mut configs: Vec<(usize, usize)> = opts.batch_sizes.iter().map(|&b| (b, 4)).collect();
    configs.extend(
        opts.concurrencies
            .iter()
            .filter(|&&c| c != 4)
            .map(|&c| (500, c)),
    );
    for (batch, conc) in configs {
        let point = one(&events, batch, conc, opts).await?;
        eprintln!(
            "consumer batch={batch} concurrency={conc}: {:.0} ev/s stored (ceiling {:.0}, \
             ratio {:.2}), {:.0} ev/s rolled up (ratio {:.2})",
            point.consumer_events_per_s,
            point.ceiling_events_per_s,
            point.ratio,
            point.rolled_up_events_per_s,
            point.rolled_up_ratio
        );
        points.push(point);
    }
    // A hot link: every click on one code, 4 writers at the default batch size. Its
    // rollup rows are shared by every pass.
    let hot_events = Arc::new(clicks::synthetic(opts.events, &["hot".to_string()], 43));
    let hot = one(&hot_events, DEFAULT_BATCH, DEFAULT_CONCURRENCY, opts).await?;
    eprintln!(
        "consumer hot link: {:.0} ev/s stored (ceiling {:.0}, ratio {:.2}), {:.0} ev/s rolled \
         up (ratio {:.2})",
        hot.consumer_events_per_s,
        hot.ceiling_events_per_s,
        hot.ratio,
        hot.rolled_up_events_per_s,
        hot.rolled_up_ratio
    );
    let codes_events = events.clone();
    let mut store_points = Vec::new();
    for (case, evs) in [("1000 links", &codes_events), ("hot link", &hot_events)] {
        let p = store_only(
            case,
            evs,
            DEFAULT_BATCH,
            DEFAULT_CONCURRENCY,
            DEFAULT_ROLLUP_BATCH,
        )
        .await?;
        eprintln!("{}", p.describe());
        store_points.push(p);
    }
    let mut rows = Vec::new();
    for p in &store_points {
        rows.extend(p.rows("consumer", "store only (no Kafka), "));
    }
    for p in &points {
        let default = (p.batch_size, p.concurrency) == (DEFAULT_BATCH, DEFAULT_CONCURRENCY);
        let target = Some(if default { 0.6 } else { 0.5 });
        let name = format!("batch={} conc={}", p.batch_size, p.concurrency);
        rows.push(
            Row::new(
                "consumer",
                &format!("ev/s stored {name}"),
                p.consumer_events_per_s,
                "ev/s",
            )
            .vs(p.ceiling_events_per_s, target),
        );
        rows.push(
            Row::new(
                "consumer",
                &format!("ev/s stored and rolled up {name}"),
                p.rolled_up_events_per_s,
                "ev/s",
            )
            .vs(p.ceiling_events_per_s, target),
        );
    }
    let hot_name = format!("hot link batch={DEFAULT_BATCH} conc={DEFAULT_CONCURRENCY}");
    rows.push(
        Row::new(
            "consumer",
            &format!("ev/s stored {hot_name}"),
            hot.consumer_events_per_s,
            "ev/s",
        )
        .vs(hot.ceiling_events_per_s, Some(0.5)),
    );
    rows.push(
        Row::new(
            "consumer",
            &format!("ev/s stored and rolled up {hot_name}"),
            hot.rolled_up_events_per_s,
            "ev/s",
        )
        .vs(hot.ceiling_events_per_s, Some(0.5)),
    );
    if let Some(p) = points.first() {
        rows.push(Row::new(
            "consumer",
            "group join (excluded above)",
            p.group_join_s,
            "s",
        ));
    }
    crate::results::write_json(
        &env.results_dir,
        "consumer",
        &rows,
        json!({
            "broker": "librdkafka mock cluster (in-process, loopback TCP), 1 broker",
            "partitions": opts.partitions,
            "events": opts.events,
            "geoip": opts.geoip_db.as_ref().map(|p| p.display().to_string()),
            "points": points,
            "hot_link": hot,
            "store_only": store_points,
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        }),
    )?;
    Ok(rows)
}

async fn one(
    events: &Arc<Vec<Click>>,
    batch: usize,
    conc: usize,
    opts: &ConsumerOpts,
) -> anyhow::Result<Point> {
    // Ceiling: the same rows, plain batched INSERT .. ON CONFLICT DO NOTHING.
    let db = fresh_database().await;
    let (stored, took) = clicks::insert_ceiling(&db.pool, events.clone(), batch, conc).await?;
    anyhow::ensure!(
        stored as usize == events.len(),
        "ceiling stored {stored} of {}",
        events.len()
    );
    let ceiling = stored as f64 / took.as_secs_f64();
    db.pool.close().await;

    let db = fresh_database().await;
    let broker = MockBroker::start();
    broker.create_topic("clicks", opts.partitions);
    broker.create_topic("clicks.dlq", 1);
    clicks::produce(broker.bootstrap(), "clicks", events).await?;

    let mut args = ConsumerArgs::new(KafkaArgs::new(broker.bootstrap(), "clicks"), db.args());
    args.batch_size = batch as u32;
    args.concurrency = conc as u32;
    args.geoip_db_path = opts.geoip_db.clone();
    // The workers' connections, the rollup task's and maintenance's.
    args.database.database_max_connections = conc as u32 + 3;
    args.rollup_batch = DEFAULT_ROLLUP_BATCH;
    let start = Instant::now();
    let app = ConsumerApp::new(args).await?;
    let metrics = app.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async {
        let _ = stop_rx.await;
    }));
    let total = events.len() as u64;
    let mut first = None;
    let deadline = start + Duration::from_secs(300);
    loop {
        let stored = metrics.stored.get();
        if stored > 0 && first.is_none() {
            first = Some((Instant::now(), stored));
        }
        if stored >= total {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "consumer stored {stored} of {total} in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = Instant::now();
    // The same consumer keeps counting: until its rollup task has taken every event.
    loop {
        let counted = metrics.rolled_up.get();
        if counted >= total {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "consumer rolled up {counted} of {total} in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rolled_up = Instant::now();
    let _ = stop_tx.send(());
    running.await??;
    let rows = clicks::count_clicks(&db.pool).await?;
    anyhow::ensure!(
        rows as u64 == total,
        "{rows} rows stored for {total} events"
    );
    ensure_counted(&db.pool, total).await?;
    db.pool.close().await;
    drop(broker);

    let (first, first_stored) = first.expect("set when stored > 0");
    // Steady state: the events stored after the first batch landed, over the time they
    // took; the group join (librdkafka mock: ~3 s) is reported on its own.
    let steady = done.duration_since(first).as_secs_f64().max(1e-3);
    let consumer_eps = (total - first_stored) as f64 / steady;
    let counted = rolled_up.duration_since(first).as_secs_f64().max(1e-3);
    let rolled_eps = (total - first_stored) as f64 / counted;
    Ok(Point {
        batch_size: batch,
        concurrency: conc,
        events: events.len(),
        consumer_events_per_s: consumer_eps,
        consumer_events_per_s_from_start: total as f64 / done.duration_since(start).as_secs_f64(),
        group_join_s: first.duration_since(start).as_secs_f64(),
        ceiling_events_per_s: ceiling,
        ratio: consumer_eps / ceiling,
        rollup_batch: DEFAULT_ROLLUP_BATCH,
        rolled_up_events_per_s: rolled_eps,
        rolled_up_ratio: rolled_eps / ceiling,
    })
}

/// The rollups count `total` clicks, and nothing is left queued.
async fn ensure_counted(pool: &sqlx::PgPool, total: u64) -> anyhow::Result<()> {
    let (counted, queued): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_totals),
                (SELECT count(*) FROM click_rollup_queue)",
    )
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        counted as u64 == total && queued == 0,
        "rollups count {counted} of {total} events, {queued} still queued"
    );
    Ok(())
}

/// The storing transaction alone (no Kafka, enrichment done beforehand) with one rollup
/// task counting alongside, as in one consumer replica, against the plain INSERT ceiling
/// with the same rows, batch size and writers: what queueing and the rollups cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StorePoint {
    pub case: String,
    pub batch_size: usize,
    pub concurrency: usize,
    pub events: usize,
    pub store_events_per_s: f64,
    pub ceiling_events_per_s: f64,
    pub ratio: f64,
    pub rollup_batch: u32,
    /// Until the rollups count every event.
    pub rolled_up_events_per_s: f64,
    pub rolled_up_ratio: f64,
}

impl StorePoint {
    pub fn describe(&self) -> String {
        format!(
            "store only, {} batch={} conc={} rollup_batch={}: {:.0} ev/s stored (ceiling {:.0}, \
             ratio {:.2}), {:.0} ev/s rolled up (ratio {:.2})",
            self.case,
            self.batch_size,
            self.concurrency,
            self.rollup_batch,
            self.store_events_per_s,
            self.ceiling_events_per_s,
            self.ratio,
            self.rolled_up_events_per_s,
            self.rolled_up_ratio
        )
    }

    /// Both ratios as result rows of `bench`, named after `prefix`.
    pub fn rows(&self, bench: &str, prefix: &str) -> [Row; 2] {
        let name = format!(
            "{} batch={} conc={} rollup_batch={}",
            self.case, self.batch_size, self.concurrency, self.rollup_batch
        );
        [
            Row::new(
                bench,
                &format!("{prefix}ev/s stored {name}"),
                self.store_events_per_s,
                "ev/s",
            )
            .vs(self.ceiling_events_per_s, None),
            Row::new(
                bench,
                &format!("{prefix}ev/s stored and rolled up {name}"),
                self.rolled_up_events_per_s,
                "ev/s",
            )
            .vs(self.ceiling_events_per_s, None),
        ]
    }
}

pub async fn store_only(
    case: &str,
    events: &Arc<Vec<Click>>,
    batch: usize,
    conc: usize,
    rollup_batch: u32,
) -> anyhow::Result<StorePoint> {
    let db = fresh_database().await;
    let (stored, took) = clicks::insert_ceiling(&db.pool, events.clone(), batch, conc).await?;
    anyhow::ensure!(stored as usize == events.len(), "ceiling stored {stored}");
    let ceiling = stored as f64 / took.as_secs_f64();
    db.pool.close().await;

    let enricher = consumer::enrich::Enricher::new(None)?;
    let rows: Arc<Vec<ClickRow>> = Arc::new(
        events
            .iter()
            .map(|c| ClickRow {
                enrichment: enricher.enrich(c),
                click: c.clone(),
            })
            .collect(),
    );
    let db = fresh_database().await;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = events.len();
    let start = Instant::now();
    // One rollup task, as in a consumer replica: a pass right after another while they
    // come back full, else a short wait for more (the consumer waits for a nudge).
    let rollups = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let mut counted = 0usize;
            while counted < total {
                let p = rollup_worker::pass(&pool, rollup_batch).await?;
                counted += p.taken;
                if p.taken < rollup_batch as usize {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok::<Instant, sqlx::Error>(Instant::now())
        })
    };
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (pool, rows, next) = (db.pool.clone(), rows.clone(), next.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * batch;
                    if i >= rows.len() {
                        return Ok::<u64, sqlx::Error>(stored);
                    }
                    let end = (i + batch).min(rows.len());
                    stored += insert_clicks(&pool, &rows[i..end]).await?;
                }
            })
        })
        .collect();
    let mut stored = 0;
    for w in workers {
        stored += w.await??;
    }
    let took = start.elapsed();
    anyhow::ensure!(stored as usize == events.len(), "store stored {stored}");
    let counted = rollups.await??.duration_since(start);
    ensure_counted(&db.pool, stored).await?;
    db.pool.close().await;
    let store = stored as f64 / took.as_secs_f64();
    let rolled = stored as f64 / counted.as_secs_f64();
    Ok(StorePoint {
        case: case.into(),
        batch_size: batch,
        concurrency: conc,
        events: events.len(),
        store_events_per_s: store,
        ceiling_events_per_s: ceiling,
        ratio: store / ceiling,
        rollup_batch,
        rolled_up_events_per_s: rolled,
        rolled_up_ratio: rolled / ceiling,
    })
}
