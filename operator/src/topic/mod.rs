//! The clicks topic and its dead-letter topic.
//!
//! Reconcile logic talks to a `TopicManager`, so it can be exercised without a broker;
//! `KafkaTopicManager` is the real one (librdkafka admin API), `MemoryTopicManager` an
//! in-process one for reconcile tests and dry runs. A manager hands out one `TopicAdmin`
//! per set of connection settings; the reconciler keeps it per stack and reuses it across
//! passes (`reconcile::Context`). `ownership` decides which stack manages a topic that
//! several stacks name.

mod connection;
mod incremental_alter;
mod kafka;
mod memory;
pub mod ownership;

pub use connection::KafkaConnection;
pub use kafka::KafkaTopicManager;
pub use memory::MemoryTopicManager;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::conditions::Reason;

/// The topic config key the spec sets (`kafka.retentionMs`).
pub const RETENTION_MS: &str = "retention.ms";

/// What a topic should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `retention.ms`; `None` keeps the broker default.
    pub retention_ms: Option<i64>,
}

impl TopicRequest {
    /// The topic configs the spec sets: set at creation, and altered back when the live
    /// topic differs. Configs the spec leaves unset are not the operator's.
    pub fn configs(&self) -> BTreeMap<String, String> {
        self.retention_ms
            .map(|r| (RETENTION_MS.to_string(), r.to_string()))
            .into_iter()
            .collect()
    }
}

/// What `ensure` did to the partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created { partitions: i32 },
    PartitionsIncreased { from: i32, to: i32 },
    Unchanged { partitions: i32 },
}

impl TopicOutcome {
    pub fn partitions(&self) -> i32 {
        match *self {
            TopicOutcome::Created { partitions } | TopicOutcome::Unchanged { partitions } => {
                partitions
            }
            TopicOutcome::PartitionsIncreased { to, .. } => to,
        }
    }
}

/// A topic config found different from the spec and altered back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigReverted {
    pub key: String,
    /// The live value (`None`: the broker default).
    pub found: Option<String>,
    pub wanted: String,
}

/// What `ensure` found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicReport {
    pub outcome: TopicOutcome,
    /// The topic's replication factor. Kafka cannot change it in place (that takes a
    /// partition reassignment), so a difference from the spec is only reported.
    pub replication_factor: i32,
    /// Configs that had drifted from the spec, altered back (incremental alter configs).
    pub reverted: Vec<ConfigReverted>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error(
        "topic {topic} has {current} partitions and the spec asks for {requested}: Kafka cannot remove partitions, set kafka.partitions to at least {current}"
    )]
    CannotDecrease {
        topic: String,
        current: i32,
        requested: i32,
    },
    #[error("Kafka admin {operation} on topic {topic} failed: {message}")]
    Admin {
        operation: &'static str,
        topic: String,
        message: String,
    },
    #[error("Kafka admin {operation} on topic {topic} timed out after {seconds}s")]
    Timeout {
        operation: &'static str,
        topic: String,
        seconds: u64,
    },
    #[error("cannot build a Kafka admin client: {0}")]
    Client(String),
}

impl TopicError {
    /// Stable `reason` for the TopicReady condition.
    pub fn reason(&self) -> Reason {
        match self {
            TopicError::CannotDecrease { .. } => Reason::PartitionDecreaseRefused,
            TopicError::Admin { .. } if self.unreachable() => Reason::BrokerUnreachable,
            TopicError::Admin { .. } => Reason::AdminRequestFailed,
            TopicError::Timeout { .. } => Reason::BrokerUnreachable,
            TopicError::Client(_) => Reason::InvalidKafkaSettings,
        }
    }

    /// Whether the brokers could not be reached at all (as opposed to answering "no").
    pub fn unreachable(&self) -> bool {
        match self {
            TopicError::Timeout { .. } => true,
            TopicError::Admin { message, .. } => no_broker_answered(message),
            TopicError::CannotDecrease { .. } | TopicError::Client(_) => false,
        }
    }
}

/// Whether a librdkafka error message says no broker answered (its own request deadline,
/// a transport failure, every broker down) rather than a broker refusing the request.
pub fn no_broker_answered(message: &str) -> bool {
    [
        "Timed out",
        "TimedOut",
        "transport",
        "Transport",
        "AllBrokersDown",
        "all brokers down",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Hands out admin handles for a stack's brokers.
pub trait TopicManager: Send + Sync {
    /// A handle on the brokers and credentials of `connection`. Cheap to keep: callers
    /// reuse it for every later call with the same settings.
    fn connect(&self, connection: &KafkaConnection) -> Result<Arc<dyn TopicAdmin>, TopicError>;
}

/// Creates, grows, reconfigures and deletes topics on one set of brokers.
pub trait TopicAdmin: Send + Sync {
    /// Creates the topic, or adds partitions up to `request.partitions`, and alters the
    /// spec's configs back where they drifted. Never removes partitions: a topic with more
    /// than requested is `TopicError::CannotDecrease`.
    fn ensure<'a>(
        &'a self,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicReport, TopicError>>;

    /// Deletes the topic; a topic that does not exist counts as deleted.
    fn delete<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>>;
}
