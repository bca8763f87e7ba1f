//! Status conditions following the Kubernetes API conventions: one entry per type, with
//! `lastTransitionTime` moved only when the status value flips.

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const MIGRATIONS_APPLIED: &str = "MigrationsApplied";
pub const TOPIC_READY: &str = "TopicReady";
/// Whether the stack's brokers answered the operator (topic management, lag measurement);
/// absent until the operator tried.
pub const KAFKA_REACHABLE: &str = "KafkaReachable";
/// Set (True) while the pause annotation stops reconciliation; absent otherwise.
pub const RECONCILIATION_PAUSED: &str = "ReconciliationPaused";
/// Every condition type the operator writes, in the order it writes them.
pub const ALL: [&str; 7] = [
    READY,
    PROGRESSING,
    DEGRADED,
    MIGRATIONS_APPLIED,
    TOPIC_READY,
    KAFKA_REACHABLE,
    RECONCILIATION_PAUSED,
];

/// A condition the reconciler computed, before timestamps are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status {
        "True"
    } else {
        "False"
    }
}

/// Builds the condition list from `observed`, keeping each previous `lastTransitionTime`
/// whose status did not change. `now` is truncated to seconds (what the API stores), so a
/// re-read status compares equal.
pub fn merge(
    previous: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let now = Time(now.trunc_subsecs(0));
    observed
        .iter()
        .map(|o| {
            let status = status_str(o.status).to_string();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: o.type_.to_string(),
                status,
                reason: o.reason.clone(),
                message: o.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Whether `conditions` has `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = t0 + chrono::Duration::seconds(90);
        let first = merge(
            &[],
            &[Observed::new(READY, false, "MigrationRunning", "waiting")],
            Some(1),
            t0,
        );
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].last_transition_time.0, t0);
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(
            &first,
            &[Observed::new(
                READY,
                false,
                "RolloutInProgress",
                "pods starting",
            )],
            Some(2),
            t1,
        );
        assert_eq!(same[0].last_transition_time.0, t0, "status unchanged");
        assert_eq!(same[0].reason, "RolloutInProgress");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            &[Observed::new(READY, true, "Ready", "ok")],
            Some(2),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time.0, t1);
        assert!(is_true(&flipped, READY));
        assert!(!is_true(&flipped, DEGRADED));
    }

    #[test]
    fn now_is_truncated_to_seconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let c = merge(&[], &[Observed::new(READY, true, "Ready", "")], None, t);
        assert_eq!(c[0].last_transition_time.0.timestamp_subsec_nanos(), 0);
    }
}
