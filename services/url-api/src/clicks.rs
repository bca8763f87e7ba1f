//! Publishing clicks to Kafka in batches, fire-and-forget.
//!
//! `publish` never blocks and never fails the redirect: it appends the click to its
//! thread's open batch. A batch goes to librdkafka's local queue as one ClickBatch message
//! once it holds CLICK_BATCH_MAX clicks (or 512 KiB), or from the batcher thread at most
//! CLICK_LINGER_MS after its first click. librdkafka gathers the batches of up to another
//! CLICK_LINGER_MS into one produce request and delivers them (idempotent producer, acks=all, retries until
//! `message.timeout.ms`), so clicks survive a broker outage of minutes. The queue holds
//! CLICK_QUEUE_CAPACITY clicks; when it is full a batch is dropped and its clicks
//! are counted. Outcomes are counted per click from the delivery callback.
//!
//! Each click gets a producer span (`create clicks`), a child of the redirect's server
//! span, whose W3C context travels with the click inside the batch so the consumer
//! continues the trace. The span covers appending to the batch only: the redirect never
//! waits for the broker.

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::HeaderMap;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use shortener_common::event::{ClickRef, MAX_HEADER_VALUE_LEN};
use shortener_common::event_batch::{BatchWriter, BATCH_SCHEMA_VERSION, MAX_BATCH_BYTES};
use shortener_common::kafka::{KafkaArgs, HEADER_SCHEMA_VERSION};
use shortener_common::telemetry::propagation;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{DropReason, Metrics};
use crate::per_thread::Shards;

/// How long librdkafka keeps retrying a batch before reporting its clicks failed.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest shutdown waits for queued clicks to be delivered.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two log lines about failed deliveries or drops.
const LOG_EVERY_SECS: i64 = 10;

/// How clicks are grouped into Kafka messages.
#[derive(Debug, Clone, Copy)]
pub struct ClickBatching {
    /// Clicks the local queue holds while the brokers are slow or down.
    pub queue_capacity: usize,
    /// Longest a click waits for its batch to fill.
    pub linger: Duration,
    /// Most clicks in one message.
    pub batch_max: usize,
}

/// Counts delivery outcomes per click; runs on the producer's polling thread. The
/// delivery opaque of a message is its number of clicks.
pub struct DeliveryContext {
    metrics: Metrics,
    last_failure_log: AtomicI64,
    /// Clicks handed to librdkafka and not yet reported delivered or failed.
    queued: AtomicI64,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, clicks: usize) {
        self.queued.fetch_sub(clicks as i64, Ordering::Relaxed);
        match result {
            Ok(_) => {
                self.metrics.clicks_published.inc_by(clicks as u64);
            }
            Err((err, _)) => {
                self.metrics.clicks_delivery_failed.inc_by(clicks as u64);
                if should_log(&self.last_failure_log) {
                    tracing::warn!(error = %err, clicks, "click batch delivery failed");
                }
            }
        }
    }
}

fn should_log(last: &AtomicI64) -> bool {
    let now = chrono::Utc::now().timestamp();
    let prev = last.load(Ordering::Relaxed);
    now - prev >= LOG_EVERY_SECS
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// The producer and the open batches, shared by the request path and the batcher thread.
struct BatchSender {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
    /// One open batch per thread: redirects on different workers never wait for each
    /// other, nor move one batch's cache lines between cores.
    open: Shards<BatchWriter>,
    /// Most clicks queued in librdkafka (CLICK_QUEUE_CAPACITY).
    capacity: i64,
    metrics: Metrics,
    last_drop_log: AtomicI64,
}

impl BatchSender {
    /// Sends whatever the open batches hold.
    fn send_open(&self) {
        for mut open in self.open.each() {
            if open.is_empty() {
                continue;
            }
            let (payload, clicks) = open.take();
            drop(open);
            self.send(&payload, clicks);
        }
    }

    /// Clicks in the open batches.
    fn open_clicks(&self) -> usize {
        self.open.each().map(|open| open.len()).sum()
    }

    /// Queues one ClickBatch message (unkeyed: any partition will do) without waiting.
    fn send(&self, payload: &[u8], clicks: usize) {
        // The queue is bounded in clicks, whatever the size of the batches holding them.
        let queued = &self.producer.context().queued;
        let n = clicks as i64;
        if queued.fetch_add(n, Ordering::Relaxed) + n > self.capacity {
            queued.fetch_sub(n, Ordering::Relaxed);
            return self.drop_batch(DropReason::queue_full, clicks, "local click queue full");
        }
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: HEADER_SCHEMA_VERSION,
            value: Some(BATCH_SCHEMA_VERSION),
        });
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, clicks)
            .payload(payload)
            .headers(headers);
        if let Err((err, _)) = self.producer.send(record) {
            queued.fetch_sub(n, Ordering::Relaxed);
            let reason = match err {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    DropReason::queue_full
                }
                _ => DropReason::produce_error,
            };
            self.drop_batch(reason, clicks, &err.to_string());
        }
    }

    fn drop_batch(&self, reason: DropReason, clicks: usize, error: &str) {
        self.metrics.drop_clicks(reason, clicks as u64);
        if should_log(&self.last_drop_log) {
            tracing::warn!(error, ?reason, clicks, "click batch dropped");
        }
    }
}

