//! `consumer replay-dlq`: re-publishes dead letters to the clicks topic once the reason they
//! failed is fixed. It reads the DLQ with its own consumer group from that group's last
//! commit up to the end the DLQ had when the command started, so it always terminates and
//! a second run resumes where the first stopped. Running two replays of the same group at
//! once would publish some messages twice; the consumer stores them once regardless.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use shortener_common::kafka::HEADER_DLQ_ERROR;

use crate::config::{ConsumerArgs, ReplayArgs};
use crate::dlq::is_dlq_header;

/// Header added to every replayed message.
pub const HEADER_DLQ_REPLAYED: &str = "dlq-replayed";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A message below the starting high watermark that does not arrive within this long
/// means the broker is unreachable.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Offsets are committed after this many replayed messages (and at the end).
const COMMIT_EVERY: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    #[error(
        "no message arrived from {topic} within {RECEIVE_TIMEOUT:?} though {remaining} remain"
    )]
    Stalled { topic: String, remaining: u64 },
    #[error("cannot write the listing: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Messages read from the DLQ.
    pub read: u64,
    /// Messages re-published to the clicks topic (0 on a dry run).
    pub replayed: u64,
}

/// Partition -> [start, end) offsets still to replay.
type Ranges = BTreeMap<i32, (i64, i64)>;

pub async fn replay_dlq(
    args: &ConsumerArgs,
    opts: &ReplayArgs,
    out: &mut (dyn Write + Send),
) -> Result<ReplaySummary, ReplayError> {
    let dlq_topic = args.kafka.dlq_topic();
    let consumer: Arc<StreamConsumer> = Arc::new(
        args.kafka
            .client_config()
            .set("group.id", args.replay_group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?,
    );
    let ranges = {
        let consumer = consumer.clone();
        let topic = dlq_topic.clone();
        tokio::task::spawn_blocking(move || plan(&consumer, &topic))
            .await
            .expect("replay planning panicked")?
    };
    let mut remaining: u64 = ranges.values().map(|(s, e)| (e - s) as u64).sum();
    if let Some(max) = opts.max {
        remaining = remaining.min(max);
    }
    tracing::info!(topic = %dlq_topic, messages = remaining, dry_run = opts.dry_run, "replaying dead letters");
    let mut summary = ReplaySummary::default();
    if remaining == 0 {
        return Ok(summary);
    }

    let mut tpl = TopicPartitionList::new();
    for (&p, &(start, _)) in &ranges {
        tpl.add_partition_offset(&dlq_topic, p, Offset::Offset(start))?;
    }
    consumer.assign(&tpl)?;

    let producer: Option<FutureProducer> = if opts.dry_run {
        None
    } else {
        Some(crate::dlq::producer(args.kafka.client_config())?)
    };
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut uncommitted = 0u64;
    while remaining > 0 {
        let msg = match tokio::time::timeout(RECEIVE_TIMEOUT, consumer.recv()).await {
            Ok(m) => m?,
            Err(_) => {
                return Err(ReplayError::Stalled {
                    topic: dlq_topic,
                    remaining,
                })
            }
        };
        let Some(&(_, end)) = ranges.get(&msg.partition()) else {
            continue;
        };
        if msg.offset() >= end {
            // Dead-lettered after the replay started: left for the next run.
            continue;
        }
        summary.read += 1;
        remaining -= 1;
        match &producer {
            None => {
                let error = msg
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == HEADER_DLQ_ERROR))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default();
                writeln!(
                    out,
                    "partition={} offset={} key={:?} error={:?}",
                    msg.partition(),
                    msg.offset(),
                    key,
                    error
                )?;
            }
            Some(producer) => {
                let mut headers = OwnedHeaders::new();
                if let Some(original) = msg.headers() {
                    for h in original.iter().filter(|h| !is_dlq_header(h.key)) {
                        headers = headers.insert(h);
                    }
                }
                headers = headers.insert(Header {
                    key: HEADER_DLQ_REPLAYED,
                    value: Some("true"),
                });
                let mut record =
                    FutureRecord::<[u8], [u8]>::to(&args.kafka.kafka_topic).headers(headers);
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                if let Some(payload) = msg.payload() {
                    record = record.payload(payload);
                }
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)?;
                summary.replayed += 1;
                next.insert(msg.partition(), msg.offset() + 1);
                uncommitted += 1;
                if uncommitted >= COMMIT_EVERY {
                    commit(&consumer, &dlq_topic, &next).await?;
                    uncommitted = 0;
                }
            }
        }
    }
    if uncommitted > 0 {
        commit(&consumer, &dlq_topic, &next).await?;
    }
    out.flush()?;
    Ok(summary)
}

/// Where each partition's replay starts (the group's commit, or the oldest retained
/// message) and ends (the high watermark now).
fn plan(consumer: &StreamConsumer, topic: &str) -> Result<Ranges, ReplayError> {
    let md = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| ReplayError::NoSuchTopic(topic.to_string()))?;
    let mut all = TopicPartitionList::new();
    for p in t.partitions() {
        all.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(all, REQUEST_TIMEOUT)?;
    let mut ranges = Ranges::new();
    for e in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), REQUEST_TIMEOUT)?;
        let start = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        if start < high {
            ranges.insert(e.partition(), (start, high));
        }
    }
    Ok(ranges)
}

async fn commit(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    next: &BTreeMap<i32, i64>,
) -> Result<(), ReplayError> {
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in next {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
        .await
        .expect("commit task panicked")?;
    Ok(())
}
