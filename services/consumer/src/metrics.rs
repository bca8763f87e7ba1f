//! Prometheus metrics of the consumer, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::maintenance::Report;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MaintenanceLabels {
    /// `done`, `busy` (another replica ran it) or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenanceOutcome {
    Done,
    Busy,
    Failed,
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
    pub maintenance_outcomes: Family<MaintenanceLabels, Counter>,
    pub partitions_created: Counter,
    pub partitions_dropped: Counter,
    pub expired_default_rows: Counter,
    pub visitor_keys_deleted: Counter,
    /// Unix time of the last run that did its work, 0 before the first.
    pub maintenance_last_done: Gauge,
    /// Queued clicks added to the rollups.
    pub rolled_up: Counter,
    pub rollup_pass_seconds: Histogram,
    /// How long the oldest click of the last pass waited in the queue (0: none waited).
    pub rollup_lag_seconds: Gauge<f64, AtomicU64>,
    pub rollup_retries: Counter,
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
            maintenance_outcomes: Family::default(),
            partitions_created: Counter::default(),
            partitions_dropped: Counter::default(),
            expired_default_rows: Counter::default(),
            visitor_keys_deleted: Counter::default(),
            maintenance_last_done: Gauge::default(),
            rolled_up: Counter::default(),
            // 1 ms .. ~16 s
            rollup_pass_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            rollup_lag_seconds: Gauge::default(),
            rollup_retries: Counter::default(),
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
        r.register(
            "maintenance_runs",
            "Runs of the click maintenance task by outcome (done, busy: another replica held \
             the lock, failed: retried next round)",
            m.maintenance_outcomes.clone(),
        );
        r.register(
            "click_partitions_created",
            "Monthly partitions of clicks created ahead of their month (or for clicks waiting \
             in the default partition)",
            m.partitions_created.clone(),
        );
        r.register(
            "click_partitions_dropped",
            "Monthly partitions of clicks dropped as older than CLICK_RETENTION_DAYS",
            m.partitions_dropped.clone(),
        );
        r.register(
            "click_default_rows_expired",
            "Clicks deleted from the default partition as older than CLICK_RETENTION_DAYS",
            m.expired_default_rows.clone(),
        );
        r.register(
            "visitor_keys_deleted",
            "Daily visitor keys deleted (with their day's visitor sets) once the day can no \
             longer be counted",
            m.visitor_keys_deleted.clone(),
        );
        r.register(
            "maintenance_last_done_timestamp_seconds",
            "Unix time the click maintenance last completed (0: not yet)",
            m.maintenance_last_done.clone(),
        );
        r.register(
            "clicks_rolled_up",
            "Stored clicks added to the rollups (counts, series, breakdowns, visitors, visit \
             limits) by rollup passes",
            m.rolled_up.clone(),
        );
        r.register(
            "rollup_pass_duration_seconds",
            "Time of one rollup pass (take queued clicks, count them, commit)",
            m.rollup_pass_seconds.clone(),
        );
        r.register(
            "rollup_lag_seconds",
            "How long the oldest click of the last rollup pass waited between being stored \
             and being counted (0 when the pass found the queue empty)",
            m.rollup_lag_seconds.clone(),
        );
        r.register(
            "rollup_retries",
            "Rollup passes retried after a database error (their clicks stay queued)",
            m.rollup_retries.clone(),
        );
        for stall in [Stall::Database, Stall::DeadLetter] {
            m.stalled(stall).set(0);
        }
        for outcome in [
            MaintenanceOutcome::Done,
            MaintenanceOutcome::Busy,
            MaintenanceOutcome::Failed,
        ] {
            m.maintenance_runs(outcome);
        }
        m
    }

    /// The run counter of `outcome` (created at 0 on first use).
    pub(crate) fn maintenance_runs(&self, outcome: MaintenanceOutcome) -> Counter {
        let outcome = match outcome {
            MaintenanceOutcome::Done => "done",
            MaintenanceOutcome::Busy => "busy",
            MaintenanceOutcome::Failed => "failed",
        };
        self.maintenance_outcomes
            .get_or_create(&MaintenanceLabels { outcome })
            .clone()
    }

    pub(crate) fn maintenance_done(&self, report: &Report) {
        self.maintenance_runs(MaintenanceOutcome::Done).inc();
        self.partitions_created.inc_by(report.created.len() as u64);
        self.partitions_dropped.inc_by(report.dropped.len() as u64);
        self.expired_default_rows.inc_by(report.purged_from_default);
        self.visitor_keys_deleted
            .inc_by(report.visitor_keys_deleted);
        self.maintenance_last_done
            .set(chrono::Utc::now().timestamp());
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
