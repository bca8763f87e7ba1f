//! `shortener-faults`: the slow fault cases against the service binaries, real Postgres
//! and real Kafka-protocol brokers. Prints a table (case, expectation, observed, result),
//! writes it to bench/results/faults.json, and exits non-zero when a case fails.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use shortener_bench::faults::{self, broker, consumer_crash, database, memory, rpc, FaultEnv};

#[derive(Parser)]
#[command(name = "shortener-faults", about = "Fault suite of shortener-stack")]
struct Cli {
    /// Directory of the service binaries (default: target/release).
    #[arg(long, env = "SHORTENER_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Where logs and data directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()
        .context("tokio runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = FaultEnv {
        bin_dir: cli
            .bin_dir
            .unwrap_or_else(|| shortener_bench::procs::bin_dir("release")),
        work_dir: cli.work_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("shortener-faults-{}", std::process::id()))
        }),
    };
    std::fs::create_dir_all(&env.work_dir)?;
    eprintln!("logs in {}", env.work_dir.display());
    let wanted = |name: &str| cli.only.as_deref().is_none_or(|o| name.contains(o));
    let mut outcomes = Vec::new();
    let broker_expect = "0 failed redirects; queued clicks delivered after restart; none dropped";
    if wanted("broker outage") {
        outcomes.push(
            faults::run_case(
                "broker outage 10 s under redirect load",
                broker_expect,
                broker::outage_under_load(&env, None),
            )
            .await,
        );
    }
    if wanted("broker overflow") {
        outcomes.push(
            faults::run_case(
                "broker outage 10 s, queue capacity 500",
                "0 failed redirects; overflow dropped and counted; published + dropped = redirects",
                broker::outage_under_load(&env, Some(500)),
            )
            .await,
        );
    }
    if wanted("postgres") {
        outcomes.push(
            faults::run_case(
                "postgres stopped 10 s under consumer load",
                "no commits while down, retries with backoff, not ready; afterwards stored = produced exactly",
                database::stopped_under_load(&env),
            )
            .await,
        );
    }
    if wanted("memory") {
        outcomes.push(
            faults::run_case(
                "postgres stopped 30 s while a deep backlog arrives",
                "consumer memory flat (fetched data bounded by MAX_IN_FLIGHT_BYTES); afterwards stored = produced exactly",
                memory::flat_during_outage(&env),
            )
            .await,
        );
    }
    if wanted("consumer") {
        outcomes.push(
            faults::run_case(
                "consumer SIGKILLed mid-batch, restarted",
                "stored = produced exactly (no loss, no doubles)",
                consumer_crash::killed_mid_batch(&env),
            )
            .await,
        );
    }
    if wanted("analytics") {
        outcomes.push(
            faults::run_case(
                "analytics-rpc hung (SIGSTOP), then killed and restarted",
                "details 200 with stats_available=false within the timeout, then at once (breaker open); breaker closes after restart",
                rpc::killed(&env),
            )
            .await,
        );
    }
    let table = faults::table(&outcomes);
    println!("\n{table}");
    std::fs::create_dir_all(&cli.results_dir)?;
    let doc = serde_json::json!({
        "measured_at": chrono::Utc::now().to_rfc3339(),
        "machine": shortener_bench::results::Machine::describe(),
        "cases": outcomes,
    });
    std::fs::write(
        cli.results_dir.join("faults.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} fault cases failed",
        outcomes.len()
    );
    Ok(())
}
