//! analytics-rpc GetClickStats latency on a large clicks table (1 M rows by default, one
//! hot code with ≥ 100k of them), sequential calls over gRPC to the release binary.

use std::time::Instant;

use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::json;
use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{Bucket, GetClickStatsRequest};
use shortener_testkit::postgres::fresh_database;

use super::BenchEnv;
use crate::clicks;
use crate::results::Row;
use crate::stack::AnalyticsRpc;

pub struct RpcOpts {
    pub clicks: i64,
    pub calls: usize,
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    calls: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    total_clicks_answered: u64,
}

pub async fn run(env: &BenchEnv, opts: &RpcOpts) -> anyhow::Result<Vec<Row>> {
    let db = fresh_database().await;
    let seeded = Instant::now();
    let hot = clicks::seed_analytics_dataset(&db.pool, opts.clicks).await?;
    let seed_s = seeded.elapsed().as_secs_f64();
    eprintln!(
        "seeded {} clicks ({hot} on the hot code) in {seed_s:.1} s",
        opts.clicks
    );

    let rpc = AnalyticsRpc::start(AnalyticsRpc::spec(&env.bin_dir, &env.log_dir, &db.url)).await?;
    let mut client = AnalyticsServiceClient::connect(rpc.url()).await?;
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for (label, code, bucket) in [
        (
            "hot code, 30 days by day",
            clicks::HOT_CODE.to_string(),
            Bucket::Day,
        ),
        (
            "hot code, 30 days by hour",
            clicks::HOT_CODE.to_string(),
            Bucket::Hour,
        ),
        (
            "typical code, 30 days by day",
            "c0500".to_string(),
            Bucket::Day,
        ),
    ] {
        let now = Utc::now();
        let request = GetClickStatsRequest {
            short_code: code.clone(),
            from: Some(ts(now - chrono::Duration::days(30))),
            to: Some(ts(now)),
            bucket: bucket as i32,
            ..Default::default()
        };
        // Warm the connection, the plan cache and shared buffers.
        for _ in 0..3 {
            client.get_click_stats(request.clone()).await?;
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut answered = 0;
        for _ in 0..opts.calls {
            let t = Instant::now();
            let resp = client.get_click_stats(request.clone()).await?.into_inner();
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
            answered = resp.total_clicks;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        let lat = Latency {
            calls: opts.calls,
            p50_ms: ms(hist.value_at_quantile(0.5)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
            total_clicks_answered: answered,
        };
        rows.push(Row::new(
            "rpc GetClickStats",
            &format!("p50 {label}"),
            lat.p50_ms,
            "ms",
        ));
        rows.push(Row::new(
            "rpc GetClickStats",
            &format!("p99 {label}"),
            lat.p99_ms,
            "ms",
        ));
        results.push(json!({ "case": label, "code": code, "latency": lat }));
    }
    drop(rpc);
    crate::results::write_json(
        &env.results_dir,
        "rpc",
        &rows,
        json!({
            "clicks": opts.clicks,
            "hot_code_clicks": hot,
            "seed_seconds": seed_s,
            "cases": results,
        }),
    )?;
    Ok(rows)
}

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
