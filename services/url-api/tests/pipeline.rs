//! url-api's side of the click pipeline: ClickEvents on a real Kafka-protocol broker
//! (librdkafka mock cluster over loopback TCP), broker outages, and analytics-rpc calls
//! through the deadline and circuit breaker.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use shortener_common::event::Click;
use shortener_common::event_batch::{decode_batch, BATCH_SCHEMA_VERSION};
use shortener_common::kafka::{KafkaArgs, HEADER_SCHEMA_VERSION};
use shortener_common::proto::analytics::analytics_service_server::{
    AnalyticsService, AnalyticsServiceServer,
};
use shortener_common::proto::analytics::{
    BreakdownEntry, Bucket, GetAccountStatsRequest, GetAccountStatsResponse, GetClickCountRequest,
    GetClickCountResponse, GetClickStatsRequest, GetClickStatsResponse, TimeBucket,
};
use shortener_testkit::kafka::MockBroker;
use tokio::net::TcpListener;

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first metric line starting with `prefix` (name plus labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn median_redirect_latency(app: &TestApp, code: &str, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let resp = app.get(&format!("/{code}")).await;
        samples.push(start.elapsed());
        assert_eq!(resp.status(), 302);
    }
    samples.sort();
    samples[n / 2]
}

#[tokio::test]
async fn redirects_publish_decodable_click_events() {
    let broker = MockBroker::start();
    broker.create_topic("clicks-pub", 3);
    let bootstrap = broker.bootstrap().to_string();
    let app = start(|c| {
        c.clicks_enabled = true;
        c.kafka = KafkaArgs::new(bootstrap, "clicks-pub");
        c.click_batch_max = 5;
        c.click_linger_ms = 300;
        // The test client connects from loopback, acting as a trusted proxy.
        c.trusted_proxies = url_api::config::parse_proxies("127.0.0.1/32").unwrap();
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/tracked").await;

    // Four full batches, and two clicks that only the linger timer sends.
    const N: usize = 22;
    for i in 0..N {
        let resp = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("user-agent", format!("agent/{i}"))
            .header("referer", format!("https://ref.example/{i}"))
            // The left entry is client-supplied and must be ignored.
            .header("x-forwarded-for", format!("6.6.6.6, 203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
    }
    // HEAD is not a click.
    let head = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);

    let published = wait_until(Duration::from_secs(30), || async {
        metric(&app.metrics().await, "clicks_published_total") == Some(N as f64)
    })
    .await;
    assert!(published, "{}", app.metrics().await);
    let messages: i64 = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap().to_string();
        move || shortener_testkit::kafka::high_watermarks(&bootstrap, "clicks-pub")
    })
    .await
    .unwrap()
    .iter()
    .sum();
    assert!(
        messages >= 5,
        "at most 5 clicks per message: {messages} messages"
    );
    let received = broker
        .consume_all("clicks-pub", messages as usize, Duration::from_secs(60))
        .await;
    let mut seen = HashSet::new();
    for msg in &received {
        assert_eq!(msg.key, None, "batches are unkeyed");
        assert_eq!(
            msg.header(HEADER_SCHEMA_VERSION),
            Some(BATCH_SCHEMA_VERSION)
        );
        let entries = decode_batch(msg.payload.as_deref().unwrap()).expect("a ClickBatch");
        assert!((1..=5).contains(&entries.len()), "{} clicks", entries.len());
        for entry in entries {
            let click = Click::decode(&entry.event).expect("decodable event");
            assert_eq!(click.short_code, code);
            let i: usize = click.user_agent.as_deref().unwrap()["agent/".len()..]
                .parse()
                .unwrap();
            assert_eq!(
                click.referer.as_deref(),
                Some(format!("https://ref.example/{i}").as_str())
            );
            assert_eq!(click.ip, Some(format!("203.0.113.{i}").parse().unwrap()));
            assert!(seen.insert(i), "click {i} published twice");
        }
    }
    assert_eq!(seen.len(), N, "exactly one event per GET redirect");
    app.stop().await;
}

#[tokio::test]
async fn redirects_work_while_the_broker_is_down() {
    let broker = MockBroker::start();
    broker.create_topic("clicks-lat", 1);
    let bootstrap = broker.bootstrap().to_string();
    let up = start(|c| {
        c.clicks_enabled = true;
        c.kafka = KafkaArgs::new(bootstrap, "clicks-lat");
    })
    .await;
    let down = start(|c| {
        c.clicks_enabled = true;
        c.kafka = KafkaArgs::new(format!("127.0.0.1:{}", closed_port()), "clicks-lat");
    })
    .await;
    let up_code = up.create_ok(ALICE, "https://example.com/up").await;
    let down_code = down.create_ok(ALICE, "https://example.com/down").await;

    // Warm both caches, then measure.
    median_redirect_latency(&up, &up_code, 20).await;
    median_redirect_latency(&down, &down_code, 20).await;
    let with_broker = median_redirect_latency(&up, &up_code, 300).await;
    let without_broker = median_redirect_latency(&down, &down_code, 300).await;
    println!(
        "median redirect latency: broker up {with_broker:?}, broker down {without_broker:?} \
         (ratio {:.2})",
        without_broker.as_secs_f64() / with_broker.as_secs_f64()
    );

    // Nothing was dropped: the clicks wait in the local queue for the broker.
    let text = down.metrics().await;
    assert_eq!(metric(&text, "clicks_published_total"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "clicks_dropped_total"), None, "{text}");
    let text = up.metrics().await;
    assert!(metric(&text, "clicks_dropped_total").is_none(), "{text}");
}

#[tokio::test]
async fn a_full_local_queue_drops_and_counts_clicks() {
    let app = start(|c| {
        c.clicks_enabled = true;
        // Room for two batches of five; a batch leaves when full, never by the timer.
        c.click_queue_capacity = 10;
        c.click_batch_max = 5;
        c.click_linger_ms = 60_000;
        c.kafka = KafkaArgs::new(format!("127.0.0.1:{}", closed_port()), "clicks");
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/q").await;
    for _ in 0..32 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    // Six batches: two queued, four dropped with their clicks counted; two clicks wait.
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, r#"clicks_dropped_total{reason="queue_full"}"#),
        Some(20.0),
        "{text}"
    );
}

#[tokio::test]
async fn clicks_disabled_publishes_nothing() {
    let broker = MockBroker::start();
    broker.create_topic("clicks-off", 1);
    let bootstrap = broker.bootstrap().to_string();
    let app = start(|c| {
        c.clicks_enabled = false;
        c.kafka = KafkaArgs::new(bootstrap, "clicks-off");
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/off").await;
    for _ in 0..5 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    app.stop().await;
    let total: i64 = tokio::task::spawn_blocking(move || broker.high_watermarks("clicks-off"))
        .await
        .unwrap()
        .iter()
        .sum();
    assert_eq!(total, 0);
}

/// A stand-in for analytics-rpc answering fixed numbers.
struct FixedAnalytics;

#[tonic::async_trait]
impl AnalyticsService for FixedAnalytics {
    async fn get_click_count(
        &self,
        request: tonic::Request<GetClickCountRequest>,
    ) -> Result<tonic::Response<GetClickCountResponse>, tonic::Status> {
        let short_code = request.into_inner().short_code;
        Ok(tonic::Response::new(GetClickCountResponse {
            short_code,
            total_clicks: 42,
            human_clicks: 40,
            bot_clicks: 2,
        }))
    }

    async fn get_click_stats(
        &self,
        request: tonic::Request<GetClickStatsRequest>,
    ) -> Result<tonic::Response<GetClickStatsResponse>, tonic::Status> {
        let r = request.into_inner();
        if r.bucket() == Bucket::Minute {
            return Err(tonic::Status::invalid_argument(
                "minute buckets are limited to 1 day",
            ));
        }
        // What tonic reports when an answer exceeds the message limit, and a failed query.
        if r.top == 99 {
            return Err(tonic::Status::out_of_range(
                "Error, decoded message length too large: found 5242880 bytes, the limit is: 4194304 bytes",
            ));
        }
        if r.top == 98 {
            return Err(tonic::Status::internal("query failed"));
        }
        let entry = |key: &str, clicks| BreakdownEntry {
            key: key.into(),
            clicks,
            other: false,
        };
        Ok(tonic::Response::new(GetClickStatsResponse {
            short_code: r.short_code,
            from: r.from,
            to: r.to,
            bucket: Bucket::Hour as i32,
            total_clicks: 7,
            human_clicks: 6,
            bot_clicks: 1,
            visitors: 3,
            by_country: vec![entry("US", 5), entry("Unknown", 2)],
            by_device_type: vec![entry("pc", 6), entry("smartphone", 1)],
            by_browser: vec![entry("Firefox", 7)],
            by_os: vec![entry("Linux", 7)],
            by_traffic_source: vec![
                entry("direct", 4),
                BreakdownEntry {
                    key: "other".into(),
                    clicks: 3,
                    other: true,
                },
            ],
            series: vec![TimeBucket {
                start: r.to.map(|t| prost_types::Timestamp {
                    seconds: t.seconds - 3600,
                    nanos: 0,
                }),
                clicks: 7,
                human_clicks: 6,
                bot_clicks: 1,
                visitors: 3,
            }],
        }))
    }

    async fn get_account_stats(
        &self,
        request: tonic::Request<GetAccountStatsRequest>,
    ) -> Result<tonic::Response<GetAccountStatsResponse>, tonic::Status> {
        let r = request.into_inner();
        // The owner comes from the API key, never from the query.
        assert!(!r.owner.is_empty());
        Ok(tonic::Response::new(GetAccountStatsResponse {
            from: r.from,
            to: r.to,
            total_clicks: 9,
            human_clicks: 8,
            bot_clicks: 1,
            visitors: 4,
            top_links: vec![BreakdownEntry {
                key: "abc".into(),
                clicks: 8,
                other: false,
            }],
            ..Default::default()
        }))
    }
}

fn serve_analytics(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AnalyticsServiceServer::new(FixedAnalytics))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    })
}

#[tokio::test]
async fn link_details_and_stats_come_from_analytics_rpc() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc = format!("http://{}", listener.local_addr().unwrap());
    let server = serve_analytics(listener);
    let app = start(|c| {
        c.analytics_rpc_url = rpc;
        // Generous: the first call also connects, on a loaded machine.
        c.analytics_rpc_timeout_ms = 5_000;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/stats").await;

    let details: Value = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(details["code"], code.as_str());
    assert_eq!(details["long_url"], "https://example.com/stats");
    assert_eq!(details["total_clicks"], 42);
    assert_eq!(details["human_clicks"], 40);
    assert_eq!(details["bot_clicks"], 2);
    assert_eq!(details["stats_available"], true);

    let path = format!(
        "/api/v1/links/{code}/stats?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&bucket=hour"
    );
    let resp = app.get_auth(ALICE, &path).await;
    assert_eq!(resp.status(), 200);
    let stats: Value = resp.json().await.unwrap();
    assert_eq!(
        stats,
        json!({
            "code": code,
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-11-02T00:00:00Z",
            "bucket": "hour",
            "total_clicks": 7,
            "human_clicks": 6,
            "bot_clicks": 1,
            "visitors": 3,
            "by_country": [{"key": "US", "clicks": 5}, {"key": "Unknown", "clicks": 2}],
            "by_device_type": [{"key": "pc", "clicks": 6}, {"key": "smartphone", "clicks": 1}],
            "by_browser": [{"key": "Firefox", "clicks": 7}],
            "by_os": [{"key": "Linux", "clicks": 7}],
            "by_traffic_source": [
                {"key": "direct", "clicks": 4},
                {"key": "other", "clicks": 3, "other": true}
            ],
            "series": [{
                "start": "2026-11-01T23:00:00Z", "clicks": 7, "human_clicks": 6,
                "bot_clicks": 1, "visitors": 3
            }],
            "stats_available": true,
        })
    );

    // An answer over the size limit or a failed query is the service's problem: 503,
    // without tonic's or the service's text, and the breaker stays closed (it answered).
    for top in [99, 98] {
        let resp = app
            .get_auth(ALICE, &format!("/api/v1/links/{code}/stats?top={top}"))
            .await;
        assert_eq!(resp.status(), 503);
        let body = resp.text().await.unwrap();
        assert!(body.contains("stats_unavailable"), "{body}");
        assert!(
            !body.contains("decoded") && !body.contains("query failed"),
            "{body}"
        );
    }
    let resp = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}/stats?top=101"))
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");

    let resp = app.get_auth(ALICE, "/api/v1/account/stats?top=5").await;
    assert_eq!(resp.status(), 200);
    let account: Value = resp.json().await.unwrap();
    assert_eq!(account["total_clicks"], 9);
    assert_eq!(account["human_clicks"], 8);
    assert_eq!(account["top_links"], json!([{"key": "abc", "clicks": 8}]));
    let resp = app.get("/api/v1/account/stats").await;
    assert_eq!(resp.status(), 401);

    // Requests the service refuses are the caller's problem, not an outage.
    let resp = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}/stats?bucket=minute"))
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    let resp = app
        .get_auth(
            ALICE,
            &format!(
                "/api/v1/links/{code}/stats?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z"
            ),
        )
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    let resp = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}/stats?bucket=week"))
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    let resp = app
        .get_auth(BOB, &format!("/api/v1/links/{code}/stats"))
        .await;
    assert_eq!(error_code(resp, 404).await, "not_found");
    assert_eq!(
        metric(&app.metrics().await, "analytics_breaker_state"),
        Some(0.0)
    );
    app.stop().await;
    server.abort();
}

