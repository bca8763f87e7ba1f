//! From Kafka messages to stored rows: dispatch by partition, batching, decode + enrich,
//! idempotent insert with retries, dead-lettering, then offset commit.
//!
//! The ordering that makes delivery at-least-once and storage exactly-once: a batch's
//! offsets are stored and committed only after its rows are committed in Postgres and its
//! dead letters are acknowledged by the broker. A crash anywhere before that replays the
//! batch, and `ON CONFLICT DO NOTHING` on the unique (event_id, occurred_at) key (a
//! redelivered event carries its original occurred_at) turns the replay into duplicates that
//! are counted, not stored.
//!
//! # Batches
//! url-api sends many clicks per message (a ClickBatch, docs/kafka.md). Each click of a
//! batch is handled as the single-click message it would have been: its own span, its
//! own row or dead letter. Offsets are per message, so a batch is committed whole.
//!
//! # Traces
//! Every click gets a `process clicks` consumer span parented to the producer's span,
//! whose W3C context url-api put in the click's headers: the redirect, its publish and
//! the click's processing form one trace. A child `enrich click` span covers decoding
//! and enrichment. A batch mixes messages of many traces, so its single `INSERT clicks`
//! span is a child of the process span of the batch's first stored message and carries a
//! span link to the process span of every other stored message; each trace thus reaches
//! the insert either as its parent or through a link. Process spans stay open until the
//! batch's offsets are committed, so their duration is the message's whole handling.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use rand::Rng;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use shortener_common::db::{is_data_error, sqlstate};
use shortener_common::event::Click;
use shortener_common::event_batch::{
    count_entries, decode_batch, BATCH_SCHEMA_VERSION, SINGLE_SCHEMA_VERSION,
};
use shortener_common::kafka::HEADER_SCHEMA_VERSION;
use shortener_common::telemetry::propagation;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::dlq;
use crate::enrich::Enricher;
use crate::in_flight::{Held, InFlight};
use crate::metrics::Metrics;
use crate::store::{insert_clicks, ClickRow};

/// Logs rebalances and failed commits; everything else is librdkafka's default.
pub struct ConsumerCtx;

impl ClientContext for ConsumerCtx {}

impl ConsumerContext for ConsumerCtx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // The batch is stored; an uncommitted offset only means a replay of duplicates.
            Err(e) => {
                tracing::warn!(error = %e, partitions = ?partitions(offsets), "offset commit failed")
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

pub type KafkaConsumer = StreamConsumer<ConsumerCtx>;

/// What the readiness probe reads.
#[derive(Default)]
pub struct HealthState {
    /// Batches currently waiting to retry a failed database write.
    stalled_writes: AtomicUsize,
    /// Batches currently waiting to retry a failed dead-letter publish.
    stalled_dead_letters: AtomicUsize,
    broker_connected: AtomicBool,
}

/// What a stalled batch waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stall {
    Database,
    DeadLetter,
}

impl HealthState {
    pub fn stalled_batches(&self) -> usize {
        self.stalled_writes() + self.stalled_dead_letters()
    }
    pub fn stalled_writes(&self) -> usize {
        self.stalled_writes.load(Ordering::Relaxed)
    }
    pub fn stalled_dead_letters(&self) -> usize {
        self.stalled_dead_letters.load(Ordering::Relaxed)
    }
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }
    pub(crate) fn set_broker_connected(&self, ok: bool) {
        self.broker_connected.store(ok, Ordering::Relaxed);
    }
    fn counter(&self, stall: Stall) -> &AtomicUsize {
        match stall {
            Stall::Database => &self.stalled_writes,
            Stall::DeadLetter => &self.stalled_dead_letters,
        }
    }
}

/// Marks a batch stalled (readiness and the `stalled_batches` gauge) for as long as it
/// lives.
struct StallGuard<'a> {
    health: &'a HealthState,
    metrics: &'a Metrics,
    stall: Stall,
}

impl<'a> StallGuard<'a> {
    fn new(p: &'a Pipeline, stall: Stall) -> Self {
        p.health.counter(stall).fetch_add(1, Ordering::Relaxed);
        p.metrics.stalled(stall).inc();
        Self {
            health: &p.health,
            metrics: &p.metrics,
            stall,
        }
    }
}

