//! The clicks topic and its dead-letter topic.
//!
//! Reconcile logic talks to a `TopicManager`, so it can be exercised without a broker;
//! `KafkaTopicManager` is the real one (librdkafka admin API), `MemoryTopicManager` an
//! in-process one for reconcile tests and dry runs.

mod connection;
mod kafka;
mod memory;

pub use connection::KafkaConnection;
pub use kafka::KafkaTopicManager;
pub use memory::MemoryTopicManager;

use futures::future::BoxFuture;

/// What a topic should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `retention.ms`; `None` keeps the broker default.
    pub retention_ms: Option<i64>,
}

/// What `ensure` did.
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
    pub fn reason(&self) -> &'static str {
        match self {
            TopicError::CannotDecrease { .. } => "PartitionDecreaseRefused",
            TopicError::Admin { .. } => "AdminRequestFailed",
            TopicError::Timeout { .. } => "BrokerUnreachable",
            TopicError::Client(_) => "InvalidKafkaSettings",
        }
    }
}

/// Creates, grows and deletes topics.
pub trait TopicManager: Send + Sync {
    /// Creates the topic, or adds partitions up to `request.partitions`. Never removes
    /// partitions: a topic with more than requested is `TopicError::CannotDecrease`.
    fn ensure<'a>(
        &'a self,
        connection: &'a KafkaConnection,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicOutcome, TopicError>>;

    /// Deletes the topic; a topic that does not exist counts as deleted.
    fn delete<'a>(
        &'a self,
        connection: &'a KafkaConnection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<(), TopicError>>;
}
