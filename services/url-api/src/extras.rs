//! What a few links carry beyond their target: redirect rules, a visit limit, a target
//! for visitors once the link has expired. The cached link holds one pointer to them, None
//! for plain links, so those redirect exactly as before.
//!
//! Visit limits without a database write per redirect: the consumer counts each link's
//! human clicks in `link_visits` as it stores them, and each replica keeps a tally per
//! limited link ([`VisitTallies`]): the highest count it knows of, raised to the stored
//! count whenever the link is read and by one for every human visit it lets through.
//! Re-reading a link (every [`LIMITED_TTL`], or after an edit) therefore never forgets this
//! replica's own visits, even before the consumer has stored them. A link can overshoot its
//! limit only by the visits other replicas let through that are not stored yet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Most limited links a replica keeps a tally for; past it the tallies start afresh from
/// the stored counts (a larger overshoot for a moment, never a failed redirect).
const MAX_TALLIES: usize = 100_000;

/// This replica's visit tally per limited link, shared by every cached copy of the link.
/// Touched only when a limited link is read from the database, never on a cache hit.
#[derive(Debug, Default)]
pub struct VisitTallies(Mutex<HashMap<Box<str>, Arc<AtomicU64>>>);

impl VisitTallies {
    /// The tally of `code`, raised to `stored` (the human visits the consumer has stored).
    pub fn tally(&self, code: &str, stored: u64) -> Arc<AtomicU64> {
        let mut tallies = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tallies.len() >= MAX_TALLIES && !tallies.contains_key(code) {
            tallies.clear();
        }
        let tally = tallies.entry(Box::from(code)).or_default().clone();
        tally.fetch_max(stored, Ordering::Relaxed);
        tally
    }
}

/// A maximum of human visits and this replica's tally of the visits so far.
#[derive(Debug)]
pub struct VisitLimit {
    max: u64,
    seen: Arc<AtomicU64>,
}

impl PartialEq for VisitLimit {
    fn eq(&self, other: &Self) -> bool {
        self.max == other.max && Arc::ptr_eq(&self.seen, &other.seen)
    }
}

impl VisitLimit {
    pub fn new(max: u64, seen: Arc<AtomicU64>) -> Self {
        Self { max, seen }
    }

    /// Whether a visit may go through; a human one is counted. Concurrent human visits
    /// each take their own place, so this replica never lets more through than the limit.
    pub fn admit(&self, human: bool) -> bool {
        let before = if human {
            self.seen.fetch_add(1, Ordering::Relaxed)
        } else {
            self.seen.load(Ordering::Relaxed)
        };
        before < self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans_use_up_the_limit_bots_do_not() {
        let tallies = VisitTallies::default();
        let limit = VisitLimit::new(3, tallies.tally("a", 1));
        assert!(limit.admit(false));
        assert!(limit.admit(true));
        assert!(limit.admit(false));
        assert!(limit.admit(true));
        assert!(!limit.admit(true));
        assert!(!limit.admit(false));
        assert!(!VisitLimit::new(2, tallies.tally("b", 2)).admit(false));
    }

    #[test]
    fn a_re_read_keeps_the_visits_not_stored_yet() {
        let tallies = VisitTallies::default();
        let first = VisitLimit::new(3, tallies.tally("a", 0));
        assert!(first.admit(true));
        assert!(first.admit(true));
        // Read again before the consumer stored those two: they still count.
        let again = VisitLimit::new(3, tallies.tally("a", 0));
        assert!(again.admit(true));
        assert!(!again.admit(true));
        // A stored count above the tally (other replicas' visits) raises it.
        let other = VisitLimit::new(10, tallies.tally("b", 0));
        assert!(other.admit(true));
        let raised = VisitLimit::new(10, tallies.tally("b", 9));
        assert!(raised.admit(true));
        assert!(!raised.admit(true));
    }

    #[test]
    fn plain_links_have_no_extras() {
        assert_eq!(LinkExtras::new(Box::new([]), None, None, None), None);
        assert!(LinkExtras::new(
            Box::new([]),
            Some(VisitLimit::new(1, Arc::default())),
            None,
            None
        )
        .is_some());
        assert!(LinkExtras::new(Box::new([]), None, None, Some("$argon2id$".into())).is_some());
    }
}
