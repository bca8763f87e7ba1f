use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shortener_common::telemetry::{self, LogArgs};
use shortener_operator::controller::{self, RunArgs};

/// Kubernetes operator for ShortenerStack resources.
#[derive(Parser, Debug)]
#[command(name = "operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the ShortenerStack CustomResourceDefinition as YAML.
    Crd,
    /// Print the ClusterRole rules the operator needs, as YAML.
    Rbac,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = shortener_common::config::parse().context("loading configuration")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            print!("{}", shortener_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Rbac => {
            print!("{}", shortener_operator::rbac::rules_yaml());
            Ok(())
        }
        Command::Run => {
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(async {
                let _guard = telemetry::init("shortener-operator", &cli.log)
                    .context("initialising logging")?;
                controller::run(cli.run).await
            })
        }
    }
}
