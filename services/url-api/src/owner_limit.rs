//! A bound on the analytics calls one owner (API key) has in flight, so one account's
//! dashboards or scripts cannot take every analytics-rpc connection and every breaker
//! decision for themselves. Exact per owner (a map of counters, entries removed at zero),
//! refused at once rather than queued: the caller answers 429 and its client retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct OwnerLimit {
    max: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// One call's place; dropping it frees the place.
pub struct OwnerSlot {
    owner: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl OwnerLimit {
    /// `max` calls per owner (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            in_flight: Arc::default(),
        }
    }

    pub fn try_acquire(&self, owner: &str) -> Option<OwnerSlot> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(owner.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(OwnerSlot {
            owner: owner.to_string(),
            in_flight: self.in_flight.clone(),
        })
    }

    /// Owners with calls in flight (what the map holds).
    pub fn owners(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for OwnerSlot {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_gets_its_own_bound() {
        let limit = OwnerLimit::new(2);
        let a1 = limit.try_acquire("a").unwrap();
        let _a2 = limit.try_acquire("a").unwrap();
        assert!(limit.try_acquire("a").is_none(), "third call of a refused");
        // Another owner is not affected.
        let b1 = limit.try_acquire("b").unwrap();
        drop(a1);
        assert!(limit.try_acquire("a").is_some(), "a place freed");
        drop(b1);
        assert_eq!(limit.owners(), 1, "owners at zero are forgotten");
    }
}
