use analytics_rpc::{AnalyticsServer, Cli};
use anyhow::Context;

// Many small allocations move between the runtime's workers and librdkafka's threads;
// mimalloc handles that with less contention than glibc malloc (docs/performance.md). It
// also serves the C libraries' malloc (the `override` feature), librdkafka's included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli: Cli = shortener_common::config::parse().context("loading configuration")?;
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _telemetry = shortener_common::telemetry::init("analytics-rpc", &cli.log)
        .context("initialising logging")?;
    let server = AnalyticsServer::bind(cli.server)
        .await
        .context("starting analytics-rpc")?;
    server.run(shortener_common::shutdown::signal()).await?;
    Ok(())
}
