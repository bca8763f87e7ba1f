//! Redirect cache: short code → target, so hot links skip the database.
//!
//! `quick_cache` (sharded, lock-light reads) rather than a cache with its own expiry
//! machinery: a hit is a shard read plus one clock read, the cheapest part of a redirect.
//!
//! Entries carry the expiry and deleted state, so expiry is exact even for cached links.
//! Misses are cached for a few seconds too (a scan of random codes must not hammer the
//! database) and are invalidated when the code is created. Every replica also drops a
//! code when Postgres notifies a change of it (`invalidation`), so an edit or delete
//! reaches all replicas within about a second; while that notification channel is down,
//! `CACHE_TTL_SECS` still bounds how long a stale entry is served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;

use crate::extras::{LinkExtras, LIMITED_TTL};

/// Lifetime of a cached "no such code".
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum CachedLink {
    Found {
        /// The target, ready to be sent as the `Location` header: validated once when
        /// cached, and cloned per redirect by a reference count.
        location: HeaderValue,
        expires_at: Option<DateTime<Utc>>,
        deleted: bool,
        /// Append the visitor's query string to `location`.
        forward_query: bool,
        /// Rules, visit limit, target after expiry; None for the (common) plain link.
        extras: Option<Arc<LinkExtras>>,
    },
    Missing,
}

/// What the cache holds: the link and when it stops being fresh.
#[derive(Debug, Clone)]
struct Entry {
    link: CachedLink,
    fresh_until: Instant,
}

/// A database read that may be cached: remembers the invalidation generation seen before
/// the read, so an invalidation that raced with the read wins.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

#[derive(Clone)]
pub struct LinkCache {
    /// None when the capacity is 0 (caching disabled).
    inner: Option<Arc<Cache<String, Entry>>>,
    ttl: Duration,
    /// Bumped by every invalidation. A reader takes a ticket before reading the database
    /// and keeps its result only when no invalidation happened meanwhile; otherwise a
    /// redirect that read a link just before its deletion could put it back in the cache.
    generation: Arc<AtomicU64>,
}

impl LinkCache {
    /// A cache of at most `max_entries` links (evicting the least useful, CLOCK-Pro),
    /// each fresh for `ttl` ("missing" for at most [`NEGATIVE_TTL`]).
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            inner: (capacity > 0).then(|| Arc::new(Cache::new(capacity))),
            ttl,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self, code: &str) -> Option<CachedLink> {
        let inner = self.inner.as_ref()?;
        let entry = inner.get(code)?;
        if entry.fresh_until > Instant::now() {
            return Some(entry.link);
        }
        // Stale: drop it unless a fresher entry replaced it meanwhile.
        inner.remove_if(code, |e| e.fresh_until == entry.fresh_until);
        None
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
        let Some(inner) = &self.inner else { return };
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        let ttl = match &link {
            CachedLink::Found { extras, .. } => {
                if extras.as_ref().is_some_and(|e| e.limit.is_some()) {
                    LIMITED_TTL.min(self.ttl)
                } else {
                    self.ttl
                }
            }
            CachedLink::Missing => NEGATIVE_TTL.min(self.ttl),
        };
        inner.insert(
            code.to_string(),
            Entry {
                link,
                fresh_until: Instant::now() + ttl,
            },
        );
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            inner.remove(code);
        }
    }

    /// Drops a cached "no such code" for `code` (it was just created elsewhere). A found
    /// entry stays: it was read after the creation.
    pub fn invalidate_missing(&self, code: &str) {
        if let Some(inner) = &self.inner {
            inner.remove_if(code, |e| matches!(e.link, CachedLink::Missing));
        }
    }

    /// Drops every entry: after notifications may have been missed.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(inner) = &self.inner {
            inner.clear();
        }
    }

    /// Call after the database write that changed `code`.
    pub fn invalidate(&self, code: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(inner) = &self.inner {
            inner.remove(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> CachedLink {
        CachedLink::Found {
            location: HeaderValue::from_static("https://example.com/"),
            expires_at: None,
            deleted: false,
            forward_query: true,
            extras: None,
        }
    }

    #[test]
    fn stores_and_invalidates_entries() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        let found = found();
        cache.insert_read("abc", found.clone(), cache.ticket());
        cache.insert_read("nope", CachedLink::Missing, cache.ticket());
        assert_eq!(cache.get("abc"), Some(found));
        assert_eq!(cache.get("nope"), Some(CachedLink::Missing));
        cache.invalidate("abc");
        assert_eq!(cache.get("abc"), None);
        cache.clear();
        assert_eq!(cache.get("nope"), None);
    }

    #[test]
    fn a_creation_drops_only_a_cached_miss() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        cache.insert_read("abc", found(), cache.ticket());
        cache.insert_read("nope", CachedLink::Missing, cache.ticket());
        cache.invalidate_missing("abc");
        cache.invalidate_missing("nope");
        assert_eq!(cache.get("abc"), Some(found()));
        assert_eq!(cache.get("nope"), None);
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        let stale = found();
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
        assert_eq!(cache.get("abc"), None);
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = LinkCache::new(10, Duration::from_millis(300));
        let found = found();
        cache.insert_read("abc", found.clone(), cache.ticket());
        assert_eq!(cache.get("abc"), Some(found));
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(cache.get("abc"), None);
    }
}
