//! The reconcile's decisions that need no client: pure functions of the stack and what
//! was observed, unit-tested here without an API server.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::{CLEANUP_DEADLINE, FINALIZER, PAUSE_ANNOTATION, PENDING_REQUEUE, SETTLED_REQUEUE};
use crate::conditions::{self, ConditionType, Reason};
use crate::crd::{ShortenerStack, ShortenerStackStatus};
use crate::events::{EventReason, Note};
use crate::migration::Step;
use crate::resources::deployment::deployment_for;
use crate::resources::Component;
use crate::status::TopicObservation;
use crate::topic::{TopicOutcome, TopicReport, TopicRequest};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What a pass does with the stack, from its deletion timestamp, finalizers, spec and
/// annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Deleted and nothing holds it: forget what is remembered about it.
    Forget,
    /// Deleted while the finalizer (at this index) holds it: clean up, then remove it.
    CleanUp { finalizer: usize },
    /// Live, with something to clean up on deletion but no finalizer yet: add it first.
    AddFinalizer,
    /// Live, holding a finalizer it no longer needs (at this index): remove it, then apply.
    RemoveFinalizerAndApply { finalizer: usize },
    /// Live and paused by the annotation: only the status says so.
    Pause,
    /// Live: the full pass.
    Apply,
}

pub(super) fn lifecycle(stack: &ShortenerStack) -> Lifecycle {
    let index = stack.finalizers().iter().position(|f| f == FINALIZER);
    match (stack.metadata.deletion_timestamp.is_some(), index) {
        (true, None) => Lifecycle::Forget,
        (true, Some(finalizer)) => Lifecycle::CleanUp { finalizer },
        (false, None) if needs_finalizer(stack) => Lifecycle::AddFinalizer,
        (false, Some(finalizer)) if !needs_finalizer(stack) => {
            Lifecycle::RemoveFinalizerAndApply { finalizer }
        }
        (false, _) if paused(stack) => Lifecycle::Pause,
        (false, _) => Lifecycle::Apply,
    }
}

/// Whether deleting the stack has anything to do beyond garbage collection.
pub(super) fn needs_finalizer(stack: &ShortenerStack) -> bool {
    stack.spec.kafka.delete_topic_on_delete
}

