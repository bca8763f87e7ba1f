//! The Kubernetes Events the operator publishes on a stack: every reason in one list, each
//! with its fixed type and action, so a reason is never written twice. The consumer
//! autoscaler's scaling decisions use their own names (`autoscaling::ScaleReason::name`,
//! shared with `status.consumer.lastScaleReason`).

use kube::runtime::events::EventType;

use crate::conditions::api_names;

api_names! {
    /// Every fixed `reason` of an Event the operator publishes.
    EventReason {
        // Children (ApplyConfig)
        Created,
        DriftReverted,
        PodMonitorUnavailable,
        // Deployments (ApplyWorkloads)
        RolloutStarted,
        // Topics (EnsureTopic)
        TopicCreated,
        PartitionsIncreased,
        TopicConfigReverted,
        // Deletion (DeleteTopic)
        TopicDeleted,
        TopicKept,
        TopicCleanupAbandoned,
        // Migration gate (Migrate)
        MigrationStarted,
        MigrationFailed,
        MigrationSucceeded,
        // Conditions (Reconcile)
        Degraded,
        Ready,
        // Consumer autoscaling (ScaleConsumer)
        AutoscalingUnavailable,
        KedaObjectsRemoved,
        KedaScaledObjectPresent,
    }
}

impl EventReason {
    /// Warning for what needs a human, Normal otherwise.
    pub fn type_(self) -> EventType {
        match self {
            EventReason::PodMonitorUnavailable
            | EventReason::TopicCleanupAbandoned
            | EventReason::MigrationFailed
            | EventReason::Degraded
            | EventReason::AutoscalingUnavailable
            | EventReason::KedaScaledObjectPresent => EventType::Warning,
            _ => EventType::Normal,
        }
    }

    /// The Event's `action`: what the operator was doing.
    pub fn action(self) -> &'static str {
        match self {
            EventReason::Created
            | EventReason::DriftReverted
            | EventReason::PodMonitorUnavailable => "ApplyConfig",
            EventReason::RolloutStarted => "ApplyWorkloads",
            EventReason::TopicCreated
            | EventReason::PartitionsIncreased
            | EventReason::TopicConfigReverted => "EnsureTopic",
            EventReason::TopicDeleted
            | EventReason::TopicKept
            | EventReason::TopicCleanupAbandoned => "DeleteTopic",
            EventReason::MigrationStarted
            | EventReason::MigrationFailed
            | EventReason::MigrationSucceeded => "Migrate",
            EventReason::Degraded | EventReason::Ready => "Reconcile",
            EventReason::AutoscalingUnavailable
            | EventReason::KedaObjectsRemoved
            | EventReason::KedaScaledObjectPresent => "ScaleConsumer",
        }
    }
}

/// An Event to publish: its reason (with type and action) and its note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: EventReason,
    pub note: String,
}

impl Note {
    pub fn new(reason: EventReason, note: impl Into<String>) -> Self {
        Self {
            reason,
            note: note.into(),
        }
    }

    /// The Event kube-runtime's recorder publishes.
    pub fn event(&self) -> kube::runtime::events::Event {
        kube::runtime::events::Event {
            type_: self.reason.type_(),
            reason: self.reason.as_str().into(),
            note: Some(self.note.clone()),
            action: self.reason.action().into(),
            secondary: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_the_reasons_that_need_a_human() {
        let warnings: Vec<&str> = EventReason::ALL
            .iter()
            .filter(|r| r.type_() == EventType::Warning)
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            warnings,
            [
                "PodMonitorUnavailable",
                "TopicCleanupAbandoned",
                "MigrationFailed",
                "Degraded",
                "AutoscalingUnavailable",
                "KedaScaledObjectPresent",
            ]
        );
    }

    #[test]
    fn a_note_becomes_an_event_with_the_reasons_type_and_action() {
        let event = Note::new(EventReason::MigrationFailed, "Job x failed").event();
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, "MigrationFailed");
        assert_eq!(event.action, "Migrate");
        assert_eq!(event.note.as_deref(), Some("Job x failed"));
        assert_eq!(
            EventReason::parse("DriftReverted"),
            Some(EventReason::DriftReverted)
        );
    }

    #[test]
    fn every_reason_is_documented_with_its_type_and_action() {
        let doc = include_str!("../../docs/observability.md");
        for reason in EventReason::ALL {
            let kind = if reason.type_() == EventType::Warning {
                "Warning"
            } else {
                "Normal"
            };
            let row = format!("| `{reason}` | {kind} | {} |", reason.action());
            assert!(doc.contains(&row), "docs/observability.md lacks {row}");
        }
    }
}
