//! analytics-rpc: the gRPC API over the stored clicks.
//!
//! One process serves, on GRPC_ADDR, `shortener.analytics.v1.AnalyticsService`, the
//! standard `grpc.health.v1.Health` (SERVING while the database answers, re-checked every
//! HEALTH_CHECK_INTERVAL_MS) and server reflection v1; on ADMIN_ADDR, /healthz, /readyz and
//! /metrics. The gRPC port serves TLS when given a certificate ([`tls`]).

pub mod auth;
pub mod config;
pub mod metrics;
pub mod queries;
pub mod request;
pub mod service;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use shortener_common::db::{self, DbError};
use shortener_common::health::{self, Readiness};
use shortener_common::proto::analytics::analytics_service_server::{
    AnalyticsServiceServer, SERVICE_NAME,
};
use shortener_common::proto::FILE_DESCRIPTOR_SET;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

pub use config::{Cli, ServerArgs};
pub use metrics::RpcMetrics;
pub use service::AnalyticsApi;

/// Largest request accepted (requests are a few short fields).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response sent: breakdowns are capped at 100 entries each and series at 10 000
/// buckets, about 0.5 MiB at worst; clients accept the same (url-api).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("invalid RPC_TLS_CERT or RPC_TLS_KEY: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("admin server failed: {0}")]
    Admin(std::io::Error),
}

/// The service with both ports bound, ready to [`run`](AnalyticsServer::run).
pub struct AnalyticsServer {
    args: ServerArgs,
    pool: PgPool,
    /// The certificate of the gRPC port when it serves TLS (loaded by [`Self::bind`], so a
    /// bad one fails there), and the acceptor handing it out.
    tls: Option<(Arc<tls::ReloadingCert>, tokio_rustls::TlsAcceptor)>,
    grpc: TcpListener,
    admin: TcpListener,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

impl AnalyticsServer {
    /// Binds both addresses. The database pool connects lazily: the server starts (and
    /// reports NOT_SERVING) while Postgres is still down.
    pub async fn bind(args: ServerArgs) -> Result<Self, Error> {
        let pool = args.database.lazy_pool()?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let cert = Arc::new(tls::ReloadingCert::load(cert, key)?);
                let acceptor = tls::acceptor(cert.clone())?;
                Some((cert, acceptor))
            }
            _ => {
                tracing::warn!(
                    "RPC_TLS_CERT/RPC_TLS_KEY are not set: gRPC is served in plaintext \
                     (enable TLS in production)"
                );
                None
            }
        };
        Ok(Self {
            grpc: bind(args.grpc_addr).await?,
            admin: bind(args.admin_addr).await?,
            tls,
            args,
            pool,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            args,
            pool,
            tls,
            grpc,
            admin,
        } = self;
        let mut registry = Registry::default();
        let metrics = RpcMetrics::register(&mut registry);
        let cancel = CancellationToken::new();

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // Known (and NOT_SERVING) from the first request on, until the first ping answers.
        for service in ["", SERVICE_NAME] {
            health_reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let api = tonic::service::interceptor::InterceptedService::new(
            AnalyticsServiceServer::new(AnalyticsApi::new(
                pool.clone(),
                metrics,
                args.query_timeout(),
            ))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES),
            auth::check(args.auth_token.clone()),
        );
        if args.auth_token.is_none() {
            tracing::warn!(
                "RPC_AUTH_TOKEN is not set: any workload that reaches the port may query"
            );
        }

        let health_task = tokio::spawn(health_loop(
            pool.clone(),
            health_reporter,
            args.health_check_interval(),
            cancel.clone(),
        ));

        let readiness = {
            let pool = pool.clone();
            Readiness::new(move || {
                let pool = pool.clone();
                async move { db::ready(&pool).await.map_err(String::from) }
            })
        };
        let admin_router = health::router(Arc::new(registry), readiness);
        let admin_stop = cancel.clone().cancelled_owned();
        let admin_task = tokio::spawn(async move {
            axum::serve(admin, admin_router)
                .with_graceful_shutdown(admin_stop)
                .await
        });

        tracing::info!(grpc = %grpc.local_addr().map_err(Error::Admin)?, tls = tls.is_some(),
            "analytics-rpc serving");
        let grpc_stop = cancel.clone();
        let grpc_stopped = async move {
            tokio::select! {
                _ = shutdown => tracing::info!("shutdown requested: draining requests"),
                _ = grpc_stop.cancelled() => {}
            }
        };
        let router = tonic::transport::Server::builder()
            .timeout(args.request_timeout())
            // Requests beyond the limit wait (bounded by the callers' deadlines) instead of
            // each taking a database connection and a task.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                args.max_concurrent_requests,
            ))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(api);
        let served = match tls {
            Some((cert, acceptor)) => {
                tokio::spawn(tls::reload_loop(
                    cert,
                    args.tls_reload_interval(),
                    cancel.clone(),
                ));
                router
                    .serve_with_incoming_shutdown(tls::incoming(grpc, acceptor), grpc_stopped)
                    .await
            }
            None => {
                // Without TCP_NODELAY a response's last small frame waits for the client's
                // delayed ACK (~40 ms on Linux) under Nagle's algorithm.
                router
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(grpc).with_nodelay(Some(true)),
                        grpc_stopped,
                    )
                    .await
            }
        };
        cancel.cancel();
        let _ = health_task.await;
        let admin_result = admin_task.await;
        served?;
        match admin_result {
            Ok(r) => r.map_err(Error::Admin),
            Err(e) => {
                tracing::error!(error = %e, "admin server task failed");
                Ok(())
            }
        }
    }
}

/// Keeps the gRPC health status (overall and of the analytics service) in step with the
/// database: a client or a Kubernetes gRPC probe sees NOT_SERVING during an outage.
async fn health_loop(
    pool: PgPool,
    reporter: tonic_health::server::HealthReporter,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut last = Some(ServingStatus::NotServing);
    loop {
        let status = match db::ready(&pool).await {
            Ok(()) => ServingStatus::Serving,
            Err(reason) => {
                tracing::warn!(reason, "reporting NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            last = Some(status);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
