//! Per-client rate limit on writes (tower_governor).
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
pub struct WriteClientKey {
    keys: ApiKeys,
    ips: ClientIpResolver,
}

impl KeyExtractor for WriteClientKey {
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

pub type WriteLimitConfig = GovernorConfig<
    WriteClientKey,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
>;

#[derive(Debug, thiserror::Error)]
#[error("RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST must both be at least 1")]
pub struct RateLimitConfigError;

/// The governor configuration for writes (POST and DELETE).
pub fn write_limit(
    per_second: u32,
    burst: u32,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Result<Arc<WriteLimitConfig>, RateLimitConfigError> {
    if per_second == 0 {
        return Err(RateLimitConfigError);
    }
    GovernorConfigBuilder::default()
        .per_nanosecond((1_000_000_000 / u64::from(per_second)).max(1))
        .burst_size(burst)
        .methods(vec![Method::POST, Method::DELETE])
        .key_extractor(WriteClientKey { keys, ips })
        .finish()
        .map(Arc::new)
        .ok_or(RateLimitConfigError)
}

/// The layer answering over-limit writes with a 429 JSON error and `Retry-After`.
pub fn layer(
    config: Arc<WriteLimitConfig>,
) -> GovernorLayer<
    WriteClientKey,
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
pub fn spawn_janitor(config: Arc<WriteLimitConfig>) -> tokio::task::JoinHandle<()> {
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
