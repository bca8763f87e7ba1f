//! `TopicManager` on the Kafka admin API (librdkafka).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{
    incremental_alter, ConfigReverted, KafkaConnection, TopicAdmin, TopicError, TopicManager,
    TopicOutcome, TopicReport, TopicRequest,
};

type Admin = AdminClient<DefaultClientContext>;

/// Builds admin clients. Every admin call is bounded by `timeout` (librdkafka's
/// request/operation timeouts plus an outer deadline), so a dead broker makes the
/// reconcile fail and retry instead of hanging.
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

    /// A concrete admin handle (what `connect` returns behind the trait).
    pub fn admin(&self, connection: &KafkaConnection) -> Result<KafkaTopicAdmin, TopicError> {
        let mut cfg = connection.client_config();
        let ms = self.timeout.as_millis().to_string();
        cfg.set("socket.timeout.ms", &ms)
            .set("socket.connection.setup.timeout.ms", &ms)
            // librdkafka's admin handle is a producer, whose metadata requests for a named
            // topic would otherwise let the broker auto-create it with broker defaults
            // instead of the spec's partitions and config.
            .set("allow.auto.create.topics", "false");
        let admin = cfg
            .create::<Admin>()
            .map_err(|e| TopicError::Client(e.to_string()))?;
        Ok(KafkaTopicAdmin {
            admin: Arc::new(admin),
            timeout: self.timeout,
        })
    }
}

impl TopicManager for KafkaTopicManager {
    fn connect(&self, connection: &KafkaConnection) -> Result<Arc<dyn TopicAdmin>, TopicError> {
        Ok(Arc::new(self.admin(connection)?))
    }
}

/// One admin client on one stack's brokers; its connections are kept between calls.
pub struct KafkaTopicAdmin {
    admin: Arc<Admin>,
    timeout: Duration,
}

/// Partitions and replication factor of a topic, as its metadata reports them.
struct Described {
    partitions: i32,
    replication_factor: i32,
}

impl KafkaTopicAdmin {
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

