//! Prometheus metrics of the consumer, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::pipeline::Stall;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StallLabels {
    /// `database` or `dead_letter`.
    pub cause: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub consumed: Counter,
    pub stored: Counter,
    pub duplicates: Counter,
    pub dead_lettered: Counter,
    pub batch_seconds: Histogram,
    pub db_retries: Counter,
    pub dlq_retries: Counter,
    /// High watermark minus committed offset, per assigned partition.
    pub lag: Family<PartitionLabels, Gauge>,
    /// Batches waiting to retry a failed write, by what failed.
    pub stalled_batches: Family<StallLabels, Gauge>,
    /// Bytes of messages handed to workers and not yet stored or dead-lettered.
    pub in_flight_bytes: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under `shortener_consumer_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            consumed: Counter::default(),
            stored: Counter::default(),
            duplicates: Counter::default(),
            dead_lettered: Counter::default(),
            // 1 ms .. ~16 s
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            db_retries: Counter::default(),
            dlq_retries: Counter::default(),
            lag: Family::default(),
            stalled_batches: Family::default(),
            in_flight_bytes: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("shortener_consumer");
        r.register(
            "messages_consumed",
            "Messages read from the clicks topic",
            m.consumed.clone(),
        );
        r.register(
            "clicks_stored",
            "Clicks inserted into Postgres",
            m.stored.clone(),
        );
        r.register(
            "clicks_duplicate",
            "Redelivered clicks skipped because their event_id was already stored",
            m.duplicates.clone(),
        );
        r.register(
            "messages_dead_lettered",
            "Messages sent to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Time to decode, enrich, store and dead-letter one batch, retries included",
            m.batch_seconds.clone(),
        );
        r.register(
            "db_retries",
            "Batch writes retried after a transient database error",
            m.db_retries.clone(),
        );
        r.register(
            "dlq_retries",
            "Dead-letter publishes retried after a broker error",
            m.dlq_retries.clone(),
        );
        r.register(
            "lag",
            "Messages not yet committed per assigned partition (high watermark - committed offset)",
            m.lag.clone(),
        );
        r.register(
            "stalled_batches",
            "Batches not committed because a write keeps failing, by cause (database, \
             dead_letter); each holds back its partitions",
            m.stalled_batches.clone(),
        );
        r.register(
            "in_flight_bytes",
            "Bytes of messages handed to the workers and not yet done with (at most \
             MAX_IN_FLIGHT_BYTES)",
            m.in_flight_bytes.clone(),
        );
        for stall in [Stall::Database, Stall::DeadLetter] {
            m.stalled(stall).set(0);
        }
        m
    }

    pub(crate) fn stalled(&self, stall: Stall) -> Gauge {
        let cause = match stall {
            Stall::Database => "database",
            Stall::DeadLetter => "dead_letter",
        };
        self.stalled_batches
            .get_or_create(&StallLabels { cause })
            .clone()
    }
}
