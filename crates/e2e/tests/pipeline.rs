//! The whole click pipeline in one process, every hop over real loopback sockets:
//! HTTP redirect (url-api) -> Kafka-protocol broker (librdkafka mock cluster) -> consumer
//! group -> Postgres -> analytics-rpc (gRPC over TLS) -> url-api link details.

use std::time::{Duration, Instant};

mod common;

use serde_json::json;
use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{BreakdownEntry, GetClickStatsRequest};

use common::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);
const API_KEY: &str = "e2e-key-0123456789abcdef";

/// (User-Agent, Referer, X-Forwarded-For) of each kind of visitor, and what the pipeline
/// must make of it: (country, device type, browser, traffic source).
type Visitor = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    (&'static str, &'static str, &'static str, &'static str),
);
const VISITORS: [Visitor; 4] = [
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        Some("https://www.google.com/search?q=shortener"),
        Some("8.8.8.8"),
        ("US", "mobile", "Safari", "google"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        Some("https://news.bbc.co.uk/some/story"),
        Some("194.25.0.60"),
        ("DE", "desktop", "Firefox", "bbc.co.uk"),
    ),
    (
        // No X-Forwarded-For: the client is the loopback peer itself, which has no country.
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        None,
        None,
        ("Unknown", "bot", "Googlebot", "direct"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        Some("https://t.co/xyz"),
        Some("2001:4860:4860::8888"),
        ("US", "tablet", "Safari", "twitter"),
    ),
];

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

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_become_stored_enriched_clicks_visible_through_the_apis() {
    let geoip = std::env::var_os("SHORTENER_TEST_GEOIP_DB")
        .expect("SHORTENER_TEST_GEOIP_DB is not set: run through ./scripts/test");
    let stack = Stack::start(StackOptions {
        api_key: API_KEY,
        group_id: "e2e",
        partitions: 4,
        geoip_db: Some(geoip),
        // url-api sits behind the loopback peer as its reverse proxy.
        trusted_proxies: "127.0.0.1/32",
        allow_private_targets: false,
        analytics_rpc_timeout_ms: None,
    })
    .await;
    let (http, base, db) = (&stack.http, &stack.base, &stack.db);
    let code = stack.create_link("https://example.com/landing/page").await;

    let per_visitor = 5;
    let n = VISITORS.len() * per_visitor;
    let started = Instant::now();
    for i in 0..n {
        let (ua, referer, xff, _) = VISITORS[i % VISITORS.len()];
        let mut req = http.get(format!("{base}/{code}")).header("user-agent", ua);
        if let Some(r) = referer {
            req = req.header("referer", r);
        }
        if let Some(ip) = xff {
            req = req.header("x-forwarded-for", ip);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(
            resp.headers()["location"].to_str().unwrap(),
            "https://example.com/landing/page"
        );
    }

    wait_until("every click stored", || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = $1")
            .bind(&code)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(stored <= n as i64, "more rows than redirects: {stored}");
        stored == n as i64
    })
    .await;
    println!(
        "{n} redirects stored {:?} after the first one (includes the consumer group join)",
        started.elapsed()
    );
    // Counts and stats read the rollups, which the consumer's rollup task adds the stored
    // clicks to a pass later.
    wait_until("every stored click rolled up", || async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM click_rollup_queue")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        queued == 0
    })
    .await;
    println!("and counted {:?} after the first one", started.elapsed());

    let mut rpc_client = AnalyticsServiceClient::new(stack.rpc_channel().await);
    let mut request = tonic::Request::new(GetClickStatsRequest {
        short_code: code.clone(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", common::RPC_TOKEN).parse().unwrap(),
    );
    let stats = rpc_client
        .get_click_stats(request)
        .await
        .unwrap()
        .into_inner();
    let k = per_visitor as u64;
    assert_eq!(stats.total_clicks, n as u64);
    // The crawler is counted apart; the three people are three visitors, however often
    // each clicked (one day, same address and browser).
    assert_eq!((stats.human_clicks, stats.bot_clicks), (3 * k, k));
    assert_eq!(stats.visitors, 3, "unique visitors of the day");
    assert_eq!(
        stats.by_country,
        entries(&[("US", 2 * k), ("DE", k), ("Unknown", k)])
    );
    assert_eq!(
        stats.by_device_type,
        entries(&[("bot", k), ("desktop", k), ("mobile", k), ("tablet", k)])
    );
    assert_eq!(
        stats.by_browser,
        entries(&[("Safari", 2 * k), ("Firefox", k), ("Googlebot", k)])
    );
    assert_eq!(
        stats.by_traffic_source,
        entries(&[
            ("bbc.co.uk", k),
            ("direct", k),
            ("google", k),
            ("twitter", k)
        ])
    );
    assert_eq!(stats.series.iter().map(|b| b.clicks).sum::<u64>(), n as u64);
    for (_, _, _, (country, device, browser, source)) in VISITORS {
        let rows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM clicks WHERE short_code = $1 AND country_code = $2
               AND device_type = $3 AND browser = $4 AND traffic_source = $5",
        )
        .bind(&code)
        .bind(country)
        .bind(device)
        .bind(browser)
        .bind(source)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(rows, k as i64, "{country}/{device}/{browser}/{source}");
    }

    let details = stack.link_details(&code, None).await;
    assert_eq!(details["stats_available"], json!(true), "{details}");
    assert_eq!(details["total_clicks"], json!(n), "{details}");

    stack.stop().await;
}
