//! `url-api serve` (default) runs the HTTP API; `url-api migrate` applies database
//! migrations and exits.

use anyhow::Context;
use clap::{Parser, Subcommand};
use url_api::Config;

// Many small allocations move between the runtime's workers and librdkafka's threads;
// mimalloc handles that with less contention than glibc malloc (docs/performance.md). It
// also serves the C libraries' malloc (the `override` feature), librdkafka's included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "url-api", version, about = "URL shortener HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = shortener_common::config::parse().context("loading configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async move {
        let _telemetry = shortener_common::telemetry::init("url-api", &cli.config.log)
            .context("initialising telemetry")?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => url_api::run(cli.config).await.context("url-api failed"),
            Command::Migrate => {
                let pool = cli.config.database.lazy_pool()?;
                let version = shortener_common::db::migrate(&pool)
                    .await
                    .context("running migrations")?;
                tracing::info!(version, "database migrated");
                Ok(())
            }
        }
    })
}
