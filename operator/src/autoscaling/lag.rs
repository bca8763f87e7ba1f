//! Consumer-group lag: committed offsets of the group against the partitions' high
//! watermarks.
//!
//! The scaler talks to a [`LagSource`], so reconcile tests can use a fixed source;
//! [`KafkaLagReader`] is the real one (librdkafka).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use shortener_common::kafka::{committed_offset, partition_lag};

use crate::topic::KafkaConnection;

/// Lag of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Oldest offset still in the log.
    pub low: i64,
    /// Next offset to be written.
    pub high: i64,
    /// The group's committed offset; `None` when the group never committed on this partition.
    pub committed: Option<i64>,
    /// Messages the group has still to read: `high - max(committed, low)`, never negative.
    pub lag: i64,
}

impl PartitionLag {
    /// A partition without a committed offset is read from the start of the retained log
    /// (the consumer uses `auto.offset.reset=earliest`), and so is one whose committed
    /// offset was already deleted by retention.
    pub fn new(partition: i32, low: i64, high: i64, committed: Option<i64>) -> Self {
        Self {
            partition,
            low,
            high,
            committed,
            lag: partition_lag(low, high, committed),
        }
    }
}

/// Lag of a consumer group on one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagReport {
    /// Per partition, ordered by partition id.
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partitions' lag.
    pub total: i64,
}

impl LagReport {
    pub fn from_partitions(mut partitions: Vec<PartitionLag>) -> Self {
        partitions.sort_by_key(|p| p.partition);
        let total = partitions.iter().map(|p| p.lag).sum();
        Self { partitions, total }
    }

    /// Partitions of the topic as the brokers report them.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LagError {
    #[error("cannot build a Kafka client: {0}")]
    Client(String),
    #[error("topic {topic} is not known to the brokers")]
    UnknownTopic { topic: String },
    #[error("{operation} for {topic} failed: {message}")]
    Request {
        operation: &'static str,
        topic: String,
        message: String,
    },
    #[error("measuring the lag of {topic} took longer than {seconds}s")]
    Timeout { topic: String, seconds: u64 },
}

impl LagError {
    /// Whether no broker answered (so the brokers, not the group, are the problem).
    pub fn unreachable(&self) -> bool {
        match self {
            LagError::Timeout { .. } => true,
            LagError::Request { message, .. } => crate::topic::no_broker_answered(message),
            LagError::Client(_) | LagError::UnknownTopic { .. } => false,
        }
    }
}

/// Measures the lag of `group` on `topic` on behalf of `stack` (`namespace/name`): a source
/// may keep a client per stack between measurements.
pub trait LagSource: Send + Sync {
    fn measure<'a>(
        &'a self,
        stack: &'a str,
        connection: &'a KafkaConnection,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<LagReport, LagError>>;

    /// The stack is gone: drop whatever was kept for it.
    fn forget(&self, stack: &str) {
        let _ = stack;
    }
}

/// Reads offsets from the brokers with a consumer that carries the group's `group.id` but
/// never subscribes: it asks the group coordinator for the committed offsets (OffsetFetch)
/// without joining the group, so measuring never triggers a rebalance of the real consumers.
///
/// Every broker call is bounded by `timeout` and the whole measurement by a deadline of
/// twice that, so an unreachable cluster makes a measurement fail instead of hanging.
///
/// [`LagSource::measure`] keeps one consumer per stack (its connections, metadata and
/// group coordinator stay warm between measurements) while the stack's connection settings
/// and group stay the same; [`LagSource::forget`] drops it, and a failed measurement drops
/// it so the next one starts from a fresh client.
#[derive(Clone)]
pub struct KafkaLagReader {
    timeout: Duration,
    consumers: Arc<Mutex<HashMap<String, CachedConsumer>>>,
}

/// A stack's consumer and the settings (connection fingerprint, group) it was built with.
struct CachedConsumer {
    settings: String,
    consumer: Arc<BaseConsumer>,
}

impl std::fmt::Debug for KafkaLagReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLagReader")
            .field("timeout", &self.timeout)
            .field("cached_consumers", &self.cached_consumers())
            .finish()
    }
}

