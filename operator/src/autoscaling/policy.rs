//! The lag-based scaling policy: a pure function of the measured lag, the recent
//! recommendations, the current replica count and the bounds. No I/O and no clock: the
//! caller passes `now`, so every rule is pinned by table tests.
//!
//! The rules follow the HorizontalPodAutoscaler's `behavior` semantics:
//! - the *recommendation* is `ceil(lag / targetLagPerReplica)`, at least 1 while there is
//!   any lag, 0 when there is none;
//! - scaling **up** follows the current recommendation at once, at most `maxScaleUpStep`
//!   pods per decision;
//! - scaling **down** follows the *highest* recommendation seen during the stabilization
//!   window, so a dip in lag never removes pods and flapping lag never flaps replicas;
//! - the result is clamped into `[minReplicas, min(maxReplicas, partitions)]` (more
//!   consumers than partitions would own no partition). A `minReplicas` of 0 lets the
//!   consumer scale to zero, which happens only after the lag was 0 for a whole window.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The knobs of the policy, from `spec.consumer` and the topic's partition count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalingParams {
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Partitions of the topic: the most consumers that do useful work.
    pub partitions: i32,
    pub target_lag_per_replica: i64,
    pub scale_down_stabilization: Duration,
    pub max_scale_up_step: i32,
}

impl ScalingParams {
    /// Most pods: `maxReplicas` capped at the partition count, and never below 1 so that
    /// lag can always be worked off.
    pub fn upper(&self) -> i32 {
        self.max_replicas.min(self.partitions).max(1)
    }

    /// Fewest pods: `minReplicas`, capped at [`upper`](Self::upper) (the partitions win
    /// over a minimum that could never do work).
    pub fn lower(&self) -> i32 {
        self.min_replicas.clamp(0, self.upper())
    }

    fn step(&self) -> i32 {
        self.max_scale_up_step.max(1)
    }

    /// Pods the lag alone asks for, before bounds: `ceil(lag / target)`, at least 1 while
    /// there is lag, 0 without lag.
    pub fn recommendation(&self, lag: i64) -> i32 {
        if lag <= 0 {
            return 0;
        }
        let target = self.target_lag_per_replica.max(1);
        let pods = (lag - 1) / target + 1;
        i32::try_from(pods).unwrap_or(i32::MAX)
    }
}

/// One recommendation at the time it was made.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub time: DateTime<Utc>,
    pub replicas: i32,
}

/// Recommendations of one stack as a step function of time: each value holds from its
/// time until the next entry's. Consecutive equal values are merged (that does not change
/// the step function), so the history holds one entry per *change* within the window plus
/// the entry in force at the window's start: a handful of entries, whatever the interval.
///
/// It lives in the operator's memory (see `docs/autoscaling.md`): after an operator
/// restart it starts empty and is seeded with the current replica count, so the
/// restarted operator holds the count for one window before scaling down, exactly like
/// the HorizontalPodAutoscaler. Keeping it in the CR status would survive restarts but
/// would cost a status write whenever the recommendation changes; losing it can only
/// delay a scale-down, never cause a premature one. It is serializable anyway, so it can
/// be persisted later without changing the policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct History {
    recommendations: Vec<Recommendation>,
}

impl History {
    pub fn entries(&self) -> &[Recommendation] {
        &self.recommendations
    }

    pub fn is_empty(&self) -> bool {
        self.recommendations.is_empty()
    }

    fn push(&mut self, time: DateTime<Utc>, replicas: i32) {
        // A clock that goes backwards must not reorder the step function.
        let time = match self.recommendations.last() {
            Some(last) if last.time > time => last.time,
            _ => time,
        };
        match self.recommendations.last() {
            Some(last) if last.replicas == replicas => {}
            _ => self.recommendations.push(Recommendation { time, replicas }),
        }
    }

