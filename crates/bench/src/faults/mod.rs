//! The fault suite: real servers (Postgres, Kafka-protocol brokers) and the service binaries
//! as processes, taken down and brought back while work is in flight. Each case reports
//! what it expected and what it observed; `shortener-faults` prints them as a table.

pub mod broker;
pub mod consumer_crash;
pub mod database;
pub mod memory;
pub mod rpc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use shortener_common::event::Click;

use crate::clicks;
use crate::outage::FlakyBroker;

/// Partitions of the clicks topic in the consumer cases.
pub const PARTITIONS: i32 = 4;

/// A broker whose clicks topic (and its dead-letter topic) already holds `count` synthetic
/// events over 50 codes, produced before any consumer runs: the backlog the consumer cases
/// work through while something breaks.
pub async fn broker_with_backlog(
    count: usize,
    seed: u64,
) -> anyhow::Result<(FlakyBroker, Vec<Click>)> {
    let broker = FlakyBroker::start();
    broker
        .create_topic("clicks", PARTITIONS)
        .map_err(anyhow::Error::msg)?;
    broker
        .create_topic("clicks.dlq", 1)
        .map_err(anyhow::Error::msg)?;
    let codes: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let events = clicks::synthetic(count, &codes, seed);
    clicks::produce(broker.bootstrap(), "clicks", &events).await?;
    Ok((broker, events))
}

/// Where the binaries are and where logs and data directories go.
#[derive(Debug, Clone)]
pub struct FaultEnv {
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
}

impl FaultEnv {
    /// A fresh directory for one case's logs and data.
    pub fn case_dir(&self, case: &str) -> std::io::Result<PathBuf> {
        let dir = self.work_dir.join(case);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub case: String,
    pub expectation: String,
    pub observed: String,
    pub pass: bool,
    pub seconds: f64,
}

/// Runs a case, turning a setup error into a failed outcome.
pub async fn run_case<F>(case: &str, expectation: &str, f: F) -> Outcome
where
    F: std::future::Future<Output = anyhow::Result<(bool, String)>>,
{
    let start = Instant::now();
    eprintln!("fault case: {case}");
    let (pass, observed) = match f.await {
        Ok(r) => r,
        Err(e) => (false, format!("could not run: {e:#}")),
    };
    eprintln!("  {} {observed}", if pass { "pass" } else { "FAIL" });
    Outcome {
        case: case.into(),
        expectation: expectation.into(),
        observed,
        pass,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Polls `check` every 100 ms until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Markdown table of outcomes.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from("| case | expectation | observed | result |\n|---|---|---|---|\n");
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            o.case,
            o.expectation,
            o.observed,
            if o.pass { "pass" } else { "FAIL" }
        ));
    }
    out
}
