//! Who may call analytics-rpc and how many calls run at once: a shared bearer token
//! (RPC_AUTH_TOKEN), a global concurrency limit (MAX_CONCURRENT_REQUESTS) and the time a
//! query may take (QUERY_TIMEOUT_MS), against a real server and the real test Postgres.

use std::time::{Duration, Instant};

use analytics_rpc::{AnalyticsServer, ServerArgs};
use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::GetClickCountRequest;
use shortener_testkit::postgres::{fresh_database, TestDatabase};
use sqlx::Connection;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TOKEN: &str = "rpc-token-0123456789abcdef";

async fn start(db: &TestDatabase, tweak: impl FnOnce(&mut ServerArgs)) -> Channel {
    let mut args = ServerArgs::new(db.args());
    tweak(&mut args);
    let server = AnalyticsServer::bind(args).await.expect("bind");
    let grpc = server.grpc_addr();
    // Stops with the test's runtime.
    tokio::spawn(server.run(std::future::pending()));
    Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

fn count_request(token: Option<&str>) -> tonic::Request<GetClickCountRequest> {
    let mut req = tonic::Request::new(GetClickCountRequest {
        short_code: "abc".into(),
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

#[tokio::test]
async fn calls_need_the_shared_token_but_health_checks_do_not() {
    let db = fresh_database().await;
    let channel = start(&db, |a| a.auth_token = Some(TOKEN.parse().unwrap())).await;
    let mut client = AnalyticsServiceClient::new(channel.clone());
    for token in [None, Some("wrong-token-0123456789"), Some(&TOKEN[1..])] {
        let err = client
            .get_click_count(count_request(token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
    }
    let ok = client
        .get_click_count(count_request(Some(TOKEN)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.total_clicks, 0);
    // Probes need no token.
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");
}

#[tokio::test]
async fn without_a_token_configured_calls_are_open() {
    let db = fresh_database().await;
    let channel = start(&db, |_| {}).await;
    let mut client = AnalyticsServiceClient::new(channel);
    assert!(client.get_click_count(count_request(None)).await.is_ok());
}

/// Sessions of `db` waiting for a lock.
async fn waiting_on_locks(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
    )
    .bind(&db.name)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_beyond_the_concurrency_limit_wait_their_turn() {
    let db = fresh_database().await;
    let channel = start(&db, |a| {
        a.max_concurrent_requests = 1;
        // The queries wait on a lock for a while here.
        a.query_timeout_ms = 60_000;
    })
    .await;
    // Every count query blocks behind this lock until it is released.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE click_totals IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut client = AnalyticsServiceClient::new(channel.clone());
            tokio::spawn(async move { client.get_click_count(count_request(None)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting_on_locks(&db).await < 1 {
        assert!(Instant::now() < deadline, "no call reached the database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for the other calls to reach the database, were they let through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(waiting_on_locks(&db).await, 1, "one query at a time");
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    for call in calls {
        let resp = call.await.unwrap();
        assert!(resp.is_ok(), "{resp:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_timeout_is_cancelled_and_answered_deadline_exceeded() {
    let db = fresh_database().await;
    let channel = start(&db, |a| a.query_timeout_ms = 200).await;
    let mut client = AnalyticsServiceClient::new(channel);
    // The count query waits behind this lock, which statement_timeout includes.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE click_totals IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let started = Instant::now();
    let err = client
        .get_click_count(count_request(None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled by the database, not by a client-side timeout: {:?}",
        started.elapsed()
    );
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    // The pooled connection is usable again and the next call is answered.
    let ok = client
        .get_click_count(count_request(None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.total_clicks, 0);
}
