//! Broker outage under redirect load: the url-api process keeps redirecting while its only
//! broker is down for 10 s; the clicks it queued are delivered once the broker is back, and
//! clicks that did not fit the bounded queue are counted, never silently lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use shortener_testkit::postgres::fresh_database;

use super::{wait_for, FaultEnv};
use crate::loadgen::{self, LoadSpec};
use crate::outage::FlakyBroker;
use crate::procs::metric_sum_matching;
use crate::stack::{create_link, UrlApi};

pub const OUTAGE: Duration = Duration::from_secs(10);
/// `CLICK_QUEUE_CAPACITY` with room for every click of the outage: 10 s at over 10 000
/// redirects/s outgrows the default of 100 000.
pub const QUEUE_FOR_THE_OUTAGE: usize = 1_000_000;

/// Runs redirect load through a 10 s broker outage. `queue_capacity` None gives the queue
/// room for the whole outage ([`QUEUE_FOR_THE_OUTAGE`]); a small one forces drops.
pub async fn outage_under_load(
    env: &FaultEnv,
    queue_capacity: Option<u32>,
) -> anyhow::Result<(bool, String)> {
    let dir = env.case_dir(if queue_capacity.is_some() {
        "broker-overflow"
    } else {
        "broker-outage"
    })?;
    let broker = FlakyBroker::start();
    broker
        .create_topic("clicks", 4)
        .map_err(anyhow::Error::msg)?;
    let db = fresh_database().await;
    let capacity = queue_capacity.map_or(QUEUE_FOR_THE_OUTAGE, |c| c as usize);
    let spec = UrlApi::spec(
        &env.bin_dir,
        &dir,
        &db.url,
        broker.bootstrap(),
        "http://127.0.0.1:9",
    )
    .env("CLICK_QUEUE_CAPACITY", capacity.to_string());
    let api = UrlApi::start(spec).await?;
    exercise(api.addr, api.admin, &broker, queue_capacity.is_some()).await
}

/// The outage itself, against any url-api at `addr` (admin endpoints at `admin`) that
/// publishes to `broker` and accepts [`crate::stack::API_KEY`]: load before, during a 10 s
/// outage and the drain after. With `expect_drops` the queue is meant to overflow.
pub async fn exercise(
    addr: SocketAddr,
    admin: SocketAddr,
    broker: &FlakyBroker,
    expect_drops: bool,
) -> anyhow::Result<(bool, String)> {
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..20 {
        codes.push(
            create_link(
                &client,
                addr,
                &format!("https://example.com/outage/{i}"),
                None,
            )
            .await?,
        );
    }
    let codes = Arc::new(codes);
    let load = |secs: u64| LoadSpec {
        target: addr,
        connections: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(secs),
        request: {
            let codes = codes.clone();
            Arc::new(move |n| loadgen::get(&format!("/{}", codes[n as usize % codes.len()])))
        },
        expect: StatusCode::FOUND,
    };

    // Before: every click reaches the broker.
    let before = loadgen::run(load(2)).await?;
    let counts = |addr: SocketAddr| {
        let url = format!("http://{addr}/metrics");
        async move {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            let redirects = metric_sum_matching(
                &text,
                "http_request_duration_seconds_count",
                "status=\"302\"",
            );
            let published =
                crate::procs::metric_sum(&text, "clicks_published_total").unwrap_or(0.0);
            let dropped = crate::procs::metric_sum(&text, "clicks_dropped_total").unwrap_or(0.0);
            let failed =
                crate::procs::metric_sum(&text, "clicks_delivery_failed_total").unwrap_or(0.0);
            Some((redirects, published, dropped, failed))
        }
    };
    wait_for(Duration::from_secs(30), || async {
        counts(admin).await.filter(|(r, p, d, f)| p + d + f >= *r)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("clicks were not all published before the outage"))?;

    broker.down().map_err(anyhow::Error::msg)?;
    let during = loadgen::run(load(OUTAGE.as_secs())).await?;
    let (redirects_now, published_during, dropped_during, _) =
        counts(admin).await.unwrap_or_default();
    broker.up().map_err(anyhow::Error::msg)?;
    let back = Instant::now();

    // After: the queue drains into the broker.
    let settled = wait_for(Duration::from_secs(120), || async {
        counts(admin).await.filter(|(r, p, d, f)| p + d + f >= *r)
    })
    .await;
    let drain_s = back.elapsed().as_secs_f64();
    let Some((redirects, published, dropped, failed)) = settled else {
        let (r, p, d, f) = counts(admin).await.unwrap_or_default();
        return Ok((
            false,
            format!("after 120 s: {r} redirects, {p} published, {d} dropped, {f} failed"),
        ));
    };
    let on_topic = clicks_on_topic(broker.bootstrap(), "clicks").await?;
    let queued = redirects_now - published_during - dropped_during;
    let pass = before.errors == 0
        && during.errors == 0
        && failed == 0.0
        && published + dropped == redirects
        && on_topic as f64 == published
        && if expect_drops {
            dropped > 0.0
        } else {
            dropped == 0.0
        };
    Ok((
        pass,
        format!(
            "{} redirects during the outage, {} failed (p99 {:.1} ms); {queued:.0} clicks waited in the queue; \
             within {drain_s:.1} s of the broker's return: {published:.0} published + {dropped:.0} dropped (counted) \
             = {redirects:.0} redirects, {on_topic} clicks in the batches on the topic, {failed:.0} delivery failures",
            during.requests, during.errors, during.p99_ms
        ),
    ))
}

/// Clicks in all the ClickBatch messages of `topic`.
async fn clicks_on_topic(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let messages: i64 = shortener_testkit::kafka::high_watermarks(bootstrap, topic)
        .iter()
        .sum();
    let received = shortener_testkit::kafka::consume_all(
        bootstrap,
        topic,
        messages as usize,
        Duration::from_secs(120),
    )
    .await;
    let mut clicks = 0;
    for m in &received {
        let payload = m.payload.as_deref().unwrap_or_default();
        clicks += shortener_common::event_batch::decode_batch(payload)?.len() as i64;
    }
    Ok(clicks)
}