#[tokio::test]
async fn analytics_outage_falls_back_opens_the_breaker_and_recovers() {
    // Accepts TCP connections (kernel backlog) but never answers: every call times out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc = format!("http://{}", listener.local_addr().unwrap());
    let app = start(|c| {
        c.analytics_rpc_url = rpc;
        c.analytics_rpc_timeout_ms = 300;
        c.breaker_failure_threshold = 3;
        c.breaker_reset_ms = 1_000;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/outage").await;
    let details_path = format!("/api/v1/links/{code}");

    for i in 0..5 {
        let start = Instant::now();
        let resp = app.get_auth(ALICE, &details_path).await;
        let elapsed = start.elapsed();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], code.as_str());
        assert_eq!(v["total_clicks"], Value::Null);
        assert_eq!(v["stats_available"], false);
        assert!(
            elapsed < Duration::from_secs(2),
            "call {i} took {elapsed:?}"
        );
        println!("details during outage, call {i}: {elapsed:?}");
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "analytics_breaker_state"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"analytics_rpc_failures_total{method="GetClickCount"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"analytics_rpc_short_circuits_total{method="GetClickCount"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let resp = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}/stats"))
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(error_code(resp, 503).await, "stats_unavailable");

    // The service comes back on the same address: the breaker lets a trial through
    // after BREAKER_RESET_MS and closes.
    let server = serve_analytics(listener);
    let recovered = wait_until(Duration::from_secs(30), || async {
        let v: Value = app
            .get_auth(ALICE, &details_path)
            .await
            .json()
            .await
            .unwrap();
        v["total_clicks"] == 42
    })
    .await;
    assert!(
        recovered,
        "details never recovered: {}",
        app.metrics().await
    );
    assert_eq!(
        metric(&app.metrics().await, "analytics_breaker_state"),
        Some(0.0)
    );
    app.stop().await;
    server.abort();
}

/// Redirect rules pick targets by device, browser language and country (first match wins),
/// and each click records which rule matched.
#[tokio::test]
async fn redirect_rules_pick_targets_and_clicks_record_the_rule() {
    let Some(geoip) = std::env::var_os("SHORTENER_TEST_GEOIP_DB") else {
        panic!("SHORTENER_TEST_GEOIP_DB is not set: run through ./scripts/test, which fetches it");
    };
    let broker = MockBroker::start();
    broker.create_topic("clicks-rules", 1);
    let bootstrap = broker.bootstrap().to_string();
    let app = start(|c| {
        c.clicks_enabled = true;
        c.kafka = KafkaArgs::new(bootstrap, "clicks-rules");
        c.click_linger_ms = 50;
        c.geoip_db_path = Some(geoip.into());
        c.trusted_proxies = url_api::config::parse_proxies("127.0.0.1/32").unwrap();
    })
    .await;
    let created = app
        .create_json(
            ALICE,
            serde_json::json!({
                "long_url": "https://example.com/default",
                "alias": "ruled",
                "redirect_rules": [
                    { "long_url": "https://example.com/de-ios", "device": "ios", "countries": ["de"] },
                    { "long_url": "https://example.com/ios", "device": "iOS" },
                    { "long_url": "https://example.com/android", "device": "android" },
                    { "long_url": "https://example.com/german", "languages": ["de"] },
                    { "long_url": "https://example.com/us", "countries": ["US"] },
                ],
            }),
        )
        .await;
    assert_eq!(
        created["redirect_rules"][0]["countries"],
        serde_json::json!(["DE"])
    );
    assert_eq!(created["redirect_rules"][1]["device"], "ios");

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
    const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";
    // (user agent, Accept-Language, client IP: DE, US or none known) → target, rule.
    let cases: [(&str, &str, &str, &str, Option<u32>); 6] = [
        (
            IPHONE,
            "",
            "194.25.0.60",
            "https://example.com/de-ios",
            Some(1),
        ),
        (IPHONE, "de", "8.8.8.8", "https://example.com/ios", Some(2)),
        (
            PIXEL,
            "de",
            "194.25.0.60",
            "https://example.com/android",
            Some(3),
        ),
        (
            MAC,
            "fr-FR, de-AT;q=0.5",
            "8.8.8.8",
            "https://example.com/german",
            Some(4),
        ),
        (MAC, "fr", "8.8.8.8", "https://example.com/us", Some(5)),
        (
            MAC,
            "fr",
            "203.0.113.9",
            "https://example.com/default",
            None,
        ),
    ];
    for (i, (ua, lang, ip, target, _)) in cases.iter().enumerate() {
        let mut req = app
            .client
            .get(app.url("/ruled?via=test"))
            .header("user-agent", *ua)
            .header("referer", format!("https://ref.example/{i}"))
            .header("x-forwarded-for", *ip);
        if !lang.is_empty() {
            req = req.header("accept-language", *lang);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 302);
        // Query forwarding applies to a rule's target too.
        assert_eq!(
            resp.headers()["location"],
            format!("{target}?via=test").as_str(),
            "case {i}"
        );
    }
    let published = wait_until(Duration::from_secs(30), || async {
        metric(&app.metrics().await, "clicks_published_total") == Some(cases.len() as f64)
    })
    .await;
    assert!(published, "{}", app.metrics().await);
    let messages: i64 = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap().to_string();
        move || shortener_testkit::kafka::high_watermarks(&bootstrap, "clicks-rules")
    })
    .await
    .unwrap()
    .iter()
    .sum();
    let received = broker
        .consume_all("clicks-rules", messages as usize, Duration::from_secs(30))
        .await;
    let mut rules_seen = std::collections::HashMap::new();
    for msg in &received {
        for entry in decode_batch(msg.payload.as_deref().unwrap()).unwrap() {
            let click = Click::decode(&entry.event).unwrap();
            let i: usize = click.referer.as_deref().unwrap()["https://ref.example/".len()..]
                .parse()
                .unwrap();
            rules_seen.insert(i, click.matched_rule);
        }
    }
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(rules_seen.get(&i), Some(&case.4), "case {i}");
    }

    // Rules are replaced by an edit and removed with [].
    let resp = app
        .patch(
            ALICE,
            "ruled",
            serde_json::json!({ "redirect_rules": [{ "long_url": "https://example.com/mac", "device": "desktop" }] }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let loc = |ua: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .client
                .get(app.url("/ruled"))
                .header("user-agent", ua)
                .send()
                .await
                .unwrap();
            resp.headers()["location"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(loc(MAC).await, "https://example.com/mac");
    assert_eq!(loc(IPHONE).await, "https://example.com/default");
    let resp = app
        .patch(ALICE, "ruled", serde_json::json!({ "redirect_rules": [] }))
        .await;
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["redirect_rules"], serde_json::json!([]));
    assert_eq!(loc(MAC).await, "https://example.com/default");

    for (rules, why) in [
        (
            serde_json::json!([{ "long_url": "https://e.com/" }]),
            "no condition",
        ),
        (
            serde_json::json!([{ "long_url": "ftp://e.com/", "device": "ios" }]),
            "bad target",
        ),
        (
            serde_json::json!([{ "long_url": "https://e.com/", "device": "watch" }]),
            "bad device",
        ),
        (
            serde_json::json!([{ "long_url": "https://e.com/", "countries": ["Germany"] }]),
            "bad country",
        ),
        (
            serde_json::json!([{ "long_url": "https://e.com/", "languages": ["german!"] }]),
            "bad language",
        ),
    ] {
        let resp = app
            .create(
                ALICE,
                serde_json::json!({ "long_url": "https://example.com/", "redirect_rules": rules }),
            )
            .await;
        assert_eq!(error_code(resp, 400).await, "invalid_rules", "{why}");
    }
    app.stop().await;
}

#[tokio::test]
async fn one_owners_slow_stats_neither_open_the_breaker_nor_take_every_slot() {
    // Accepts TCP connections but never answers: every stats call runs out of time, as
    // expensive queries of one busy account would.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc = format!("http://{}", listener.local_addr().unwrap());
    let app = start(|c| {
        c.analytics_rpc_url = rpc;
        c.analytics_rpc_timeout_ms = 300;
        c.breaker_failure_threshold = 3;
        c.analytics_max_concurrent_per_owner = 2;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/slow").await;
    let path = format!("/api/v1/links/{code}/stats");

    // Three at once from one owner: two are let through (and time out), one is refused.
    let (a, b, c) = tokio::join!(
        app.get_auth(ALICE, &path),
        app.get_auth(ALICE, &path),
        app.get_auth(ALICE, &path)
    );
    let mut statuses = vec![
        a.status().as_u16(),
        b.status().as_u16(),
        c.status().as_u16(),
    ];
    statuses.sort();
    assert_eq!(statuses, vec![429, 503, 503]);

    // Many more timeouts of expensive calls: the breaker stays closed.
    for _ in 0..5 {
        let resp = app.get_auth(ALICE, &path).await;
        assert_eq!(error_code(resp, 503).await, "stats_unavailable");
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "analytics_breaker_state"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"analytics_rpc_owner_limited_total{method="GetClickStats"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            r#"analytics_rpc_short_circuits_total{method="GetClickStats"}"#
        )
        .is_none(),
        "{text}"
    );
    app.stop().await;
    drop(listener);
}