pub struct ClickPublisher {
    sender: Arc<BatchSender>,
    batch_max: usize,
    /// `create {topic}`, the producer span's name.
    span_name: String,
    /// Dropping it stops the batcher thread, which sends the open batch first.
    stop: Option<mpsc::Sender<()>>,
    batcher: Option<JoinHandle<()>>,
}

impl ClickPublisher {
    /// A producer for `kafka`'s topic. Connects in the background; never blocks.
    pub fn new(
        kafka: &KafkaArgs,
        batching: ClickBatching,
        metrics: Metrics,
    ) -> Result<Self, KafkaError> {
        let batch_max = batching.batch_max.max(1);
        let mut config = kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            // Fewer, larger produce requests: the brokers' CPU goes with their number.
            .set("linger.ms", batching.linger.as_millis().to_string())
            // Every message holds at least one click: the click bound (checked before each
            // send) is reached first.
            .set(
                "queue.buffering.max.messages",
                batching.queue_capacity.clamp(1, 10_000_000).to_string(),
            )
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        let producer = config.create_with_context(DeliveryContext {
            metrics: metrics.clone(),
            last_failure_log: AtomicI64::new(0),
            queued: AtomicI64::new(0),
        })?;
        let sender = Arc::new(BatchSender {
            producer,
            topic: kafka.kafka_topic.clone(),
            open: Shards::default(),
            capacity: batching.queue_capacity.clamp(1, i64::MAX as usize) as i64,
            metrics,
            last_drop_log: AtomicI64::new(0),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let batcher = {
            let sender = sender.clone();
            let linger = batching.linger;
            std::thread::Builder::new()
                .name("click batcher".into())
                .spawn(move || loop {
                    let timed_out = stopped.recv_timeout(linger) == Err(RecvTimeoutError::Timeout);
                    sender.send_open();
                    if !timed_out {
                        return;
                    }
                })
                .map_err(|e| KafkaError::ClientCreation(format!("click batcher thread: {e}")))?
        };
        Ok(Self {
            span_name: format!("create {}", kafka.kafka_topic),
            sender,
            batch_max,
            stop: Some(stop),
            batcher: Some(batcher),
        })
    }

    /// Adds `click` to the open batch, and queues the batch when that fills it. The click
    /// is encoded into the batch from the request's own strings: nothing is copied first.
    pub fn publish(&self, click: ClickRef<'_>) {
        let span = tracing::info_span!(
            "click publish",
            otel.name = self.span_name.as_str(),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "create",
            messaging.operation.name = "create",
            messaging.destination.name = self.sender.topic.as_str(),
        );
        // A disabled span (filtered out) has no context of its own to carry.
        let headers = if span.is_disabled() {
            Default::default()
        } else {
            propagation::inject_map(&span.context())
        };
        let full = span.in_scope(|| {
            let mut open = self.sender.open.mine();
            open.push_click(&click, &headers);
            let full = open.len() >= self.batch_max || open.encoded_len() >= MAX_BATCH_BYTES;
            full.then(|| open.take())
        });
        drop(span);
        if let Some((payload, clicks)) = full {
            self.sender.send(&payload, clicks);
        }
    }

    /// Clicks not yet acknowledged: in the open batches or queued in librdkafka.
    pub fn in_flight(&self) -> i64 {
        self.sender.open_clicks() as i64
            + self
                .sender
                .producer
                .context()
                .queued
                .load(Ordering::Relaxed)
    }

    /// Sends the open batches, then waits (blocking) up to `timeout` for queued clicks to be
    /// delivered.
    pub fn flush(&self, timeout: Duration) {
        self.sender.send_open();
        let queued = self.in_flight();
        if queued == 0 {
            return;
        }
        match self.sender.producer.flush(timeout) {
            Ok(()) => tracing::info!(queued, "click events flushed"),
            Err(e) => tracing::warn!(
                error = %e,
                left = self.in_flight(),
                "click events still queued at shutdown are lost"
            ),
        }
    }
}

impl Drop for ClickPublisher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(batcher) = self.batcher.take() {
            let _ = batcher.join();
        }
    }
}

