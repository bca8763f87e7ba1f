//! A real tonic server on loopback over the real test Postgres, called by real clients.

use std::time::{Duration, Instant};

use analytics_rpc::{AnalyticsServer, ServerArgs};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use shortener_common::db::DatabaseArgs;
use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::analytics_service_server::SERVICE_NAME;
use shortener_common::proto::analytics::{
    BreakdownEntry, Bucket, GetAccountStatsRequest, GetClickCountRequest, GetClickStatsRequest,
    GetClickStatsResponse,
};
use shortener_testkit::postgres::fresh_database;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const WAIT: Duration = Duration::from_secs(60);

struct Running {
    grpc: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), analytics_rpc::Error>>,
}

impl Running {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("connect to the gRPC server")
    }

    async fn client(&self) -> AnalyticsServiceClient<Channel> {
        AnalyticsServiceClient::new(self.channel().await)
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server run");
    }
}

async fn start(database: DatabaseArgs) -> Running {
    let mut args = ServerArgs::new(database);
    args.health_check_interval_ms = 100;
    let server = AnalyticsServer::bind(args).await.expect("bind");
    let (grpc, admin) = (server.grpc_addr(), server.admin_addr());
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        grpc,
        admin,
        stop,
        task,
    }
}

/// Polls the health service until `service` reports `want` (it is re-derived from a
/// database ping every 100 ms in these tests).
async fn wait_for_status(health: &mut HealthClient<Channel>, service: &str, want: ServingStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check answers")
            .into_inner()
            .status;
        if status == want as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service:?} never reported {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn entries(pairs: &[(&str, u64)]) -> Vec<BreakdownEntry> {
    pairs
        .iter()
        .map(|(k, c)| BreakdownEntry {
            key: k.to_string(),
            clicks: *c,
            other: false,
        })
        .collect()
}

/// The rollups of raw clicks inserted by hand (as the consumer would have written them).
async fn rebuild_rollups(pool: &PgPool) {
    sqlx::query("SELECT rebuild_click_rollups()")
        .execute(pool)
        .await
        .unwrap();
}

async fn insert(
    pool: &PgPool,
    code: &str,
    at: DateTime<Utc>,
    (country, device, browser, source): (&str, &str, &str, &str),
) {
    sqlx::query(
        "INSERT INTO clicks (event_id, short_code, occurred_at, country_code, device_type, browser, traffic_source)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(code)
    .bind(at)
    .bind(country)
    .bind(device)
    .bind(browser)
    .bind(source)
    .execute(pool)
    .await
    .unwrap();
}

fn series(resp: &GetClickStatsResponse) -> Vec<(i64, u64)> {
    resp.series
        .iter()
        .map(|b| (b.start.unwrap().seconds, b.clicks))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_breakdowns_and_series() {
    let db = fresh_database().await;
    // Six hours ago, on the hour: inside the default 30-day window whenever the test runs.
    let base = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(6);
    let m = |mins: i64| base + TimeDelta::minutes(mins);
    let us_iphone = ("US", "mobile", "Safari", "google");
    for (at, dims) in [
        (m(15), us_iphone),
        (m(20), us_iphone),
        (m(65), us_iphone),
        (m(90), ("DE", "desktop", "Firefox", "direct")),
        (m(239), ("US", "desktop", "Chrome", "google")),
        // Before the window asked for below, but counted in the total.
        (m(-30), ("FR", "tablet", "Safari", "bbc.co.uk")),
    ] {
        insert(&db.pool, "abc", at, dims).await;
    }
    // Another link's clicks never leak in.
    for i in 0..3 {
        insert(
            &db.pool,
            "other",
            m(i),
            ("JP", "bot", "Googlebot", "direct"),
        )
        .await;
    }
    rebuild_rollups(&db.pool).await;

    let server = start(db.args()).await;
    let mut client = server.client().await;

    let count = client
        .get_click_count(GetClickCountRequest {
            short_code: "abc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((count.short_code.as_str(), count.total_clicks), ("abc", 6));

    // Four hours, bucket unspecified: hourly.
    let stats = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            from: Some(ts(base)),
            to: Some(ts(m(240))),
            bucket: Bucket::Unspecified as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.bucket, Bucket::Hour as i32);
    assert_eq!(stats.total_clicks, 5);
    assert_eq!(stats.by_country, entries(&[("US", 4), ("DE", 1)]));
    assert_eq!(
        stats.by_device_type,
        entries(&[("mobile", 3), ("desktop", 2)])
    );
    // Ties are ordered by key.
    assert_eq!(
        stats.by_browser,
        entries(&[("Safari", 3), ("Chrome", 1), ("Firefox", 1)])
    );
    assert_eq!(
        stats.by_traffic_source,
        entries(&[("google", 4), ("direct", 1)])
    );
    let b = base.timestamp();
    assert_eq!(
        series(&stats),
        vec![(b, 2), (b + 3600, 2), (b + 7200, 0), (b + 3 * 3600, 1)]
    );
    assert_eq!(stats.from, Some(ts(base)));
    assert_eq!(stats.to, Some(ts(m(240))));

    // Minute buckets over [10, 21): 11 buckets, clicks at :15 and :20.
    let minutes = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            from: Some(ts(m(10))),
            to: Some(ts(m(21))),
            bucket: Bucket::Minute as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let s = series(&minutes);
    assert_eq!(s.len(), 11);
    assert_eq!(s.iter().map(|(_, c)| c).sum::<u64>(), 2);
    assert_eq!(s[5], (m(15).timestamp(), 1));
    assert_eq!(s[10], (m(20).timestamp(), 1));

    // An hour window not on hour boundaries is widened to whole hours (the rollups' grain).
    let widened = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            from: Some(ts(m(10))),
            to: Some(ts(m(70))),
            bucket: Bucket::Hour as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(widened.from, Some(ts(base)));
    assert_eq!(widened.to, Some(ts(m(120))));
    assert_eq!(widened.total_clicks, 4);

    // Defaults: the last 30 days until now, widened to whole days, daily buckets.
    let default = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.bucket, Bucket::Day as i32);
    assert_eq!(default.total_clicks, 6);
    let (from, to) = (default.from.unwrap().seconds, default.to.unwrap().seconds);
    assert_eq!((from % 86_400, to % 86_400), (0, 0));
    let now = Utc::now().timestamp();
    assert!(from <= now - 30 * 86_400 && to >= now && to - now <= 86_400);
    assert_eq!(default.series.len() as i64, (to - from) / 86_400);
    assert_eq!(default.series.iter().map(|b| b.clicks).sum::<u64>(), 6);

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_codes_have_zero_clicks_and_bad_requests_are_invalid_arguments() {
    let db = fresh_database().await;
    let server = start(db.args()).await;
    let mut client = server.client().await;

    // Unknown is not NOT_FOUND: a link nobody clicked has zero clicks.
    let count = client
        .get_click_count(GetClickCountRequest {
            short_code: "never-seen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.total_clicks, 0);
    let stats = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "never-seen".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_clicks, 0);
    assert!(stats.by_country.is_empty());
    assert!(!stats.series.is_empty());
    assert!(stats.series.iter().all(|b| b.clicks == 0));

    for code in ["", &"x".repeat(65), "has space", "slash/y", "ünï"] {
        let err = client
            .get_click_count(GetClickCountRequest {
                short_code: code.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{code:?}: {err:?}");
    }
    let now = Utc::now();
    let bad_stats = [
        (Some(ts(now)), Some(ts(now)), Bucket::Unspecified),
        (
            Some(ts(now)),
            Some(ts(now - TimeDelta::hours(1))),
            Bucket::Unspecified,
        ),
        (
            Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -5,
            }),
            None,
            Bucket::Unspecified,
        ),
        (
            None,
            Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            Bucket::Unspecified,
        ),
        // 30 days of minutes: raw clicks over more than 6 hours.
        (None, None, Bucket::Minute),
    ];
    for (from, to, bucket) in bad_stats {
        let err = client
            .get_click_stats(GetClickStatsRequest {
                short_code: "abc".into(),
                from,
                to,
                bucket: bucket as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            bucket: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Request metrics by method and code on the admin port.
    let metrics = reqwest::get(format!("http://{}/metrics", server.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"shortener_analytics_rpc_requests_total{method="GetClickCount",code="OK"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"shortener_analytics_rpc_requests_total{method="GetClickCount",code="INVALID_ARGUMENT"} 5"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"shortener_analytics_rpc_requests_total{method="GetClickStats",code="INVALID_ARGUMENT"} 6"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"shortener_analytics_rpc_request_duration_seconds_count{method="GetClickStats"} 7"#
    ));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    let db = fresh_database().await;
    let server = start(db.args()).await;
    let channel = server.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", SERVICE_NAME] {
        wait_for_status(&mut health, service, ServingStatus::Serving).await;
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE_NAME), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let ready = reqwest::get(format!("http://{}/readyz", server.admin))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_not_a_crash() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut database = DatabaseArgs::with_url(format!("postgres://nobody@127.0.0.1:{port}/none"));
    database.database_acquire_timeout_ms = 300;
    let server = start(database).await;
    let mut client = server.client().await;

    let err = client
        .get_click_count(GetClickCountRequest {
            short_code: "abc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "abc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    let mut health = HealthClient::new(server.channel().await);
    wait_for_status(&mut health, SERVICE_NAME, ServingStatus::NotServing).await;
    let ready = reqwest::get(format!("http://{}/readyz", server.admin))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // The driver's text ("connection refused", the address) goes to the log, not to clients.
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["reason"], "database unreachable", "{body}");
    server.shutdown().await;
}

/// `n` raw clicks of one combination at `at`.
#[allow(clippy::too_many_arguments)]
async fn insert_n(
    pool: &PgPool,
    code: &str,
    at: DateTime<Utc>,
    (country, device, browser, os, source): (&str, &str, &str, &str, &str),
    is_bot: bool,
    n: i64,
) {
    sqlx::query(
        "INSERT INTO clicks (event_id, short_code, occurred_at, country_code, device_type,
                             browser, os, traffic_source, is_bot)
         SELECT gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8 FROM generate_series(1, $9)",
    )
    .bind(code)
    .bind(at)
    .bind(country)
    .bind(device)
    .bind(browser)
    .bind(os)
    .bind(source)
    .bind(is_bot)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_with_other_and_bots_apart() {
    let db = fresh_database().await;
    let at = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(3);
    // 15 sources with 15, 14, ..., 1 human clicks (120), then 5 bot clicks.
    for i in 1..=15i64 {
        let source = format!("site{i:02}.example");
        let os = if i % 2 == 0 { "Android" } else { "Windows 10" };
        insert_n(
            &db.pool,
            "top",
            at,
            ("US", "mobile", "Chrome", os, &source),
            false,
            16 - i,
        )
        .await;
    }
    insert_n(
        &db.pool,
        "top",
        at,
        ("US", "bot", "Slack", "unknown", "direct"),
        true,
        5,
    )
    .await;
    rebuild_rollups(&db.pool).await;
    let server = start(db.args()).await;
    let mut client = server.client().await;

    let count = client
        .get_click_count(GetClickCountRequest {
            short_code: "top".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (count.total_clicks, count.human_clicks, count.bot_clicks),
        (125, 120, 5)
    );

    let stats = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "top".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.total_clicks, stats.human_clicks, stats.bot_clicks),
        (125, 120, 5)
    );
    // Default top 10 (site01..site10, 15 down to 6 clicks), then `other`: site11..site15
    // (5 + 4 + 3 + 2 + 1) and the bots' "direct" (5).
    let sources = &stats.by_traffic_source;
    assert_eq!(sources.len(), 11, "{sources:?}");
    let last = sources.last().unwrap();
    assert_eq!(
        (last.key.as_str(), last.clicks, last.other),
        ("other", 20, true)
    );
    assert_eq!(sources.iter().map(|e| e.clicks).sum::<u64>(), 125);
    assert!(sources[..10].iter().all(|e| !e.other));
    assert_eq!(sources[0].key, "site01.example");
    assert!(sources
        .windows(2)
        .take(9)
        .all(|w| w[0].clicks >= w[1].clicks));
    assert_eq!(
        stats.by_os,
        entries(&[("Windows 10", 64), ("Android", 56), ("unknown", 5)])
    );
    assert_eq!(
        stats.by_device_type,
        entries(&[("mobile", 120), ("bot", 5)])
    );

    // Human clicks only, top 3.
    let humans = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "top".into(),
            top: 3,
            exclude_bots: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(humans.by_device_type, entries(&[("mobile", 120)]));
    let sources = &humans.by_traffic_source;
    assert_eq!(sources.len(), 4);
    assert_eq!(
        (sources[3].key.as_str(), sources[3].clicks, sources[3].other),
        ("other", 120 - 15 - 14 - 13, true)
    );
    // Totals still report both.
    assert_eq!((humans.human_clicks, humans.bot_clicks), (120, 5));

    let err = client
        .get_click_stats(GetClickStatsRequest {
            short_code: "top".into(),
            top: 101,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_stats_cover_only_the_owners_links() {
    let db = fresh_database().await;
    for (code, owner) in [("a1", "k1"), ("a2", "k1"), ("b1", "k2")] {
        sqlx::query("INSERT INTO links (short_code, long_url, owner_key_id) VALUES ($1, $2, $3)")
            .bind(code)
            .bind("https://example.com/")
            .bind(owner)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let day = Utc::now().duration_trunc(TimeDelta::days(1)).unwrap();
    let dims = |c| (c, "desktop", "Firefox", "Linux", "google");
    insert_n(
        &db.pool,
        "a1",
        day - TimeDelta::days(2),
        dims("DE"),
        false,
        7,
    )
    .await;
    insert_n(
        &db.pool,
        "a2",
        day - TimeDelta::days(1),
        dims("FR"),
        false,
        3,
    )
    .await;
    insert_n(
        &db.pool,
        "a2",
        day - TimeDelta::days(1),
        dims("FR"),
        true,
        2,
    )
    .await;
    insert_n(
        &db.pool,
        "b1",
        day - TimeDelta::days(1),
        dims("US"),
        false,
        50,
    )
    .await;
    rebuild_rollups(&db.pool).await;
    let server = start(db.args()).await;
    let mut client = server.client().await;

    let stats = client
        .get_account_stats(GetAccountStatsRequest {
            owner: "k1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.total_clicks, stats.human_clicks, stats.bot_clicks),
        (12, 10, 2)
    );
    assert_eq!(stats.top_links, entries(&[("a1", 7), ("a2", 3)]));
    assert_eq!(stats.by_country, entries(&[("DE", 7), ("FR", 3)]));
    assert_eq!(stats.by_traffic_source, entries(&[("google", 10)]));
    assert_eq!(stats.series.iter().map(|b| b.clicks).sum::<u64>(), 12);
    assert_eq!(stats.from.unwrap().seconds % 86_400, 0);

    let err = client
        .get_account_stats(GetAccountStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.shutdown().await;
}

/// Retention drops raw clicks by whole months; every answer of the service (counts, series,
/// breakdowns over day buckets) comes from the rollups and stays the same.
#[tokio::test]
async fn stats_and_counts_survive_the_retention_drop() {
    let db = fresh_database().await;
    let now = Utc::now();
    let long_ago = (now - TimeDelta::days(500))
        .duration_trunc(TimeDelta::days(1))
        .unwrap()
        + TimeDelta::hours(12);
    let recent = now.duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(2);
    for i in 0..6 {
        let dims = if i % 2 == 0 {
            ("DE", "desktop", "Firefox", "google")
        } else {
            ("US", "mobile", "Safari", "direct")
        };
        insert(&db.pool, "kept", long_ago + TimeDelta::minutes(i), dims).await;
    }
    insert(
        &db.pool,
        "kept",
        recent,
        ("FR", "tablet", "Safari", "twitter"),
    )
    .await;
    rebuild_rollups(&db.pool).await;
    // The old month got its partition back then (its clicks moved out of the default one).
    let retention = 400;
    let then = consumer::maintenance::run_once(&db.pool, retention, long_ago.date_naive())
        .await
        .unwrap();
    assert!(
        matches!(then, consumer::maintenance::Outcome::Done(ref r) if r.moved_from_default == 6)
    );

    let server = start(db.args()).await;
    let mut client = server.client().await;
    let stats_request = || GetClickStatsRequest {
        short_code: "kept".into(),
        from: Some(ts(long_ago - TimeDelta::days(1))),
        to: Some(ts(now)),
        bucket: Bucket::Day as i32,
        ..Default::default()
    };
    let count = |mut client: AnalyticsServiceClient<Channel>| async move {
        client
            .get_click_count(GetClickCountRequest {
                short_code: "kept".into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let before = client
        .get_click_stats(stats_request())
        .await
        .unwrap()
        .into_inner();
    let count_before = count(client.clone()).await;
    assert_eq!(before.total_clicks, 7);
    assert!(
        before
            .by_country
            .iter()
            .any(|e| e.key == "DE" && e.clicks == 3),
        "{before:?}"
    );

    let done = consumer::maintenance::run_once(&db.pool, retention, now.date_naive())
        .await
        .unwrap();
    let consumer::maintenance::Outcome::Done(report) = done else {
        panic!("maintenance lock is free");
    };
    assert!(!report.dropped.is_empty(), "{report:?}");
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = 'kept'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(raw, 1, "the expired raw clicks are gone");

    let after = client
        .get_click_stats(stats_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before);
    assert_eq!(count(client.clone()).await, count_before);
    server.shutdown().await;
}
