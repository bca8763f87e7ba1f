//! Cross-replica cache invalidation: every write to `links` notifies its short code on the
//! Postgres channel [`CHANNEL`] (a trigger, see the migrations), and each url-api replica
//! listens and drops that code from its redirect cache: any copy after an edit or delete
//! (`u:<code>`), a cached "no such code" after a creation (`i:<code>`). Notifications arrive
//! within milliseconds of the writing transaction's commit.
//!
//! Notifications sent while a replica is not listening are lost, so whenever listening
//! (re)starts the whole cache is dropped: after a database outage the first redirects of
//! each hot link go to the database once more, and no edit is missed. While the database
//! is unreachable the cache keeps serving, bounded by `CACHE_TTL_SECS` as before.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cache::LinkCache;

/// The channel the `links_notify_change` trigger notifies.
pub const CHANNEL: &str = "links_changed";
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Longest `serve` waits for the first LISTEN before accepting requests, so what it caches
/// from then on is covered (a database that is down must not hold the start up for long).
pub const FIRST_LISTEN_WAIT: Duration = Duration::from_secs(1);

/// Applies one notification payload to `cache`.
pub fn apply(cache: &LinkCache, payload: &str) {
    match payload.split_once(':') {
        Some(("i", code)) => cache.invalidate_missing(code),
        Some(("u", code)) => cache.invalidate(code),
        _ => cache.invalidate(payload),
    }
}

/// Listens on its own connection (not one of the pool's, which serve requests) until
/// aborted, reconnecting with backoff. `first` fires after the first attempt, whatever
/// its outcome.
pub fn spawn_listener(
    pool: &PgPool,
    cache: LinkCache,
    first: oneshot::Sender<()>,
) -> JoinHandle<()> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(FIRST_LISTEN_WAIT)
        .connect_lazy_with((*pool.connect_options()).clone());
    tokio::spawn(async move {
        let mut retry = RETRY_MIN;
        let mut first = Some(first);
        loop {
            let listening = listen(&own).await;
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            match listening {
                Ok(mut listener) => {
                    cache.clear();
                    tracing::info!(channel = CHANNEL, "listening for link changes");
                    retry = RETRY_MIN;
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => apply(&cache, n.payload()),
                            // The connection dropped and was re-established: what was
                            // notified in between is lost.
                            Ok(None) => cache.clear(),
                            Err(e) => {
                                tracing::warn!(error = %e, "link change notifications interrupted");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for link changes, retrying");
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    })
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachedLink;

    #[test]
    fn payloads_name_the_kind_of_change() {
        let cache = LinkCache::new(10, Duration::from_secs(60));
        let found = CachedLink::Found {
            location: axum::http::HeaderValue::from_static("https://example.com/"),
            expires_at: None,
            deleted: false,
            forward_query: true,
            extras: None,
        };
        for code in ["a", "b", "c"] {
            cache.insert_read(code, found.clone(), cache.ticket());
        }
        cache.insert_read("m", CachedLink::Missing, cache.ticket());
        apply(&cache, "i:a");
        apply(&cache, "i:m");
        assert_eq!(cache.get("a"), Some(found.clone()));
        assert_eq!(cache.get("m"), None);
        apply(&cache, "u:b");
        assert_eq!(cache.get("b"), None);
        apply(&cache, "c");
        assert_eq!(cache.get("c"), None);
    }
}
