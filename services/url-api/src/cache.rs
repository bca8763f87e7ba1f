//! Redirect cache: short code → target, so hot links skip the database.
//!
//! Entries carry the expiry and deleted state, so expiry is exact even for cached links.
//! Misses are cached for a few seconds too (a scan of random codes must not hammer the
//! database) and are invalidated when the code is created. Invalidation is local to this
//! process: with several replicas a deleted link may keep redirecting on another replica
//! for at most `CACHE_TTL_SECS`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::sync::Cache;
use moka::Expiry;

/// Lifetime of a cached "no such code".
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum CachedLink {
    Found {
        long_url: Arc<str>,
        expires_at: Option<DateTime<Utc>>,
        deleted: bool,
    },
    Missing,
}

struct PerEntryTtl {
    ttl: Duration,
}

impl Expiry<String, CachedLink> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &CachedLink,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            CachedLink::Found { .. } => self.ttl,
            CachedLink::Missing => NEGATIVE_TTL.min(self.ttl),
        })
    }
}

#[derive(Clone)]
pub struct LinkCache {
    inner: Cache<String, CachedLink>,
}

impl LinkCache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl { ttl })
                .build(),
        }
    }

    pub fn get(&self, code: &str) -> Option<CachedLink> {
        self.inner.get(code)
    }

    pub fn insert(&self, code: &str, link: CachedLink) {
        self.inner.insert(code.to_string(), link);
    }

    pub fn invalidate(&self, code: &str) {
        self.inner.invalidate(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_invalidates_entries() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        let found = CachedLink::Found {
            long_url: "https://example.com/".into(),
            expires_at: None,
            deleted: false,
        };
        cache.insert("abc", found.clone());
        cache.insert("nope", CachedLink::Missing);
        assert_eq!(cache.get("abc"), Some(found));
        assert_eq!(cache.get("nope"), Some(CachedLink::Missing));
        cache.invalidate("abc");
        assert_eq!(cache.get("abc"), None);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = LinkCache::new(0, Duration::from_secs(60));
        cache.insert("abc", CachedLink::Missing);
        cache.inner.run_pending_tasks();
        assert_eq!(cache.get("abc"), None);
    }
}
