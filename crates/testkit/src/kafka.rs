//! Kafka-protocol brokers on loopback for tests, and small produce/consume helpers that
//! work against any broker (a [`MockBroker`], tansu, a real cluster).
//!
//! [`MockBroker`] runs librdkafka's mock cluster: real brokers speaking the Kafka protocol
//! over TCP, with consumer groups, commits and watermarks. The cluster handle holds raw
//! pointers (it is neither `Send` nor `Sync`), so it lives on a thread of its own and is
//! driven through a channel; the [`MockBroker`] handle itself can go anywhere.
//! The mock brokers do not implement the CreateTopics admin request (it hangs): create
//! topics with [`MockBroker::create_topic`].

use std::sync::{mpsc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Shutdown,
}

/// A librdkafka mock cluster owned by a dedicated thread. Dropping it stops the brokers.
pub struct MockBroker {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    producer: OnceLock<FutureProducer>,
}

impl MockBroker {
    /// A cluster of one broker.
    pub fn start() -> Self {
        Self::with_brokers(1)
    }

    pub fn with_brokers(count: i32) -> Self {
        let (commands, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("kafka-mock-cluster".into())
            .spawn(move || {
                let cluster = match MockCluster::new(count) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(result);
                        }
                        Command::Shutdown => break,
                    }
                }
            })
            .expect("spawn mock cluster thread");
        let bootstrap = ready_rx
            .recv()
            .expect("mock cluster thread died")
            .unwrap_or_else(|e| panic!("cannot start the Kafka mock cluster: {e}"));
        Self {
            bootstrap,
            commands,
            thread: Some(thread),
            producer: OnceLock::new(),
        }
    }

    /// `host:port[,host:port]` of the brokers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `name` with `partitions` partitions (replication factor 1). Panics on failure.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let (reply, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic {
                name: name.to_string(),
                partitions,
                reply,
            })
            .expect("mock cluster thread is gone");
        rx.recv()
            .expect("mock cluster thread is gone")
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    }

    /// A producer for this cluster, created on first use and shared.
    pub fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| producer(&self.bootstrap))
    }

    /// Produces one message and waits for its delivery; returns (partition, offset).
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> (i32, i64) {
        produce_with(self.producer(), topic, key, payload, headers).await
    }

    /// Produces every message concurrently and waits for all deliveries; returns their
    /// (partition, offset) in input order.
    pub async fn produce_batch(&self, topic: &str, messages: &[TestMessage]) -> Vec<(i32, i64)> {
        let sends = messages.iter().map(|m| {
            let headers: Vec<(&str, &[u8])> = m
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            async move {
                produce_with(
                    self.producer(),
                    topic,
                    m.key.as_deref(),
                    &m.payload,
                    &headers,
                )
                .await
            }
        });
        futures::future::join_all(sends).await
    }

    /// Reads `n` messages of `topic` from the beginning (all partitions, no consumer group).
    pub async fn consume_all(&self, topic: &str, n: usize, timeout: Duration) -> Vec<Received> {
        consume_all(&self.bootstrap, topic, n, timeout).await
    }

    /// High watermark (next offset to be written) of each partition of `topic`, by partition.
    pub fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        high_watermarks(&self.bootstrap, topic)
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        // Clients must go before the brokers they talk to.
        drop(self.producer.take());
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A message to produce with [`MockBroker::produce_batch`].
#[derive(Debug, Clone, Default)]
pub struct TestMessage {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TestMessage {
    pub fn new(key: impl Into<Vec<u8>>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: Some(key.into()),
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A message read back by [`consume_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    /// The first header called `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// An idempotent producer for `bootstrap` that waits for every in-sync replica.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create test producer")
}

/// Produces one message through `producer` and waits for delivery; returns (partition, offset).
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &[(&str, &[u8])],
) -> (i32, i64) {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(payload)
        .headers(owned);
    if let Some(key) = key {
        record = record.key(key);
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    (delivery.partition, delivery.offset)
}

/// Reads `n` messages of `topic` from the beginning of every partition without a consumer
/// group (nothing is committed). Panics when fewer than `n` arrive within `timeout`.
pub async fn consume_all(
    bootstrap: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Received> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("testkit-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("create test consumer");
    let partitions = partition_count(&consumer, topic);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign partitions");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("consume {topic}: {e}"),
            Err(_) => panic!(
                "only {} of {n} messages arrived on {topic} within {timeout:?}",
                out.len()
            ),
        };
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Received {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    out
}

/// High watermark of each partition of `topic`, by partition. Blocking.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create metadata client");
    (0..partition_count(&consumer, topic))
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .collect()
}

fn partition_count<C: Consumer>(consumer: &C, topic: &str) -> i32 {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("topic {topic} not in metadata"));
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
    t.partitions().len() as i32
}