impl Default for KafkaLagReader {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl KafkaLagReader {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            consumers: Arc::default(),
        }
    }

    /// Stacks a consumer is kept for.
    pub fn cached_consumers(&self) -> usize {
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The stack's kept consumer, or a new one kept from now on.
    fn consumer_for(
        &self,
        stack: &str,
        connection: &KafkaConnection,
        group: &str,
    ) -> Result<Arc<BaseConsumer>, LagError> {
        let settings = format!("{}\n{group}", connection.fingerprint());
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = consumers.get(stack) {
            if cached.settings == settings {
                return Ok(cached.consumer.clone());
            }
        }
        let consumer = Arc::new(self.consumer(connection, group)?);
        consumers.insert(
            stack.to_string(),
            CachedConsumer {
                settings,
                consumer: consumer.clone(),
            },
        );
        Ok(consumer)
    }

    /// The blocking measurement with the stack's kept consumer; [`LagSource::measure`]
    /// runs it on the blocking pool.
    pub fn measure_blocking(
        &self,
        stack: &str,
        connection: &KafkaConnection,
        group: &str,
        topic: &str,
    ) -> Result<LagReport, LagError> {
        let consumer = self.consumer_for(stack, connection, group)?;
        // Serve what librdkafka queued since the last measurement (errors, logs), so the
        // queue of a long-lived client does not grow.
        for _ in 0..1024 {
            if consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let result = self.read(&consumer, topic);
        if result.is_err() {
            LagSource::forget(self, stack);
        }
        result
    }

    /// Committed offsets against watermarks for every partition of `topic`.
    fn read(&self, consumer: &BaseConsumer, topic: &str) -> Result<LagReport, LagError> {
        let request_failed =
            |operation: &'static str, e: rdkafka::error::KafkaError| LagError::Request {
                operation,
                topic: topic.to_string(),
                message: e.to_string(),
            };
        let deadline = Instant::now() + self.timeout * 2;
        let left = |deadline: Instant| -> Result<Duration, LagError> {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LagError::Timeout {
                    topic: topic.to_string(),
                    seconds: (self.timeout * 2).as_secs(),
                });
            }
            Ok(left.min(self.timeout))
        };

        let metadata = consumer
            .fetch_metadata(Some(topic), left(deadline)?)
            .map_err(|e| request_failed("metadata", e))?;
        let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            _ => {
                return Err(LagError::UnknownTopic {
                    topic: topic.to_string(),
                })
            }
        };

        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for &p in &partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, left(deadline)?)
            .map_err(|e| request_failed("committed offsets", e))?;

        let mut lags = Vec::with_capacity(partitions.len());
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, left(deadline)?)
                .map_err(|e| request_failed("watermarks", e))?;
            let committed = committed
                .find_partition(topic, p)
                .and_then(|e| committed_offset(e.offset()));
            lags.push(PartitionLag::new(p, low, high, committed));
        }
        Ok(LagReport::from_partitions(lags))
    }

    fn consumer(
        &self,
        connection: &KafkaConnection,
        group: &str,
    ) -> Result<BaseConsumer, LagError> {
        let mut cfg = connection.client_config();
        let ms = self.timeout.as_millis().to_string();
        cfg.set("group.id", group)
            // Read-only: this client must never move the group's offsets.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("socket.timeout.ms", &ms)
            .set("socket.connection.setup.timeout.ms", &ms);
        cfg.create().map_err(|e| LagError::Client(e.to_string()))
    }
}

impl KafkaLagReader {
    /// Runs `measure` on the blocking pool, bounded by three times the per-call timeout
    /// (librdkafka enforces the per-call timeouts; this guards a call that never returns).
    fn blocking<'a, F>(
        &'a self,
        topic: &'a str,
        measure: F,
    ) -> BoxFuture<'a, Result<LagReport, LagError>>
    where
        F: FnOnce() -> Result<LagReport, LagError> + Send + 'static,
    {
        let outer = self.timeout * 3;
        async move {
            let task = tokio::task::spawn_blocking(measure);
            match tokio::time::timeout(outer, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(LagError::Client(join.to_string())),
                Err(_) => Err(LagError::Timeout {
                    topic: topic.to_string(),
                    seconds: outer.as_secs(),
                }),
            }
        }
        .boxed()
    }
}