impl Drop for StallGuard<'_> {
    fn drop(&mut self) {
        self.health
            .counter(self.stall)
            .fetch_sub(1, Ordering::Relaxed);
        self.metrics.stalled(self.stall).dec();
    }
}

/// Everything the dispatcher and the workers share.
pub struct Pipeline {
    pub consumer: Arc<KafkaConsumer>,
    pub pool: PgPool,
    pub enricher: Arc<Enricher>,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    /// The consumer group, for span attributes.
    pub group_id: String,
    pub metrics: Metrics,
    pub health: Arc<HealthState>,
    pub cancel: CancellationToken,
    pub batch_size: usize,
    pub batch_max_wait: Duration,
    pub retry_max_backoff: Duration,
    /// Message bytes handed to workers and not yet done with.
    pub in_flight: InFlight,
    /// Wakes the rollup task when clicks were queued.
    pub rollup_nudge: Arc<tokio::sync::Notify>,
}

/// The batch was abandoned because the process is shutting down; nothing was committed.
#[derive(Debug)]
pub struct Cancelled;

/// Least time between two log lines about the same consume error.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Reads the subscription and hands each message, with its share of the in-flight byte
/// budget, to the worker owning its partition, until cancelled. A spent budget or a full
/// worker channel blocks here: that is the back-pressure that stops fetching while the
/// database is down.
pub async fn dispatch(p: Arc<Pipeline>, workers: Vec<mpsc::Sender<(OwnedMessage, Held)>>) {
    // While the brokers are down every poll fails the same way: log it once a while.
    let mut last_error: Option<(String, Instant)> = None;
    loop {
        let received = tokio::select! {
            biased;
            _ = p.cancel.cancelled() => return,
            r = p.consumer.recv() => r,
        };
        match received {
            Ok(m) => {
                p.metrics.consumed.inc();
                let owned = m.detach();
                let held = tokio::select! {
                    biased;
                    _ = p.cancel.cancelled() => return,
                    held = p.in_flight.hold(&owned) => held,
                };
                let worker = &workers[owned.partition().unsigned_abs() as usize % workers.len()];
                tokio::select! {
                    biased;
                    _ = p.cancel.cancelled() => return,
                    sent = worker.send((owned, held)) => if sent.is_err() { return },
                }
            }
            Err(e) => {
                let text = e.to_string();
                let repeated = last_error
                    .as_ref()
                    .is_some_and(|(prev, at)| *prev == text && at.elapsed() < ERROR_LOG_INTERVAL);
                if !repeated {
                    tracing::warn!(error = %text, "error while consuming");
                    last_error = Some((text, Instant::now()));
                }
                tokio::select! {
                    _ = p.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// Collects messages holding up to `batch_size` clicks (at least one message), or whatever
/// arrived within `batch_max_wait` of the first one, processes them, repeats. On
/// cancellation the batch being collected is still processed; queued messages are left for
/// the next owner of the partition.
pub async fn worker(p: Arc<Pipeline>, mut rx: mpsc::Receiver<(OwnedMessage, Held)>) {
    loop {
        let (first, held) = tokio::select! {
            biased;
            _ = p.cancel.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let mut clicks = clicks_in(&first);
        let mut batch = vec![first];
        // The batch's share of the in-flight budget, returned once it is done.
        let mut shares = vec![held];
        let deadline = tokio::time::Instant::now() + p.batch_max_wait;
        while clicks < p.batch_size {
            tokio::select! {
                biased;
                _ = p.cancel.cancelled() => break,
                m = rx.recv() => match m {
                    Some((m, held)) => {
                        clicks += clicks_in(&m);
                        batch.push(m);
                        shares.push(held);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let done = process_batch(&p, &batch).await;
        drop(shares);
        if done.is_err() {
            return;
        }
    }
}

fn schema_version(msg: &OwnedMessage) -> Option<&[u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == HEADER_SCHEMA_VERSION)
        .and_then(|h| h.value)
}

fn is_batch(msg: &OwnedMessage) -> bool {
    schema_version(msg) == Some(BATCH_SCHEMA_VERSION.as_bytes())
}

/// Clicks in a message, from a batch's framing (counted as one when unreadable).
fn clicks_in(msg: &OwnedMessage) -> usize {
    if !is_batch(msg) {
        return 1;
    }
    msg.payload().and_then(count_entries).unwrap_or(1).max(1)
}

/// The single-click messages a consumed message stands for: itself, or each entry of a
/// ClickBatch rebuilt as the message it would have been alone (same topic, partition,
/// offset, timestamp and key, its own headers), so that decoding, tracing and dead-lettering
/// handle one click at a time. Err: why the batch cannot be read at all.
pub fn single_clicks(msg: &OwnedMessage) -> Result<Vec<Cow<'_, OwnedMessage>>, String> {
    if !is_batch(msg) {
        return Ok(vec![Cow::Borrowed(msg)]);
    }
    let payload = msg.payload().ok_or("message has no payload")?;
    let entries = decode_batch(payload).map_err(|e| format!("payload is not a ClickBatch: {e}"))?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let single = OwnedHeaders::new_with_capacity(entry.headers.len() + 1).insert(Header {
                key: HEADER_SCHEMA_VERSION,
                value: Some(SINGLE_SCHEMA_VERSION),
            });
            let headers = entry.headers.iter().fold(single, |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
            Cow::Owned(OwnedMessage::new(
                Some(entry.event),
                msg.key().map(<[u8]>::to_vec),
                msg.topic().to_string(),
                msg.timestamp(),
                msg.partition(),
                msg.offset(),
                Some(headers),
            ))
        })
        .collect())
}

/// Why a single-click message cannot be stored, before touching the database.
pub fn decode(msg: &OwnedMessage) -> Result<Click, String> {
    if let Some(v) = schema_version(msg) {
        if v != SINGLE_SCHEMA_VERSION.as_bytes() {
            return Err(format!(
                "unsupported {HEADER_SCHEMA_VERSION} header {:?} (this build reads \
                 {SINGLE_SCHEMA_VERSION} and {BATCH_SCHEMA_VERSION})",
                String::from_utf8_lossy(v)
            ));
        }
    }
    let payload = msg.payload().ok_or("message has no payload")?;
    Click::decode(payload).map_err(|e| e.to_string())
}

/// Decodes, enriches, stores and dead-letters one batch, then stores and commits its
/// offsets. Errs only when cancelled while retrying.
pub async fn process_batch(p: &Pipeline, batch: &[OwnedMessage]) -> Result<(), Cancelled> {
    let started = Instant::now();
    // One unit per click; an unreadable batch is one unit, dead-lettered whole with why.
    let mut units: Vec<(Cow<'_, OwnedMessage>, Option<String>)> = Vec::with_capacity(batch.len());
    for msg in batch {
        match single_clicks(msg) {
            Ok(clicks) => units.extend(clicks.into_iter().map(|c| (c, None))),
            Err(e) => units.push((Cow::Borrowed(msg), Some(e))),
        }
    }
    let spans: Vec<Span> = units.iter().map(|(m, _)| process_span(p, m)).collect();
    let mut rows = Vec::with_capacity(units.len());
    let mut row_msg = Vec::with_capacity(units.len());
    let mut dead: Vec<(usize, String)> = Vec::new();
    for (i, (msg, unreadable)) in units.iter_mut().enumerate() {
        let enrich_span = tracing::info_span!(parent: &spans[i], "enrich click");
        let decoded = match unreadable.take() {
            Some(e) => Err(e),
            None => enrich_span.in_scope(|| decode(msg).map(|c| (p.enricher.enrich(&c), c))),
        };
        match decoded {
            Ok((enrichment, click)) => {
                rows.push(ClickRow { click, enrichment });
                row_msg.push(i);
            }
            Err(e) => {
                spans[i].record("otel.status_code", "ERROR");
                spans[i].record("error.type", "invalid_message");
                dead.push((i, e));
            }
        }
    }

    let insert_span = insert_span(&spans, &row_msg, rows.len());
    let outcome = store_with_retry(p, &rows)
        .instrument(insert_span.clone())
        .await?;
    insert_span.record("clicks.inserted", outcome.inserted);
    if outcome.inserted > 0 {
        p.rollup_nudge.notify_one();
    }
    drop(insert_span);
    let rejected_rows = outcome.rejected.len() as u64;
    dead.extend(outcome.rejected.into_iter().map(|(r, e)| (row_msg[r], e)));
    dead.sort_by_key(|(i, _)| *i);
    for (i, error) in &dead {
        let msg = &units[*i].0;
        let span = &spans[*i];
        span.in_scope(|| {
            tracing::warn!(
                partition = msg.partition(),
                offset = msg.offset(),
                error = %error,
                "sending message to the dead-letter topic"
            )
        });
        span.record("otel.status_code", "ERROR");
        dead_letter_with_retry(p, msg, error)
            .instrument(span.clone())
            .await?;
    }

    p.metrics.stored.inc_by(outcome.inserted);
    p.metrics
        .duplicates
        .inc_by((rows.len() as u64).saturating_sub(outcome.inserted + rejected_rows));
    p.metrics.dead_lettered.inc_by(dead.len() as u64);
    commit(p, batch);
    p.metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(
        messages = batch.len(),
        inserted = outcome.inserted,
        dead_lettered = dead.len(),
        "batch done"
    );
    Ok(())
}

/// The consumer span of one message, continuing the producer's trace.
fn process_span(p: &Pipeline, msg: &OwnedMessage) -> Span {
    let span = tracing::info_span!(
        "click process",
        otel.name = "process clicks",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = msg.topic(),
        messaging.destination.partition.id = msg.partition(),
        messaging.kafka.offset = msg.offset(),
        messaging.consumer.group.name = p.group_id.as_str(),
        messaging.kafka.message.key = msg.key().and_then(|k| std::str::from_utf8(k).ok()),
        otel.status_code = Empty,
        error.type = Empty,
    );
    let parent = propagation::extract_kafka(msg.headers());
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled (filtered out).
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of the batch insert: a child of the first stored message's process span,
/// linked to the process spans of the others. None (disabled) when nothing is stored.
fn insert_span(spans: &[Span], row_msg: &[usize], rows: usize) -> Span {
    let Some((&first, others)) = row_msg.split_first() else {
        return Span::none();
    };
    let span = tracing::info_span!(
        parent: &spans[first],
        "click insert",
        otel.name = "INSERT clicks",
        otel.kind = "client",
        db.system = "postgresql",
        db.system.name = "postgresql",
        db.operation.name = "INSERT",
        db.collection.name = "clicks",
        db.query.summary = "INSERT clicks",
        db.operation.batch.size = rows,
        clicks.inserted = Empty,
    );
    for &i in others {
        span.add_link(spans[i].context().span().span_context().clone());
    }
    span
}

#[derive(Debug, Default)]
struct StoreOutcome {
    inserted: u64,
    /// Row index and the database's reason, for rows that can never be inserted.
    rejected: Vec<(usize, String)>,
}

/// Why a write attempt stored nothing; the batch is retried whole.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    /// Not the rows' fault (SQLSTATE outside classes 22 and 23, or no answer at all).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(
        "all {rows} rows of the batch were refused with SQLSTATE {sqlstate} (first: {first}); \
         the database, not the data, is taken to be at fault"
    )]
    WholeBatch {
        rows: usize,
        sqlstate: String,
        first: String,
    },
}

/// Retries failed writes forever (until cancelled), with capped exponential backoff.
async fn store_with_retry(p: &Pipeline, rows: &[ClickRow]) -> Result<StoreOutcome, Cancelled> {
    let mut attempt = 0u32;
    let mut stall = None;
    loop {
        match store_once(&p.pool, rows).await {
            Ok(outcome) => {
                if attempt > 0 {
                    tracing::info!(
                        attempts = attempt + 1,
                        "database write succeeded after retries"
                    );
                }
                return Ok(outcome);
            }
            Err(e) => {
                attempt += 1;
                stall.get_or_insert_with(|| StallGuard::new(p, Stall::Database));
                p.metrics.db_retries.inc();
                let delay = backoff_delay(attempt, p.retry_max_backoff);
                tracing::warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64,
                    "database write failed; batch not committed, retrying");
                sleep_or_cancel(&p.cancel, delay).await?;
            }
        }
    }
}

/// One attempt. A batch refused for its data (SQLSTATE class 22 or 23) is retried row by
/// row so the bad rows can be told apart; any other failure ends the attempt, and so does
/// a batch of several rows all refused with the same SQLSTATE (a constraint or type change
/// that refuses everything is a deployment fault: dead-lettering it would empty the topic
/// into the DLQ).
async fn store_once(pool: &PgPool, rows: &[ClickRow]) -> Result<StoreOutcome, StoreError> {
    match insert_clicks(pool, rows).await {
        Ok(inserted) => Ok(StoreOutcome {
            inserted,
            rejected: Vec::new(),
        }),
        Err(e) if !is_data_error(&e) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, rows = rows.len(), "batch rejected; inserting row by row");
            let mut outcome = StoreOutcome::default();
            let mut refusals = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                match insert_clicks(pool, std::slice::from_ref(row)).await {
                    Ok(n) => outcome.inserted += n,
                    Err(e) if !is_data_error(&e) => return Err(e.into()),
                    Err(e) => {
                        refusals.push(sqlstate(&e));
                        outcome
                            .rejected
                            .push((i, format!("database rejected the click: {e}")));
                    }
                }
            }
            if let Some(code) = refused_whole(rows.len(), &refusals) {
                return Err(StoreError::WholeBatch {
                    rows: rows.len(),
                    sqlstate: code.to_string(),
                    first: outcome.rejected[0].1.clone(),
                });
            }
            Ok(outcome)
        }
    }
}

/// The SQLSTATE shared by every row's refusal, when a batch of more than one row was
/// refused row by row, each with the same code. A lone row failing is its own fault.
pub fn refused_whole(rows: usize, refusals: &[Option<String>]) -> Option<&str> {
    if rows < 2 || refusals.len() != rows {
        return None;
    }
    let first = refusals[0].as_deref()?;
    refusals
        .iter()
        .all(|c| c.as_deref() == Some(first))
        .then_some(first)
}

async fn dead_letter_with_retry(
    p: &Pipeline,
    msg: &OwnedMessage,
    error: &str,
) -> Result<(), Cancelled> {
    let mut attempt = 0u32;
    let mut stall = None;
    loop {
        match dlq::send(&p.producer, &p.dlq_topic, msg, error).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                attempt += 1;
                stall.get_or_insert_with(|| StallGuard::new(p, Stall::DeadLetter));
                p.metrics.dlq_retries.inc();
                let delay = backoff_delay(attempt, p.retry_max_backoff);
                tracing::warn!(error = %e, attempt, topic = %p.dlq_topic,
                    "dead-letter publish failed; batch not committed, retrying");
                sleep_or_cancel(&p.cancel, delay).await?;
            }
        }
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, delay: Duration) -> Result<(), Cancelled> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}