/// A request header as text for an event field: lossy UTF-8, cut to the event's limit on
/// a character boundary, absent when empty. Borrowed from the request unless it is not
/// UTF-8 (checked first on its own: the lossy conversion's scan costs several times more).
pub fn header_text(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<Cow<'_, str>> {
    let raw = headers.get(name)?.as_bytes();
    let text = match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
    };
    let text = if text.len() > MAX_HEADER_VALUE_LEN {
        let mut cut = MAX_HEADER_VALUE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        match text {
            Cow::Borrowed(text) => Cow::Borrowed(&text[..cut]),
            Cow::Owned(mut text) => {
                text.truncate(cut);
                Cow::Owned(text)
            }
        }
    } else {
        text
    };
    Some(text).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    #[test]
    fn a_batch_is_sent_when_its_bytes_reach_the_bound_before_its_clicks() {
        // No broker listens there: sent batches wait in librdkafka's queue.
        let kafka = KafkaArgs::new("127.0.0.1:9", "clicks");
        let batching = ClickBatching {
            queue_capacity: 100_000,
            linger: Duration::from_secs(60),
            batch_max: 10_000,
        };
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let publisher = ClickPublisher::new(&kafka, batching, metrics).unwrap();
        let agent = "a".repeat(MAX_HEADER_VALUE_LEN);
        for _ in 0..300 {
            publisher.publish(ClickRef::now("code", None, Some(&agent), None));
        }
        // One thread: one open batch.
        let open = publisher.sender.open_clicks();
        assert!(
            open < 300 && open > 0,
            "{open} clicks still in the open batch"
        );
        assert!(publisher
            .sender
            .open
            .each()
            .all(|b| b.encoded_len() < MAX_BATCH_BYTES));
        assert_eq!(publisher.in_flight(), 300);
    }

    #[test]
    fn header_text_is_cut_on_a_char_boundary() {
        let mut h = HeaderMap::new();
        assert_eq!(header_text(&h, header::USER_AGENT), None);
        h.insert(header::USER_AGENT, HeaderValue::from_static(""));
        assert_eq!(header_text(&h, header::USER_AGENT), None);
        let long = format!("a{}", "é".repeat(MAX_HEADER_VALUE_LEN));
        h.insert(
            header::REFERER,
            HeaderValue::from_bytes(long.as_bytes()).unwrap(),
        );
        let cut = header_text(&h, header::REFERER).unwrap();
        assert!(cut.len() <= MAX_HEADER_VALUE_LEN && cut.len() >= MAX_HEADER_VALUE_LEN - 1);
        assert!(cut.starts_with("aé"));
        assert!(matches!(cut, Cow::Borrowed(_)), "UTF-8 is not copied");
        // Not UTF-8: replaced, then cut.
        let mut bytes = vec![b'b', 0xff];
        bytes.extend(std::iter::repeat_n(b'c', MAX_HEADER_VALUE_LEN));
        h.insert(header::USER_AGENT, HeaderValue::from_bytes(&bytes).unwrap());
        let lossy = header_text(&h, header::USER_AGENT).unwrap();
        assert!(lossy.starts_with("b\u{FFFD}cc"), "{lossy}");
        assert_eq!(lossy.len(), MAX_HEADER_VALUE_LEN);
    }
}
