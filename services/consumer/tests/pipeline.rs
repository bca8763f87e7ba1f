//! The consumer against a real Kafka-protocol broker (librdkafka's mock cluster on
//! loopback TCP) and the real test Postgres.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use common::*;
use consumer::ReplayArgs;
use shortener_common::kafka::{
    HEADER_DLQ_ERROR, HEADER_DLQ_SOURCE_OFFSET, HEADER_DLQ_SOURCE_TOPIC, HEADER_SCHEMA_VERSION,
};
use shortener_testkit::kafka::TestMessage;
use shortener_testkit::postgres::fresh_database;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_every_event_once_with_its_enrichment() {
    let broker = broker();
    let db = fresh_database().await;
    let code = "enrich1";
    let n = 400;
    let clicks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = click(code, i);
            // Every other click was sent by a redirect rule.
            c.matched_rule = (i % 2 == 0).then_some(i as u32 % 7 + 1);
            c
        })
        .collect();
    // As url-api sends them: batches of 50 clicks.
    let messages: Vec<_> = clicks
        .chunks(50)
        .map(|c| batch(c, |_| HashMap::new()))
        .collect();
    broker.produce_batch(TOPIC, &messages).await;

    let started = Instant::now();
    let running = start(args(&broker, &db.url, "g-enrich")).await;
    wait_until("the first stored click", || async {
        count(&db.pool, code).await > 0
    })
    .await;
    let first_row = started.elapsed();
    wait_until("all clicks stored", || async {
        count(&db.pool, code).await == n as i64
    })
    .await;
    let all_rows = started.elapsed();
    println!(
        "group join + first batch: {first_row:?}; {n} events stored after {all_rows:?} \
         ({:.0} events/s after the first row)",
        (n - 1) as f64 / (all_rows - first_row).as_secs_f64().max(0.001)
    );

    // Redelivery: the same events again (same event_id) are skipped, not stored.
    broker.produce_batch(TOPIC, &messages[..2]).await;
    wait_until("the redelivered events counted as duplicates", || async {
        running.metrics.duplicates.get() >= 100
    })
    .await;
    assert_eq!(count(&db.pool, code).await, n as i64);
    assert_eq!(running.metrics.stored.get(), n as u64);
    // Human visits (what visit limits count) once each, redeliveries not again.
    let humans = clicks
        .iter()
        .filter(|c| !shortener_common::bots::is_bot(c.user_agent.as_deref()))
        .count() as i64;
    assert_eq!(humans, 300, "one click in four is Googlebot");
    // The running consumer's own rollup task counts them, each once.
    wait_rolled_up(&db.pool).await;
    assert_eq!(running.metrics.rolled_up.get(), n as u64);
    let (visits,): (i64,) =
        sqlx::query_as("SELECT human_visits FROM link_visits WHERE short_code = $1")
            .bind(code)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(visits, humans);
    assert_eq!(running.metrics.dead_lettered.get(), 0);
    assert_rollups_match_clicks(&db.pool).await;

    for (i, c) in clicks.iter().enumerate().take(8) {
        let row: (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i16>,
        ) = sqlx::query_as(
            "SELECT country_code, device_type, browser, traffic_source, host(ip), referer,
                    matched_rule
                 FROM clicks WHERE event_id = $1",
        )
        .bind(c.event_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let (country, device, browser, source) = expected(i);
        assert_eq!(
            (
                row.0.as_str(),
                row.1.as_str(),
                row.2.as_str(),
                row.3.as_str()
            ),
            (country, device, browser, source),
            "click {i}"
        );
        // Stored anonymized by default (ANONYMIZE_IPS): the host part is gone, the
        // country was still found from the full address.
        let anonymized =
            c.ip.map(|ip| consumer::enrich::privacy::anonymize(ip).to_string());
        assert_eq!(row.4, anonymized, "click {i}");
        assert_ne!(row.4, c.ip.map(|ip| ip.to_string()), "click {i}");
        assert_eq!(row.5, c.referer);
        assert_eq!(row.6.map(|n| n as u32), c.matched_rule, "click {i}");
    }

    let (status, _) = http_get(running.admin, "/readyz").await;
    assert_eq!(status, 200);
    let (_, metrics) = http_get(running.admin, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "shortener_consumer_clicks_stored_total"),
        Some(n as f64)
    );
    assert!(metrics.contains("shortener_consumer_batch_duration_seconds_count"));

    running.shutdown().await;
    // Graceful shutdown committed everything: nothing left for the group.
    let lag = group_lag(broker.bootstrap(), "g-enrich").await;
    assert_eq!(lag.len(), PARTITIONS as usize);
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
    let committed: i64 = lag.iter().map(|l| l.committed.unwrap_or(0)).sum();
    assert_eq!(committed, messages.len() as i64 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_dead_lettered_and_replayable() {
    let broker = broker();
    let db = fresh_database().await;
    let code = "poison1";
    let dlq = format!("{TOPIC}.dlq");

    let good: Vec<_> = (0..10).map(|i| click(code, i)).collect();
    let mut nul = click(code, 99);
    nul.user_agent = Some("agent\0with a NUL byte".into());
    let mut poison = vec![
        // Not protobuf at all.
        TestMessage::new(code, vec![0xff, 0xfe, 0x00, 0x01]),
        // A ClickEvent from a future schema.
        TestMessage::new(code, good[0].encode()).header(HEADER_SCHEMA_VERSION, "3"),
        // Decodes and validates, but Postgres refuses NUL bytes in text: rejected by the
        // database, isolated row by row.
        message(&nul),
    ];
    // Send each poison message between good ones so the same batches mix both.
    let mut all = Vec::new();
    for (i, c) in good.iter().enumerate() {
        all.push(message(c));
        if i % 3 == 1 {
            if let Some(p) = poison.pop() {
                all.push(p.header("trace", "t-1"));
            }
        }
    }
    let positions = produce_in_order(&broker, &all).await;

    let running = start(args(&broker, &db.url, "g-poison")).await;
    wait_until("the good clicks stored", || async {
        count(&db.pool, code).await == 10
    })
    .await;
    wait_until("three dead letters", || async {
        running.metrics.dead_lettered.get() == 3
    })
    .await;
    running.shutdown().await;

    let dead = broker.consume_all(&dlq, 3, WAIT).await;
    for d in &dead {
        assert_eq!(d.header(HEADER_DLQ_SOURCE_TOPIC), Some(TOPIC));
        let original = positions
            .iter()
            .position(|p| *p == dlq_source(d))
            .expect("source position is one we produced");
        assert_eq!(d.key, all[original].key, "original key kept");
        assert_eq!(d.payload.as_deref(), Some(all[original].payload.as_slice()));
        assert_eq!(d.header("trace"), Some("t-1"), "original headers kept");
        let error = d.header(HEADER_DLQ_ERROR).unwrap();
        assert!(!error.is_empty());
    }
    let errors: HashSet<_> = dead
        .iter()
        .map(|d| {
            d.header(HEADER_DLQ_ERROR)
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        errors,
        HashSet::from([
            "payload is not a ClickEvent protobuf".to_string(),
            "unsupported schema-version header \"3\" (this build reads 1 and 2)".to_string(),
            "database rejected the click".to_string(),
        ])
    );

    // Dry run: lists all three, commits nothing (a second dry run lists them again).
    let replay_args = args(&broker, &db.url, "g-poison");
    for _ in 0..2 {
        let mut out = Vec::new();
        let dry = ReplayArgs {
            dry_run: true,
            max: None,
        };
        let summary = consumer::replay_dlq(&replay_args, &dry, &mut out)
            .await
            .unwrap();
        assert_eq!((summary.read, summary.replayed), (3, 0));
        let listing = String::from_utf8(out).unwrap();
        assert_eq!(listing.lines().count(), 3, "{listing}");
        assert!(
            listing.contains("error=\"payload is not a ClickEvent protobuf"),
            "{listing}"
        );
        assert!(listing.contains(&format!("key={code:?}")), "{listing}");
    }
    let before: i64 = broker.high_watermarks(TOPIC).iter().sum();

    // Real replay, two then the rest; a third run finds nothing left.
    let mut sink = Vec::new();
    let first = consumer::replay_dlq(
        &replay_args,
        &ReplayArgs {
            dry_run: false,
            max: Some(2),
        },
        &mut sink,
    )
    .await
    .unwrap();
    assert_eq!((first.read, first.replayed), (2, 2));
    let rest = consumer::replay_dlq(&replay_args, &ReplayArgs::default(), &mut sink)
        .await
        .unwrap();
    assert_eq!((rest.read, rest.replayed), (1, 1));
    let none = consumer::replay_dlq(&replay_args, &ReplayArgs::default(), &mut sink)
        .await
        .unwrap();
    assert_eq!((none.read, none.replayed), (0, 0));
    assert!(sink.is_empty(), "a real replay prints nothing");

    let after: i64 = broker.high_watermarks(TOPIC).iter().sum();
    assert_eq!(after - before, 3);
    let main = broker.consume_all(TOPIC, all.len() + 3, WAIT).await;
    let replayed: Vec<_> = main
        .iter()
        .filter(|m| m.header("dlq-replayed") == Some("true"))
        .collect();
    assert_eq!(replayed.len(), 3);
    for m in replayed {
        assert!(m.header(HEADER_DLQ_ERROR).is_none(), "dlq headers dropped");
        assert!(m.header(HEADER_DLQ_SOURCE_OFFSET).is_none());
        assert_eq!(m.header("trace"), Some("t-1"));
        assert!(dead
            .iter()
            .any(|d| d.payload == m.payload && d.key == m.key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_stored_click_by_click_and_only_its_bad_click_is_dead_lettered() {
    let broker = broker();
    let db = fresh_database().await;
    let code = "batch1";
    let dlq = format!("{TOPIC}.dlq");
    let mut clicks: Vec<_> = (0..6).map(|i| click(code, i)).collect();
    // Postgres refuses NUL bytes in text: this click alone is rejected by the database.
    clicks[3].user_agent = Some("agent\0with a NUL byte".into());
    let traceparent = |i: usize| format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
    let readable = batch(&clicks, |i| {
        HashMap::from([("traceparent".to_string(), traceparent(i))])
    });
    let unreadable = TestMessage {
        key: None,
        payload: vec![0x0a, 0xff, 0x01],
        headers: vec![(HEADER_SCHEMA_VERSION.into(), b"2".to_vec())],
    };
    let positions = produce_in_order(&broker, &[readable, unreadable.clone()]).await;

    let running = start(args(&broker, &db.url, "g-batch")).await;
    wait_until("the good clicks of the batch stored", || async {
        count(&db.pool, code).await == 5
    })
    .await;
    wait_until("two dead letters", || async {
        running.metrics.dead_lettered.get() == 2
    })
    .await;
    running.shutdown().await;

    let dead = broker.consume_all(&dlq, 2, WAIT).await;
    let error =
        |d: &shortener_testkit::kafka::Received| d.header(HEADER_DLQ_ERROR).unwrap().to_string();
    // The bad click alone, as the single-click message it would have been: its event,
    // its trace context, and the batch it came from.
    let single = dead
        .iter()
        .find(|d| error(d).starts_with("database rejected the click"))
        .expect("the rejected click is dead-lettered");
    assert_eq!(
        single.payload.as_deref(),
        Some(clicks[3].encode().as_slice())
    );
    assert_eq!(single.header(HEADER_SCHEMA_VERSION), Some("1"));
    assert_eq!(single.header("traceparent"), Some(traceparent(3).as_str()));
    assert_eq!(dlq_source(single), positions[0]);
    // A batch that cannot be read is dead-lettered whole.
    let whole = dead
        .iter()
        .find(|d| error(d).starts_with("payload is not a ClickBatch"))
        .expect("the unreadable batch is dead-lettered");
    assert_eq!(
        whole.payload.as_deref(),
        Some(unreadable.payload.as_slice())
    );
    assert_eq!(dlq_source(whole), positions[1]);
    // Both messages are done with: nothing left for the group.
    let lag = group_lag(broker.bootstrap(), "g-batch").await;
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_stream_loses_nothing_and_double_counts_nothing() {
    let broker = broker();
    let db = fresh_database().await;
    // Many links, so the messages spread over every partition and both workers.
    let total = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM clicks")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let group = "g-crash";
    let half = 1500;
    let clicks: Vec<_> = (0..2 * half)
        .map(|i| click(&format!("crash{}", i % 16), i))
        .collect();
    let messages: Vec<_> = clicks.iter().map(message).collect();
    broker.produce_batch(TOPIC, &messages[..half]).await;

    let first = start(args(&broker, &db.url, group)).await;
    wait_until("some batches stored", || async {
        total(db.pool.clone()).await >= 200
    })
    .await;
    first.kill().await;
    // At-least-once invariant: an offset is never committed before its row is stored.
    // Read in that order too (offsets, then rows): work still finishing after the kill
    // can only add rows between the two reads.
    let committed: i64 = group_lag(broker.bootstrap(), group)
        .await
        .iter()
        .map(|l| l.committed.unwrap_or(0))
        .sum();
    let stored_at_crash = total(db.pool.clone()).await;
    println!("killed the first consumer after {stored_at_crash} rows");
    assert!(
        committed <= stored_at_crash,
        "committed {committed} > stored {stored_at_crash}"
    );

    broker.produce_batch(TOPIC, &messages[half..]).await;
    let second = start(args(&broker, &db.url, group)).await;
    wait_until("every click stored", || async {
        total(db.pool.clone()).await == 2 * half as i64
    })
    .await;
    // Let the tail of the replay (duplicates) finish, then stop cleanly.
    wait_until("everything committed", || async {
        group_lag(broker.bootstrap(), group)
            .await
            .iter()
            .all(|l| l.lag == 0)
    })
    .await;
    wait_rolled_up(&db.pool).await;
    println!(
        "second consumer: {} stored, {} duplicates skipped",
        second.metrics.stored.get(),
        second.metrics.duplicates.get()
    );
    second.shutdown().await;

    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM clicks")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (2 * half as i64, 2 * half as i64));
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM clicks")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let stored: HashSet<Uuid> = ids.into_iter().collect();
    let produced: HashSet<Uuid> = clicks.iter().map(|c| c.event_id).collect();
    assert_eq!(stored, produced);
    assert_rollups_match_clicks(&db.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_holds_commits_and_recovers_with_lag_reported() {
    let broker = broker();
    let db = fresh_database().await;
    let code = "outage1";
    let group = "g-outage";

    // The consumer logs in as its own least-privileged role, so the outage can be staged
    // for it alone: a connection limit of 0 refuses its new connections (superusers are
    // exempt, so the test keeps its own view of the table).
    let role = format!("c_{}", Uuid::new_v4().simple());
    for stmt in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name),
        format!("GRANT SELECT, INSERT ON clicks, click_visitors, visitor_salts TO {role}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE ON click_totals, click_hourly, \
             click_breakdown_hourly, click_breakdown_daily TO {role}"
        ),
        format!("GRANT SELECT, INSERT, DELETE, UPDATE ON click_rollup_queue TO {role}"),
        format!("GRANT SELECT ON retention_floor TO {role}"),
        format!("GRANT USAGE ON SEQUENCE clicks_id_seq TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON link_visits TO {role}"),
    ] {
        sqlx::query(&stmt).execute(&db.pool).await.unwrap();
    }
    let mut consumer_url = url::Url::parse(&db.url).unwrap();
    consumer_url.set_username(&role).unwrap();

    let first: Vec<_> = (0..100).map(|i| click(code, i)).collect();
    broker
        .produce_batch(TOPIC, &first.iter().map(message).collect::<Vec<_>>())
        .await;
    let running = start(args(&broker, consumer_url.as_str(), group)).await;
    wait_until("the first clicks stored", || async {
        count(&db.pool, code).await == 100
    })
    .await;
    wait_until("readiness", || async {
        http_get(running.admin, "/readyz").await.0 == 200
    })
    .await;

    // Outage: refuse new connections and cut the existing ones.
    sqlx::query(&format!("ALTER DATABASE {} CONNECTION LIMIT 0", db.name))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&role)
        .execute(&db.pool)
        .await
        .unwrap();

    let second: Vec<_> = (0..200).map(|i| click(code, i)).collect();
    broker
        .produce_batch(TOPIC, &second.iter().map(message).collect::<Vec<_>>())
        .await;
    wait_until("several retries", || async {
        running.metrics.db_retries.get() >= 3
    })
    .await;
    let (status, body) = http_get(running.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");

    // Nothing new was stored or committed: the whole second wave is lag, both in the
    // consumer's own gauge and as measured independently.
    wait_until("lag gauge shows the outage backlog", || async {
        let (_, m) = http_get(running.admin, "/metrics").await;
        metric_sum(&m, "shortener_consumer_lag") == Some(200.0)
    })
    .await;
    let lag = group_lag(broker.bootstrap(), group).await;
    assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 200, "{lag:?}");
    let produced: i64 = broker.high_watermarks(TOPIC).iter().sum();
    let committed: i64 = lag.iter().map(|l| l.committed.unwrap_or(0)).sum();
    assert_eq!(produced - committed, 200);
    assert_eq!(count(&db.pool, code).await, 100);

    // Recovery: the same batches go through, then get committed.
    sqlx::query(&format!("ALTER DATABASE {} CONNECTION LIMIT -1", db.name))
        .execute(&db.pool)
        .await
        .unwrap();
    wait_until("the backlog stored", || async {
        count(&db.pool, code).await == 300
    })
    .await;
    wait_until("lag back to zero", || async {
        let (_, m) = http_get(running.admin, "/metrics").await;
        metric_sum(&m, "shortener_consumer_lag") == Some(0.0)
    })
    .await;
    wait_until("ready again", || async {
        http_get(running.admin, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(
        running.metrics.dead_lettered.get(),
        0,
        "an outage never dead-letters"
    );
    println!(
        "database retries during the outage: {}",
        running.metrics.db_retries.get()
    );
    wait_rolled_up(&db.pool).await;
    running.shutdown().await;
    assert_rollups_match_clicks(&db.pool).await;
}

/// `/readyz` answers whoever reaches the admin port: the reason it gives names no database,
/// role or host (the driver's error text goes to the log only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_hides_the_database_error_text() {
    let broker = broker();
    let db = fresh_database().await;
    let missing = format!("{}_missing", db.name);
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_path(&missing);
    let running = start(args(&broker, url.as_str(), "g-ready-text")).await;
    // Postgres answers `database "<missing>" does not exist`, which must not be shown.
    let (status, body) = http_get(running.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "not_ready", "reason": "database unreachable"})
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_partitions_and_store_everything_once() {
    let broker = broker();
    let db = fresh_database().await;
    let group = "g-replicas";

    let a = start(args(&broker, &db.url, group)).await;
    let b = start(args(&broker, &db.url, group)).await;
    // Each replica's lag gauge lists exactly the partitions it owns.
    let owned = |admin| async move {
        let (_, m) = http_get(admin, "/metrics").await;
        m.lines()
            .filter(|l| l.starts_with("shortener_consumer_lag{"))
            .count()
    };
    let joined = Instant::now();
    wait_until("both replicas own two partitions", || async {
        owned(a.admin).await == 2 && owned(b.admin).await == 2
    })
    .await;
    println!("two replicas balanced after {:?}", joined.elapsed());

    // Messages are keyed by short code: many links spread over every partition.
    let n = 1000;
    let clicks: Vec<_> = (0..n)
        .map(|i| click(&format!("rep{}", i % 32), i))
        .collect();
    broker
        .produce_batch(TOPIC, &clicks.iter().map(message).collect::<Vec<_>>())
        .await;
    wait_until("every click stored", || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        stored == n as i64
    })
    .await;
    let (sa, sb) = (a.metrics.stored.get(), b.metrics.stored.get());
    assert!(sa > 0 && sb > 0, "both replicas stored clicks: {sa} + {sb}");
    assert_eq!(sa + sb, n as u64);
    // Both replicas' rollup tasks take queued clicks (SKIP LOCKED: disjoint rows).
    wait_rolled_up(&db.pool).await;
    assert_eq!(
        a.metrics.rolled_up.get() + b.metrics.rolled_up.get(),
        n as u64
    );
    a.shutdown().await;
    b.shutdown().await;
    let lag = group_lag(broker.bootstrap(), group).await;
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
    assert_rollups_match_clicks(&db.pool).await;
}