/// Exponential backoff from 100 ms, capped at `max`, with "equal jitter": the delay is
/// at least half the step so replicas retrying together spread out without hammering.
pub fn backoff_delay(attempt: u32, max: Duration) -> Duration {
    let step = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = step / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// Stores `next offset = last + 1` for each partition of the batch and commits
/// asynchronously. A partition revoked meanwhile refuses the store: its new owner replays
/// from the last commit, which the idempotent insert absorbs.
fn commit(p: &Pipeline, batch: &[OwnedMessage]) {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next.entry((m.topic(), m.partition())).or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    let mut tpl = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::error!(error = %e, "cannot build the offset list");
            return;
        }
    }
    if let Err(e) = p.consumer.store_offsets(&tpl) {
        tracing::info!(error = %e, "offsets not stored (partition no longer assigned)");
        return;
    }
    match p.consumer.commit_consumer_state(CommitMode::Async) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "offset commit request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;
    use shortener_common::event_batch::BatchWriter;
    use std::collections::HashMap;

    fn message(payload: Option<Vec<u8>>, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            payload,
            Some(b"k".to_vec()),
            "clicks".into(),
            Timestamp::NotAvailable,
            0,
            7,
            headers,
        )
    }

    #[test]
    fn decode_accepts_valid_events_and_explains_rejections() {
        let click = Click::now("abc", None, None, None);
        let ok = message(Some(click.encode()), None);
        assert_eq!(decode(&ok).unwrap(), click);

        assert_eq!(
            decode(&message(None, None)).unwrap_err(),
            "message has no payload"
        );
        let garbage = decode(&message(Some(vec![0xff, 0xff]), None)).unwrap_err();
        assert!(garbage.contains("not a ClickEvent"), "{garbage}");

        let err = decode(&message(Some(click.encode()), Some(version("3")))).unwrap_err();
        assert!(
            err.contains("unsupported schema-version header \"3\""),
            "{err}"
        );
        let v1 = OwnedHeaders::new().insert(Header {
            key: HEADER_SCHEMA_VERSION,
            value: Some("1"),
        });
        assert!(decode(&message(Some(click.encode()), Some(v1))).is_ok());
    }

    fn version(v: &str) -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: HEADER_SCHEMA_VERSION,
            value: Some(v),
        })
    }

    #[test]
    fn a_batch_becomes_the_single_click_messages_it_holds() {
        let clicks: Vec<Click> = (0..3)
            .map(|i| Click::now(format!("c{i}"), None, None, None))
            .collect();
        let mut writer = BatchWriter::default();
        for (i, c) in clicks.iter().enumerate() {
            let headers = HashMap::from([("traceparent".to_string(), format!("tp-{i}"))]);
            writer.push(&c.to_event(), headers);
        }
        let batch = message(Some(writer.take().0), Some(version(BATCH_SCHEMA_VERSION)));
        let singles = single_clicks(&batch).unwrap();
        assert_eq!(singles.len(), 3);
        for (i, (single, click)) in singles.iter().zip(&clicks).enumerate() {
            assert_eq!(&decode(single).unwrap(), click);
            assert_eq!(
                (single.topic(), single.partition(), single.offset()),
                ("clicks", 0, 7)
            );
            assert_eq!(single.key(), Some(&b"k"[..]));
            let headers: Vec<(String, String)> = single
                .headers()
                .unwrap()
                .iter()
                .map(|h| {
                    let v = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                    (h.key.to_string(), v)
                })
                .collect();
            assert_eq!(
                headers,
                [
                    ("schema-version".into(), "1".into()),
                    ("traceparent".into(), format!("tp-{i}"))
                ]
            );
        }

        // A single-click message stands for itself; an unreadable batch is an error.
        let one = message(Some(clicks[0].encode()), None);
        assert!(matches!(
            single_clicks(&one).unwrap()[..],
            [Cow::Borrowed(_)]
        ));
        let bad = message(Some(vec![0x0a, 0xff]), Some(version(BATCH_SCHEMA_VERSION)));
        let err = single_clicks(&bad).unwrap_err();
        assert!(err.contains("not a ClickBatch"), "{err}");
    }

    #[test]
    fn a_batch_is_refused_whole_only_when_every_row_fails_alike() {
        let code = |c: &str| Some(c.to_string());
        assert_eq!(
            refused_whole(3, &[code("23514"), code("23514"), code("23514")]),
            Some("23514")
        );
        // Some rows went in, or the rows failed differently: those rows are bad.
        assert_eq!(refused_whole(3, &[code("23514"), code("23514")]), None);
        assert_eq!(refused_whole(2, &[code("23514"), code("22021")]), None);
        // A single row is its own fault.
        assert_eq!(refused_whole(1, &[code("23514")]), None);
        assert_eq!(refused_whole(2, &[None, None]), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let max = Duration::from_secs(5);
        for _ in 0..100 {
            let d1 = backoff_delay(1, max);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d4 = backoff_delay(4, max);
            assert!(
                d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800),
                "{d4:?}"
            );
            let big = backoff_delay(40, max);
            assert!(big >= max / 2 && big <= max, "{big:?}");
        }
    }
}