    /// Drops every entry that ended before `cutoff`, keeping the one in force at `cutoff`.
    fn prune(&mut self, cutoff: DateTime<Utc>) {
        if let Some(in_force) = self.recommendations.iter().rposition(|r| r.time <= cutoff) {
            self.recommendations.drain(..in_force);
        }
    }

    /// Highest recommendation in force at any time since `cutoff`.
    fn highest_since(&self, cutoff: DateTime<Utc>) -> i32 {
        let in_force = self
            .recommendations
            .iter()
            .rposition(|r| r.time <= cutoff)
            .unwrap_or(0);
        self.recommendations[in_force..]
            .iter()
            .map(|r| r.replicas)
            .max()
            .unwrap_or(0)
    }
}

/// Which way a decision moves the replica count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Why the policy chose its replica count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleReason {
    /// The lag needs more pods; `to` may be below `needed` because of `maxScaleUpStep`.
    ScaleUp {
        lag: i64,
        from: i32,
        to: i32,
        needed: i32,
    },
    /// The lag has needed at most `to` pods for the whole stabilization window.
    ScaleDown {
        lag: i64,
        from: i32,
        to: i32,
        window_seconds: i64,
    },
    /// Fewer pods than `minReplicas`: raised to the minimum at once.
    BelowMinimum { from: i32, to: i32 },
    /// More pods than `min(maxReplicas, partitions)`: lowered to that bound at once.
    AboveMaximum { from: i32, to: i32 },
    /// The lag needs fewer pods, but a higher recommendation within the window holds them.
    Stabilized {
        lag: i64,
        replicas: i32,
        needed: i32,
        window_seconds: i64,
    },
    /// The lag needs more pods than the upper bound allows, and the count is at the bound.
    AtMax {
        lag: i64,
        replicas: i32,
        needed: i32,
    },
    /// The count matches what the lag needs.
    Steady { lag: i64, replicas: i32 },
}

impl ScaleReason {
    /// Short PascalCase name, used as the Event reason and in `status.consumer.lastScaleReason`.
    pub fn name(&self) -> &'static str {
        match self {
            ScaleReason::ScaleUp { .. } => "ScaledUp",
            ScaleReason::ScaleDown { .. } => "ScaledDown",
            ScaleReason::BelowMinimum { .. } => "RaisedToMinimum",
            ScaleReason::AboveMaximum { .. } => "LoweredToMaximum",
            ScaleReason::Stabilized { .. } => "Stabilized",
            ScaleReason::AtMax { .. } => "AtMaximum",
            ScaleReason::Steady { .. } => "Steady",
        }
    }
}

impl fmt::Display for ScaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScaleReason::ScaleUp {
                lag,
                from,
                to,
                needed,
            } => {
                write!(f, "lag {lag} needs {needed} replicas: scaled up from {from} to {to}")?;
                if to < needed {
                    write!(f, " (limited by maxScaleUpStep)")?;
                }
                Ok(())
            }
            ScaleReason::ScaleDown {
                lag,
                from,
                to,
                window_seconds,
            } => write!(
                f,
                "lag {lag} has needed at most {to} replicas for {window_seconds}s: scaled down from {from} to {to}"
            ),
            ScaleReason::BelowMinimum { from, to } => {
                write!(f, "{from} replicas is below minReplicas: raised to {to}")
            }
            ScaleReason::AboveMaximum { from, to } => write!(
                f,
                "{from} replicas is above min(maxReplicas, partitions): lowered to {to}"
            ),
            ScaleReason::Stabilized {
                lag,
                replicas,
                needed,
                window_seconds,
            } => write!(
                f,
                "lag {lag} needs {needed} replicas; holding {replicas} until the lag stays low for {window_seconds}s"
            ),
            ScaleReason::AtMax {
                lag,
                replicas,
                needed,
            } => write!(
                f,
                "lag {lag} needs {needed} replicas; at the limit of {replicas} (maxReplicas or partitions)"
            ),
            ScaleReason::Steady { lag, replicas } => {
                write!(f, "lag {lag} is served by {replicas} replicas")
            }
        }
    }
}

