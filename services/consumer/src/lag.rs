//! Consumer lag: for each partition, the high watermark minus the group's committed
//! offset, i.e. the messages not yet durably processed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;
use shortener_common::kafka::{committed_offset, partition_lag};

use crate::metrics::PartitionLabels;
use crate::pipeline::Pipeline;

/// Broker requests of one refresh give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub high_watermark: i64,
    /// None when the group has committed nothing for the partition yet.
    pub committed: Option<i64>,
    /// See `shortener_common::kafka::partition_lag`.
    pub lag: i64,
}

/// Lag of `partitions` for `consumer`'s group. Blocking: call from a blocking thread.
pub fn lag_of<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<Vec<PartitionLag>> {
    if partitions.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    committed
        .elements()
        .iter()
        .map(|e| {
            let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
            let committed = committed_offset(e.offset());
            Ok(PartitionLag {
                topic: e.topic().to_string(),
                partition: e.partition(),
                high_watermark: high,
                committed,
                lag: partition_lag(low, high, committed),
            })
        })
        .collect()
}

/// Refreshes the lag gauge of the assigned partitions every `interval` (first at once),
/// and records whether the brokers answered, for the readiness probe.
pub async fn refresh_loop(p: Arc<Pipeline>, topic: String, interval: Duration) {
    loop {
        let consumer = p.consumer.clone();
        let topic = topic.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let assignment = consumer.assignment()?;
            if assignment.count() == 0 {
                // Nothing to measure; still find out whether the brokers answer.
                consumer.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)?;
            }
            lag_of(&*consumer, assignment, REQUEST_TIMEOUT)
        })
        .await;
        match measured {
            Ok(Ok(lags)) => {
                p.health.set_broker_connected(true);
                p.metrics.lag.clear();
                for l in lags {
                    p.metrics
                        .lag
                        .get_or_create(&PartitionLabels {
                            topic: l.topic,
                            partition: l.partition,
                        })
                        .set(l.lag);
                }
            }
            Ok(Err(e)) => {
                p.health.set_broker_connected(false);
                tracing::warn!(error = %e, "cannot measure consumer lag");
            }
            Err(e) => tracing::error!(error = %e, "lag measurement task failed"),
        }
        tokio::select! {
            _ = p.cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
