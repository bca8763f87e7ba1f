//! `KafkaTopicManager` against real Kafka-protocol brokers on loopback TCP: a tansu
//! process (`$TANSU_BIN`) and librdkafka's mock cluster.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use shortener_operator::topic::{
    KafkaConnection, KafkaTopicManager, TopicAdmin, TopicError, TopicOutcome, TopicRequest,
};

/// A tansu broker storing in memory, killed on drop.
struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    fn binary() -> PathBuf {
        if let Some(bin) = std::env::var_os("TANSU_BIN") {
            return bin.into();
        }
        let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/bin/tansu");
        assert!(
            cached.exists(),
            "TANSU_BIN is not set and {} does not exist: run the tests through ./scripts/test, \
             which fetches the tansu broker",
            cached.display()
        );
        cached
    }

    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(Self::binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn connection(&self) -> KafkaConnection {
        KafkaConnection::plaintext(format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(name: &str, partitions: i32) -> TopicRequest {
    TopicRequest {
        name: name.into(),
        partitions,
        replication_factor: 1,
        retention_ms: Some(86_400_000),
    }
}

/// The mock cluster serves no DescribeConfigs: its tests leave the configs to the broker.
fn request_without_configs(name: &str, partitions: i32) -> TopicRequest {
    TopicRequest {
        retention_ms: None,
        ..request(name, partitions)
    }
}

/// Generous for a loaded machine; the calls themselves take milliseconds.
fn manager() -> KafkaTopicManager {
    KafkaTopicManager::new(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_creates_finds_refuses_to_shrink_and_deletes() {
    let broker = Tansu::start();
    let conn = broker.connection();
    let topics = manager().admin(&conn).unwrap();

    let created = topics.ensure(&request("clicks", 4)).await.unwrap();
    assert_eq!(created.outcome, TopicOutcome::Created { partitions: 4 });
    // The broker reports what was created.
    let again = topics.ensure(&request("clicks", 4)).await.unwrap();
    assert_eq!(again.outcome, TopicOutcome::Unchanged { partitions: 4 });
    assert_eq!(again.replication_factor, 1);
    assert_eq!(again.reverted, []);

    let err = topics.ensure(&request("clicks", 2)).await.unwrap_err();
    assert_eq!(
        err,
        TopicError::CannotDecrease {
            topic: "clicks".into(),
            current: 4,
            requested: 2
        }
    );
    assert!(
        err.to_string().contains("cannot remove partitions"),
        "{err}"
    );

    // tansu does not implement CreatePartitions: the increase path must fail with a clear
    // error (and never hang); the mock-cluster test below covers the success path.
    let started = Instant::now();
    match topics.ensure(&request("clicks", 6)).await {
        Err(TopicError::Admin {
            operation,
            topic,
            message,
        }) => {
            assert_eq!((operation, topic.as_str()), ("create-partitions", "clicks"));
            assert!(message.contains("UnsupportedFeature"), "{message}");
        }
        other => panic!("expected tansu to refuse CreatePartitions, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(25));

    topics.delete("clicks").await.unwrap();
    // Deleting a topic that is gone counts as done.
    topics.delete("clicks").await.unwrap();
    let recreated = topics.ensure(&request("clicks", 3)).await.unwrap();
    assert_eq!(recreated.outcome, TopicOutcome::Created { partitions: 3 });
}

/// librdkafka's mock cluster serves metadata but never answers admin CreatePartitions
/// (as with CreateTopics). This pins that the increase path is taken against a topic with
/// fewer partitions, issues CreatePartitions, and ends in a clear, bounded error instead of
/// hanging; the topic stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_increase_path_is_bounded() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("clicks", 2, 1)
        .expect("create topic on the mock cluster");
    let conn = KafkaConnection::plaintext(cluster.bootstrap_servers());
    let topics = KafkaTopicManager::new(Duration::from_secs(3))
        .admin(&conn)
        .unwrap();

    let found = topics
        .ensure(&request_without_configs("clicks", 2))
        .await
        .unwrap();
    assert_eq!(found.outcome, TopicOutcome::Unchanged { partitions: 2 });
    let started = Instant::now();
    match topics.ensure(&request_without_configs("clicks", 5)).await {
        Err(TopicError::Admin {
            operation,
            topic,
            message,
        }) => {
            assert_eq!((operation, topic.as_str()), ("create-partitions", "clicks"));
            assert!(message.contains("Timed out"), "{message}");
        }
        other => panic!("expected the mock cluster to time out CreatePartitions, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let after = topics
        .ensure(&request_without_configs("clicks", 2))
        .await
        .unwrap();
    assert_eq!(after.outcome, TopicOutcome::Unchanged { partitions: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_fails_within_the_deadline() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conn = KafkaConnection::plaintext(format!("127.0.0.1:{port}"));
    let topics = KafkaTopicManager::new(Duration::from_secs(2))
        .admin(&conn)
        .unwrap();
    let started = Instant::now();
    let err = topics.ensure(&request("clicks", 4)).await.unwrap_err();
    assert!(
        matches!(err, TopicError::Admin { .. } | TopicError::Timeout { .. }),
        "{err}"
    );
    // Bounded by the outer deadline (2 × timeout) plus slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// `operator topic ensure` (what ./scripts/dev-up runs) creates both topics, is idempotent,
/// and refuses to shrink them with a clear message and a failing exit status.
#[test]
fn topic_ensure_subcommand_creates_both_topics_and_refuses_to_shrink() {
    let broker = Tansu::start();
    let run = |partitions: &str| {
        Command::new(env!("CARGO_BIN_EXE_operator"))
            .args(["topic", "ensure", "--partitions", partitions])
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                broker.connection().bootstrap_servers(),
            )
            .env("KAFKA_TOPIC", "cli-clicks")
            .env_remove("KAFKA_DLQ_TOPIC")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run operator topic ensure")
    };
    let first = run("3");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout.contains("topic cli-clicks: created with 3 partitions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("topic cli-clicks.dlq: created with 3 partitions"),
        "{stdout}"
    );

    let again = run("3");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{again:?}");
    assert!(
        stdout.contains("topic cli-clicks: exists with 3 partitions"),
        "{stdout}"
    );

    let shrink = run("1");
    let stderr = String::from_utf8_lossy(&shrink.stderr);
    assert!(!shrink.status.success());
    assert!(
        stderr.contains("Kafka cannot remove partitions, set kafka.partitions to at least 3"),
        "{stderr}"
    );
}

/// `retention.ms` changed on the broker by hand is set back to the spec by the next
/// `ensure` (IncrementalAlterConfigs), and reported; the following one finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_config_drift_is_altered_back() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use shortener_operator::topic::ConfigReverted;

    let broker = Tansu::start();
    let conn = broker.connection();
    let topics = manager().admin(&conn).unwrap();
    topics.ensure(&request("clicks", 2)).await.unwrap();

    let by_hand: AdminClient<DefaultClientContext> = conn.client_config().create().unwrap();
    async fn retention(admin: &AdminClient<DefaultClientContext>) -> Option<String> {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic("clicks")], &AdminOptions::new())
            .await
            .unwrap();
        let resource = described.into_iter().next().unwrap().unwrap();
        resource.get("retention.ms").and_then(|e| e.value.clone())
    }
    // tansu serves IncrementalAlterConfigs but not the older AlterConfigs, so the hand
    // edit goes through the same request as the operator's (a spec asking for 1 s).
    let hand_edit = TopicRequest {
        retention_ms: Some(1000),
        ..request("clicks", 2)
    };
    topics.ensure(&hand_edit).await.unwrap();
    assert_eq!(retention(&by_hand).await.as_deref(), Some("1000"));

    let report = topics.ensure(&request("clicks", 2)).await.unwrap();
    assert_eq!(
        report.reverted,
        [ConfigReverted {
            key: "retention.ms".into(),
            found: Some("1000".into()),
            wanted: "86400000".into()
        }]
    );
    assert_eq!(retention(&by_hand).await.as_deref(), Some("86400000"));
    let settled = topics.ensure(&request("clicks", 2)).await.unwrap();
    assert_eq!(settled.reverted, []);
}
