use std::io::Write;

use anyhow::Context;
use consumer::{Cli, Command, ConsumerApp};

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
    let _telemetry =
        shortener_common::telemetry::init("consumer", &cli.log).context("initialising logging")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let app = ConsumerApp::new(cli.consumer)
                .await
                .context("starting the consumer")?;
            app.run(shortener_common::shutdown::signal()).await?;
        }
        Command::ReplayDlq(opts) => {
            let mut stdout = std::io::stdout();
            let summary = consumer::replay_dlq(&cli.consumer, &opts, &mut stdout)
                .await
                .context("replaying the dead-letter topic")?;
            stdout.flush().ok();
            tracing::info!(
                read = summary.read,
                replayed = summary.replayed,
                dry_run = opts.dry_run,
                "replay finished"
            );
        }
    }
    Ok(())
}