    /// Metadata of `topic` alone; `None` when the broker does not know it.
    async fn describe(&self, topic: &str) -> Result<Option<Described>, TopicError> {
        let admin = self.admin.clone();
        let timeout = self.timeout;
        let name = topic.to_string();
        let metadata =
            tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&name), timeout));
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
            None if t.partitions().is_empty() => Ok(None),
            None => Ok(Some(Described {
                partitions: t.partitions().len() as i32,
                replication_factor: t
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len() as i32)
                    .min()
                    .unwrap_or(0),
            })),
            Some(err) => {
                let code = RDKafkaErrorCode::from(err);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    Ok(None)
                } else {
                    Err(code_error("describe", topic, code))
                }
            }
        }
    }

    /// The live values of `keys` on `topic` (`None`: not reported).
    async fn configs(
        &self,
        topic: &str,
        keys: impl Iterator<Item = &String>,
    ) -> Result<BTreeMap<String, Option<String>>, TopicError> {
        let resource = ResourceSpecifier::Topic(topic);
        let results = self
            .bounded("describe-configs", topic, async {
                self.admin
                    .describe_configs([&resource], &self.options())
                    .await
                    .map_err(|e| admin_error("describe-configs", topic, e))
            })
            .await?;
        let described = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => return Err(code_error("describe-configs", topic, code)),
            None => return Err(no_result("describe-configs", topic)),
        };
        Ok(keys
            .map(|k| {
                (
                    k.clone(),
                    described.get(k).and_then(|entry| entry.value.clone()),
                )
            })
            .collect())
    }

    async fn alter(&self, topic: &str, configs: Vec<(String, String)>) -> Result<(), TopicError> {
        let admin = self.admin.clone();
        let timeout = self.timeout;
        let name = topic.to_string();
        let call = tokio::task::spawn_blocking(move || {
            incremental_alter::set_topic_configs(
                admin.inner().native_ptr(),
                &name,
                &configs,
                timeout,
            )
        });
        self.bounded("alter-configs", topic, async {
            call.await
                .map_err(|e| TopicError::Client(e.to_string()))?
                .map_err(|message| TopicError::Admin {
                    operation: "alter-configs",
                    topic: topic.to_string(),
                    message,
                })
        })
        .await
    }

    async fn create(&self, request: &TopicRequest) -> Result<bool, TopicError> {
        let configs = request.configs();
        let mut topic = NewTopic::new(
            &request.name,
            request.partitions,
            TopicReplication::Fixed(request.replication_factor),
        );
        for (key, value) in &configs {
            topic = topic.set(key, value);
        }
        let results = self
            .bounded("create", &request.name, async {
                self.admin
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
            None => Err(no_result("create", &request.name)),
        }
    }

    async fn grow(&self, request: &TopicRequest) -> Result<(), TopicError> {
        let partitions = NewPartitions::new(&request.name, request.partitions as usize);
        let results = self
            .bounded("create-partitions", &request.name, async {
                self.admin
                    .create_partitions([&partitions], &self.options())
                    .await
                    .map_err(|e| admin_error("create-partitions", &request.name, e))
            })
            .await?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(code_error("create-partitions", &request.name, code)),
            None => Err(no_result("create-partitions", &request.name)),
        }
    }

    async fn ensure_topic(&self, request: &TopicRequest) -> Result<TopicReport, TopicError> {
        let current = match self.describe(&request.name).await? {
            Some(d) => d,
            None => {
                if self.create(request).await? {
                    return Ok(TopicReport {
                        outcome: TopicOutcome::Created {
                            partitions: request.partitions,
                        },
                        replication_factor: request.replication_factor,
                        reverted: Vec::new(),
                    });
                }
                self.describe(&request.name)
                    .await?
                    .ok_or_else(|| TopicError::Admin {
                        operation: "describe",
                        topic: request.name.clone(),
                        message: "topic reported as existing but has no metadata".into(),
                    })?
            }
        };
        let outcome = if current.partitions == request.partitions {
            TopicOutcome::Unchanged {
                partitions: current.partitions,
            }
        } else if current.partitions > request.partitions {
            return Err(TopicError::CannotDecrease {
                topic: request.name.clone(),
                current: current.partitions,
                requested: request.partitions,
            });
        } else {
            self.grow(request).await?;
            TopicOutcome::PartitionsIncreased {
                from: current.partitions,
                to: request.partitions,
            }
        };
        let wanted = request.configs();
        let mut reverted = Vec::new();
        if !wanted.is_empty() {
            let live = self.configs(&request.name, wanted.keys()).await?;
            reverted = wanted
                .into_iter()
                .filter_map(|(key, wanted)| {
                    let found = live.get(&key).cloned().flatten();
                    (found.as_deref() != Some(wanted.as_str())).then_some(ConfigReverted {
                        key,
                        found,
                        wanted,
                    })
                })
                .collect();
            if !reverted.is_empty() {
                let set = reverted
                    .iter()
                    .map(|r| (r.key.clone(), r.wanted.clone()))
                    .collect();
                self.alter(&request.name, set).await?;
            }
        }
        Ok(TopicReport {
            outcome,
            replication_factor: current.replication_factor,
            reverted,
        })
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), TopicError> {
        let results = self
            .bounded("delete", topic, async {
                self.admin
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

fn no_result(operation: &'static str, topic: &str) -> TopicError {
    TopicError::Admin {
        operation,
        topic: topic.to_string(),
        message: "the broker returned no result".into(),
    }
}

impl TopicAdmin for KafkaTopicAdmin {
    fn ensure<'a>(
        &'a self,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicReport, TopicError>> {
        self.ensure_topic(request).boxed()
    }

    fn delete<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        self.delete_topic(topic).boxed()
    }
}
