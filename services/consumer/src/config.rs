//! Command line and environment settings of the `consumer` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shortener_common::db::DatabaseArgs;
use shortener_common::kafka::KafkaArgs;
use shortener_common::privacy::{
    DEFAULT_ANONYMIZE_IPS, DEFAULT_CLICK_RETENTION_DAYS, MIN_CLICK_RETENTION_DAYS,
};
use shortener_common::telemetry::LogArgs;

pub use crate::rollup_worker::DEFAULT_BATCH as DEFAULT_ROLLUP_BATCH;

#[derive(clap::Parser, Debug)]
#[command(
    name = "consumer",
    version,
    about = "Consumes ClickEvents, enriches them and stores them exactly once in Postgres"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Consume the clicks topic (the default).
    Run,
    /// Re-publish the dead-letter topic's messages to the clicks topic, up to the end the
    /// DLQ had when the command started.
    ReplayDlq(ReplayArgs),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Print what would be replayed (partition, offset, key, error) and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub max: Option<u64>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConsumerArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Consumer group of every consumer replica.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "shortener-consumer")]
    pub group_id: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// Clicks gathered for one INSERT: messages are added until they hold this many (the
    /// last may overshoot by the clicks of one url-api batch). Large batches cost fewer
    /// round trips per click (docs/performance.md); BATCH_MAX_WAIT_MS bounds how long a
    /// click waits for one.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Longest a partial batch waits for more messages before it is written, in milliseconds.
    #[arg(long, env = "BATCH_MAX_WAIT_MS", default_value_t = 200)]
    pub batch_max_wait_ms: u64,
    /// Workers writing batches in parallel; each partition is always handled by the same one.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// MaxMind-format country database (mmdb); unset stores every country as "Unknown".
    #[arg(long, env = "GEOIP_DB_PATH")]
    pub geoip_db_path: Option<PathBuf>,
    /// Store client addresses anonymized (IPv4 /24, IPv6 /48); false keeps them whole.
    /// Country and unique visitors are derived from the full address either way.
    #[arg(long, env = "ANONYMIZE_IPS", default_value_t = DEFAULT_ANONYMIZE_IPS,
          action = clap::ArgAction::Set)]
    pub anonymize_ips: bool,
    /// Days raw clicks are kept: the maintenance task drops each monthly partition of
    /// `clicks` once all of its month is older than this. Rollups (counts, breakdowns,
    /// series) are kept.
    #[arg(long, env = "CLICK_RETENTION_DAYS", default_value_t = DEFAULT_CLICK_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(MIN_CLICK_RETENTION_DAYS as i64..))]
    pub click_retention_days: u32,
    /// How often the maintenance task runs (one replica at a time): creates the coming
    /// months' partitions, drops expired ones, forgets past days' visitor keys. In seconds.
    #[arg(long, env = "MAINTENANCE_INTERVAL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub maintenance_interval_secs: u64,
    /// How often the per-partition lag gauge is refreshed, in milliseconds.
    #[arg(long, env = "LAG_REFRESH_INTERVAL_MS", default_value_t = 10_000)]
    pub lag_refresh_interval_ms: u64,
    /// Longest wait between two attempts of a failing database write, in milliseconds.
    #[arg(long, env = "RETRY_MAX_BACKOFF_MS", default_value_t = 30_000)]
    pub retry_max_backoff_ms: u64,
    /// Most queued clicks one rollup pass takes and adds to the rollups in one transaction.
    /// Larger passes sum more clicks of a link into one rollup row (docs/performance.md).
    #[arg(long, env = "ROLLUP_BATCH", default_value_t = DEFAULT_ROLLUP_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub rollup_batch: u32,
    /// Longest the rollup worker waits for new clicks before looking at the queue again
    /// (other replicas' clicks), in milliseconds; its own are taken as soon as stored.
    #[arg(long, env = "ROLLUP_INTERVAL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub rollup_interval_ms: u64,
    /// Most bytes of fetched messages held in the process (workers' queues and batches),
    /// and the size of librdkafka's prefetch queue: what a database outage with a deep
    /// backlog can cost in memory, twice over.
    #[arg(long, env = "MAX_IN_FLIGHT_BYTES", default_value_t = DEFAULT_MAX_IN_FLIGHT_BYTES,
          value_parser = clap::value_parser!(u32).range(1_048_576..))]
    pub max_in_flight_bytes: u32,
}

