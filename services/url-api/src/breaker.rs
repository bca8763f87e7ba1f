//! A small circuit breaker for calls to a dependency.
//!
//! Closed: calls pass; `threshold` consecutive failures open it. Open: calls are refused
//! at once until `reset_after` has passed, then one trial call is let through
//! (half-open). The trial's success closes the breaker, its failure opens it again.
//! A trial whose caller gives up without reporting (cancelled future) frees the slot
//! for the next trial instead of wedging the breaker half-open. While half-open only the
//! trial decides: calls admitted before the breaker opened and finishing late neither
//! close it, reopen it, nor free the trial slot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Time source, replaceable in tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen { trial_in_flight: bool },
}

impl Inner {
    fn state(&self) -> State {
        match self {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// Returned when the breaker refuses a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open")]
pub struct Rejected;

pub struct Breaker {
    threshold: u32,
    reset_after: Duration,
    clock: Box<dyn Clock>,
    inner: Mutex<Inner>,
    gauge: Option<Gauge>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("threshold", &self.threshold)
            .field("reset_after", &self.reset_after)
            .field("state", &self.state())
            .finish()
    }
}

impl Breaker {
    /// `threshold` is clamped to at least 1.
    pub fn new(threshold: u32, reset_after: Duration, clock: impl Clock) -> Self {
        Self {
            threshold: threshold.max(1),
            reset_after,
            clock: Box::new(clock),
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            gauge: None,
        }
    }

    /// Mirrors the state into `gauge` (see [`State::as_gauge`]).
    pub fn with_gauge(mut self, gauge: Gauge) -> Self {
        gauge.set(State::Closed.as_gauge());
        self.gauge = Some(gauge);
        self
    }

    pub fn state(&self) -> State {
        self.lock().state()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value; a panic elsewhere cannot leave it half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, inner: &mut Inner, next: Inner) {
        let changed = inner.state() != next.state();
        *inner = next;
        if changed {
            tracing::info!(state = ?inner.state(), "analytics circuit breaker changed state");
        }
        if let Some(g) = &self.gauge {
            g.set(inner.state().as_gauge());
        }
    }

    /// Asks to make a call. The permit must be resolved with `success` or `failure`.
    pub fn acquire(self: &Arc<Self>) -> Result<Permit, Rejected> {
        let mut inner = self.lock();
        let trial = match *inner {
            Inner::Closed { .. } => false,
            Inner::Open { since } => {
                if self.clock.now().duration_since(since) < self.reset_after {
                    return Err(Rejected);
                }
                self.set(
                    &mut inner,
                    Inner::HalfOpen {
                        trial_in_flight: true,
                    },
                );
                true
            }
            Inner::HalfOpen {
                ref mut trial_in_flight,
            } => {
                if *trial_in_flight {
                    return Err(Rejected);
                }
                *trial_in_flight = true;
                true
            }
        };
        Ok(Permit {
            breaker: Some(self.clone()),
            trial,
        })
    }

    fn on_success(&self, trial: bool) {
        let mut inner = self.lock();
        if matches!(*inner, Inner::HalfOpen { .. }) && !trial {
            return;
        }
        self.set(&mut inner, Inner::Closed { failures: 0 });
    }

    fn on_failure(&self, trial: bool) {
        let mut inner = self.lock();
        if matches!(*inner, Inner::HalfOpen { .. }) && !trial {
            return;
        }
        let now = self.clock.now();
        let next = match *inner {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            Inner::Closed { .. } | Inner::HalfOpen { .. } => Inner::Open { since: now },
            // A call admitted before the breaker opened; keep the original opening time.
            Inner::Open { since } => Inner::Open { since },
        };
        self.set(&mut inner, next);
    }

    fn on_abandoned(&self, trial: bool) {
        if !trial {
            return;
        }
        let mut inner = self.lock();
        if let Inner::HalfOpen { trial_in_flight } = &mut *inner {
            *trial_in_flight = false;
        }
    }
}

/// Leave to make one call; report how it went.
#[must_use = "report the outcome with success() or failure()"]
pub struct Permit {
    breaker: Option<Arc<Breaker>>,
    /// The one call let through while half-open.
    trial: bool,
}

impl Permit {
    pub fn success(mut self) {
        if let Some(b) = self.breaker.take() {
            b.on_success(self.trial);
        }
    }

    pub fn failure(mut self) {
        if let Some(b) = self.breaker.take() {
            b.on_failure(self.trial);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.on_abandoned(self.trial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told to.
    #[derive(Clone)]
    struct ManualClock {
        start: Instant,
        offset: Arc<Mutex<Duration>>,
    }

    impl ManualClock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                offset: Arc::new(Mutex::new(Duration::ZERO)),
            }
        }
        fn advance(&self, d: Duration) {
            *self.offset.lock().unwrap() += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
    }

    fn breaker(clock: &ManualClock) -> (Arc<Breaker>, Gauge) {
        let gauge = Gauge::default();
        let b = Breaker::new(3, Duration::from_secs(10), clock.clone()).with_gauge(gauge.clone());
        (Arc::new(b), gauge)
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let clock = ManualClock::new();
        let (b, gauge) = breaker(&clock);
        b.acquire().unwrap().failure();
        b.acquire().unwrap().failure();
        // A success resets the count.
        b.acquire().unwrap().success();
        b.acquire().unwrap().failure();
        b.acquire().unwrap().failure();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(gauge.get(), 0);
        b.acquire().unwrap().failure();
        assert_eq!(b.state(), State::Open);
        assert_eq!(gauge.get(), 1);
        assert_eq!(b.acquire().err(), Some(Rejected));
    }

    #[test]
    fn half_open_admits_one_trial_then_closes_on_success() {
        let clock = ManualClock::new();
        let (b, gauge) = breaker(&clock);
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        clock.advance(Duration::from_millis(9_999));
        assert!(
            b.acquire().is_err(),
            "still open just before the reset time"
        );
        clock.advance(Duration::from_millis(1));
        let trial = b.acquire().expect("trial call after reset time");
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(gauge.get(), 2);
        assert!(b.acquire().is_err(), "only one trial at a time");
        trial.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(gauge.get(), 0);
        b.acquire().unwrap().success();
    }

    #[test]
    fn failed_trial_reopens_for_a_full_period() {
        let clock = ManualClock::new();
        let (b, _) = breaker(&clock);
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(10));
        b.acquire().unwrap().failure();
        assert_eq!(b.state(), State::Open);
        clock.advance(Duration::from_secs(5));
        assert!(b.acquire().is_err());
        clock.advance(Duration::from_secs(5));
        assert!(b.acquire().is_ok());
    }

    #[test]
    fn abandoned_trial_frees_the_slot() {
        let clock = ManualClock::new();
        let (b, _) = breaker(&clock);
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(10));
        drop(b.acquire().unwrap());
        assert_eq!(b.state(), State::HalfOpen);
        b.acquire().expect("a new trial").success();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn late_calls_do_not_decide_for_the_trial() {
        let clock = ManualClock::new();
        let (b, _) = breaker(&clock);
        let late_ok = b.acquire().unwrap();
        let late_err = b.acquire().unwrap();
        let late_dropped = b.acquire().unwrap();
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(10));
        let trial = b.acquire().expect("trial call after reset time");
        drop(late_dropped);
        assert!(b.acquire().is_err(), "the trial is still in flight");
        late_ok.success();
        late_err.failure();
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.acquire().is_err(), "the trial is still in flight");
        trial.success();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn late_failures_while_open_do_not_extend_the_period() {
        let clock = ManualClock::new();
        let (b, _) = breaker(&clock);
        let late = b.acquire().unwrap();
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(6));
        late.failure();
        clock.advance(Duration::from_secs(4));
        assert!(b.acquire().is_ok());
    }
}
