//! Command line and environment settings of the `analytics-rpc` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shortener_common::db::DatabaseArgs;
use shortener_common::telemetry::LogArgs;

use crate::auth::SharedToken;

#[derive(clap::Parser, Debug)]
#[command(
    name = "analytics-rpc",
    version,
    about = "gRPC click analytics (counts, breakdowns, time series) over the stored clicks"
)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address of the gRPC server (AnalyticsService, grpc.health.v1, reflection v1).
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    pub admin_addr: SocketAddr,
    /// How often the gRPC health status is re-derived from a database ping, in milliseconds.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL_MS", default_value_t = 5_000)]
    pub health_check_interval_ms: u64,
    /// Longest a request may take before it fails with DEADLINE_EXCEEDED, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// `statement_timeout` of every analytics query, in milliseconds: a little under
    /// url-api's deadline (ANALYTICS_RPC_TIMEOUT_MS, 300), so Postgres stops work nobody
    /// waits for any more.
    #[arg(long, env = "QUERY_TIMEOUT_MS", default_value_t = 250)]
    pub query_timeout_ms: u64,
    /// Shared secret every AnalyticsService call must present as `authorization: Bearer
    /// <token>` (url-api's ANALYTICS_RPC_TOKEN); unset leaves the service open.
    #[arg(long, env = "RPC_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<SharedToken>,
    /// Most gRPC requests handled at once, over all connections; more wait their turn.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 64,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_concurrent_requests: usize,
    /// PEM certificate chain of the gRPC port (e.g. `tls.crt` of a `kubernetes.io/tls`
    /// Secret). With RPC_TLS_KEY, the port serves TLS only; unset, plaintext.
    #[arg(long, env = "RPC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of RPC_TLS_CERT (`tls.key`).
    #[arg(long, env = "RPC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often RPC_TLS_CERT and RPC_TLS_KEY are re-read, in milliseconds; a changed pair
    /// serves new connections without a restart.
    #[arg(long, env = "RPC_TLS_RELOAD_INTERVAL_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub tls_reload_interval_ms: u64,
}

impl ServerArgs {
    /// Both servers on ephemeral loopback ports, everything else at its default.
    pub fn new(database: DatabaseArgs) -> Self {
        Self {
            database,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            health_check_interval_ms: 5_000,
            request_timeout_ms: 10_000,
            query_timeout_ms: 250,
            auth_token: None,
            max_concurrent_requests: 64,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval_ms: 60_000,
        }
    }

    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms.max(1))
    }

    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.health_check_interval_ms.max(100))
    }

    pub fn tls_reload_interval(&self) -> Duration {
        Duration::from_millis(self.tls_reload_interval_ms.max(100))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["analytics-rpc"]).unwrap();
        assert_eq!(cli.server.grpc_addr.to_string(), "0.0.0.0:50051");
        assert_eq!(cli.server.admin_addr.to_string(), "0.0.0.0:9091");
        assert!(Cli::try_parse_from(["analytics-rpc", "--grpc-addr", "nope"]).is_err());
        assert!(cli.server.tls_cert.is_none() && cli.server.tls_key.is_none());
    }

    #[test]
    fn a_certificate_needs_its_key() {
        for half in [["--tls-cert", "tls.crt"], ["--tls-key", "tls.key"]] {
            let err = Cli::try_parse_from(["analytics-rpc", half[0], half[1]]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
        let both = Cli::try_parse_from([
            "analytics-rpc",
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
        ])
        .unwrap();
        assert_eq!(both.server.tls_key, Some(PathBuf::from("tls.key")));
    }
}
