//! url-api: creates short links, redirects, and publishes a ClickEvent per redirect.
//!
//! Embedding (tests, end-to-end crates):
//! ```text
//! let state = url_api::AppState::new(&config, pool)?;          // inside a tokio runtime
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(url_api::serve_admin(admin, state.clone(), admin_shutdown_future));
//! tokio::spawn(url_api::serve(listener, state, shutdown_future));
//! ```

pub mod analytics_client;
pub mod auth;
pub mod breaker;
pub mod cache;
pub mod clicks;
pub mod client_ip;
pub mod codes;
pub mod config;
pub mod deadline;
pub mod error;
pub mod extras;
pub mod forward;
pub mod front;
pub mod http_trace;
pub mod invalidation;
pub mod metadata;
pub mod metrics;
pub mod miss_limit;
pub mod openapi;
pub mod orphans;
pub mod owner_limit;
pub mod password;
pub mod per_thread;
pub mod qr;
pub mod rate_limit;
pub mod routes;
pub mod rules;
pub mod server;
pub mod store;
pub mod validate;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use shortener_common::db::{self, DbError};
use shortener_common::geo::CountryDb;
use shortener_common::health::{self, Readiness};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

pub use config::Config;

use analytics_client::{AnalyticsClient, RpcTls};
use auth::{ApiKeys, KeyConfigError};
use cache::LinkCache;
use clicks::{ClickBatching, ClickPublisher};
use client_ip::ClientIpResolver;
use error::ApiError;
use metrics::Metrics;
use miss_limit::MissLimiter;
use rate_limit::{LimitConfig, RateLimitConfigError};
use routes::{links, redirect, stats};
use validate::UrlPolicy;

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid API key configuration: {0}")]
    Keys(#[from] KeyConfigError),
    #[error(transparent)]
    RateLimit(#[from] RateLimitConfigError),
    #[error("PUBLIC_BASE_URL {0:?} is not an http(s) URL")]
    PublicBaseUrl(String),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    GeoIp(#[from] shortener_common::geo::GeoIpError),
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    AnalyticsEndpoint(#[from] analytics_client::EndpointError),
    #[error(transparent)]
    AnalyticsToken(#[from] analytics_client::InvalidToken),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Shared state of every handler. Cloned for every request (axum's `State`), so it is one
/// `Arc`: a clone is one atomic increment instead of one per shared handle inside.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What the handlers share; reached through [`AppState`].
pub struct SharedState {
    pub(crate) pool: PgPool,
    pub(crate) keys: ApiKeys,
    pub(crate) cache: LinkCache,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Arc<Registry>,
    pub(crate) client_ips: ClientIpResolver,
    pub(crate) url_policy: UrlPolicy,
    pub(crate) public_base_url: Arc<str>,
    pub(crate) write_limit: Arc<LimitConfig>,
    pub(crate) read_limit: Arc<LimitConfig>,
    pub(crate) miss_limit: MissLimiter,
    /// None when CLICKS_ENABLED=false.
    pub(crate) clicks: Option<Arc<ClickPublisher>>,
    pub(crate) analytics: AnalyticsClient,
    pub(crate) ui: web::UiSettings,
    pub(crate) password_attempts: password::AttemptLimiter,
    /// This replica's human-visit tallies of links with a visit limit.
    pub(crate) visit_tallies: extras::VisitTallies,
    pub(crate) orphans: orphans::OrphanCounter,
    /// PUBLIC_BASE_URL's host: the domain orphan visits are counted for.
    pub(crate) public_domain: Arc<str>,
    /// Countries of visitors, for redirect rules; None without GEOIP_DB_PATH.
    pub(crate) geoip: Option<Arc<CountryDb>>,
    pub(crate) request_timeout: Duration,
    pub(crate) connection_limits: server::ConnectionLimits,
}

impl AppState {
    /// Builds everything the handlers need from `config`, using `pool` for the database.
    /// Call inside a tokio runtime. Connects to nothing yet.
    pub fn new(config: &Config, pool: PgPool) -> Result<Self, StartupError> {
        let keys = ApiKeys::parse(&config.api_keys, &config.api_key_hashes)?;
        if keys.is_empty() {
            tracing::warn!(
                "no API keys configured (API_KEYS, API_KEY_HASHES): every write will be refused"
            );
        }
        let base = url::Url::parse(&config.public_base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| StartupError::PublicBaseUrl(config.public_base_url.clone()))?;
        let client_ips = ClientIpResolver::new(config.trusted_proxies.clone());
        let write_limit = rate_limit::write_limit(
            config.rate_limit_per_second,
            config.rate_limit_burst,
            keys.clone(),
            client_ips.clone(),
        )?;
        let read_limit = rate_limit::read_limit(
            config.read_rate_limit_per_second,
            config.read_rate_limit_burst,
            keys.clone(),
            client_ips.clone(),
        )?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let clicks = if config.clicks_enabled {
            Some(Arc::new(ClickPublisher::new(
                &config.kafka,
                ClickBatching {
                    queue_capacity: config.click_queue_capacity,
                    linger: Duration::from_millis(config.click_linger_ms),
                    batch_max: config.click_batch_max,
                },
                metrics.clone(),
            )?))
        } else {
            tracing::info!("CLICKS_ENABLED=false: redirects publish no click events");
            None
        };
        let analytics_tls = config
            .analytics_rpc_ca
            .as_deref()
            .map(|ca| RpcTls::from_file(ca, config.analytics_rpc_server_name.clone()))
            .transpose()?;
        if analytics_tls.is_none() {
            tracing::warn!(
                "ANALYTICS_RPC_CA is not set: analytics calls go in plaintext (enable TLS in production)"
            );
        }
        let analytics = AnalyticsClient::new(
            analytics_client::endpoint(&config.analytics_rpc_url, analytics_tls.as_ref())?,
            Duration::from_millis(config.analytics_rpc_timeout_ms),
            config.breaker_failure_threshold,
            Duration::from_millis(config.breaker_reset_ms),
            config.analytics_max_concurrent_per_owner,
            metrics.clone(),
        )
        .with_token(config.analytics_rpc_token.as_deref())?;
        let geoip = match &config.geoip_db_path {
            Some(path) => Some(Arc::new(CountryDb::open(path)?)),
            None => {
                tracing::info!("GEOIP_DB_PATH is not set: redirect rules by country never match");
                None
            }
        };
        Ok(Self(Arc::new(SharedState {
            pool,
            keys,
            cache: LinkCache::new(
                config.cache_max_entries,
                Duration::from_secs(config.cache_ttl_secs),
            ),
            metrics,
            registry: Arc::new(registry),
            client_ips,
            url_policy: UrlPolicy {
                max_len: config.max_url_length,
                allow_private: config.allow_private_targets,
                own_host: base
                    .host_str()
                    .map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
            },
            public_base_url: base.as_str().trim_end_matches('/').into(),
            write_limit,
            read_limit,
            miss_limit: MissLimiter::new(
                config.redirect_miss_per_second,
                config.redirect_miss_burst,
            ),
            clicks,
            analytics,
            ui: web::UiSettings {
                cookies: web::session::CookiePolicy {
                    secure: base.scheme() == "https",
                },
                session_ttl: chrono::Duration::seconds(config.ui_session_ttl_secs as i64),
                public_origin: base.origin().ascii_serialization(),
            },
            geoip,
            password_attempts: password::AttemptLimiter::default(),
            visit_tallies: extras::VisitTallies::default(),
            orphans: orphans::OrphanCounter::default(),
            public_domain: base.host_str().unwrap_or_default().into(),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            connection_limits: server::ConnectionLimits {
                header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
                max_connections: config.max_connections,
            },
        })))
    }

    /// The Prometheus registry served at `/metrics`.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }
}

/// The public HTTP application: API, redirects, the dashboard under `/ui/`,
/// `/openapi.json` and a minimal `/healthz`. Readiness and metrics are on the admin port
/// ([`admin_router`]).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/links", get(links::list).post(links::create))
        .route(
            "/api/v1/links/{code}",
            get(links::details).patch(links::edit).delete(links::delete),
        )
        .route("/api/v1/links/{code}/stats", get(stats::stats))
        .route("/api/v1/links/{code}/qr", get(routes::qr::owner_qr))
        .route(
            "/api/v1/links/bulk",
            axum::routing::post(routes::bulk::bulk_create)
                .layer(DefaultBodyLimit::max(routes::bulk::BULK_BODY_LIMIT_BYTES)),
        )
        .route(
            "/api/v1/links/import",
            axum::routing::post(routes::bulk::import_csv)
                .layer(DefaultBodyLimit::max(routes::bulk::BULK_BODY_LIMIT_BYTES)),
        )
        .route("/api/v1/links/export", get(routes::bulk::export))
        .route("/api/v1/orphan-visits", get(routes::orphans::orphan_visits))
        // Public, but rendering costs CPU: under the read limit (per client IP).
        .route("/{code}/qr", get(routes::qr::public_qr))
        .route("/api/v1/account/stats", get(stats::account))
        .layer(rate_limit::layer(state.write_limit.clone()))
        .layer(rate_limit::layer(state.read_limit.clone()));
    // Only the API and the dashboard read bodies; on the redirect path the limit would be
    // one more request extension for nothing.
    let with_bodies = api
        .merge(web::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES));
    Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route(
            "/{code}",
            // The password form of a protected link is the one body on this path.
            get(redirect::redirect)
                .post(redirect::unlock.layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))),
        )
        .merge(with_bodies)
        .with_state(state.clone())
        .route("/healthz", get(health::healthz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // One `Router::layer` for the whole stack: each call wraps every route in another
        // boxed service, which costs two allocations and a clone per request.
        .layer(
            ServiceBuilder::new()
                .layer(http_trace::layer(state.client_ips.clone()))
                .layer(metrics::TrackLayer::new(state.metrics.clone()))
                .layer(deadline::DeadlineLayer::new(state.request_timeout)),
        )
}

/// Serves the application on `listener` until `shutdown` resolves, then drains in-flight
/// requests and flushes queued click events (bounded by [`clicks::FLUSH_TIMEOUT`]).
/// Connections are bounded by the configured header timeout and connection cap
/// ([`server`]), requests by the request timeout ([`deadline`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (listening, first_listen) = tokio::sync::oneshot::channel();
    let janitors = [
        rate_limit::spawn_janitor(state.write_limit.clone()),
        rate_limit::spawn_janitor(state.read_limit.clone()),
        invalidation::spawn_listener(&state.pool, state.cache.clone(), listening),
        state.password_attempts.spawn_janitor(),
        state
            .orphans
            .spawn_flusher(state.pool.clone(), state.public_domain.to_string()),
    ];
    let _ = tokio::time::timeout(invalidation::FIRST_LISTEN_WAIT, first_listen).await;
    let publisher = state.clicks.clone();
    let limits = state.connection_limits;
    let app = router(state.clone());
    let result = server::serve(
        listener,
        |peer| front::Front::new(state.clone(), app.clone(), peer),
        limits,
        shutdown,
    )
    .await;
    for janitor in janitors {
        janitor.abort();
    }
    if let Some(publisher) = publisher {
        // librdkafka's flush blocks the calling thread.
        let _ = tokio::task::spawn_blocking(move || publisher.flush(clicks::FLUSH_TIMEOUT)).await;
    }
    result
}

/// Runs the service as configured until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), StartupError> {
    let pool = config.database.lazy_pool()?;
    let state = AppState::new(&config, pool)?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })
    };
    let listener = bind(config.listen_addr).await?;
    let admin = bind(config.admin_addr).await?;
    tracing::info!(addr = %config.listen_addr, admin = %config.admin_addr, "url-api listening");
    let admin = tokio::spawn(serve_admin(admin, state.clone(), std::future::pending()));
    let served = serve(listener, state, shortener_common::shutdown::signal()).await;
    admin.abort();
    served.map_err(StartupError::Serve)
}

/// The admin endpoints, for probes and Prometheus rather than the public: `/healthz`,
/// `/readyz` (whether the database answers; the reason names no host nor error text) and
/// `/metrics`.
pub fn admin_router(state: &AppState) -> Router {
    let pool = state.pool.clone();
    let readiness = Readiness::new(move || {
        let pool = pool.clone();
        async move { db::ready(&pool).await.map_err(String::from) }
    });
    health::router(state.registry.clone(), readiness)
}

/// Serves [`admin_router`] on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(&state))
        .with_graceful_shutdown(shutdown)
        .await
}
