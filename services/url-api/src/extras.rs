//! What a few links carry beyond their target: redirect rules, a visit limit, a target
//! for visitors once the link has expired. The cached link holds one pointer to them, None
//! for plain links, so those redirect exactly as before.
//!
//! Visit limits without a database write per redirect: the consumer counts each link's
//! human clicks in `link_visits` as it stores them, and a cached limited link carries the
//! count read with it plus the human visits this replica has let through since. Entries of
//! limited links are re-read every [`LIMITED_TTL`], so the count is at most that old plus the
//! consumer's lag; a link can therefore overshoot its limit by the visits other replicas
//! let through in that window (and by any clicks the consumer has not stored yet), never by
//! this replica's own visits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderValue;

use crate::rules::CompiledRule;

/// Longest a limited link's cached visit count is trusted before it is read again.
pub const LIMITED_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, PartialEq)]
pub struct LinkExtras {
    /// Redirect rules in order; empty when the link has none.
    pub rules: Box<[CompiledRule]>,
    pub limit: Option<VisitLimit>,
    /// Where visitors go once the link expired or reached its limit, instead of a 410.
    pub expired_location: Option<HeaderValue>,
    /// The argon2id PHC string visitors' passwords are checked against.
    pub password_hash: Option<Box<str>>,
}

impl LinkExtras {
    /// None when there is nothing extra, so plain links stay plain.
    pub fn new(
        rules: Box<[CompiledRule]>,
        limit: Option<VisitLimit>,
        expired_location: Option<HeaderValue>,
        password_hash: Option<Box<str>>,
    ) -> Option<Self> {
        (!rules.is_empty()
            || limit.is_some()
            || expired_location.is_some()
            || password_hash.is_some())
        .then_some(Self {
            rules,
            limit,
            expired_location,
            password_hash,
        })
    }
}

/// A maximum of human visits and what is known of the visits so far.
#[derive(Debug)]
pub struct VisitLimit {
    max: u64,
    /// Human visits stored when the link was read.
    stored: u64,
    /// Human visits this replica let through since.
    local: AtomicU64,
}

impl PartialEq for VisitLimit {
    fn eq(&self, other: &Self) -> bool {
        self.max == other.max && self.stored == other.stored
    }
}

impl VisitLimit {
    pub fn new(max: u64, stored: u64) -> Self {
        Self {
            max,
            stored,
            local: AtomicU64::new(0),
        }
    }

    /// Whether a visit may go through; a human one is counted. Concurrent human visits
    /// each take their own place, so this replica never lets more through than the limit.
    pub fn admit(&self, human: bool) -> bool {
        let before = if human {
            self.local.fetch_add(1, Ordering::Relaxed)
        } else {
            self.local.load(Ordering::Relaxed)
        };
        self.stored.saturating_add(before) < self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans_use_up_the_limit_bots_do_not() {
        let limit = VisitLimit::new(3, 1);
        assert!(limit.admit(false));
        assert!(limit.admit(true));
        assert!(limit.admit(false));
        assert!(limit.admit(true));
        assert!(!limit.admit(true));
        assert!(!limit.admit(false));
        assert!(!VisitLimit::new(2, 2).admit(false));
    }

    #[test]
    fn plain_links_have_no_extras() {
        assert_eq!(LinkExtras::new(Box::new([]), None, None, None), None);
        assert!(LinkExtras::new(Box::new([]), Some(VisitLimit::new(1, 0)), None, None).is_some());
        assert!(LinkExtras::new(Box::new([]), None, None, Some("$argon2id$".into())).is_some());
    }
}
