//! Per-client rate limits (tower_governor): one for writes, a looser one for the API's
//! reads (link details, lists and stats, which cost a query or an analytics call).
//!
//! The bucket is the API key's name when a valid key is presented, otherwise the client
//! IP, so a client without a valid key cannot dodge the limit (or brute-force keys) by
//! rotating made-up keys.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use axum::response::IntoResponse;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::auth::ApiKeys;
use crate::client_ip::ClientIpResolver;
use crate::error::ApiError;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum ClientKey {
    ApiKey(Arc<str>),
    Ip(IpAddr),
}

#[derive(Clone)]
pub struct ClientKeyExtractor {
    keys: ApiKeys,
    ips: ClientIpResolver,
}

impl KeyExtractor for ClientKeyExtractor {
    type Key = ClientKey;

    fn extract<T>(&self, req: &Request<T>) -> Result<ClientKey, GovernorError> {
        if let Some(name) = self.keys.authenticate(req.headers()) {
            return Ok(ClientKey::ApiKey(name));
        }
        // Without connect info (in-process tests) every anonymous caller shares a bucket.
        Ok(ClientKey::Ip(
            self.ips
                .from_request(req)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

pub type LimitConfig = GovernorConfig<
    ClientKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
>;

#[derive(Debug, thiserror::Error)]
#[error("{0}_PER_SECOND and {0}_BURST must both be at least 1")]
pub struct RateLimitConfigError(&'static str);

/// The governor configuration for writes (POST and DELETE).
pub fn write_limit(
    per_second: u32,
    burst: u32,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Result<Arc<LimitConfig>, RateLimitConfigError> {
    limit(
        per_second,
        burst,
        vec![Method::POST, Method::DELETE],
        keys,
        ips,
    )
    .ok_or(RateLimitConfigError("RATE_LIMIT"))
}

/// The governor configuration for the API's reads (GET under `/api/v1/links`; redirects
/// are not limited).
pub fn read_limit(
    per_second: u32,
    burst: u32,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Result<Arc<LimitConfig>, RateLimitConfigError> {
    limit(per_second, burst, vec![Method::GET], keys, ips)
        .ok_or(RateLimitConfigError("READ_RATE_LIMIT"))
}

fn limit(
    per_second: u32,
    burst: u32,
    methods: Vec<Method>,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Option<Arc<LimitConfig>> {
    if per_second == 0 {
        return None;
    }
    GovernorConfigBuilder::default()
        .per_nanosecond((1_000_000_000 / u64::from(per_second)).max(1))
        .burst_size(burst)
        .methods(methods)
        .key_extractor(ClientKeyExtractor { keys, ips })
        .finish()
        .map(Arc::new)
}

/// The layer answering over-limit requests with a 429 JSON error and `Retry-After`.
pub fn layer(
    config: Arc<LimitConfig>,
) -> GovernorLayer<
    ClientKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
    Body,
> {
    GovernorLayer::new(config).error_handler(error_response)
}

fn error_response(err: GovernorError) -> Response<Body> {
    match err {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::RateLimited {
            // governor rounds down to whole seconds; never tell clients to retry at once.
            retry_after_secs: wait_time.max(1),
        }
        .into_response(),
        other => {
            tracing::error!(error = %other, "rate limiter failed");
            ApiError::Internal.into_response()
        }
    }
}

/// Drops idle buckets now and then so the per-client state stays bounded.
pub fn spawn_janitor(config: Arc<LimitConfig>) -> tokio::task::JoinHandle<()> {
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    })
}
