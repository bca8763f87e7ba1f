//! The click consumer: a Kafka consumer group that enriches ClickEvents and stores them
//! exactly once in Postgres.
//!
//! # Design
//! - One `StreamConsumer` per process subscribes to the clicks topic in the group
//!   (`cooperative-sticky` assignment, auto-commit off, offsets stored by hand).
//! - A dispatcher task reads the stream and sends each message, through a bounded
//!   channel, to worker `partition % CONCURRENCY`. A partition is thus always handled by
//!   one worker, in order, while different partitions are written in parallel. A full
//!   channel, or a spent byte budget (`MAX_IN_FLIGHT_BYTES`, see [`in_flight`]), stops
//!   the dispatcher: back-pressure instead of unbounded buffering.
//! - A worker batches (BATCH_SIZE or BATCH_MAX_WAIT_MS), then per batch: decode and
//!   enrich; poison messages go to the DLQ; rows go in one `INSERT .. ON CONFLICT DO
//!   NOTHING`; transient database errors retry the same batch forever (backoff with
//!   jitter) without committing; a batch the database rejects is retried row by row to
//!   dead-letter only the bad rows. Only then are the batch's offsets stored and committed.
//! - While a batch retries, its worker's channel fills and the dispatcher stops polling.
//!   Past `max.poll.interval.ms` (librdkafka default: 5 minutes) the group reassigns the
//!   partitions and this member rejoins once it polls again; offsets of batches finished
//!   after losing a partition are refused, so those batches are redelivered (duplicates,
//!   absorbed by the idempotent insert), never lost.
//! - The storing transaction also queues the clicks it added (`click_rollup_queue`); a
//!   rollup task takes queued clicks in large passes and adds them to the rollups, taking
//!   and counting in one transaction ([`rollup_worker`]): exactly once, a pass behind.
//! - A maintenance task (one replica at a time) keeps the monthly partitions of `clicks`
//!   and drops those past `CLICK_RETENTION_DAYS` ([`maintenance`], [`retention`]).
//! - Shutdown (the future given to [`ConsumerApp::run`]) stops fetching, lets each worker
//!   finish the batch in hand, commits synchronously and leaves the group. Dropping the
//!   `run` future instead (a crash) commits nothing more: the uncommitted tail is
//!   redelivered and deduplicated by event_id.

