//! Per-client rate limits (tower_governor): one for writes, a looser one for the API's
//! reads (link details, lists and stats, which cost a query or an analytics call).
//!
//! The bucket is the API key's name when a valid key is presented, otherwise the client's
//! network ([`client_net`]: its IPv4 address or its IPv6 /64), so a client without a valid
//! key cannot dodge the limit (or brute-force keys) by rotating made-up keys or the
//! addresses of its own /64.
//!
//! Anonymous buckets are capped: once a limiter tracks [`MAX_TRACKED_CLIENTS`] buckets,
//! every further anonymous request shares one overflow bucket until the janitor has
//! dropped the idle ones, so rotating addresses costs the attacker its own throughput
//! instead of this process's memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use axum::response::IntoResponse;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder, SharedRateLimiter};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::auth::ApiKeys;
use crate::client_ip::ClientIpResolver;
use crate::error::ApiError;

/// Most buckets one limiter keeps for anonymous clients before they share one (about
/// 64 bytes each).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;
/// How often idle buckets are dropped.
const JANITOR_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum ClientKey {
    ApiKey(Arc<str>),
    /// An anonymous client's network, see [`client_net`].
    Ip(IpAddr),
    /// Every anonymous client while the limiter is full.
    Overflow,
}

/// What one client controls: an IPv4 address, or the /64 of an IPv6 address (the
/// smallest prefix a site gets, so one subscriber holds 2^64 addresses of it).
pub fn client_net(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

type Limiter = governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>;

#[derive(Clone)]
pub struct ClientKeyExtractor {
    keys: ApiKeys,
    ips: ClientIpResolver,
    /// The limiter keyed by this extractor (set once it is built): its size decides when
    /// anonymous clients overflow.
    limiter: Arc<OnceLock<SharedRateLimiter<ClientKey, Limiter>>>,
    max_clients: usize,
}

impl KeyExtractor for ClientKeyExtractor {
    type Key = ClientKey;

    fn extract<T>(&self, req: &Request<T>) -> Result<ClientKey, GovernorError> {
        if let Some(name) = self.keys.authenticate(req.headers()) {
            return Ok(ClientKey::ApiKey(name));
        }
        if self
            .limiter
            .get()
            .is_some_and(|l| l.len() >= self.max_clients)
        {
            return Ok(ClientKey::Overflow);
        }
        // Without connect info (in-process tests) every anonymous caller shares a bucket.
        Ok(ClientKey::Ip(client_net(
            self.ips
                .from_request(req)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        )))
    }
}

pub type LimitConfig = GovernorConfig<ClientKeyExtractor, Limiter>;

#[derive(Debug, thiserror::Error)]
#[error("{0}_PER_SECOND and {0}_BURST must both be at least 1")]
pub struct RateLimitConfigError(&'static str);

/// The governor configuration for writes (POST, PATCH and DELETE).
pub fn write_limit(
    per_second: u32,
    burst: u32,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Result<Arc<LimitConfig>, RateLimitConfigError> {
    limit(
        per_second,
        burst,
        vec![Method::POST, Method::PATCH, Method::DELETE],
        keys,
        ips,
        MAX_TRACKED_CLIENTS,
    )
    .ok_or(RateLimitConfigError("RATE_LIMIT"))
}

/// The governor configuration for the API's reads (GET and HEAD under `/api/v1/links`;
/// axum answers HEAD with the GET handler, so it costs the same). Redirects are not
/// limited here.
pub fn read_limit(
    per_second: u32,
    burst: u32,
    keys: ApiKeys,
    ips: ClientIpResolver,
) -> Result<Arc<LimitConfig>, RateLimitConfigError> {
    limit(
        per_second,
        burst,
        vec![Method::GET, Method::HEAD],
        keys,
        ips,
        MAX_TRACKED_CLIENTS,
    )
    .ok_or(RateLimitConfigError("READ_RATE_LIMIT"))
}

fn limit(
    per_second: u32,
    burst: u32,
    methods: Vec<Method>,
    keys: ApiKeys,
    ips: ClientIpResolver,
    max_clients: usize,
) -> Option<Arc<LimitConfig>> {
    let extractor = ClientKeyExtractor {
        keys,
        ips,
        limiter: Arc::new(OnceLock::new()),
        max_clients,
    };
    build(per_second, burst, methods, extractor)
}

/// The configuration keyed by `extractor`, which from then on sees its limiter.
fn build(
    per_second: u32,
    burst: u32,
    methods: Vec<Method>,
    extractor: ClientKeyExtractor,
) -> Option<Arc<LimitConfig>> {
    if per_second == 0 {
        return None;
    }
    let config = GovernorConfigBuilder::default()
        .per_nanosecond((1_000_000_000 / u64::from(per_second)).max(1))
        .burst_size(burst)
        .methods(methods)
        .key_extractor(extractor.clone())
        .finish()?;
    let _ = extractor.limiter.set(config.limiter().clone());
    Some(Arc::new(config))
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

/// Takes one request from `key`'s bucket, as the layer does for API calls: the dashboard
/// calls this so its pages and forms share the API's buckets and limits.
pub fn check(config: &LimitConfig, key: &ClientKey) -> Result<(), ApiError> {
    use governor::clock::Clock;
    config.limiter().check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::QuantaClock::default().now());
        ApiError::RateLimited {
            retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        }
    })
}

/// Drops idle buckets now and then so the per-client state stays bounded.
pub fn spawn_janitor(config: Arc<LimitConfig>) -> tokio::task::JoinHandle<()> {
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(JANITOR_INTERVAL);
        loop {
            tick.tick().await;
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_proxies;
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    /// A limiter of `burst` requests (then 1 a second) and the extractor keying it.
    fn limiter(burst: u32, max_clients: usize) -> (Arc<LimitConfig>, ClientKeyExtractor) {
        let extractor = ClientKeyExtractor {
            keys: ApiKeys::default(),
            ips: ClientIpResolver::new(parse_proxies("10.0.0.1").unwrap()),
            limiter: Arc::new(OnceLock::new()),
            max_clients,
        };
        let config = build(1, burst, vec![Method::GET], extractor.clone()).unwrap();
        (config, extractor)
    }

    fn request(peer: &str, xff: Option<&str>) -> Request<()> {
        let mut req = Request::get("/api/v1/links").body(()).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(xff) = xff {
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
        }
        req
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let net = |s: &str| client_net(s.parse().unwrap()).to_string();
        assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(net("198.51.100.7"), "198.51.100.7");
        assert_eq!(net("::ffff:198.51.100.7"), "198.51.100.7");
    }

    #[test]
    fn rotating_addresses_inside_a_64_shares_one_bucket() {
        let (config, extractor) = limiter(3, MAX_TRACKED_CLIENTS);
        let mut allowed = 0;
        for i in 1..=20u32 {
            let client = format!("2001:db8:7:7:{i:x}::{i:x}");
            let key = extractor
                .extract(&request("10.0.0.1:4000", Some(&client)))
                .unwrap();
            allowed += usize::from(config.limiter().check_key(&key).is_ok());
        }
        assert_eq!(allowed, 3, "one burst for the whole /64");
        let other = extractor
            .extract(&request("[2001:db8:7:8::1]:4000", None))
            .unwrap();
        assert!(config.limiter().check_key(&other).is_ok());
    }

    #[test]
    fn anonymous_state_is_capped() {
        let (config, extractor) = limiter(1, 50);
        let mut overflow = 0;
        for i in 0..1000u32 {
            let peer = SocketAddr::from((Ipv4Addr::from(0xc633_6400 + i), 4000));
            let key = extractor
                .extract(&request(&peer.to_string(), None))
                .unwrap();
            overflow += usize::from(key == ClientKey::Overflow);
            let _ = config.limiter().check_key(&key);
        }
        assert!(config.limiter().len() <= 51, "{}", config.limiter().len());
        assert_eq!(overflow, 950);
        // Past the cap the newcomers share one bucket: the first gets through, not the rest.
        let key = extractor.extract(&request("203.0.113.1:1", None)).unwrap();
        assert_eq!(key, ClientKey::Overflow);
        assert!(config.limiter().check_key(&key).is_err());
    }
}
