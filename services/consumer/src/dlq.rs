//! The dead-letter topic: messages that can never be stored (undecodable, invalid, or
//! rejected by the database) are published there with their original key, payload and
//! headers, plus headers saying why and where they came from.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use shortener_common::kafka::{
    HEADER_DLQ_ERROR, HEADER_DLQ_SOURCE_OFFSET, HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_TOPIC,
};

/// How long librdkafka keeps retrying one publish before reporting failure.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// True for the headers this module adds (stripped again when a message is replayed).
pub fn is_dlq_header(name: &str) -> bool {
    name.starts_with("dlq-")
}

/// An idempotent producer waiting for all in-sync replicas: a dead letter is the only
/// copy of its message once the source offset is committed.
pub fn producer(base: ClientConfig) -> Result<FutureProducer, KafkaError> {
    let mut cfg = base;
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .set("compression.type", "zstd");
    cfg.create()
}

/// Publishes `msg` to `dlq_topic` with the reason `error` and waits for the broker to
/// acknowledge it.
pub async fn send(
    producer: &FutureProducer,
    dlq_topic: &str,
    msg: &OwnedMessage,
    error: &str,
) -> Result<(), KafkaError> {
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let mut headers = OwnedHeaders::new();
    if let Some(original) = msg.headers() {
        for h in original.iter().filter(|h| !is_dlq_header(h.key)) {
            headers = headers.insert(h);
        }
    }
    for (key, value) in [
        (HEADER_DLQ_ERROR, error),
        (HEADER_DLQ_SOURCE_TOPIC, msg.topic()),
        (HEADER_DLQ_SOURCE_PARTITION, partition.as_str()),
        (HEADER_DLQ_SOURCE_OFFSET, offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(dlq_topic).headers(headers);
    if let Some(key) = msg.key() {
        record = record.key(key);
    }
    if let Some(payload) = msg.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, DELIVERY_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}