pub mod config;
pub mod dlq;
pub mod enrich;
pub mod in_flight;
pub mod lag;
pub mod maintenance;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod retention;
pub mod rollup;
pub mod rollup_worker;
pub mod sources;
pub mod store;
pub mod visitors;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use shortener_common::db::{self, DbError};
use shortener_common::health::{self, Readiness};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Command, ConsumerArgs, ReplayArgs};
pub use enrich::{Enricher, Enrichment};
pub use metrics::Metrics;
pub use pipeline::{ConsumerCtx, HealthState, KafkaConsumer};
pub use replay::{replay_dlq, ReplayError, ReplaySummary};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    GeoIp(#[from] enrich::GeoIpError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A consumer ready to run: clients created, admin port bound.
pub struct ConsumerApp {
    args: ConsumerArgs,
    pipeline: Arc<pipeline::Pipeline>,
    registry: Arc<Registry>,
    admin: TcpListener,
}

impl ConsumerApp {
    pub async fn new(args: ConsumerArgs) -> Result<Self, Error> {
        let enricher =
            Enricher::new(args.geoip_db_path.as_deref())?.keeping_full_ips(!args.anonymize_ips);
        if !enricher.has_geoip() {
            tracing::warn!("GEOIP_DB_PATH is not set: every country is stored as Unknown");
        }
        let pool = args.database.lazy_pool()?;
        let consumer: KafkaConsumer = args
            .kafka
            .client_config()
            .set("group.id", &args.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // librdkafka's prefetch queue gets the same bound as the workers' messages.
            .set(
                "queued.max.messages.kbytes",
                (args.max_in_flight_bytes / 1024)
                    .clamp(1024, 2_097_151)
                    .to_string(),
            )
            .create_with_context(ConsumerCtx)?;
        let producer = dlq::producer(args.kafka.client_config())?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let admin = TcpListener::bind(args.admin_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: args.admin_addr,
                source,
            })?;
        let pipeline = Arc::new(pipeline::Pipeline {
            consumer: Arc::new(consumer),
            pool,
            enricher: Arc::new(enricher),
            producer,
            dlq_topic: args.kafka.dlq_topic(),
            group_id: args.group_id.clone(),
            health: Arc::new(HealthState::default()),
            cancel: CancellationToken::new(),
            batch_size: args.batch_size as usize,
            batch_max_wait: args.batch_max_wait(),
            retry_max_backoff: args.retry_max_backoff(),
            in_flight: in_flight::InFlight::new(
                args.max_in_flight_bytes,
                metrics.in_flight_bytes.clone(),
            ),
            rollup_nudge: Arc::new(tokio::sync::Notify::new()),
            metrics,
        });
        Ok(Self {
            args,
            pipeline,
            registry: Arc::new(registry),
            admin,
        })
    }

    /// Where /healthz, /readyz and /metrics are served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Handles on the metrics (they are shared with the running consumer).
    pub fn metrics(&self) -> Metrics {
        self.pipeline.metrics.clone()
    }

    pub fn health(&self) -> Arc<HealthState> {
        self.pipeline.health.clone()
    }

    /// Consumes until `shutdown` resolves, then finishes the batches in hand, commits and
    /// leaves the group.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            args,
            pipeline: p,
            registry,
            admin,
        } = self;
        p.consumer.subscribe(&[&args.kafka.kafka_topic])?;
        tracing::info!(topic = %args.kafka.kafka_topic, group = %args.group_id,
            workers = args.concurrency, "consuming");

        // Background tasks die with this future (JoinSet aborts on drop).
        let mut background = JoinSet::new();
        let router = health::router(registry, readiness(&p));
        let cancel = p.cancel.clone();
        background.spawn(async move {
            let stop = cancel.cancelled_owned();
            if let Err(e) = axum::serve(admin, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "admin server failed");
            }
        });
        background.spawn(lag::refresh_loop(
            p.clone(),
            args.kafka.kafka_topic.clone(),
            args.lag_refresh_interval(),
        ));
        background.spawn(maintenance::run_loop(
            p.pool.clone(),
            args.click_retention_days,
            args.maintenance_interval(),
            p.metrics.clone(),
            p.cancel.clone(),
        ));

        background.spawn(rollup_worker::run_loop(rollup_worker::Worker {
            pool: p.pool.clone(),
            batch: args.rollup_batch,
            interval: args.rollup_interval(),
            retry_max_backoff: args.retry_max_backoff(),
            nudge: p.rollup_nudge.clone(),
            metrics: p.metrics.clone(),
            cancel: p.cancel.clone(),
        }));

        let mut workers = JoinSet::new();
        let mut senders = Vec::with_capacity(args.concurrency as usize);
        for _ in 0..args.concurrency {
            let (tx, rx) = mpsc::channel(p.batch_size * 2);
            senders.push(tx);
            workers.spawn(pipeline::worker(p.clone(), rx));
        }

        tokio::select! {
            _ = pipeline::dispatch(p.clone(), senders) => {}
            _ = shutdown => tracing::info!("shutdown requested: finishing in-flight batches"),
        }
        p.cancel.cancel();
        while workers.join_next().await.is_some() {}

        let consumer = p.consumer.clone();
        let closed = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
            }
            consumer.unsubscribe();
        })
        .await;
        if let Err(e) = closed {
            tracing::error!(error = %e, "final commit task failed");
        }
        while background.join_next().await.is_some() {}
        // Closing the consumer (leaving the group) blocks until librdkafka is done.
        let _ = tokio::task::spawn_blocking(move || drop(p)).await;
        tracing::info!("consumer stopped");
        Ok(())
    }
}

/// Ready when the database answers, no batch is stuck retrying, and the brokers answer.
/// A batch stuck on the dead-letter topic is named apart: the database is fine then, and
/// the fix is on the broker side (the topic, its ACLs or its size limits).
fn readiness(p: &Arc<pipeline::Pipeline>) -> Readiness {
    let pool = p.pool.clone();
    let health = p.health.clone();
    let dlq_topic: std::sync::Arc<str> = p.dlq_topic.as_str().into();
    Readiness::new(move || {
        let pool = pool.clone();
        let health = health.clone();
        let dlq_topic = dlq_topic.clone();
        async move {
            let dead_letters = health.stalled_dead_letters();
            if dead_letters > 0 {
                return Err(format!(
                    "{dead_letters} batch(es) cannot publish to the dead-letter topic {dlq_topic}"
                ));
            }
            let writes = health.stalled_writes();
            if writes > 0 {
                return Err(format!(
                    "{writes} batch(es) retrying a failed database write"
                ));
            }
            db::ready(&pool).await.map_err(String::from)?;
            if !health.broker_connected() {
                return Err("Kafka brokers not reachable yet".into());
            }
            Ok(())
        }
    })
}
