//! Status conditions following the Kubernetes API conventions: one entry per type, with
//! `lastTransitionTime` moved only when the status value flips.

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// An enum whose variants are written in the API as their own names (`Ready`,
/// `MigrationFailed`), with the list of all variants and a parser for stored values.
macro_rules! api_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name written in the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)*
                }
            }

            /// The variant a stored name stands for.
            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use api_names;

api_names! {
    /// The condition types the operator writes, in the order it writes them.
    ConditionType {
        Ready,
        Progressing,
        Degraded,
        MigrationsApplied,
        TopicReady,
        /// Whether the stack's brokers answered the operator (topic management, lag
        /// measurement); absent until the operator tried.
        KafkaReachable,
        /// Set (True) while the pause annotation stops reconciliation; absent otherwise.
        ReconciliationPaused,
    }
}

api_names! {
    /// Every `reason` the operator writes into a condition.
    Reason {
        // Ready
        AllComponentsReady,
        ComponentsNotReady,
        Degraded,
        ReconcileError,
        // Progressing
        MigrationRetrying,
        RollingOut,
        RolloutStuck,
        Settled,
        // Degraded
        AsExpected,
        // MigrationsApplied
        MigrationFailed,
        MigrationRunning,
        MigrationSucceeded,
        // TopicReady
        TopicReady,
        PartitionDecreaseRefused,
        AdminRequestFailed,
        InvalidKafkaSettings,
        SecretNotOptedIn,
        KafkaCredentialsUnavailable,
        ResourceConflict,
        ReplicationFactorMismatch,
        // KafkaReachable (and TopicReady)
        BrokerUnreachable,
        BrokersAnswered,
        // ReconciliationPaused
        PauseAnnotation,
    }
}

/// A condition the reconciler computed, before timestamps are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// A condition stored by an earlier pass, when its type and reason are known ones.
    pub fn from_stored(c: &Condition) -> Option<Self> {
        Some(Self::new(
            ConditionType::parse(&c.type_)?,
            c.status == "True",
            Reason::parse(&c.reason)?,
            c.message.clone(),
        ))
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
                .find(|p| p.type_ == o.type_.as_str() && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: o.type_.to_string(),
                status,
                reason: o.reason.to_string(),
                message: o.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Whether `conditions` has `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: ConditionType) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_.as_str() && c.status == "True")
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
            &[Observed::new(
                ConditionType::Ready,
                false,
                Reason::MigrationRunning,
                "waiting",
            )],
            Some(1),
            t0,
        );
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].last_transition_time.0, t0);
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(
            &first,
            &[Observed::new(
                ConditionType::Ready,
                false,
                Reason::RollingOut,
                "pods starting",
            )],
            Some(2),
            t1,
        );
        assert_eq!(same[0].last_transition_time.0, t0, "status unchanged");
        assert_eq!(same[0].reason, "RollingOut");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            &[Observed::new(
                ConditionType::Ready,
                true,
                Reason::AllComponentsReady,
                "ok",
            )],
            Some(2),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time.0, t1);
        assert!(is_true(&flipped, ConditionType::Ready));
        assert!(!is_true(&flipped, ConditionType::Degraded));
    }

    #[test]
    fn names_are_written_as_declared_and_parse_back() {
        assert_eq!(ConditionType::KafkaReachable.as_str(), "KafkaReachable");
        assert_eq!(Reason::BrokerUnreachable.to_string(), "BrokerUnreachable");
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        for t in ConditionType::ALL {
            assert_eq!(ConditionType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(Reason::parse("Unheard"), None);
    }

    #[test]
    fn now_is_truncated_to_seconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let c = merge(
            &[],
            &[Observed::new(
                ConditionType::Ready,
                true,
                Reason::AllComponentsReady,
                "",
            )],
            None,
            t,
        );
        assert_eq!(c[0].last_transition_time.0.timestamp_subsec_nanos(), 0);
    }
}
