//! Orphan visits: redirects that found no live link, counted without keeping the codes.
//!
//! A code in a request is chosen by whoever sends it, so storing it (or a per-code row)
//! would let anyone grow the database at will. Instead each replica keeps one counter per
//! kind in memory and a task adds them to `orphan_visits` (domain, kind, day) every
//! [`FLUSH_INTERVAL`]: the table grows by at most three rows a day. The domain is
//! `PUBLIC_BASE_URL`'s host, the one domain whose links this deployment serves (the
//! request's Host header is also chosen by the client, so it is not used).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanKind {
    /// No link ever had this code.
    UnknownCode,
    /// The link was deleted, expired or used up its visits.
    Gone,
    /// Not even a possible code (wrong characters or length).
    InvalidCode,
}

impl OrphanKind {
    pub const ALL: [Self; 3] = [Self::UnknownCode, Self::Gone, Self::InvalidCode];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCode => "unknown_code",
            Self::Gone => "gone",
            Self::InvalidCode => "invalid_code",
        }
    }
}

/// This replica's counts since the last flush.
#[derive(Clone, Default)]
pub struct OrphanCounter {
    counts: Arc<[AtomicU64; 3]>,
}

impl OrphanCounter {
    pub fn count(&self, kind: OrphanKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the counts so far to the table for `domain`; on failure they are kept for the
    /// next flush.
    pub async fn flush(&self, pool: &PgPool, domain: &str) -> Result<(), sqlx::Error> {
        let taken: Vec<(OrphanKind, u64)> = OrphanKind::ALL
            .iter()
            .map(|k| (*k, self.counts[*k as usize].swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = taken.iter().map(|(k, _)| k.as_str()).collect();
        let visits: Vec<i64> = taken.iter().map(|(_, n)| *n as i64).collect();
        let result = sqlx::query(
            "INSERT INTO orphan_visits (domain, kind, day, visits) \
             SELECT $1, k, $2, n FROM UNNEST($3::text[], $4::int8[]) AS t(k, n) \
             ON CONFLICT (domain, day, kind) \
             DO UPDATE SET visits = orphan_visits.visits + excluded.visits",
        )
        .bind(domain)
        .bind(Utc::now().date_naive())
        .bind(&kinds)
        .bind(&visits)
        .execute(pool)
        .await;
        if result.is_err() {
            for (k, n) in &taken {
                self.counts[*k as usize].fetch_add(*n, Ordering::Relaxed);
            }
        }
        result.map(|_| ())
    }

    /// Flushes every [`FLUSH_INTERVAL`] until aborted.
    pub fn spawn_flusher(&self, pool: PgPool, domain: String) -> tokio::task::JoinHandle<()> {
        let counter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = counter.flush(&pool, &domain).await {
                    tracing::warn!(error = %e, "orphan visit counts not stored yet");
                }
            }
        })
    }
}

/// Stored orphan visits of `domain` per day and kind, from `since` on.
pub async fn per_day(
    pool: &PgPool,
    domain: &str,
    since: NaiveDate,
) -> Result<Vec<(NaiveDate, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT day, kind, visits FROM orphan_visits WHERE domain = $1 AND day >= $2 \
         ORDER BY day, kind",
    )
    .bind(domain)
    .bind(since)
    .fetch_all(pool)
    .await
}
