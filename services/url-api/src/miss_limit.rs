//! Per-client limit on redirect lookups that miss the cache.
//!
//! A hit costs no query; a miss costs one, and the negative cache is per code, so a
//! client asking for random codes would send every request to the database and could
//! starve the pool that real redirects and API writes need. Each client network
//! ([`client_net`]: IPv4 address or IPv6 /64) may make `REDIRECT_MISS_PER_SECOND` lookups a
//! second (burst `REDIRECT_MISS_BURST`); beyond that a miss is answered 429 without a
//! query. Hits are never counted, so links in the cache keep redirecting for everyone.
//!
//! Behind a proxy the client is who `TRUSTED_PROXIES` says it is: without that setting
//! every client shares the proxy's budget.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::rate_limit::{client_net, ClientKey, MAX_TRACKED_CLIENTS};

/// How often idle buckets are dropped.
const JANITOR_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct MissLimiter {
    /// None when disabled (a rate of 0).
    limiter: Option<Arc<DefaultKeyedRateLimiter<ClientKey>>>,
    max_clients: usize,
}

impl MissLimiter {
    /// `per_second` lookups a second per client after a burst of `burst`; 0 disables.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_max_clients(per_second, burst, MAX_TRACKED_CLIENTS)
    }

    fn with_max_clients(per_second: u32, burst: u32, max_clients: usize) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self {
            limiter,
            max_clients,
        }
    }

    /// Ok when `client` may make one more database lookup now; otherwise the seconds to
    /// wait (at least 1). Without a known address every such caller shares one budget.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // Past the cap every newcomer shares one bucket: rotating addresses costs the
        // client its throughput, not this process's memory.
        let key = if limiter.len() >= self.max_clients {
            ClientKey::Overflow
        } else {
            ClientKey::Ip(client_net(
                client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ))
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Drops idle buckets now and then so the per-client state stays bounded.
    pub fn spawn_janitor(&self) -> Option<tokio::task::JoinHandle<()>> {
        let limiter = self.limiter.clone()?;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_INTERVAL);
            loop {
                tick.tick().await;
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn each_client_network_gets_its_own_budget() {
        let limits = MissLimiter::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limits.check(ip("198.51.100.1")), Ok(()));
        }
        let wait = limits.check(ip("198.51.100.1")).unwrap_err();
        assert!(wait >= 1, "{wait}");
        // Other addresses of the same /64 share it; another network does not.
        assert!(limits.check(ip("2001:db8::1")).is_ok());
        for i in 2..4 {
            assert!(limits.check(ip(&format!("2001:db8::{i}"))).is_ok());
        }
        assert!(limits.check(ip("2001:db8::ffff:1")).is_err());
        assert!(limits.check(ip("198.51.100.2")).is_ok());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limits = MissLimiter::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(limits.check(ip("198.51.100.1")), Ok(()));
        }
        assert!(limits.limiter.is_none());
    }

    #[test]
    fn tracked_clients_are_capped() {
        let limits = MissLimiter::with_max_clients(1, 1, 20);
        let mut refused = 0;
        for i in 0..500u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + i));
            refused += usize::from(limits.check(Some(client)).is_err());
        }
        let tracked = limits.limiter.as_ref().unwrap().len();
        assert!(tracked <= 21, "{tracked}");
        // The first 20 networks got their burst; the other 480 shared one.
        assert_eq!(refused, 479);
    }
}