/// Whether the pause annotation is `"true"`.
pub(super) fn paused(stack: &ShortenerStack) -> bool {
    stack
        .annotations()
        .get(PAUSE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// Whether the deletion started more than `CLEANUP_DEADLINE` before `now`.
pub(super) fn cleanup_overdue(stack: &ShortenerStack, now: DateTime<Utc>) -> bool {
    stack
        .metadata
        .deletion_timestamp
        .as_ref()
        .is_some_and(|t| now - t.0 > chrono::Duration::from_std(CLEANUP_DEADLINE).expect("fits"))
}

/// Whether the spec may have changed since the last complete pass (the generation moved
/// past the one the status records): only then are optional children the spec turned off
/// looked for, so a settled pass asks nothing about them.
pub(super) fn spec_changed(stack: &ShortenerStack, previous: &ShortenerStackStatus) -> bool {
    previous.observed_generation != stack.metadata.generation
}

/// Replicas to set through the scale subresource while the migration gate holds the rest
/// of the Deployment back: a replica change in the spec is not a schema change.
pub(super) fn scale_during_gate(
    stack: &ShortenerStack,
    component: Component,
    live: &Deployment,
) -> Option<i32> {
    let desired = deployment_for(stack, component).spec?.replicas?;
    let current = live.spec.as_ref().and_then(|s| s.replicas);
    (current != Some(desired)).then_some(desired)
}

/// When to look again after a complete pass: late when Ready (only broker-side changes
/// are not watched), sooner while something is pending, and at the migration retry time
/// when the gate waits for one (at least a second from `now`).
pub(super) fn requeue(status: &ShortenerStackStatus, step: &Step, now: DateTime<Utc>) -> Duration {
    let settled = conditions::is_true(&status.conditions, ConditionType::Ready);
    let requeue = if settled {
        SETTLED_REQUEUE
    } else {
        PENDING_REQUEUE
    };
    match step {
        Step::Backoff { retry_at } => {
            let wait = (*retry_at - now).to_std().unwrap_or_default();
            requeue.min(wait.max(Duration::from_secs(1)))
        }
        _ => requeue,
    }
}

/// The topics' condition and Events from what `TopicManager::ensure` reported for each
/// requested topic (the clicks topic first): its partitions, a replication factor Kafka
/// cannot change in place, and one Event per kind of change naming every topic it touched.
pub(super) fn topics(reports: &[(TopicRequest, TopicReport)]) -> (TopicObservation, Vec<Note>) {
    let partitions = reports
        .first()
        .map(|(_, report)| report.outcome.partitions())
        .unwrap_or(0);
    let mut changes: Vec<(EventReason, String)> = Vec::new();
    let mut mismatched = Vec::new();
    for (request, report) in reports {
        let name = &request.name;
        match report.outcome {
            TopicOutcome::Created { partitions } => changes.push((
                EventReason::TopicCreated,
                format!("created topic {name} with {partitions} partitions"),
            )),
            TopicOutcome::PartitionsIncreased { from, to } => changes.push((
                EventReason::PartitionsIncreased,
                format!("topic {name}: partitions {from} -> {to}"),
            )),
            TopicOutcome::Unchanged { .. } => {}
        }
        for r in &report.reverted {
            changes.push((
                EventReason::TopicConfigReverted,
                format!(
                    "topic {name}: {} was {}, set back to {}",
                    r.key,
                    r.found.as_deref().unwrap_or("the broker default"),
                    r.wanted
                ),
            ));
        }
        if report.replication_factor != request.replication_factor {
            mismatched.push(format!(
                "topic {name} has replication factor {} and the spec asks for {}: Kafka \
                 cannot change it in place; reassign its partitions \
                 (kafka-reassign-partitions.sh) or set kafka.replicationFactor to {}",
                report.replication_factor, request.replication_factor, report.replication_factor
            ));
        }
    }
    let notes = [
        EventReason::TopicCreated,
        EventReason::PartitionsIncreased,
        EventReason::TopicConfigReverted,
    ]
    .into_iter()
    .filter_map(|reason| {
        let notes: Vec<&str> = changes
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n.as_str())
            .collect();
        (!notes.is_empty()).then(|| Note::new(reason, notes.join("; ")))
    })
    .collect();
    let observation = if mismatched.is_empty() {
        TopicObservation::Ready { partitions }
    } else {
        TopicObservation::Mismatched {
            partitions,
            reason: Reason::ReplicationFactorMismatch,
            message: mismatched.join("; "),
        }
    };
    (observation, notes)
}

/// Events for condition changes worth a human's attention: MigrationsApplied, Degraded or
/// Ready turning True (a change of status or reason). Each failed migration attempt has
/// its own Warning from the migration step.
pub(super) fn transitions(before: &[Condition], after: &[Condition]) -> Vec<Note> {
    fn find(list: &[Condition], t: ConditionType) -> Option<&Condition> {
        list.iter().find(|c| c.type_ == t.as_str())
    }
    let turned_true = |t: ConditionType| {
        let key = |c: &Condition| (c.status.clone(), c.reason.clone());
        let now = find(after, t)?;
        (find(before, t).map(key) != Some(key(now)) && now.status == "True").then_some(now)
    };
    let mut notes = Vec::new();
    if let Some(c) = turned_true(ConditionType::MigrationsApplied) {
        notes.push(Note::new(
            EventReason::MigrationSucceeded,
            c.message.clone(),
        ));
    }
    if let Some(c) = turned_true(ConditionType::Degraded) {
        notes.push(Note::new(EventReason::Degraded, c.message.clone()));
    }
    if turned_true(ConditionType::Ready).is_some() {
        notes.push(Note::new(EventReason::Ready, "all components are ready"));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Observed;
    use crate::test_support;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn deleted(mut stack: ShortenerStack, at: DateTime<Utc>) -> ShortenerStack {
        stack.metadata.deletion_timestamp = Some(Time(at));
        stack
    }

    fn with_finalizers(mut stack: ShortenerStack, finalizers: &[&str]) -> ShortenerStack {
        stack.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        stack
    }

    fn deleting_topics(mut stack: ShortenerStack, on: bool) -> ShortenerStack {
        stack.spec.kafka.delete_topic_on_delete = on;
        stack
    }

    #[test]
    fn a_deleted_stack_without_the_finalizer_is_only_forgotten() {
        let stack = deleted(deleting_topics(test_support::stack(), true), Utc::now());
        assert_eq!(lifecycle(&stack), Lifecycle::Forget);
        let other = with_finalizers(stack, &["example.com/other"]);
        assert_eq!(lifecycle(&other), Lifecycle::Forget);
    }

    #[test]
    fn a_deleted_stack_holding_the_finalizer_is_cleaned_up_at_its_index() {
        let stack = with_finalizers(test_support::stack(), &["example.com/other", FINALIZER]);
        let stack = deleted(deleting_topics(stack, true), Utc::now());
        assert_eq!(lifecycle(&stack), Lifecycle::CleanUp { finalizer: 1 });
        // Even when the spec no longer asks: the finalizer is what holds the deletion.
        let stack = deleting_topics(stack, false);
        assert_eq!(lifecycle(&stack), Lifecycle::CleanUp { finalizer: 1 });
    }

    #[test]
    fn the_finalizer_is_added_only_when_topics_are_deleted_with_the_stack() {
        let stack = test_support::stack();
        assert_eq!(
            lifecycle(&deleting_topics(stack.clone(), false)),
            Lifecycle::Apply
        );
        assert_eq!(
            lifecycle(&deleting_topics(stack.clone(), true)),
            Lifecycle::AddFinalizer
        );
        let held = with_finalizers(deleting_topics(stack, true), &[FINALIZER]);
        assert_eq!(lifecycle(&held), Lifecycle::Apply);
    }

    #[test]
    fn a_finalizer_no_longer_needed_is_removed_before_the_pass() {
        let stack = with_finalizers(test_support::stack(), &[FINALIZER]);
        let stack = deleting_topics(stack, false);
        assert_eq!(
            lifecycle(&stack),
            Lifecycle::RemoveFinalizerAndApply { finalizer: 0 }
        );
    }

    #[test]
    fn pause_needs_the_annotation_set_to_true_and_yields_to_the_finalizer() {
        let mut stack = deleting_topics(test_support::stack(), false);
        for (value, want) in [("true", Lifecycle::Pause), ("false", Lifecycle::Apply)] {
            stack
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(PAUSE_ANNOTATION.into(), value.into());
            assert_eq!(lifecycle(&stack), want, "annotation {value}");
        }
        stack
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(PAUSE_ANNOTATION.into(), "true".into());
        // The finalizer is added even while paused, so a deletion is never unseen.
        assert_eq!(
            lifecycle(&deleting_topics(stack.clone(), true)),
            Lifecycle::AddFinalizer
        );
        // Deletion runs while paused.
        let stack = with_finalizers(deleting_topics(stack, true), &[FINALIZER]);
        assert_eq!(
            lifecycle(&deleted(stack, Utc::now())),
            Lifecycle::CleanUp { finalizer: 0 }
        );
    }

    #[test]
    fn cleanup_is_overdue_only_past_the_deadline() {
        let now = Utc::now();
        let deadline = chrono::Duration::from_std(CLEANUP_DEADLINE).unwrap();
        assert!(!cleanup_overdue(&test_support::stack(), now));
        let stack = deleted(test_support::stack(), now - deadline);
        assert!(!cleanup_overdue(&stack, now));
        assert!(cleanup_overdue(&stack, now + chrono::Duration::seconds(1)));
    }

    #[test]
    fn the_spec_changed_when_the_generation_moved_past_the_observed_one() {
        let stack = test_support::stack();
        let mut status = ShortenerStackStatus::default();
        assert!(spec_changed(&stack, &status), "never observed");
        status.observed_generation = stack.metadata.generation;
        assert!(!spec_changed(&stack, &status));
        status.observed_generation = Some(0);
        assert!(spec_changed(&stack, &status));
    }

    fn live_with_replicas(replicas: Option<i32>) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas,
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn the_gate_scales_only_to_a_changed_replica_count() {
        let mut stack = test_support::stack();
        stack.spec.url_api.replicas = 3;
        let live = live_with_replicas(Some(3));
        assert_eq!(scale_during_gate(&stack, Component::UrlApi, &live), None);
        let live = live_with_replicas(Some(2));
        assert_eq!(scale_during_gate(&stack, Component::UrlApi, &live), Some(3));
        let live = live_with_replicas(None);
        assert_eq!(scale_during_gate(&stack, Component::UrlApi, &live), Some(3));
    }

    fn status_ready(ready: bool) -> ShortenerStackStatus {
        let mut status = ShortenerStackStatus::default();
        let observed = Observed::new(
            ConditionType::Ready,
            ready,
            if ready {
                Reason::AllComponentsReady
            } else {
                Reason::ComponentsNotReady
            },
            "",
        );
        status.conditions = conditions::merge(&[], &[observed], Some(1), Utc::now());
        status
    }

    #[test]
    fn a_ready_stack_requeues_late_a_pending_one_sooner() {
        let now = Utc::now();
        assert_eq!(
            requeue(&status_ready(true), &Step::Succeeded, now),
            SETTLED_REQUEUE
        );
        assert_eq!(
            requeue(&status_ready(false), &Step::Wait, now),
            PENDING_REQUEUE
        );
        assert_eq!(
            requeue(&ShortenerStackStatus::default(), &Step::Wait, now),
            PENDING_REQUEUE
        );
    }

    #[test]
    fn a_migration_backoff_requeues_at_its_retry_time_and_at_least_a_second_out() {
        let now = Utc::now();
        let soon = Step::Backoff {
            retry_at: now + chrono::Duration::seconds(12),
        };
        assert_eq!(
            requeue(&status_ready(false), &soon, now),
            Duration::from_secs(12)
        );
        let late = Step::Backoff {
            retry_at: now + chrono::Duration::seconds(600),
        };
        assert_eq!(requeue(&status_ready(false), &late, now), PENDING_REQUEUE);
        let past = Step::Backoff {
            retry_at: now - chrono::Duration::seconds(5),
        };
        assert_eq!(
            requeue(&status_ready(false), &past, now),
            Duration::from_secs(1)
        );
    }

    fn request(name: &str) -> TopicRequest {
        TopicRequest {
            name: name.into(),
            partitions: 6,
            replication_factor: 3,
            retention_ms: Some(86_400_000),
        }
    }

    fn report(outcome: TopicOutcome, replication_factor: i32) -> TopicReport {
        TopicReport {
            outcome,
            replication_factor,
            reverted: Vec::new(),
        }
    }

    #[test]
    fn unchanged_topics_are_ready_with_the_clicks_topics_partitions_and_no_event() {
        let reports = [
            (
                request("clicks"),
                report(TopicOutcome::Unchanged { partitions: 6 }, 3),
            ),
            (
                request("clicks.dlq"),
                report(TopicOutcome::Unchanged { partitions: 1 }, 3),
            ),
        ];
        assert_eq!(
            topics(&reports),
            (TopicObservation::Ready { partitions: 6 }, vec![])
        );
    }

    #[test]
    fn one_event_per_kind_of_topic_change_naming_every_topic() {
        let mut dlq = report(TopicOutcome::Created { partitions: 6 }, 3);
        dlq.reverted.push(crate::topic::ConfigReverted {
            key: "retention.ms".into(),
            found: None,
            wanted: "86400000".into(),
        });
        let reports = [
            (
                request("clicks"),
                report(TopicOutcome::PartitionsIncreased { from: 3, to: 6 }, 3),
            ),
            (request("clicks.dlq"), dlq),
        ];
        let (observation, notes) = topics(&reports);
        assert_eq!(observation, TopicObservation::Ready { partitions: 6 });
        assert_eq!(
            notes,
            vec![
                Note::new(
                    EventReason::TopicCreated,
                    "created topic clicks.dlq with 6 partitions"
                ),
                Note::new(
                    EventReason::PartitionsIncreased,
                    "topic clicks: partitions 3 -> 6"
                ),
                Note::new(
                    EventReason::TopicConfigReverted,
                    "topic clicks.dlq: retention.ms was the broker default, set back to 86400000"
                ),
            ]
        );
    }

    #[test]
    fn a_replication_factor_kafka_cannot_change_is_reported_for_each_topic() {
        let reports = [
            (
                request("clicks"),
                report(TopicOutcome::Unchanged { partitions: 6 }, 1),
            ),
            (
                request("clicks.dlq"),
                report(TopicOutcome::Unchanged { partitions: 6 }, 3),
            ),
        ];
        let (observation, notes) = topics(&reports);
        assert!(notes.is_empty());
        let TopicObservation::Mismatched {
            partitions,
            reason,
            message,
        } = observation
        else {
            panic!("expected a mismatch, got {observation:?}");
        };
        assert_eq!((partitions, reason), (6, Reason::ReplicationFactorMismatch));
        assert!(
            message.starts_with("topic clicks has replication factor 1 and the spec asks for 3")
        );
        assert!(!message.contains("clicks.dlq"), "{message}");
    }

    fn condition(type_: ConditionType, status: bool, reason: Reason, message: &str) -> Condition {
        conditions::merge(
            &[],
            &[Observed::new(type_, status, reason, message)],
            Some(1),
            Utc::now(),
        )
        .remove(0)
    }

    #[test]
    fn conditions_turning_true_publish_their_events_once() {
        let before = [
            condition(ConditionType::Ready, false, Reason::ComponentsNotReady, ""),
            condition(
                ConditionType::MigrationsApplied,
                false,
                Reason::MigrationRunning,
                "running",
            ),
            condition(ConditionType::Degraded, false, Reason::AsExpected, ""),
        ];
        let after = [
            condition(ConditionType::Ready, true, Reason::AllComponentsReady, ""),
            condition(
                ConditionType::MigrationsApplied,
                true,
                Reason::MigrationSucceeded,
                "migration 42 applied",
            ),
            condition(ConditionType::Degraded, false, Reason::AsExpected, ""),
        ];
        assert_eq!(
            transitions(&before, &after),
            vec![
                Note::new(EventReason::MigrationSucceeded, "migration 42 applied"),
                Note::new(EventReason::Ready, "all components are ready"),
            ]
        );
        assert_eq!(transitions(&after, &after), vec![]);
        // Turning False is said by the conditions, not by an Event.
        assert_eq!(transitions(&after, &before), vec![]);
    }

    #[test]
    fn a_new_degraded_reason_is_a_new_warning() {
        let stuck = condition(
            ConditionType::Degraded,
            true,
            Reason::RolloutStuck,
            "Deployment demo-url-api: ProgressDeadlineExceeded",
        );
        let failed = condition(
            ConditionType::Degraded,
            true,
            Reason::MigrationFailed,
            "Job failed",
        );
        let notes = transitions(&[], std::slice::from_ref(&stuck));
        assert_eq!(
            notes,
            vec![Note::new(
                EventReason::Degraded,
                "Deployment demo-url-api: ProgressDeadlineExceeded"
            )]
        );
        assert_eq!(
            notes[0].event().type_,
            kube::runtime::events::EventType::Warning
        );
        assert_eq!(
            transitions(&[stuck], &[failed]),
            vec![Note::new(EventReason::Degraded, "Job failed")]
        );
    }
}