impl LagSource for KafkaLagReader {
    fn measure<'a>(
        &'a self,
        stack: &'a str,
        connection: &'a KafkaConnection,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<LagReport, LagError>> {
        let reader = self.clone();
        let (stack, connection, group, topic_owned) = (
            stack.to_string(),
            connection.clone(),
            group.to_string(),
            topic.to_string(),
        );
        self.blocking(topic, move || {
            reader.measure_blocking(&stack, &connection, &group, &topic_owned)
        })
    }

    fn forget(&self, stack: &str) {
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No broker listens here: a consumer can be built (librdkafka connects lazily), a
    /// measurement fails.
    fn nowhere() -> KafkaConnection {
        KafkaConnection::plaintext("127.0.0.1:1")
    }

    #[test]
    fn one_consumer_is_kept_per_stack_while_its_settings_stay() {
        let reader = KafkaLagReader::new(Duration::from_secs(1));
        let first = reader
            .consumer_for("shop/demo", &nowhere(), "group")
            .unwrap();
        let again = reader
            .consumer_for("shop/demo", &nowhere(), "group")
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the kept consumer is reused");
        let other = reader
            .consumer_for("shop/other", &nowhere(), "group")
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(reader.cached_consumers(), 2);

        // A changed group (or connection) replaces the stack's consumer.
        let regrouped = reader
            .consumer_for("shop/demo", &nowhere(), "renamed")
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &regrouped));
        let moved = KafkaConnection::plaintext("127.0.0.1:2");
        let reconnected = reader.consumer_for("shop/demo", &moved, "renamed").unwrap();
        assert!(!Arc::ptr_eq(&regrouped, &reconnected));
        assert_eq!(reader.cached_consumers(), 2);

        // Clones share the kept consumers (the controller clones the reader per call).
        let clone = reader.clone();
        LagSource::forget(&clone, "shop/demo");
        assert_eq!(reader.cached_consumers(), 1);
        LagSource::forget(&reader, "shop/other");
        assert_eq!(reader.cached_consumers(), 0);
    }

    #[test]
    fn a_failed_measurement_drops_the_stacks_consumer() {
        let reader = KafkaLagReader::new(Duration::from_secs(1));
        let err = reader
            .measure_blocking("shop/demo", &nowhere(), "group", "clicks")
            .unwrap_err();
        assert!(err.unreachable(), "{err}");
        assert_eq!(reader.cached_consumers(), 0);
    }

    #[test]
    fn lag_counts_from_the_committed_offset() {
        assert_eq!(PartitionLag::new(0, 0, 10, Some(4)).lag, 6);
        assert_eq!(PartitionLag::new(0, 0, 10, Some(10)).lag, 0);
    }

    #[test]
    fn missing_or_expired_commit_counts_from_the_log_start() {
        assert_eq!(PartitionLag::new(0, 3, 10, None).lag, 7);
        assert_eq!(PartitionLag::new(0, 5, 10, Some(2)).lag, 5);
    }

    #[test]
    fn lag_is_never_negative() {
        // A committed offset ahead of the high watermark (e.g. a truncated log).
        assert_eq!(PartitionLag::new(0, 0, 10, Some(12)).lag, 0);
        assert_eq!(PartitionLag::new(0, 0, 0, None).lag, 0);
    }

    #[test]
    fn report_sums_and_orders_partitions() {
        let r = LagReport::from_partitions(vec![
            PartitionLag::new(2, 0, 5, None),
            PartitionLag::new(0, 0, 9, Some(1)),
            PartitionLag::new(1, 0, 3, Some(3)),
        ]);
        assert_eq!(r.total, 13);
        assert_eq!(r.partition_count(), 3);
        let ids: Vec<_> = r.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(ids, vec![0, 1, 2]);
    }
}