/// The outcome of one policy evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub lag: i64,
    pub current: i32,
    pub desired: i32,
    pub reason: ScaleReason,
}

impl Decision {
    pub fn direction(&self) -> Option<Direction> {
        match self.desired.cmp(&self.current) {
            std::cmp::Ordering::Greater => Some(Direction::Up),
            std::cmp::Ordering::Less => Some(Direction::Down),
            std::cmp::Ordering::Equal => None,
        }
    }
}

/// Records the recommendation for `lag` at `now` in `history` and decides the replica count.
pub fn decide(
    history: &mut History,
    params: &ScalingParams,
    now: DateTime<Utc>,
    lag: i64,
    current: i32,
) -> Decision {
    let lag = lag.max(0);
    let current = current.max(0);
    let (lower, upper) = (params.lower(), params.upper());
    let window = params.scale_down_stabilization.max(Duration::zero());
    let cutoff = now - window;

    // First sight of this stack (or an operator restart): the pods that run now count
    // as a recommendation, so nothing is removed before a full window has been observed.
    if history.is_empty() {
        history.push(now, current);
    }
    let recommended = params.recommendation(lag);
    history.push(now, recommended);
    history.prune(cutoff);

    let needed = recommended.clamp(lower, upper);
    let down_bound = history.highest_since(cutoff).clamp(lower, upper);
    let window_seconds = window.num_seconds();

    let (desired, reason) = if current < lower {
        let to = lower.max(needed.min(current + params.step()));
        (to, ScaleReason::BelowMinimum { from: current, to })
    } else if current > upper {
        let to = down_bound.min(upper);
        (to, ScaleReason::AboveMaximum { from: current, to })
    } else if needed > current {
        let to = needed.min(current.saturating_add(params.step()));
        (
            to,
            ScaleReason::ScaleUp {
                lag,
                from: current,
                to,
                needed,
            },
        )
    } else if down_bound < current {
        (
            down_bound,
            ScaleReason::ScaleDown {
                lag,
                from: current,
                to: down_bound,
                window_seconds,
            },
        )
    } else if needed < current {
        (
            current,
            ScaleReason::Stabilized {
                lag,
                replicas: current,
                needed,
                window_seconds,
            },
        )
    } else if recommended > upper {
        (
            current,
            ScaleReason::AtMax {
                lag,
                replicas: current,
                needed: recommended,
            },
        )
    } else {
        (
            current,
            ScaleReason::Steady {
                lag,
                replicas: current,
            },
        )
    };

    Decision {
        lag,
        current,
        desired,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// min 1, max 10, 12 partitions, 1000 messages per pod, 300 s window, step 2.
    fn params() -> ScalingParams {
        ScalingParams {
            min_replicas: 1,
            max_replicas: 10,
            partitions: 12,
            target_lag_per_replica: 1000,
            scale_down_stabilization: Duration::seconds(300),
            max_scale_up_step: 2,
        }
    }

    /// Feeds `(seconds, lag)` samples through the policy, applying every decision as the
    /// scaler would, and returns the replica count after each sample.
    fn run(params: &ScalingParams, start: i32, samples: &[(i64, i64)]) -> Vec<i32> {
        let mut history = History::default();
        let mut current = start;
        samples
            .iter()
            .map(|&(at, lag)| {
                let d = decide(&mut history, params, t(at), lag, current);
                current = d.desired;
                current
            })
            .collect()
    }

    /// Samples every 15 s: `lags[i]` at `15 * i` seconds.
    fn every_15s(lags: &[i64]) -> Vec<(i64, i64)> {
        lags.iter()
            .enumerate()
            .map(|(i, &lag)| (15 * i as i64, lag))
            .collect()
    }

    struct Case {
        name: &'static str,
        params: ScalingParams,
        start: i32,
        samples: Vec<(i64, i64)>,
        expected: Vec<i32>,
    }

    #[test]
    fn policy_table() {
        let p = params();
        let cases = vec![
            Case {
                name: "recommendation is ceil(lag / target)",
                params: p,
                start: 1,
                samples: every_15s(&[1000, 1001, 2500]),
                expected: vec![1, 2, 3],
            },
            Case {
                name: "flapping lag: up once, then no flapping within the window",
                params: p,
                start: 1,
                samples: every_15s(&[5000, 0, 5000, 0, 5000, 0, 0, 0]),
                expected: vec![3, 3, 5, 5, 5, 5, 5, 5],
            },
            Case {
                name: "lag spike: bounded by step and by partitions",
                params: ScalingParams { partitions: 6, ..p },
                start: 1,
                samples: every_15s(&[100_000, 100_000, 100_000, 100_000, 100_000]),
                expected: vec![3, 5, 6, 6, 6],
            },
            Case {
                name: "lag spike: bounded by maxReplicas",
                params: ScalingParams {
                    max_replicas: 4,
                    max_scale_up_step: 10,
                    ..p
                },
                start: 1,
                samples: every_15s(&[100_000, 100_000]),
                expected: vec![4, 4],
            },
            Case {
                name: "sustained zero: hold for the window after the last lag, then go to min",
                params: p,
                start: 1,
                // 4000 at t=0 (1 -> 3), t=15 (3 -> 4); zero from t=30. The 4-pod
                // recommendation is in force until t=30, so pods go at t >= 330.
                samples: vec![
                    (0, 4000),
                    (15, 4000),
                    (30, 0),
                    (180, 0),
                    (315, 0),
                    (329, 0),
                    (330, 0),
                    (345, 0),
                ],
                expected: vec![3, 4, 4, 4, 4, 4, 1, 1],
            },
            Case {
                name: "scale-down goes to the highest recommendation of the window",
                params: p,
                start: 1,
                samples: vec![
                    (0, 6000),
                    (15, 6000),
                    (30, 6000),
                    (45, 2500),
                    (200, 0),
                    (345, 0),
                    (500, 0),
                ],
                // 6 pods recommended until t=45, 3 from t=45 to t=200, 0 after:
                // at t=345 the window [45, 345] still holds the 3; at t=500 only zeros.
                expected: vec![3, 5, 6, 6, 6, 3, 1],
            },
            Case {
                name: "never 0 while lag > 0, even with minReplicas 0",
                params: ScalingParams {
                    min_replicas: 0,
                    ..p
                },
                start: 0,
                samples: every_15s(&[1, 1, 0]),
                expected: vec![1, 1, 1],
            },
            Case {
                name: "minReplicas 0: scale to zero only after a whole idle window",
                params: ScalingParams {
                    min_replicas: 0,
                    ..p
                },
                start: 1,
                samples: vec![(0, 10), (15, 0), (200, 0), (314, 0), (315, 0), (400, 0)],
                expected: vec![1, 1, 1, 1, 0, 0],
            },
            Case {
                name: "minReplicas 0: wakes up from zero as soon as lag appears",
                params: ScalingParams {
                    min_replicas: 0,
                    ..p
                },
                start: 0,
                samples: every_15s(&[0, 0, 3500, 3500]),
                expected: vec![0, 0, 2, 4],
            },
            Case {
                name: "fresh history (operator restart): holds current pods for one window",
                params: p,
                start: 5,
                samples: vec![(0, 0), (150, 0), (299, 0), (300, 0)],
                expected: vec![5, 5, 5, 1],
            },
            Case {
                name: "raised minReplicas applies at once, beyond the step",
                params: ScalingParams {
                    min_replicas: 6,
                    ..p
                },
                start: 1,
                samples: every_15s(&[0]),
                expected: vec![6],
            },
            Case {
                name: "lowered maxReplicas applies at once, despite the window",
                params: ScalingParams {
                    max_replicas: 3,
                    ..p
                },
                start: 8,
                samples: every_15s(&[8000, 8000]),
                expected: vec![3, 3],
            },
            Case {
                name: "partitions below minReplicas: partitions win",
                params: ScalingParams {
                    min_replicas: 5,
                    partitions: 2,
                    ..p
                },
                start: 1,
                samples: every_15s(&[0, 0]),
                expected: vec![2, 2],
            },
            Case {
                name: "zero window: scales down on the next sample",
                params: ScalingParams {
                    scale_down_stabilization: Duration::zero(),
                    ..p
                },
                start: 1,
                samples: every_15s(&[3000, 0]),
                expected: vec![3, 1],
            },
        ];
        for case in cases {
            let got = run(&case.params, case.start, &case.samples);
            assert_eq!(got, case.expected, "case: {}", case.name);
        }
    }

    #[test]
    fn reasons_name_what_happened() {
        let p = params();
        let mut h = History::default();
        let d = decide(&mut h, &p, t(0), 9000, 1);
        assert_eq!(d.direction(), Some(Direction::Up));
        assert_eq!(
            d.reason,
            ScaleReason::ScaleUp {
                lag: 9000,
                from: 1,
                to: 3,
                needed: 9
            }
        );
        assert_eq!(
            d.reason.to_string(),
            "lag 9000 needs 9 replicas: scaled up from 1 to 3 (limited by maxScaleUpStep)"
        );
        assert_eq!(d.reason.name(), "ScaledUp");

        let d = decide(&mut h, &p, t(15), 0, 3);
        assert_eq!(d.direction(), None);
        assert_eq!(
            d.reason,
            ScaleReason::Stabilized {
                lag: 0,
                replicas: 3,
                needed: 1,
                window_seconds: 300
            }
        );

        let d = decide(&mut h, &p, t(400), 0, 3);
        assert_eq!(d.direction(), Some(Direction::Down));
        assert_eq!(
            d.reason,
            ScaleReason::ScaleDown {
                lag: 0,
                from: 3,
                to: 1,
                window_seconds: 300
            }
        );
        assert_eq!(d.reason.name(), "ScaledDown");

        let d = decide(&mut h, &p, t(415), 500, 1);
        assert_eq!(
            d.reason,
            ScaleReason::Steady {
                lag: 500,
                replicas: 1
            }
        );

        let small = ScalingParams {
            max_replicas: 2,
            ..p
        };
        let d = decide(&mut History::default(), &small, t(0), 50_000, 2);
        assert_eq!(
            d.reason,
            ScaleReason::AtMax {
                lag: 50_000,
                replicas: 2,
                needed: 50
            }
        );
    }

    #[test]
    fn history_stays_small_and_round_trips() {
        let p = params();
        let mut h = History::default();
        let mut current = 1;
        // An hour of samples every 15 s with lag alternating between two values.
        for i in 0..240 {
            let lag = if i % 2 == 0 { 3000 } else { 2000 };
            current = decide(&mut h, &p, t(15 * i), lag, current).desired;
        }
        // Only entries of the last 300 s plus the one in force at the window's start.
        assert!(h.entries().len() <= 300 / 15 + 2, "{}", h.entries().len());
        assert!(h.entries().iter().all(|r| r.time >= t(15 * 239 - 315)));
        let json = serde_json::to_string(&h).unwrap();
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(json.contains("\"recommendations\""));
    }

    #[test]
    fn equal_recommendations_are_merged() {
        let p = params();
        let mut h = History::default();
        for i in 0..10 {
            decide(&mut h, &p, t(15 * i), 1500, 2);
        }
        // Seed (2 pods) and the lag's recommendation (2 pods) are the same value.
        assert_eq!(h.entries().len(), 1);
    }

    #[test]
    fn clock_going_backwards_keeps_order() {
        let p = params();
        let mut h = History::default();
        decide(&mut h, &p, t(100), 5000, 1);
        decide(&mut h, &p, t(50), 0, 3);
        let times: Vec<_> = h.entries().iter().map(|r| r.time).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
    }
}
