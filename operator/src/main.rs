use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shortener_common::kafka::KafkaArgs;
use shortener_common::telemetry::{self, LogArgs};
use shortener_operator::controller::{self, RunArgs};
use shortener_operator::topic::{
    KafkaConnection, KafkaTopicManager, TopicAdmin, TopicOutcome, TopicRequest,
};

/// Kubernetes operator for ShortenerStack resources.
#[derive(Parser, Debug)]
#[command(name = "operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the ShortenerStack CustomResourceDefinition as YAML.
    Crd,
    /// Print the RBAC rules the operator needs, as YAML: `clusterRules` (ClusterRole) and
    /// `namespaceRules` (Role in the operator's own namespace).
    Rbac,
    /// Manage the clicks topic directly, outside Kubernetes (local runs, scripts).
    Topic {
        #[command(subcommand)]
        action: TopicCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create the clicks topic and its dead-letter topic, or grow them to --partitions
    /// (the same code path the reconciler uses; never shrinks a topic).
    Ensure(Box<TopicEnsureArgs>),
}

#[derive(clap::Args, Debug)]
struct TopicEnsureArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Partitions of each topic.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 4)]
    partitions: i32,
    /// Replicas of each partition.
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    replication_factor: i32,
    /// `retention.ms` of the topics; the broker default when unset.
    #[arg(long, env = "KAFKA_RETENTION_MS")]
    retention_ms: Option<i64>,
    /// Deadline of each admin request, in seconds.
    #[arg(long, env = "KAFKA_ADMIN_TIMEOUT_SECS", default_value_t = 10)]
    timeout_secs: u64,
}

/// Ensures the main and dead-letter topics exist; prints what it did.
async fn ensure_topics(args: TopicEnsureArgs) -> anyhow::Result<()> {
    let manager = KafkaTopicManager::new(std::time::Duration::from_secs(args.timeout_secs));
    let connection = KafkaConnection {
        args: args.kafka.clone(),
        ca_pem: None,
        certificate_pem: None,
        key_pem: None,
    };
    let admin = manager.admin(&connection)?;
    for name in [args.kafka.kafka_topic.clone(), args.kafka.dlq_topic()] {
        let request = TopicRequest {
            name: name.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            retention_ms: args.retention_ms,
        };
        let report = admin
            .ensure(&request)
            .await
            .with_context(|| format!("ensuring topic {name}"))?;
        match report.outcome {
            TopicOutcome::Created { partitions } => {
                println!("topic {name}: created with {partitions} partitions")
            }
            TopicOutcome::PartitionsIncreased { from, to } => {
                println!("topic {name}: partitions increased from {from} to {to}")
            }
            TopicOutcome::Unchanged { partitions } => {
                println!("topic {name}: exists with {partitions} partitions")
            }
        }
        for r in report.reverted {
            println!(
                "topic {name}: {} set back from {} to {}",
                r.key,
                r.found.as_deref().unwrap_or("the broker default"),
                r.wanted
            );
        }
        if report.replication_factor != request.replication_factor {
            println!(
                "topic {name}: replication factor is {} (asked {}); Kafka cannot change it in place",
                report.replication_factor, request.replication_factor
            );
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = shortener_common::config::parse().context("loading configuration")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            print!("{}", shortener_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Rbac => {
            print!("{}", shortener_operator::rbac::rules_yaml());
            Ok(())
        }
        Command::Topic {
            action: TopicCommand::Ensure(args),
        } => tokio::runtime::Runtime::new()
            .context("starting the tokio runtime")?
            .block_on(ensure_topics(*args)),
        Command::Run => {
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(async {
                let _guard = telemetry::init("shortener-operator", &cli.log)
                    .context("initialising logging")?;
                controller::run(cli.run).await
            })
        }
    }
}
