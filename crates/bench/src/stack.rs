//! The services as child processes, wired to a database and a broker the caller owns:
//! url-api, consumer and analytics-rpc binaries with the documented env vars.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::procs::{self, free_port, ProcError, Service, ServiceSpec};

/// The API key every stack started here accepts (loopback only, never a real secret).
pub const API_KEY: &str = "bench-key-0123456789abcdef";

/// How long a service may take to answer its health check after start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A url-api process.
pub struct UrlApi {
    pub service: Service,
    pub addr: SocketAddr,
    /// `/readyz` and `/metrics`.
    pub admin: SocketAddr,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Created {
    code: String,
}

impl UrlApi {
    /// The command line of a url-api on a free port: writes rate limit raised and the
    /// redirect miss limit off, so benchmarks and corpora (one client warming thousands of
    /// links) are not throttled (the limiters have their own tests).
    pub fn spec(
        bin_dir: &Path,
        log_dir: &Path,
        database_url: &str,
        bootstrap: &str,
        analytics_rpc_url: &str,
    ) -> ServiceSpec {
        let port = free_port();
        ServiceSpec::new("url-api", bin_dir.join("url-api"), log_dir)
            .arg("serve")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("KAFKA_TOPIC", "clicks")
            .env("API_KEYS", format!("bench:{API_KEY}"))
            .env("RATE_LIMIT_PER_SECOND", "1000000")
            .env("RATE_LIMIT_BURST", "1000000")
            .env("REDIRECT_MISS_PER_SECOND", "0")
            .env("ANALYTICS_RPC_URL", analytics_rpc_url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
    }

    pub async fn start(spec: ServiceSpec) -> Result<Self, ProcError> {
        let addr: SocketAddr = spec
            .env
            .iter()
            .find(|(k, _)| k == "LISTEN_ADDR")
            .and_then(|(_, v)| v.parse().ok())
            .expect("url-api spec has LISTEN_ADDR");
        let admin: SocketAddr = spec
            .env
            .iter()
            .find(|(k, _)| k == "ADMIN_ADDR")
            .and_then(|(_, v)| v.parse().ok())
            .expect("url-api spec has ADMIN_ADDR");
        let mut service = spec.spawn()?;
        service
            .wait_ready(&format!("http://{addr}/healthz"), START_TIMEOUT)
            .await?;
        Ok(Self {
            service,
            addr,
            admin,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// POST /api/v1/links; returns the short code.
    pub async fn create_link(&self, long_url: &str, alias: Option<&str>) -> anyhow::Result<String> {
        create_link(&self.client, self.addr, long_url, alias).await
    }

    /// `path` on the admin port.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Sum of a metric on /metrics (0 when absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(procs::scrape(&self.admin_url("/metrics"), name).await?)
    }
}

/// POST /api/v1/links on the url-api at `addr` with [`API_KEY`]; returns the short code.
pub async fn create_link(
    client: &reqwest::Client,
    addr: SocketAddr,
    long_url: &str,
    alias: Option<&str>,
) -> anyhow::Result<String> {
    let mut body = serde_json::json!({ "long_url": long_url });
    if let Some(a) = alias {
        body["alias"] = a.into();
    }
    let resp = client
        .post(format!("http://{addr}/api/v1/links"))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if status != reqwest::StatusCode::CREATED {
        anyhow::bail!(
            "create link: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(resp.json::<Created>().await?.code)
}

/// A consumer process with its admin port.
pub struct ConsumerProc {
    pub service: Service,
    pub admin: SocketAddr,
}

impl ConsumerProc {
    pub fn spec(
        bin_dir: &Path,
        log_dir: &Path,
        database_url: &str,
        bootstrap: &str,
    ) -> ServiceSpec {
        let admin = format!("127.0.0.1:{}", free_port());
        ServiceSpec::new("consumer", bin_dir.join("consumer"), log_dir)
            .arg("run")
            .env("ADMIN_ADDR", admin)
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("KAFKA_TOPIC", "clicks")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
    }

    pub async fn start(spec: ServiceSpec) -> Result<Self, ProcError> {
        let admin: SocketAddr = spec
            .env
            .iter()
            .find(|(k, _)| k == "ADMIN_ADDR")
            .and_then(|(_, v)| v.parse().ok())
            .expect("consumer spec has ADMIN_ADDR");
        let mut service = spec.spawn()?;
        service
            .wait_ready(&format!("http://{admin}/healthz"), START_TIMEOUT)
            .await?;
        Ok(Self { service, admin })
    }

    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(procs::scrape(&format!("http://{}/metrics", self.admin), name).await?)
    }
}

/// An analytics-rpc process.
pub struct AnalyticsRpc {
    pub service: Service,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
}

impl AnalyticsRpc {
    pub fn spec(bin_dir: &Path, log_dir: &Path, database_url: &str) -> ServiceSpec {
        ServiceSpec::new("analytics-rpc", bin_dir.join("analytics-rpc"), log_dir)
            .env("GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DATABASE_URL", database_url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
    }

    pub async fn start(spec: ServiceSpec) -> Result<Self, ProcError> {
        let get = |k: &str| -> SocketAddr {
            spec.env
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse().ok())
                .expect("analytics-rpc spec has its addresses")
        };
        let (grpc, admin) = (get("GRPC_ADDR"), get("ADMIN_ADDR"));
        let mut service = spec.spawn()?;
        service
            .wait_ready(&format!("http://{admin}/healthz"), START_TIMEOUT)
            .await?;
        Ok(Self {
            service,
            grpc,
            admin,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}
