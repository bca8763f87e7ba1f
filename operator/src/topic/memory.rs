//! An in-process `TopicManager`: topics are a map from name to partition count. It keeps
//! the same rules as the real one (create, grow, never shrink), for reconcile tests. It
//! records the connection of every call, so tests see which brokers and credentials were used.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{KafkaConnection, TopicError, TopicManager, TopicOutcome, TopicRequest};

#[derive(Debug, Default)]
pub struct MemoryTopicManager {
    topics: Mutex<BTreeMap<String, i32>>,
    deleted: Mutex<Vec<String>>,
    ensured: Mutex<Vec<(KafkaConnection, TopicRequest)>>,
    /// When set, every call times out, as with brokers that are gone.
    unreachable: std::sync::atomic::AtomicBool,
}

impl MemoryTopicManager {
    /// Starts with these topics and partition counts.
    pub fn with_topics<'a>(topics: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        let me = Self::default();
        me.topics
            .lock()
            .unwrap()
            .extend(topics.into_iter().map(|(n, p)| (n.to_string(), p)));
        me
    }

    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.topics.lock().unwrap().get(topic).copied()
    }

    /// Every `ensure` call so far, in order, with the connection it was given.
    pub fn ensure_calls(&self) -> Vec<(KafkaConnection, TopicRequest)> {
        self.ensured.lock().unwrap().clone()
    }

    /// Makes every later call time out (brokers gone), or answer again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable
            .store(unreachable, std::sync::atomic::Ordering::SeqCst);
    }

    fn timeout(&self, operation: &'static str, topic: &str) -> Option<TopicError> {
        self.unreachable
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| TopicError::Timeout {
                operation,
                topic: topic.to_string(),
                seconds: 10,
            })
    }

    /// Topics deleted so far, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().unwrap().clone()
    }
}

impl TopicManager for MemoryTopicManager {
    fn ensure<'a>(
        &'a self,
        connection: &'a KafkaConnection,
        request: &'a TopicRequest,
    ) -> BoxFuture<'a, Result<TopicOutcome, TopicError>> {
        self.ensured
            .lock()
            .unwrap()
            .push((connection.clone(), request.clone()));
        if let Some(e) = self.timeout("describe", &request.name) {
            return futures::future::ready(Err(e)).boxed();
        }
        let mut topics = self.topics.lock().unwrap();
        let outcome = match topics.get(&request.name).copied() {
            None => {
                topics.insert(request.name.clone(), request.partitions);
                Ok(TopicOutcome::Created {
                    partitions: request.partitions,
                })
            }
            Some(current) if current == request.partitions => Ok(TopicOutcome::Unchanged {
                partitions: current,
            }),
            Some(current) if current > request.partitions => Err(TopicError::CannotDecrease {
                topic: request.name.clone(),
                current,
                requested: request.partitions,
            }),
            Some(current) => {
                topics.insert(request.name.clone(), request.partitions);
                Ok(TopicOutcome::PartitionsIncreased {
                    from: current,
                    to: request.partitions,
                })
            }
        };
        futures::future::ready(outcome).boxed()
    }

    fn delete<'a>(
        &'a self,
        _connection: &'a KafkaConnection,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<(), TopicError>> {
        if let Some(e) = self.timeout("delete", topic) {
            return futures::future::ready(Err(e)).boxed();
        }
        self.topics.lock().unwrap().remove(topic);
        self.deleted.lock().unwrap().push(topic.to_string());
        futures::future::ready(Ok(())).boxed()
    }
}