/// 32 MiB: room for many full batches of url-api's largest messages (512 KiB).
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u32 = 32 << 20;

impl ConsumerArgs {
    /// Settings for `kafka` and `database` with every other value at its default, the admin
    /// endpoints on an ephemeral loopback port.
    pub fn new(kafka: KafkaArgs, database: DatabaseArgs) -> Self {
        Self {
            kafka,
            database,
            group_id: "shortener-consumer".into(),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            batch_size: 2000,
            batch_max_wait_ms: 200,
            concurrency: 4,
            geoip_db_path: None,
            anonymize_ips: DEFAULT_ANONYMIZE_IPS,
            click_retention_days: DEFAULT_CLICK_RETENTION_DAYS,
            maintenance_interval_secs: 3600,
            lag_refresh_interval_ms: 10_000,
            retry_max_backoff_ms: 30_000,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            rollup_batch: DEFAULT_ROLLUP_BATCH,
            rollup_interval_ms: 250,
        }
    }

    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    pub fn lag_refresh_interval(&self) -> Duration {
        Duration::from_millis(self.lag_refresh_interval_ms.max(100))
    }

    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_secs(self.maintenance_interval_secs)
    }

    pub fn rollup_interval(&self) -> Duration {
        Duration::from_millis(self.rollup_interval_ms)
    }

    pub fn retry_max_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_max_backoff_ms.max(10))
    }

    /// Consumer group of `replay-dlq`, separate so replays keep their own position.
    pub fn replay_group_id(&self) -> String {
        format!("{}-dlq-replay", self.group_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli_default_in_flight() -> u32 {
        Cli::try_parse_from(["consumer"])
            .unwrap()
            .consumer
            .max_in_flight_bytes
    }

    fn cli_default_rollup() -> (u32, Duration) {
        let c = Cli::try_parse_from(["consumer"]).unwrap().consumer;
        (c.rollup_batch, c.rollup_interval())
    }

    #[test]
    fn defaults_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["consumer"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.consumer.batch_size, 2000);
        assert_eq!(cli.consumer.concurrency, 4);
        assert_eq!(cli.consumer.group_id, "shortener-consumer");
        assert_eq!(
            cli.consumer.replay_group_id(),
            "shortener-consumer-dlq-replay"
        );

        let cli =
            Cli::try_parse_from(["consumer", "replay-dlq", "--dry-run", "--max", "7"]).unwrap();
        match cli.command {
            Some(Command::ReplayDlq(r)) => {
                assert!(r.dry_run);
                assert_eq!(r.max, Some(7));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(Cli::try_parse_from(["consumer", "--batch-size", "0"]).is_err());
        assert!(Cli::try_parse_from(["consumer", "--concurrency", "0"]).is_err());
        assert_eq!(cli_default_in_flight(), DEFAULT_MAX_IN_FLIGHT_BYTES);
        assert!(Cli::try_parse_from(["consumer", "--click-retention-days", "0"]).is_err());
        assert_eq!(cli_default_rollup().0, DEFAULT_ROLLUP_BATCH);
        assert_eq!(cli_default_rollup().1, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["consumer", "--rollup-batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["consumer", "--rollup-interval-ms", "0"]).is_err());
    }

    #[test]
    fn privacy_defaults_are_the_shared_ones() {
        // The operator's ShortenerStack defaults use the same constants.
        let defaults = Cli::try_parse_from(["consumer"]).unwrap().consumer;
        assert_eq!(defaults.click_retention_days, 400);
        assert_eq!(defaults.click_retention_days, DEFAULT_CLICK_RETENTION_DAYS);
        assert!(defaults.anonymize_ips);
        assert_eq!(defaults.anonymize_ips, DEFAULT_ANONYMIZE_IPS);
        let new = ConsumerArgs::new(
            KafkaArgs::new("localhost:9092", "clicks"),
            DatabaseArgs::with_url("postgres://localhost/x"),
        );
        assert_eq!(new.click_retention_days, DEFAULT_CLICK_RETENTION_DAYS);
        assert_eq!(new.anonymize_ips, DEFAULT_ANONYMIZE_IPS);
        assert!(Cli::try_parse_from(["consumer", "--max-in-flight-bytes", "1000"]).is_err());
    }
}
