//! The reconcile's decisions that need no client: pure functions of the stack and what
//! was observed, unit-tested here without an API server.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::{CLEANUP_DEADLINE, FINALIZER, PAUSE_ANNOTATION, PENDING_REQUEUE, SETTLED_REQUEUE};
use crate::conditions::{self, ConditionType};
use crate::crd::{ShortenerStack, ShortenerStackStatus};
use crate::migration::Step;
use crate::resources::deployment::deployment_for;
use crate::resources::Component;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{Observed, Reason};
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
}
