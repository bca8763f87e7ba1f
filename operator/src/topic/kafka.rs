//! `TopicManager` on the Kafka admin API (librdkafka).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConnection, TopicError, TopicManager, TopicOutcome, TopicRequest};

type Admin = AdminClient<DefaultClientContext>;

/// Talks to the brokers named in each request. Every admin call is bounded by `timeout`
/// (librdkafka's request/operation timeouts plus an outer deadline), so a dead broker makes
/// the reconcile fail and retry instead of hanging.
#[derive(Clone, Debug)]
pub struct KafkaTopicManager {
    timeout: Duration,
}

impl Default for KafkaTopicManager {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl KafkaTopicManager {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    fn admin(&self, connection: &KafkaConnection) -> Result<Arc<Admin>, TopicError> {
        let mut cfg = connection.client_config();
        let ms = self.timeout.as_millis().to_string();
        cfg.set("socket.timeout.ms", &ms)
            .set("socket.connection.setup.timeout.ms", &ms);
        cfg.create::<Admin>()
            .map(Arc::new)
            .map_err(|e| TopicError::Client(e.to_string()))
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        topic: &str,
        fut: impl std::future::Future<Output = Result<T, TopicError>>,
    ) -> Result<T, TopicError> {
        // librdkafka enforces `timeout`; the outer deadline only guards against a call
        // that never completes.
        let outer = self.timeout * 2;
        tokio::time::timeout(outer, fut)
            .await
            .map_err(|_| TopicError::Timeout {
                operation,
                topic: topic.to_string(),
                seconds: outer.as_secs(),
            })?
    }

    /// Partition count of `topic`, `None` when the broker does not know it.
    async fn partitions(&self, admin: &Arc<Admin>, topic: &str) -> Result<Option<i32>, TopicError> {
        let admin = admin.clone();
        let timeout = self.timeout;
        // Metadata of all topics: a request naming the topic lets the broker auto-create
        // it (librdkafka's admin handle is a producer, which allows that) with broker
        // defaults instead of the spec's partitions and config.
        let metadata =
            tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout));
        let metadata = self
            .bounded("describe", topic, async {
                metadata
                    .await
                    .map_err(|e| TopicError::Client(e.to_string()))?
                    .map_err(|e| admin_error("describe", topic, e))
            })
            .await?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            None => Ok(Some(t.partitions().len() as i32)),
            Some(err) => {
                let code = RDKafkaErrorCode::from(err);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    Ok(None)
                } else {
                    Err(TopicError::Admin {
                        operation: "describe",
                        topic: topic.to_string(),
                        message: code.to_string(),
                    })
                }
            }
        }
    }

    async fn create(&self, admin: &Admin, request: &TopicRequest) -> Result<bool, TopicError> {
        let retention = request.retention_ms.map(|r| r.to_string());
        let mut topic = NewTopic::new(
            &request.name,
            request.partitions,
            TopicReplication::Fixed(request.replication_factor),
        );
        if let Some(r) = &retention {
            topic = topic.set("retention.ms", r);
        }
        let results = self
            .bounded("create", &request.name, async {
                admin
                    .create_topics([&topic], &self.options())
                    .await
                    .map_err(|e| admin_error("create", &request.name, e))
            })
            .await?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(true),
            // Another writer (or a previous attempt) got there first.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
            Some(Err((_, code))) => Err(code_error("create", &request.name, code)),
            None => Err(TopicError::Admin {
                operation: "create",
                topic: request.name.clone(),
                message: "the broker returned no result".into(),
            }),
        }
    }

    async fn grow(&self, admin: &Admin, request: &TopicRequest) -> Result<(), TopicError> {
        let partitions = NewPartitions::new(&request.name, request.partitions as usize);
        let results = self
            .bounded("create-partitions", &request.name, async {
                admin
                    .create_partitions([&partitions], &self.options())
                    .await
                    .map_err(|e| admin_error("create-partitions", &request.name, e))
            })
            .await?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(code_error("create-partitions", &request.name, code)),
            None => Err(TopicError::Admin {
                operation: "create-partitions",
                topic: request.name.clone(),
                message: "the broker returned no result".into(),
            }),
        }
    }

    async fn ensure_topic(
        &self,
        connection: &KafkaConnection,
        request: &TopicRequest,
    ) -> Result<TopicOutcome, TopicError> {
        let admin = self.admin(connection)?;
        let current = match self.partitions(&admin, &request.name).await? {
            Some(n) => n,
            None => {
                if self.create(&admin, request).await? {
                    return Ok(TopicOutcome::Created {
                        partitions: request.partitions,
                    });
                }
                self.partitions(&admin, &request.name)
                    .await?
                    .ok_or_else(|| TopicError::Admin {
                        operation: "describe",
                        topic: request.name.clone(),
                        message: "topic reported as existing but has no metadata".into(),
                    })?
            }
        };
        if current == request.partitions {
            Ok(TopicOutcome::Unchanged {
                partitions: current,
            })
        } else if current > request.partitions {
            Err(TopicError::CannotDecrease {
                topic: request.name.clone(),
                current,
                requested: request.partitions,
            })
        } else {
            self.grow(&admin, request).await?;
            Ok(TopicOutcome::PartitionsIncreased {
                from: current,
                to: request.partitions,
            })
        }
    }

    async fn delete_topic(
        &self,
        connection: &KafkaConnection,
        topic: &str,
    ) -> Result<(), TopicError> {
        let admin = self.admin(connection)?;
        let results = self
            .bounded("delete", topic, async {
                admin
                    .delete_topics(&[topic], &self.options())
                    .await
                    .map_err(|e| admin_error("delete", topic, e))
            })
            .await?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => Ok(()),
            Some(Err((_, code))) => Err(code_error("delete", topic, code)),
            None => Ok(()),
        }
    }
}

fn admin_error(operation: &'static str, topic: &str, e: rdkafka::error::KafkaError) -> TopicError {
    TopicError::Admin {
        operation,
        topic: topic.to_string(),
        message: e.to_string(),
    }
}

fn code_error(operation: &'static str, topic: &str, code: RDKafkaErrorCode) -> TopicError {
    TopicError::Admin {
        operation,
        topic: topic.to_string(),
        message: format!("{code} ({code:?})"),
    }
}

impl TopicManager for KafkaTopicManager {
    fn ensure<'a>(
        &'a self,
        connection: &'a KafkaConnection,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicOutcome, TopicError>> {
        self.ensure_topic(connection, request).boxed()
    }

    fn delete<'a>(
        &'a self,
        connection: &'a KafkaConnection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        self.delete_topic(connection, topic).boxed()
    }
}
