//! Redirect cache: short code → target, so hot links skip the database.
//!
//! Entries carry the expiry and deleted state, so expiry is exact even for cached links.
//! Misses are cached for a few seconds too (a scan of random codes must not hammer the
//! database) and are invalidated when the code is created. Invalidation is local to this
//! process: with several replicas a deleted link may keep redirecting on another replica
//! for at most `CACHE_TTL_SECS`.

use std::sync::atomic::{AtomicU64, Ordering};
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

/// A database read that may be cached: remembers the invalidation generation seen before
/// the read, so an invalidation that raced with the read wins.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

#[derive(Clone)]
pub struct LinkCache {
    inner: Cache<String, CachedLink>,
    /// Bumped by every invalidation. A reader takes a ticket before reading the database
    /// and keeps its result only when no invalidation happened meanwhile; otherwise a
    /// redirect that read a link just before its deletion could put it back in the cache.
    generation: Arc<AtomicU64>,
}

impl LinkCache {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl { ttl })
                .build(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self, code: &str) -> Option<CachedLink> {
        self.inner.get(code)
    }

    /// Take before reading the database; pass to `insert_read`.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.generation.load(Ordering::SeqCst))
    }

    /// Caches what was read under `ticket`, unless an invalidation happened since. The
    /// check after the insert closes the window between the two: `invalidate` bumps the
    /// generation before it removes the entry, so either it removes this entry or this
    /// check sees the bump.
    pub fn insert_read(&self, code: &str, link: CachedLink, ticket: ReadTicket) {
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        self.inner.insert(code.to_string(), link);
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            self.inner.invalidate(code);
        }
    }

    /// Call after the database write that changed `code`.
    pub fn invalidate(&self, code: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
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
        cache.insert_read("abc", found.clone(), cache.ticket());
        cache.insert_read("nope", CachedLink::Missing, cache.ticket());
        assert_eq!(cache.get("abc"), Some(found));
        assert_eq!(cache.get("nope"), Some(CachedLink::Missing));
        cache.invalidate("abc");
        assert_eq!(cache.get("abc"), None);
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        let stale = CachedLink::Found {
            long_url: "https://example.com/".into(),
            expires_at: None,
            deleted: false,
        };
        // A redirect read the live row, then the link was deleted and invalidated before
        // the redirect stored what it read.
        let ticket = cache.ticket();
        cache.invalidate("abc");
        cache.insert_read("abc", stale.clone(), ticket);
        assert_eq!(cache.get("abc"), None);
        // A read that started after the invalidation is cached as usual.
        cache.insert_read("abc", stale.clone(), cache.ticket());
        assert_eq!(cache.get("abc"), Some(stale));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = LinkCache::new(0, Duration::from_secs(60));
        cache.insert_read("abc", CachedLink::Missing, cache.ticket());
        cache.inner.run_pending_tasks();
        assert_eq!(cache.get("abc"), None);
    }
}
