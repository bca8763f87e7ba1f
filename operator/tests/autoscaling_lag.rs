//! The lag reader against a real Kafka-protocol broker (librdkafka's mock cluster on
//! loopback TCP): committed offsets of a group versus the partitions' high watermarks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shortener_operator::autoscaling::{KafkaLagReader, LagError, LagSource};
use shortener_operator::topic::KafkaConnection;
use shortener_testkit::kafka::MockBroker;

const TOPIC: &str = "clicks";
const GROUP: &str = "shortener-consumer";
const PARTITIONS: i32 = 4;
const MESSAGES: usize = 40;

/// Reads `n` messages as a member of `group` and commits, per partition, the offset after
/// the last message read. Returns the committed offsets by partition.
async fn consume_and_commit(bootstrap: &str, group: &str, n: usize) -> BTreeMap<i32, i64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create group consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for read in 0..n {
        let msg = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {read} of {n} messages arrived within 60s"))
            .expect("consume");
        next.insert(msg.partition(), msg.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &offset) in &next {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(offset))
            .expect("add partition");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_follows_production_and_commits() {
    let broker = MockBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    for i in 0..MESSAGES {
        let key = format!("short-{i}");
        broker
            .produce(TOPIC, Some(key.as_bytes()), b"click", &[])
            .await;
    }
    let high = broker.high_watermarks(TOPIC);
    assert_eq!(high.len(), PARTITIONS as usize);
    assert_eq!(high.iter().sum::<i64>(), MESSAGES as i64);

    let reader = KafkaLagReader::new(Duration::from_secs(10));
    let connection = KafkaConnection::plaintext(broker.bootstrap());

    // No consumer has run: every message is lag, counted from the start of the log.
    let started = Instant::now();
    let report = reader
        .measure("shop/demo", &connection, GROUP, TOPIC)
        .await
        .expect("measure lag");
    eprintln!(
        "lag read from the mock broker in {:?} ({} partitions)",
        started.elapsed(),
        report.partition_count()
    );
    assert_eq!(report.total, MESSAGES as i64);
    assert_eq!(report.partition_count(), PARTITIONS);
    for (p, part) in report.partitions.iter().enumerate() {
        assert_eq!(part.partition, p as i32);
        assert_eq!(part.committed, None, "partition {p}");
        assert_eq!(part.low, 0, "partition {p}");
        assert_eq!(part.high, high[p], "partition {p}");
        assert_eq!(part.lag, high[p], "partition {p}");
    }

    // A member of the group reads half and commits.
    let committed = consume_and_commit(broker.bootstrap(), GROUP, MESSAGES / 2).await;
    let started = Instant::now();
    let report = reader
        .measure("shop/demo", &connection, GROUP, TOPIC)
        .await
        .expect("measure lag");
    eprintln!("lag read after commits in {:?}", started.elapsed());
    assert_eq!(report.total, (MESSAGES - MESSAGES / 2) as i64);
    for (p, part) in report.partitions.iter().enumerate() {
        let done = committed.get(&(p as i32)).copied();
        assert_eq!(part.committed, done, "partition {p}");
        assert_eq!(part.lag, high[p] - done.unwrap_or(0), "partition {p}");
    }

    // Another group on the same topic has read nothing.
    let other = reader
        .measure("shop/demo", &connection, "someone-else", TOPIC)
        .await
        .expect("measure lag");
    assert_eq!(other.total, MESSAGES as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_give_an_error_not_a_hang() {
    // Port 1 on loopback: nothing listens, connections are refused.
    let connection = KafkaConnection::plaintext("127.0.0.1:1");
    let reader = KafkaLagReader::new(Duration::from_secs(2));
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        reader.measure("shop/demo", &connection, GROUP, TOPIC),
    )
    .await
    .expect("the reader's own deadlines end the measurement");
    match result {
        Err(LagError::Request { operation, .. }) => assert_eq!(operation, "metadata"),
        Err(LagError::Timeout { .. }) => {}
        other => panic!("expected a request error or timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_kept_consumer_follows_new_commits_until_the_stack_is_forgotten() {
    let broker = MockBroker::start();
    broker.create_topic(TOPIC, PARTITIONS);
    for i in 0..MESSAGES {
        let key = format!("short-{i}");
        broker
            .produce(TOPIC, Some(key.as_bytes()), b"click", &[])
            .await;
    }
    let reader = KafkaLagReader::new(Duration::from_secs(10));
    let connection = KafkaConnection::plaintext(broker.bootstrap());

    let first = reader
        .measure("shop/demo", &connection, GROUP, TOPIC)
        .await
        .expect("measure lag");
    assert_eq!(first.total, MESSAGES as i64);
    assert_eq!(reader.cached_consumers(), 1);

    // The kept consumer reads the group's new commits and the new watermarks, not values
    // cached from its first measurement.
    consume_and_commit(broker.bootstrap(), GROUP, MESSAGES / 2).await;
    broker.produce(TOPIC, Some(b"late"), b"click", &[]).await;
    let second = reader
        .measure("shop/demo", &connection, GROUP, TOPIC)
        .await
        .expect("measure lag");
    assert_eq!(second.total, (MESSAGES - MESSAGES / 2 + 1) as i64);
    assert_eq!(reader.cached_consumers(), 1, "one consumer for the stack");

    LagSource::forget(&reader, "shop/demo");
    assert_eq!(reader.cached_consumers(), 0);
}
