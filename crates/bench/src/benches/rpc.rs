//! analytics-rpc latency on single links of growing size (issue 14: flat, not linear):
//! GetClickCount and GetClickStats over 30 days by day and by hour, sequential calls over
//! gRPC to the release binary, on links of 1 k and `clicks` (1 M) raw clicks and one with
//! ten times the latter's rollups (10 M clicks' worth, no raw rows: those windows only read
//! rollups, and seeding 10 M raw clicks does not fit the run's time budget).

use std::time::Instant;

use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::json;
use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{Bucket, GetClickCountRequest, GetClickStatsRequest};
use shortener_testkit::postgres::fresh_database;
use tonic::transport::Channel;

use super::BenchEnv;
use crate::clicks;
use crate::results::Row;
use crate::stack::AnalyticsRpc;

pub struct RpcOpts {
    pub clicks: i64,
    pub calls: usize,
}

/// Goal: p99 of the largest link within this factor of the smallest's.
const FLAT_FACTOR: f64 = 2.0;
/// Goal: p99 of the largest link's stats, in ms.
const P99_GOAL_MS: f64 = 10.0;

#[derive(Debug, serde::Serialize)]
struct Latency {
    calls: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    total_clicks_answered: u64,
}

#[derive(Clone, Copy)]
enum Call {
    Count,
    Stats(Bucket),
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::Count => "count",
            Call::Stats(Bucket::Hour) => "stats 30 days by hour",
            Call::Stats(_) => "stats 30 days by day",
        }
    }
}

pub async fn run(env: &BenchEnv, opts: &RpcOpts) -> anyhow::Result<Vec<Row>> {
    let db = fresh_database().await;
    let seeded = Instant::now();
    clicks::seed_links(&db.pool, &[("n1k", 1_000), ("n1m", opts.clicks)]).await?;
    clicks::scale_rollups(&db.pool, "n1m", "n10m", 10).await?;
    clicks::vacuum_analytics(&db.pool).await?;
    let seed_s = seeded.elapsed().as_secs_f64();
    let rollup_rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT short_code,
                (SELECT count(*) FROM click_breakdown_daily d WHERE d.short_code = l.short_code),
                (SELECT count(*) FROM click_breakdown_hourly h WHERE h.short_code = l.short_code)
         FROM links l ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    eprintln!("seeded 1 k and {} clicks in {seed_s:.1} s", opts.clicks);

    // A generous statement timeout: the point is to measure, not to cut slow answers.
    let spec =
        AnalyticsRpc::spec(&env.bin_dir, &env.log_dir, &db.url).env("QUERY_TIMEOUT_MS", "10000");
    let rpc = AnalyticsRpc::start(spec).await?;
    let mut client = AnalyticsServiceClient::connect(rpc.url()).await?;
    let links = [("1k", "n1k"), ("1M", "n1m"), ("10M (rollups x10)", "n10m")];
    let mut results = Vec::new();
    let mut rows = Vec::new();
    for call in [
        Call::Count,
        Call::Stats(Bucket::Day),
        Call::Stats(Bucket::Hour),
    ] {
        let mut p99s = Vec::new();
        for (size, code) in links {
            let lat = measure(&mut client, code, call, opts.calls).await?;
            let label = format!("{} {size}", call.label());
            rows.push(Row::new("rpc", &format!("p50 {label}"), lat.p50_ms, "ms"));
            let p99 = Row::new("rpc", &format!("p99 {label}"), lat.p99_ms, "ms");
            rows.push(if code == "n10m" {
                p99.below(P99_GOAL_MS)
            } else {
                p99
            });
            p99s.push(lat.p99_ms);
            results.push(json!({ "call": call.label(), "link": size, "latency": lat }));
        }
        // Flat: the largest link within FLAT_FACTOR of the smallest.
        rows.push(
            Row::new(
                "rpc",
                &format!("p99 {} 10M / 1k", call.label()),
                p99s[2],
                "ms",
            )
            .vs_at_most(p99s[0], FLAT_FACTOR),
        );
    }
    drop(rpc);
    crate::results::write_json(
        &env.results_dir,
        "rpc",
        &rows,
        json!({
            "clicks": opts.clicks,
            "seed_seconds": seed_s,
            "breakdown_rows_daily_hourly": rollup_rows,
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "cases": results,
        }),
    )?;
    Ok(rows)
}

async fn measure(
    client: &mut AnalyticsServiceClient<Channel>,
    code: &str,
    call: Call,
    calls: usize,
) -> anyhow::Result<Latency> {
    let now = Utc::now();
    let stats = |bucket: Bucket| GetClickStatsRequest {
        short_code: code.to_string(),
        from: Some(ts(now - chrono::Duration::days(30))),
        to: Some(ts(now)),
        bucket: bucket as i32,
        ..Default::default()
    };
    let once = async |client: &mut AnalyticsServiceClient<Channel>| -> anyhow::Result<u64> {
        Ok(match call {
            Call::Count => {
                client
                    .get_click_count(GetClickCountRequest {
                        short_code: code.to_string(),
                    })
                    .await?
                    .into_inner()
                    .total_clicks
            }
            Call::Stats(bucket) => {
                client
                    .get_click_stats(stats(bucket))
                    .await?
                    .into_inner()
                    .total_clicks
            }
        })
    };
    // Warm the connection, the plan cache and shared buffers.
    for _ in 0..3 {
        once(client).await?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut answered = 0;
    for _ in 0..calls {
        let t = Instant::now();
        answered = once(client).await?;
        hist.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(Latency {
        calls,
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
        total_clicks_answered: answered,
    })
}

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
