//! An in-process `TopicManager`: topics are a map from name to partitions, replication
//! factor and configs. It keeps the same rules as the real one (create, grow, never
//! shrink, alter drifted configs back, report the replication factor), for reconcile
//! tests. It records every `connect` and the connection of every call, so tests see which
//! brokers and credentials were used and how often a client was built.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{
    ConfigReverted, KafkaConnection, TopicAdmin, TopicError, TopicManager, TopicOutcome,
    TopicReport, TopicRequest,
};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Topic {
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Cluster {
    topics: Mutex<BTreeMap<String, Topic>>,
    deleted: Mutex<Vec<String>>,
    ensured: Mutex<Vec<(KafkaConnection, TopicRequest)>>,
    connects: Mutex<Vec<KafkaConnection>>,
    /// When set, every call times out, as with brokers that are gone.
    unreachable: AtomicBool,
}

#[derive(Debug, Default)]
pub struct MemoryTopicManager {
    cluster: Arc<Cluster>,
}

impl MemoryTopicManager {
    /// Starts with these topics and partition counts (replication factor 1, no configs).
    pub fn with_topics<'a>(topics: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        let me = Self::default();
        me.cluster
            .topics
            .lock()
            .unwrap()
            .extend(topics.into_iter().map(|(n, p)| {
                (
                    n.to_string(),
                    Topic {
                        partitions: p,
                        replication_factor: 1,
                        configs: BTreeMap::new(),
                    },
                )
            }));
        me
    }

    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.cluster
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .map(|t| t.partitions)
    }

    /// A config of `topic` as the brokers hold it (`None`: the broker default).
    pub fn config(&self, topic: &str, key: &str) -> Option<String> {
        self.cluster
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .and_then(|t| t.configs.get(key).cloned())
    }

    /// A change made on the brokers by hand (`kafka-configs.sh --alter`).
    pub fn set_config(&self, topic: &str, key: &str, value: &str) {
        if let Some(t) = self.cluster.topics.lock().unwrap().get_mut(topic) {
            t.configs.insert(key.to_string(), value.to_string());
        }
    }

    /// The replication factor of `topic` as created or reassigned by hand.
    pub fn replication_factor(&self, topic: &str) -> Option<i32> {
        self.cluster
            .topics
            .lock()
            .unwrap()
            .get(topic)
            .map(|t| t.replication_factor)
    }

    /// A partition reassignment made by hand.
    pub fn set_replication_factor(&self, topic: &str, replication_factor: i32) {
        if let Some(t) = self.cluster.topics.lock().unwrap().get_mut(topic) {
            t.replication_factor = replication_factor;
        }
    }

    /// Every `ensure` call so far, in order, with the connection it was given.
    pub fn ensure_calls(&self) -> Vec<(KafkaConnection, TopicRequest)> {
        self.cluster.ensured.lock().unwrap().clone()
    }

    /// Every admin client built so far (`connect`), in order.
    pub fn connects(&self) -> Vec<KafkaConnection> {
        self.cluster.connects.lock().unwrap().clone()
    }

    /// Makes every later call time out (brokers gone), or answer again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.cluster
            .unreachable
            .store(unreachable, Ordering::SeqCst);
    }

    /// Topics deleted so far, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.cluster.deleted.lock().unwrap().clone()
    }
}

impl TopicManager for MemoryTopicManager {
    fn connect(&self, connection: &KafkaConnection) -> Result<Arc<dyn TopicAdmin>, TopicError> {
        self.cluster
            .connects
            .lock()
            .unwrap()
            .push(connection.clone());
        Ok(Arc::new(MemoryAdmin {
            cluster: self.cluster.clone(),
            connection: connection.clone(),
        }))
    }
}

struct MemoryAdmin {
    cluster: Arc<Cluster>,
    connection: KafkaConnection,
}

impl MemoryAdmin {
    fn timeout(&self, operation: &'static str, topic: &str) -> Option<TopicError> {
        self.cluster
            .unreachable
            .load(Ordering::SeqCst)
            .then(|| TopicError::Timeout {
                operation,
                topic: topic.to_string(),
                seconds: 10,
            })
    }

    fn ensure_now(&self, request: &TopicRequest) -> Result<TopicReport, TopicError> {
        self.cluster
            .ensured
            .lock()
            .unwrap()
            .push((self.connection.clone(), request.clone()));
        if let Some(e) = self.timeout("describe", &request.name) {
            return Err(e);
        }
        let mut topics = self.cluster.topics.lock().unwrap();
        let Some(topic) = topics.get_mut(&request.name) else {
            topics.insert(
                request.name.clone(),
                Topic {
                    partitions: request.partitions,
                    replication_factor: request.replication_factor,
                    configs: request.configs(),
                },
            );
            return Ok(TopicReport {
                outcome: TopicOutcome::Created {
                    partitions: request.partitions,
                },
                replication_factor: request.replication_factor,
                reverted: Vec::new(),
            });
        };
        let current = topic.partitions;
        let outcome = if current == request.partitions {
            TopicOutcome::Unchanged {
                partitions: current,
            }
        } else if current > request.partitions {
            return Err(TopicError::CannotDecrease {
                topic: request.name.clone(),
                current,
                requested: request.partitions,
            });
        } else {
            topic.partitions = request.partitions;
            TopicOutcome::PartitionsIncreased {
                from: current,
                to: request.partitions,
            }
        };
        let mut reverted = Vec::new();
        for (key, wanted) in request.configs() {
            let found = topic.configs.get(&key).cloned();
            if found.as_deref() != Some(wanted.as_str()) {
                topic.configs.insert(key.clone(), wanted.clone());
                reverted.push(ConfigReverted { key, found, wanted });
            }
        }
        Ok(TopicReport {
            outcome,
            replication_factor: topic.replication_factor,
            reverted,
        })
    }
}

impl TopicAdmin for MemoryAdmin {
    fn ensure<'a>(
        &'a self,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicReport, TopicError>> {
        futures::future::ready(self.ensure_now(request)).boxed()
    }

    fn delete<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), TopicError>> {
        if let Some(e) = self.timeout("delete", topic) {
            return futures::future::ready(Err(e)).boxed();
        }
        self.cluster.topics.lock().unwrap().remove(topic);
        self.cluster.deleted.lock().unwrap().push(topic.to_string());
        futures::future::ready(Ok(())).boxed()
    }
}
