//! `shortener-bench`: runs the benchmarks against the release binaries and a private
//! Postgres (TEST_DATABASE_URL), writes `bench/results/*.json` and prints a summary table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shortener_bench::benches::{self, BenchEnv};
use shortener_bench::results::{self, Row};

// The same allocator as the services, so the baseline differs from url-api only in
// what the handler does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "shortener-bench", about = "Benchmarks of shortener-stack")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Directory of the service binaries (default: target/release).
    #[arg(long, global = true, env = "SHORTENER_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    #[arg(long, global = true, default_value = "bench/results")]
    results_dir: PathBuf,
    /// Where service logs go (default: a temporary directory).
    #[arg(long, global = true)]
    log_dir: Option<PathBuf>,
    /// Recorded seconds of each HTTP load phase.
    #[arg(long, global = true, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, global = true, default_value_t = 3)]
    warmup_secs: u64,
    /// Connections of the redirect load.
    #[arg(long, global = true, default_value_t = 64)]
    connections: usize,
    /// Alternating baseline/url-api redirect round pairs (the median pair ratio is judged).
    #[arg(long, global = true, default_value_t = 5)]
    rounds: usize,
    /// Events pre-produced for each consumer configuration.
    #[arg(long, global = true, default_value_t = 50_000)]
    events: usize,
    /// `taskset -c` CPU list for the servers under test (e.g. `0`), unset = no pinning.
    #[arg(long, global = true)]
    server_cpus: Option<String>,
    /// Redirects in the pinned layout: the servers under test on CPU 0; this process (the
    /// built-in load generator) and what it starts (wrk, the broker) on CPU 1. Separates
    /// the servers' CPU cost from scheduling noise; results go to `redirect-pinned.json`.
    #[arg(long, global = true)]
    pinned: bool,
    /// GeoIP database for consumer enrichment and url-api's country rules (the redirect
    /// benchmark's rules case runs only with it).
    #[arg(long, global = true, env = "SHORTENER_TEST_GEOIP_DB")]
    geoip_db: Option<PathBuf>,
    /// Clicks in the analytics dataset.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    clicks: i64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every benchmark (the default).
    All,
    Redirect,
    Consumer,
    Rpc,
    /// The consumer's storing transaction (rollups included) against plain INSERTs, 1000
    /// links and one hot link: the part of `consumer` that does not need Kafka.
    Store,
    Operator,
    /// The bare axum redirect baseline, as a process of its own.
    #[command(hide = true)]
    ServeBaseline {
        #[arg(long)]
        addr: SocketAddr,
        /// `code<TAB>url` lines.
        #[arg(long)]
        links: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    match cli.command.unwrap_or(Cmd::All) {
        Cmd::ServeBaseline { addr, links } => rt.block_on(serve_baseline(addr, links)),
        cmd => rt.block_on(run(cmd, cli.common)),
    }
}

async fn serve_baseline(addr: SocketAddr, links: PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&links).with_context(|| format!("reading {}", links.display()))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(
        listener,
        shortener_bench::baseline::router(shortener_bench::baseline::parse_links(&text)),
    )
    .await?;
    Ok(())
}

/// Moves every thread of this process (and so what it starts later) to `cpus`.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    anyhow::ensure!(status.success(), "taskset -c {cpus} failed: {status}");
    Ok(())
}

async fn run(cmd: Cmd, c: Common) -> anyhow::Result<()> {
    let log_dir = match c.log_dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("shortener-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&log_dir)?;
    let env = BenchEnv {
        bin_dir: c
            .bin_dir
            .clone()
            .unwrap_or_else(|| shortener_bench::procs::bin_dir("release")),
        log_dir,
        results_dir: c.results_dir.clone(),
        duration: Duration::from_secs(c.duration_secs),
        warmup: Duration::from_secs(c.warmup_secs),
    };
    eprintln!("logs in {}", env.log_dir.display());
    let all = matches!(cmd, Cmd::All);
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    if all || matches!(cmd, Cmd::Redirect) {
        let db = shortener_testkit::postgres::fresh_database().await;
        let mut opts = benches::redirect::RedirectOpts {
            connections: c.connections,
            links: 1000,
            create_connections: 16,
            server_cpus: c.server_cpus.clone(),
            rounds: c.rounds,
            layout: None,
            geoip_db: c.geoip_db.clone(),
        };
        if c.pinned {
            pin_self("1")?;
            opts.server_cpus = Some("0".into());
            opts.layout = Some("pinned".into());
        }
        match benches::redirect::run(&env, &db.url, &opts).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("redirect: {e:#}")),
        }
    }
    if all || matches!(cmd, Cmd::Consumer) {
        let opts = benches::consumer::ConsumerOpts {
            events: c.events,
            partitions: 4,
            batch_sizes: vec![100, 500, 2000],
            concurrencies: vec![1, 2, 4],
            geoip_db: c.geoip_db.clone(),
        };
        match benches::consumer::run(&env, &opts).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("consumer: {e:#}")),
        }
    }
    if matches!(cmd, Cmd::Store) {
        let codes: Vec<String> = (0..1000).map(|i| format!("c{i:04}")).collect();
        let uniform = std::sync::Arc::new(shortener_bench::clicks::synthetic(c.events, &codes, 42));
        let hot = std::sync::Arc::new(shortener_bench::clicks::synthetic(
            c.events,
            &["hot".to_string()],
            43,
        ));
        // The rollup pass size (ROLLUP_BATCH) is chosen on the uniform case.
        let default_rollup = consumer::rollup_worker::DEFAULT_BATCH;
        for (case, events, conc, rollup_batch) in [
            ("1000 links", &uniform, 1, default_rollup),
            ("1000 links", &uniform, 4, 5_000),
            ("1000 links", &uniform, 4, default_rollup),
            ("1000 links", &uniform, 4, 50_000),
            ("hot link", &hot, 1, default_rollup),
            ("hot link", &hot, 4, default_rollup),
        ] {
            match benches::consumer::store_only(case, events, 2000, conc, rollup_batch).await {
                Ok(p) => {
                    eprintln!("{}", p.describe());
                    rows.extend(p.rows("store", ""));
                }
                Err(e) => failures.push(format!("store: {e:#}")),
            }
        }
    }
    if all || matches!(cmd, Cmd::Rpc) {
        let opts = benches::rpc::RpcOpts {
            clicks: c.clicks,
            calls: 200,
        };
        match benches::rpc::run(&env, &opts).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("rpc: {e:#}")),
        }
    }
    if all || matches!(cmd, Cmd::Operator) {
        match benches::operator::run(&env, 500).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("operator: {e:#}")),
        }
    }
    println!("\n{}", results::table(&rows));
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} benchmark(s) could not run",
        failures.len()
    );
    Ok(())
}
