//! analytics-rpc hung (SIGSTOP), then killed: url-api link details still answer, within the
//! RPC timeout, with
//! `stats_available: false`; the circuit breaker opens (gauge 1) and, once analytics-rpc is
//! back, closes again (gauge 0) and stats return.

use std::time::{Duration, Instant};

use shortener_testkit::postgres::fresh_database;

use super::{wait_for, FaultEnv};
use crate::stack::{AnalyticsRpc, UrlApi, API_KEY};

const TIMEOUT_MS: u64 = 300;
const THRESHOLD: u32 = 3;
const RESET_MS: u64 = 2000;

pub async fn killed(env: &FaultEnv) -> anyhow::Result<(bool, String)> {
    let dir = env.case_dir("rpc-outage")?;
    let db = fresh_database().await;
    let mut rpc = AnalyticsRpc::start(AnalyticsRpc::spec(&env.bin_dir, &dir, &db.url)).await?;
    let spec = UrlApi::spec(&env.bin_dir, &dir, &db.url, "127.0.0.1:9", &rpc.url())
        .env("CLICKS_ENABLED", "false")
        .env("ANALYTICS_RPC_TIMEOUT_MS", TIMEOUT_MS.to_string())
        .env("BREAKER_FAILURE_THRESHOLD", THRESHOLD.to_string())
        .env("BREAKER_RESET_MS", RESET_MS.to_string());
    let api = UrlApi::start(spec).await?;
    let code = api
        .create_link("https://example.com/rpc-outage", None)
        .await?;
    let details = || async {
        let t = Instant::now();
        let resp = api
            .client()
            .get(api.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(API_KEY)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await?;
        anyhow::Ok((status, body["stats_available"].as_bool(), t.elapsed()))
    };
    let before = details().await?;

    // Hung, not dead: SIGSTOP keeps the connection open but nothing answers, so the
    // first calls run into the timeout, then the open breaker answers at once.
    rpc.service.signal("STOP")?;
    let mut hung = Vec::new();
    for _ in 0..(THRESHOLD + 3) {
        hung.push(details().await?);
    }
    let hung_open = api.metric("analytics_breaker_state").await?;
    rpc.service.signal("CONT")?;
    let hung_ok = hung.iter().all(|(s, a, _)| *s == 200 && *a == Some(false));
    let timed_out = hung[..THRESHOLD as usize]
        .iter()
        .map(|(.., t)| *t)
        .max()
        .unwrap_or_default();
    let short_circuited = hung[THRESHOLD as usize..]
        .iter()
        .map(|(.., t)| *t)
        .max()
        .unwrap_or_default();
    wait_for(Duration::from_secs(30), || async {
        let (_, available, _) = details().await.ok()?;
        (available == Some(true)).then_some(())
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("stats did not return after SIGCONT"))?;

    rpc.service.kill().await;
    let mut slowest = Duration::ZERO;
    let mut answers = Vec::new();
    for _ in 0..10 {
        let (status, available, took) = details().await?;
        slowest = slowest.max(took);
        answers.push((status, available));
    }
    let state_open = api.metric("analytics_breaker_state").await?;
    let short_circuits = api.metric("analytics_rpc_short_circuits_total").await?;

    rpc.service.restart()?;
    rpc.service
        .wait_ready(
            &format!("http://{}/healthz", rpc.admin),
            Duration::from_secs(60),
        )
        .await?;
    let back = Instant::now();
    let recovered = wait_for(Duration::from_secs(30), || async {
        let (_, available, _) = details().await.ok()?;
        let state = api.metric("analytics_breaker_state").await.ok()?;
        (available == Some(true) && state == 0.0).then_some(())
    })
    .await;
    let recovery_s = back.elapsed().as_secs_f64();

    let all_fell_back = answers.iter().all(|(s, a)| *s == 200 && *a == Some(false));
    // The timeout plus scheduling slack on a loaded 2-core machine.
    let bound = Duration::from_millis(TIMEOUT_MS + 700);
    let pass = before.0 == 200
        && before.1 == Some(true)
        && hung_ok
        && timed_out >= Duration::from_millis(TIMEOUT_MS / 2)
        && timed_out <= bound
        && short_circuited < Duration::from_millis(TIMEOUT_MS / 2)
        && hung_open == 1.0
        && all_fell_back
        && slowest <= bound
        && state_open == 1.0
        && short_circuits > 0.0
        && recovered.is_some();
    Ok((
        pass,
        format!(
            "analytics-rpc hung (SIGSTOP): calls answered 200 with stats_available=false, the first {THRESHOLD} \
             in at most {:.0} ms (timeout), then the open breaker ({hung_open}) answered in at most {:.0} ms; \
             killed: 10 details calls: {} answered 200 with stats_available=false, slowest {:.0} ms \
             (timeout {TIMEOUT_MS} ms); breaker gauge {state_open} (open), {short_circuits} calls short-circuited; \
             after restart the breaker closed and stats returned in {recovery_s:.1} s",
            timed_out.as_secs_f64() * 1000.0,
            short_circuited.as_secs_f64() * 1000.0,
            answers.iter().filter(|(s, a)| *s == 200 && *a == Some(false)).count(),
            slowest.as_secs_f64() * 1000.0
        ),
    ))
}
