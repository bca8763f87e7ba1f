//! A link flooded with 100 000 distinct Referers keeps answering its stats: each link's
//! day keeps at most `click_source_cap()` sources, later new ones are counted in `other`,
//! on both ways clicks reach the rollups (the consumer's store, and the rebuild from raw
//! clicks), and every click is still counted once.

use std::time::Duration;

mod common;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use consumer::enrich::{DeviceType, Enrichment};
use consumer::rollup_worker::drain;
use consumer::store::{insert_clicks, ClickRow};
use serde_json::Value;
use shortener_common::event::Click;

use common::{Stack, StackOptions};

const API_KEY: &str = "e2e-key-0123456789abcdef";
const FLOOD: usize = 100_000;
const CAP: i64 = 100;

async fn stack(group_id: &'static str) -> Stack {
    Stack::start(StackOptions {
        api_key: API_KEY,
        group_id,
        partitions: 1,
        geoip_db: None,
        trusted_proxies: "127.0.0.1/32",
        allow_private_targets: false,
        analytics_rpc_timeout_ms: None,
    })
    .await
}

/// Two hours ago, so the default 30-day window holds every click whatever the hour.
fn flood_time() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(2)
}

/// `GET /api/v1/links/{code}/stats`, which must answer 200.
async fn stats(stack: &Stack, code: &str, query: &str) -> Value {
    let resp = stack
        .http
        .get(format!("{}/api/v1/links/{code}/stats{query}", stack.base))
        .bearer_auth(API_KEY)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The source breakdown is the top 10 and one `other` entry, and every click is counted.
fn assert_capped(stats: &Value) {
    assert_eq!(
        stats["total_clicks"], FLOOD as u64,
        "{}",
        stats["total_clicks"]
    );
    let sources = stats["by_traffic_source"].as_array().unwrap();
    assert_eq!(sources.len(), 11, "{sources:?}");
    assert!(sources[..10].iter().all(|e| e.get("other").is_none()));
    assert_eq!(sources[10]["other"], true);
    assert_eq!(sources[10]["key"], "other");
    let sum: u64 = sources.iter().map(|e| e["clicks"].as_u64().unwrap()).sum();
    assert_eq!(sum, FLOOD as u64);
    let devices: u64 = stats["by_device_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["clicks"].as_u64().unwrap())
        .sum();
    assert_eq!(devices, FLOOD as u64);
}

/// Distinct sources kept as themselves (not folded) for `code`'s days: at most the cap.
async fn kept_sources(stack: &Stack, code: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(DISTINCT value) FROM click_breakdown_daily
                 WHERE short_code = $1 AND dimension = 'source'
                   AND value <> click_source_fold()),
                (SELECT count(DISTINCT value) FROM click_breakdown_hourly
                 WHERE short_code = $1 AND dimension = 'source'
                   AND value <> click_source_fold())",
    )
    .bind(code)
    .fetch_one(&stack.db.pool)
    .await
    .unwrap()
}

/// Stores `batches` one after the other, as one consumer worker does.
async fn write(pool: &sqlx::PgPool, batches: &[(usize, &[ClickRow])]) -> u64 {
    let mut added = 0;
    for (_, batch) in batches {
        added += insert_clicks(pool, batch).await.unwrap();
    }
    added
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_loaded_referer_flood_is_capped_by_the_rebuild() {
    let stack = stack("flood-rebuild").await;
    let code = stack.create_link("https://example.com/flooded").await;
    // One click per invented site, a few real sources with more clicks: those stay on top.
    sqlx::query(
        "INSERT INTO clicks (event_id, short_code, occurred_at, country_code, device_type,
                             browser, os, traffic_source, is_bot)
         SELECT gen_random_uuid(), $1, $2, 'US', 'desktop', 'Firefox', 'Linux',
                CASE WHEN i <= 300 THEN 'real' || (i % 3) || '.example'
                     ELSE 'flood' || i || '.example' END,
                false
         FROM generate_series(1, $3) AS i",
    )
    .bind(&code)
    .bind(flood_time())
    .bind(FLOOD as i64)
    .execute(&stack.db.pool)
    .await
    .unwrap();
    sqlx::query("SELECT rebuild_click_rollups()")
        .execute(&stack.db.pool)
        .await
        .unwrap();

    assert_eq!(kept_sources(&stack, &code).await, (CAP, CAP));
    let by_day = stats(&stack, &code, "").await;
    assert_capped(&by_day);
    let top = by_day["by_traffic_source"].as_array().unwrap();
    assert_eq!(top[0]["key"], "real0.example");
    assert_eq!(top[0]["clicks"], 100);
    let by_hour = stats(&stack, &code, "?bucket=hour").await;
    assert_capped(&by_hour);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_referer_flood_through_the_consumer_is_capped_exactly_once() {
    let stack = stack("flood-store").await;
    let code = stack.create_link("https://example.com/flooded").await;
    let at = flood_time();
    let enrichment = |source: String| Enrichment {
        country_code: "US".into(),
        device_type: DeviceType::Desktop,
        browser: "Firefox".into(),
        os: "Linux".into(),
        is_bot: false,
        traffic_source: source,
        stored_ip: None,
    };
    let rows: Vec<ClickRow> = (0..FLOOD)
        .map(|i| {
            let referer = format!("https://flood{i}.example/");
            let mut click = Click::now(code.clone(), None, None, Some(referer));
            click.occurred_at = at + TimeDelta::milliseconds(i as i64);
            ClickRow {
                click,
                enrichment: enrichment(format!("flood{i}.example")),
            }
        })
        .collect();
    // Two writers at once, as two consumer replicas would be: the cap holds between them.
    let (even, odd): (Vec<_>, Vec<_>) = rows
        .chunks(2_000)
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let (a, b) = tokio::join!(write(&stack.db.pool, &even), write(&stack.db.pool, &odd));
    assert_eq!(a + b, FLOOD as u64);
    // And rollup passes at once (these two and the stack consumer's): the cap holds
    // between them too. A pass's rows leave the queue when it commits.
    let (a, b) = tokio::join!(drain(&stack.db.pool), drain(&stack.db.pool));
    assert!(a.unwrap() + b.unwrap() <= FLOOD as u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM click_rollup_queue")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        if queued == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queued} clicks never rolled up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A redelivery of a whole batch adds nothing, folded sources included.
    assert_eq!(
        insert_clicks(&stack.db.pool, &rows[50_000..52_000])
            .await
            .unwrap(),
        0
    );

    assert_eq!(kept_sources(&stack, &code).await, (CAP, CAP));
    let stats = stats(&stack, &code, "").await;
    assert_capped(&stats);
    stack.stop().await;
}
