//! Writes that fail for reasons other than the clicks themselves: the batch is retried
//! (never dead-lettered and committed), the consumer reports not-ready with the cause, and
//! everything is stored once the fault is fixed.

mod common;

use common::*;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use shortener_testkit::kafka::produce_with;
use shortener_testkit::postgres::{fresh_database, TestDatabase};
use uuid::Uuid;

/// A login role with everything the consumer needs but INSERT on clicks; returns its URL.
async fn role_without_insert(db: &TestDatabase) -> (String, String) {
    let role = format!("c_{}", Uuid::new_v4().simple());
    for stmt in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name),
        format!("GRANT SELECT ON clicks TO {role}"),
        format!("GRANT USAGE ON SEQUENCE clicks_id_seq TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON link_visits TO {role}"),
        format!("GRANT SELECT, INSERT ON click_visitors, visitor_salts TO {role}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE ON click_totals, click_hourly, \
             click_breakdown_hourly, click_breakdown_daily TO {role}"
        ),
        format!("GRANT SELECT, INSERT, DELETE, UPDATE ON click_rollup_queue TO {role}"),
        format!("GRANT SELECT ON retention_floor TO {role}"),
    ] {
        sqlx::query(&stmt).execute(&db.pool).await.unwrap();
    }
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    (role, url.to_string())
}

async fn exec(db: &TestDatabase, stmt: &str) {
    sqlx::query(stmt).execute(&db.pool).await.unwrap();
}

/// Waits until the consumer retried `at_least` more writes, then checks it is not ready
/// for `reason` and has stored and dead-lettered nothing of `code`.
async fn assert_held_back(running: &Running, db: &TestDatabase, code: &str, at_least: u64) {
    wait_until("write retries", || async {
        running.metrics.db_retries.get() >= at_least
    })
    .await;
    let (status, body) = http_get(running.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("retrying a failed database write"), "{body}");
    let (_, metrics) = http_get(running.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"shortener_consumer_stalled_batches{cause="database"} "#)
            && metric_sum(&metrics, "shortener_consumer_stalled_batches").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(count(&db.pool, code).await, 0);
    assert_eq!(
        running.metrics.dead_lettered.get(),
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permission_and_read_only_errors_are_retried_not_dead_lettered() {
    let broker = broker();
    let db = fresh_database().await;
    let (role, url) = role_without_insert(&db).await;

    // 42501 insufficient_privilege: a grant missing after a restore or a role change.
    let first: Vec<_> = (0..60).map(|i| click("perm1", i)).collect();
    broker
        .produce_batch(TOPIC, &first.iter().map(message).collect::<Vec<_>>())
        .await;
    let running = start(args(&broker, &url, "g-perm")).await;
    assert_held_back(&running, &db, "perm1", 3).await;
    exec(&db, &format!("GRANT INSERT ON clicks TO {role}")).await;
    wait_until("the held-back clicks stored", || async {
        count(&db.pool, "perm1").await == 60
    })
    .await;
    wait_until("ready again", || async {
        http_get(running.admin, "/readyz").await.0 == 200
    })
    .await;

    // 25006 read_only_sql_transaction: the consumer's connections now reach a standby
    // (staged as a role whose sessions are read-only, reconnected).
    exec(
        &db,
        &format!("ALTER ROLE {role} SET default_transaction_read_only = on"),
    )
    .await;
    exec(
        &db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    )
    .await;
    let retries = running.metrics.db_retries.get();
    let second: Vec<_> = (0..40).map(|i| click("ro1", i)).collect();
    broker
        .produce_batch(TOPIC, &second.iter().map(message).collect::<Vec<_>>())
        .await;
    assert_held_back(&running, &db, "ro1", retries + 3).await;
    exec(
        &db,
        &format!("ALTER ROLE {role} RESET default_transaction_read_only"),
    )
    .await;
    exec(
        &db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    )
    .await;
    wait_until("the read-only wave stored", || async {
        count(&db.pool, "ro1").await == 40
    })
    .await;
    assert_eq!(running.metrics.dead_lettered.get(), 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refused_whole_with_one_sqlstate_is_retried_not_dead_lettered() {
    let broker = broker();
    let db = fresh_database().await;
    // A constraint every click of this code violates (23514): the schema, not the data,
    // is wrong, as after a bad migration.
    exec(
        &db,
        "ALTER TABLE clicks ADD CONSTRAINT refuse_wall CHECK (short_code <> 'wall1') NOT VALID",
    )
    .await;
    let clicks: Vec<_> = (0..60).map(|i| click("wall1", i)).collect();
    broker
        .produce_batch(TOPIC, &clicks.iter().map(message).collect::<Vec<_>>())
        .await;
    let running = start(args(&broker, &db.url, "g-wall")).await;
    assert_held_back(&running, &db, "wall1", 3).await;
    exec(&db, "ALTER TABLE clicks DROP CONSTRAINT refuse_wall").await;
    wait_until("the refused batch stored", || async {
        count(&db.pool, "wall1").await == 60
    })
    .await;
    assert_eq!(running.metrics.dead_lettered.get(), 0);
    running.shutdown().await;
}

/// A producer that may send messages the consumer's dead-letter producer (librdkafka's
/// default `message.max.bytes`, 1 MB) cannot republish.
fn large_message_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "4000000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_that_cannot_be_published_is_reported() {
    let broker = broker();
    let db = fresh_database().await;
    // An undecodable 1.5 MB message: it must go to the DLQ, whose producer refuses it.
    let producer = large_message_producer(broker.bootstrap());
    produce_with(&producer, TOPIC, Some(b"huge"), &vec![0xff; 1_500_000], &[]).await;
    let running = start(args(&broker, &db.url, "g-dlq-stuck")).await;

    wait_until("dead-letter retries", || async {
        running.metrics.dlq_retries.get() >= 3
    })
    .await;
    let (status, body) = http_get(running.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot publish to the dead-letter topic clicks.dlq"),
        "{body}"
    );
    let (_, metrics) = http_get(running.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"shortener_consumer_stalled_batches{cause="dead_letter"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"shortener_consumer_stalled_batches{cause="database"} 0"#),
        "{metrics}"
    );
    // Nothing committed: the message is still lag.
    let lag = group_lag(broker.bootstrap(), "g-dlq-stuck").await;
    assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 1, "{lag:?}");
    running.shutdown().await;
}
