//! Cross-replica cache invalidation: every write to `links` notifies its short code on the
//! Postgres channel [`CHANNEL`] (a trigger, see the migrations), and each url-api replica
//! listens and drops that code from its redirect cache. Notifications arrive within
//! milliseconds of the writing transaction's commit.
//!
//! Notifications sent while a replica is not listening are lost, so whenever listening
//! (re)starts the whole cache is dropped: after a database outage the first redirects of
//! each hot link go to the database once more, and no edit is missed. While the database
//! is unreachable the cache keeps serving, bounded by `CACHE_TTL_SECS` as before.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::cache::LinkCache;

/// The channel the `links_notify_change` trigger notifies.
pub const CHANNEL: &str = "links_changed";
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Listens on its own connection (not one of the pool's, which serve requests) until
/// aborted, reconnecting with backoff.
pub fn spawn_listener(pool: &PgPool, cache: LinkCache) -> JoinHandle<()> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*pool.connect_options()).clone());
    tokio::spawn(async move {
        let mut retry = RETRY_MIN;
        loop {
            match listen(&own).await {
                Ok(mut listener) => {
                    cache.clear();
                    tracing::info!(channel = CHANNEL, "listening for link changes");
                    retry = RETRY_MIN;
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => cache.invalidate(n.payload()),
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
