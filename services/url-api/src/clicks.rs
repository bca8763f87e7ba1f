//! Publishing one ClickEvent per redirect to Kafka, fire-and-forget.
//!
//! `publish` never blocks and never fails the redirect: it hands the message to
//! librdkafka's local queue (bounded by CLICK_QUEUE_CAPACITY) and returns. A background
//! thread owned by the producer delivers it (idempotent producer, acks=all, retries until
//! `message.timeout.ms`), so clicks survive a broker outage of minutes. When the queue is
//! full the click is dropped and counted. Outcomes are counted from the delivery callback.
//!
//! Each click gets a producer span (`send clicks`), a child of the redirect's server span,
//! whose W3C context travels in the message headers so the consumer continues the trace.
//! The span covers the hand-off to the local queue only: it is created and ended
//! synchronously, and the redirect never waits for the broker.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use prost::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use shortener_common::event::{Click, MAX_HEADER_VALUE_LEN, SCHEMA_VERSION};
use shortener_common::kafka::{KafkaArgs, HEADER_SCHEMA_VERSION};
use shortener_common::telemetry::propagation;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{DropReason, Metrics};

/// How long librdkafka keeps retrying a click before reporting it failed.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest shutdown waits for queued clicks to be delivered.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two log lines about failed deliveries or drops.
const LOG_EVERY_SECS: i64 = 10;

/// Counts delivery outcomes; runs on the producer's polling thread.
pub struct DeliveryContext {
    metrics: Metrics,
    last_failure_log: AtomicI64,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.metrics.clicks_published.inc();
            }
            Err((err, _)) => {
                self.metrics.clicks_delivery_failed.inc();
                if should_log(&self.last_failure_log) {
                    tracing::warn!(error = %err, "click event delivery failed");
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

pub struct ClickPublisher {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
    /// `send {topic}`, the producer span's name.
    span_name: String,
    /// The schema-version header's value.
    schema_version: String,
    metrics: Metrics,
    last_drop_log: AtomicI64,
}

impl ClickPublisher {
    /// A producer for `kafka`'s topic. Connects in the background; never blocks.
    pub fn new(
        kafka: &KafkaArgs,
        queue_capacity: usize,
        linger: Duration,
        metrics: Metrics,
    ) -> Result<Self, KafkaError> {
        let mut config = kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", linger.as_millis().to_string())
            .set(
                "queue.buffering.max.messages",
                queue_capacity.clamp(1, i32::MAX as usize).to_string(),
            )
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        let producer = config.create_with_context(DeliveryContext {
            metrics: metrics.clone(),
            last_failure_log: AtomicI64::new(0),
        })?;
        Ok(Self {
            producer,
            topic: kafka.kafka_topic.clone(),
            span_name: format!("send {}", kafka.kafka_topic),
            schema_version: SCHEMA_VERSION.to_string(),
            metrics,
            last_drop_log: AtomicI64::new(0),
        })
    }

    /// Queues `click` (keyed by its short code) without waiting.
    pub fn publish(&self, click: Click) {
        let span = tracing::info_span!(
            "click publish",
            otel.name = self.span_name.as_str(),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = self.topic.as_str(),
            messaging.kafka.message.key = click.short_code.as_str(),
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let _entered = span.enter();
        let event = click.into_event();
        let payload = event.encode_to_vec();
        let headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: HEADER_SCHEMA_VERSION,
            value: Some(self.schema_version.as_bytes()),
        });
        // A disabled span (filtered out) has no context of its own to carry.
        let headers = if span.is_disabled() {
            headers
        } else {
            propagation::inject_kafka(&span.context(), headers)
        };
        let record = BaseRecord::to(&self.topic)
            .key(event.short_code.as_bytes())
            .payload(&payload)
            .headers(headers);
        if let Err((err, _)) = self.producer.send(record) {
            let reason = match err {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    DropReason::queue_full
                }
                _ => DropReason::produce_error,
            };
            self.metrics.drop_click(reason);
            span.record("otel.status_code", "ERROR");
            span.record("error.type", tracing::field::debug(reason));
            if should_log(&self.last_drop_log) {
                tracing::warn!(error = %err, ?reason, "click event dropped");
            }
        }
    }

    /// Messages queued locally and not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits (blocking) up to `timeout` for queued clicks to be delivered.
    pub fn flush(&self, timeout: Duration) {
        let queued = self.in_flight();
        if queued == 0 {
            return;
        }
        match self.producer.flush(timeout) {
            Ok(()) => tracing::info!(queued, "click events flushed"),
            Err(e) => tracing::warn!(
                error = %e,
                left = self.in_flight(),
                "click events still queued at shutdown are lost"
            ),
        }
    }
}

/// A request header as text for an event field: lossy UTF-8, cut to the event's limit on
/// a character boundary, absent when empty.
pub fn header_text(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<String> {
    let raw = headers.get(name)?.as_bytes();
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if text.len() > MAX_HEADER_VALUE_LEN {
        let mut cut = MAX_HEADER_VALUE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Some(text).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

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
    }
}
