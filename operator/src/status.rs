//! The stack's status, computed from what the reconciler observed: the topic, the
//! migration Job and the Deployments. Pure, so every branch is unit-tested.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;

use crate::autoscaling::BrokerCheck;
use crate::conditions::{self, ConditionType, Observed, Reason};
use crate::crd::{ComponentStatus, ConsumerStatus, ShortenerStack, ShortenerStackStatus};
use crate::migration::{Step, MAX_ATTEMPTS, RETRY_ANNOTATION};
use crate::resources::migration_job::migration_version;
use crate::resources::Component;
use crate::scaling;

/// The topics as the last `TopicManager::ensure` left them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicObservation {
    Ready {
        partitions: i32,
    },
    /// The topics exist and serve, but differ from the spec in a way the operator cannot
    /// change in place (the replication factor).
    Mismatched {
        partitions: i32,
        reason: Reason,
        message: String,
    },
    Failed {
        reason: Reason,
        message: String,
    },
}

/// The migration gate as `crate::migration::decide` left it this pass.
pub type MigrationObservation = crate::migration::Decision;

/// Live Deployments by component (`None`: not created yet).
pub type DeploymentObservation = BTreeMap<Component, Option<Deployment>>;

/// Whether a Deployment has rolled out its current spec and all its pods are ready.
fn rolled_out(deployment: &Deployment) -> bool {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return false;
    };
    let observed_current_spec = status.observed_generation >= deployment.metadata.generation;
    observed_current_spec
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) == desired
}

/// Why the Deployment controller says a rollout cannot finish: its `Progressing`
/// condition turned False (`ProgressDeadlineExceeded`: pods that never become ready, such
/// as an image that cannot be pulled or a crash loop), or `ReplicaFailure` is True (pods
/// cannot be created, e.g. a quota).
pub fn stuck(deployment: &Deployment) -> Option<String> {
    let conditions = deployment.status.as_ref()?.conditions.as_deref()?;
    let observed_current_spec =
        deployment.status.as_ref()?.observed_generation >= deployment.metadata.generation;
    conditions
        .iter()
        .find(|c| {
            (c.type_ == "Progressing" && c.status == "False" && observed_current_spec)
                || (c.type_ == "ReplicaFailure" && c.status == "True")
        })
        .map(|c| {
            format!(
                "Deployment {}: {} ({})",
                deployment.metadata.name.as_deref().unwrap_or_default(),
                c.reason.as_deref().unwrap_or(c.type_.as_str()),
                c.message.as_deref().unwrap_or("no message")
            )
        })
}

fn ready_replicas(deployment: Option<&Deployment>) -> i32 {
    deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// `KafkaReachable` from what topic management and the last lag measurement (builtin
/// autoscaling) saw: False when either found no broker answering, True when one reached
/// them, absent when neither tried (credentials not usable, topics owned elsewhere, KEDA
/// measuring).
fn kafka_reachable(topic: &TopicObservation, lag: Option<&BrokerCheck>) -> Option<Observed> {
    let topic_check = match topic {
        TopicObservation::Ready { .. } | TopicObservation::Mismatched { .. } => {
            Some(BrokerCheck::Reached)
        }
        TopicObservation::Failed { reason, message } if *reason == Reason::BrokerUnreachable => {
            Some(BrokerCheck::Unreachable(message.clone()))
        }
        TopicObservation::Failed { reason, .. }
            if [Reason::PartitionDecreaseRefused, Reason::AdminRequestFailed].contains(reason) =>
        {
            Some(BrokerCheck::Reached)
        }
        TopicObservation::Failed { .. } => None,
    };
    let checks = [
        ("topic management", topic_check.as_ref()),
        ("lag measurement", lag),
    ];
    let failures: Vec<String> = checks
        .iter()
        .filter_map(|(what, check)| match check {
            Some(BrokerCheck::Unreachable(message)) => Some(format!("{what}: {message}")),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        return Some(Observed::new(
            ConditionType::KafkaReachable,
            false,
            Reason::BrokerUnreachable,
            failures.join("; "),
        ));
    }
    let reached: Vec<&str> = checks
        .iter()
        .filter(|(_, check)| check.is_some())
        .map(|(what, _)| *what)
        .collect();
    (!reached.is_empty()).then(|| {
        Observed::new(
            ConditionType::KafkaReachable,
            true,
            Reason::BrokersAnswered,
            format!("the brokers answered {}", reached.join(" and ")),
        )
    })
}

pub fn compute(
    stack: &ShortenerStack,
    topic: &TopicObservation,
    migration: &MigrationObservation,
    deployments: &DeploymentObservation,
    lag: Option<&BrokerCheck>,
    now: DateTime<Utc>,
) -> ShortenerStackStatus {
    let previous = stack.status.clone().unwrap_or_default();
    let generation = stack.metadata.generation;
    let version = migration_version();

    let topic_condition = match topic {
        TopicObservation::Ready { partitions } => Observed::new(
            ConditionType::TopicReady,
            true,
            Reason::TopicReady,
            format!(
                "topic {} has {partitions} partitions",
                stack.spec.kafka.topic
            ),
        ),
        TopicObservation::Failed { reason, message }
        | TopicObservation::Mismatched {
            reason, message, ..
        } => Observed::new(ConditionType::TopicReady, false, *reason, message.clone()),
    };

    let job = migration.status.job.clone().unwrap_or_default();
    let attempts = migration.status.attempts;
    let failure_text = |f: &crate::crd::MigrationFailure| {
        format!("Job {} failed ({}): {}", f.job, f.reason, f.message)
    };
    let migration_succeeded = migration.step == Step::Succeeded;
    let migration_running = matches!(migration.step, Step::Wait | Step::Create { .. });
    let migration_condition = match (&migration.step, &migration.status.failure) {
        (Step::Succeeded, _) => Observed::new(
            ConditionType::MigrationsApplied,
            true,
            Reason::MigrationSucceeded,
            format!("database is at migration {version} (Job {job})"),
        ),
        (Step::Backoff { retry_at }, Some(f)) => Observed::new(
            ConditionType::MigrationsApplied,
            false,
            Reason::MigrationFailed,
            format!(
                "{}; attempt {} of {MAX_ATTEMPTS} starts at {}",
                failure_text(f),
                attempts + 1,
                retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        (Step::GaveUp, Some(f)) => Observed::new(
            ConditionType::MigrationsApplied,
            false,
            Reason::MigrationFailed,
            format!(
                "{}; gave up after {attempts} attempts: set the annotation {RETRY_ANNOTATION} to a new value to retry",
                failure_text(f)
            ),
        ),
        _ => Observed::new(
            ConditionType::MigrationsApplied,
            false,
            Reason::MigrationRunning,
            format!("Job {job} is applying migration {version} (attempt {attempts} of {MAX_ATTEMPTS})"),
        ),
    };

    let mut degraded = Vec::new();
    if let (Step::Backoff { .. } | Step::GaveUp, Some(f)) =
        (&migration.step, &migration.status.failure)
    {
        degraded.push((
            Reason::MigrationFailed,
            format!(
                "migration {}; Deployments keep their current version until a migration succeeds",
                failure_text(f)
            ),
        ));
    }
    if let TopicObservation::Failed { reason, message }
    | TopicObservation::Mismatched {
        reason, message, ..
    } = topic
    {
        degraded.push((*reason, message.clone()));
    }
    let stuck_rollouts: Vec<String> = deployments.values().flatten().filter_map(stuck).collect();
    if !stuck_rollouts.is_empty() {
        degraded.push((Reason::RolloutStuck, stuck_rollouts.join("; ")));
    }
    let degraded_condition = match degraded.first() {
        Some((reason, _)) => Observed::new(
            ConditionType::Degraded,
            true,
            *reason,
            degraded
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => Observed::new(
            ConditionType::Degraded,
            false,
            Reason::AsExpected,
            "no failures",
        ),
    };

    let waiting: Vec<String> = Component::ALL
        .iter()
        .filter(|c| {
            !deployments
                .get(c)
                .and_then(|d| d.as_ref())
                .is_some_and(rolled_out)
        })
        .map(|c| c.object_name(stack))
        .collect();
    let progressing_condition = if migration_running {
        Observed::new(
            ConditionType::Progressing,
            true,
            Reason::MigrationRunning,
            format!("waiting for Job {job}"),
        )
    } else if let Step::Backoff { retry_at } = &migration.step {
        Observed::new(
            ConditionType::Progressing,
            true,
            Reason::MigrationRetrying,
            format!(
                "next migration attempt at {}",
                retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )
    } else if !stuck_rollouts.is_empty() {
        Observed::new(
            ConditionType::Progressing,
            false,
            Reason::RolloutStuck,
            stuck_rollouts.join("; "),
        )
    } else if migration_succeeded && !waiting.is_empty() {
        Observed::new(
            ConditionType::Progressing,
            true,
            Reason::RollingOut,
            format!("waiting for {}", waiting.join(", ")),
        )
    } else {
        Observed::new(
            ConditionType::Progressing,
            false,
            Reason::Settled,
            "nothing in progress",
        )
    };

    let ready = degraded.is_empty()
        && migration_succeeded
        && matches!(topic, TopicObservation::Ready { .. })
        && waiting.is_empty();
    let ready_condition = if ready {
        Observed::new(
            ConditionType::Ready,
            true,
            Reason::AllComponentsReady,
            "all components are ready",
        )
    } else {
        let reason = if !degraded.is_empty() {
            Reason::Degraded
        } else if migration_running {
            Reason::MigrationRunning
        } else {
            Reason::ComponentsNotReady
        };
        let mut missing = waiting.clone();
        if !matches!(topic, TopicObservation::Ready { .. }) {
            missing.push(format!("topic {}", stack.spec.kafka.topic));
        }
        if !migration_succeeded {
            missing.push(format!("migration Job {job}"));
        }
        Observed::new(
            ConditionType::Ready,
            false,
            reason,
            format!("not ready: {}", missing.join(", ")),
        )
    };

    let consumer = deployments
        .get(&Component::Consumer)
        .and_then(|d| d.as_ref());
    let current_consumers = consumer
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    ShortenerStackStatus {
        conditions: conditions::merge(
            &previous.conditions,
            &[
                ready_condition,
                progressing_condition,
                degraded_condition,
                migration_condition,
                topic_condition,
            ]
            .into_iter()
            .chain(kafka_reachable(topic, lag))
            .collect::<Vec<_>>(),
            generation,
            now,
        ),
        observed_generation: generation,
        url_api: ComponentStatus {
            ready_replicas: ready_replicas(
                deployments.get(&Component::UrlApi).and_then(|d| d.as_ref()),
            ),
        },
        analytics_rpc: ComponentStatus {
            ready_replicas: ready_replicas(
                deployments
                    .get(&Component::AnalyticsRpc)
                    .and_then(|d| d.as_ref()),
            ),
        },
        consumer: ConsumerStatus {
            ready_replicas: ready_replicas(consumer),
            current_replicas: current_consumers,
            // KEDA mode: what KEDA's HPA declared on the Deployment.
            desired_replicas: scaling::desired_consumer_replicas(stack).unwrap_or_else(|| {
                consumer
                    .and_then(|d| d.spec.as_ref())
                    .and_then(|s| s.replicas)
                    .unwrap_or(current_consumers)
            }),
            // Written by the builtin autoscaler (`autoscaling::scaler`); kept as they are.
            last_scale_time: previous.consumer.last_scale_time.clone(),
            last_scale_reason: previous.consumer.last_scale_reason.clone(),
            // Observed by the reconciler before this computation (KEDA mode only).
            keda_hpa: match stack.spec.consumer.autoscaling.mode {
                crate::crd::AutoscalingMode::Keda => previous.consumer.keda_hpa.clone(),
                crate::crd::AutoscalingMode::Builtin => None,
            },
        },
        last_measured_lag: previous.last_measured_lag,
        applied_migration_version: if migration_succeeded {
            Some(version)
        } else {
            previous.applied_migration_version
        },
        migration: Some(migration.status.clone()),
        topic_partitions: match topic {
            TopicObservation::Ready { partitions }
            | TopicObservation::Mismatched { partitions, .. } => Some(*partitions),
            TopicObservation::Failed { .. } => previous.topic_partitions,
        },
    }
}

/// The status after a pass that failed part-way (an API error on a child): Ready and
/// Degraded say so, the other conditions and fields keep what the last complete pass saw
/// (they were not observed again).
pub fn failed_pass(
    stack: &ShortenerStack,
    error: &str,
    now: DateTime<Utc>,
) -> ShortenerStackStatus {
    let previous = stack.status.clone().unwrap_or_default();
    let mut observed: Vec<Observed> = previous
        .conditions
        .iter()
        .filter(|c| {
            c.type_ != ConditionType::Ready.as_str() && c.type_ != ConditionType::Degraded.as_str()
        })
        .filter_map(Observed::from_stored)
        .collect();
    observed.insert(
        0,
        Observed::new(
            ConditionType::Ready,
            false,
            Reason::ReconcileError,
            format!("the last reconcile failed: {error}"),
        ),
    );
    observed.insert(
        2.min(observed.len()),
        Observed::new(
            ConditionType::Degraded,
            true,
            Reason::ReconcileError,
            error.to_string(),
        ),
    );
    let merged = conditions::merge(
        &previous.conditions,
        &observed,
        stack.metadata.generation,
        now,
    );
    ShortenerStackStatus {
        conditions: merged,
        ..previous
    }
}

/// The status while reconciliation is paused: what the last pass saw, plus
/// `ReconciliationPaused=True`.
pub fn paused(stack: &ShortenerStack, now: DateTime<Utc>) -> ShortenerStackStatus {
    let previous = stack.status.clone().unwrap_or_default();
    let mut observed: Vec<Observed> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != ConditionType::ReconciliationPaused.as_str())
        .filter_map(Observed::from_stored)
        .collect();
    observed.push(Observed::new(
        ConditionType::ReconciliationPaused,
        true,
        Reason::PauseAnnotation,
        format!(
            "the annotation {} is \"true\": nothing is applied until it is removed",
            crate::reconcile::PAUSE_ANNOTATION
        ),
    ));
    // Conditions the last pass wrote keep their observedGeneration: they describe it.
    let mut merged = conditions::merge(
        &previous.conditions,
        &observed,
        stack.metadata.generation,
        now,
    );
    for c in merged.iter_mut() {
        if let Some(p) = previous.conditions.iter().find(|p| p.type_ == c.type_) {
            c.observed_generation = p.observed_generation;
        }
    }
    ShortenerStackStatus {
        conditions: merged,
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::deployment::deployment_for;
    use crate::resources::migration_job::JobOutcome;
    use crate::test_support::stack;
    use chrono::TimeZone;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn ready_deployment(s: &ShortenerStack, c: Component) -> Deployment {
        let mut d = deployment_for(s, c);
        d.metadata.generation = Some(2);
        let replicas = d.spec.as_ref().unwrap().replicas.unwrap();
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            ..DeploymentStatus::default()
        });
        d
    }

    fn all_ready(s: &ShortenerStack) -> DeploymentObservation {
        Component::ALL
            .iter()
            .map(|c| (*c, Some(ready_deployment(s, *c))))
            .collect()
    }

    fn condition<'a>(
        status: &'a ShortenerStackStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn migration(outcome: JobOutcome) -> MigrationObservation {
        use crate::crd::{MigrationFailure, MigrationStatus};
        use crate::migration::{Decision, Step};
        let job = "demo-migrate-1-abcdef12".to_string();
        let mut status = MigrationStatus {
            target: "1-abcdef12".into(),
            attempts: 1,
            job: Some(job.clone()),
            ..MigrationStatus::default()
        };
        let step = match outcome {
            JobOutcome::Succeeded => {
                status.succeeded = true;
                Step::Succeeded
            }
            JobOutcome::Running => Step::Wait,
            JobOutcome::Failed { reason, message } => {
                status.attempts = crate::migration::MAX_ATTEMPTS;
                status.failure = Some(MigrationFailure {
                    job,
                    reason,
                    message,
                    time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()),
                });
                Step::GaveUp
            }
        };
        Decision {
            status,
            step,
            new_failure: None,
        }
    }

    #[test]
    fn everything_ready() {
        let s = stack();
        let status = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Succeeded),
            &all_ready(&s),
            None,
            now(),
        );
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Progressing").status, "False");
        assert_eq!(condition(&status, "Degraded").status, "False");
        assert_eq!(condition(&status, "MigrationsApplied").status, "True");
        assert_eq!(condition(&status, "TopicReady").status, "True");
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.url_api.ready_replicas, 2);
        assert_eq!(status.analytics_rpc.ready_replicas, 2);
        assert_eq!(status.consumer.current_replicas, 1);
        assert_eq!(status.consumer.desired_replicas, 1);
        assert_eq!(status.applied_migration_version, Some(migration_version()));
        assert_eq!(status.topic_partitions, Some(4));
        assert!(status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn running_migration_is_progressing_not_degraded() {
        let s = stack();
        let none: DeploymentObservation = Component::ALL.iter().map(|c| (*c, None)).collect();
        let status = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Running),
            &none,
            None,
            now(),
        );
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(condition(&status, "Ready").reason, "MigrationRunning");
        let p = condition(&status, "Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "MigrationRunning")
        );
        assert_eq!(condition(&status, "Degraded").status, "False");
        assert_eq!(
            condition(&status, "MigrationsApplied").reason,
            "MigrationRunning"
        );
        assert_eq!(status.applied_migration_version, None);
    }

    #[test]
    fn failed_migration_is_degraded_with_the_job_message() {
        let s = stack();
        let status = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            }),
            &all_ready(&s),
            None,
            now(),
        );
        let d = condition(&status, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "MigrationFailed")
        );
        assert!(d.message.contains("BackoffLimitExceeded"), "{}", d.message);
        assert!(d.message.contains("backoff limit"));
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(condition(&status, "Progressing").status, "False");
    }

    #[test]
    fn topic_failure_is_degraded_and_keeps_last_partitions() {
        let mut s = stack();
        s.status = Some(ShortenerStackStatus {
            topic_partitions: Some(8),
            ..ShortenerStackStatus::default()
        });
        let status = compute(
            &s,
            &TopicObservation::Failed {
                reason: Reason::PartitionDecreaseRefused,
                message: "topic clicks has 8 partitions".into(),
            },
            &migration(JobOutcome::Succeeded),
            &all_ready(&s),
            None,
            now(),
        );
        assert_eq!(condition(&status, "TopicReady").status, "False");
        assert_eq!(
            condition(&status, "Degraded").reason,
            "PartitionDecreaseRefused"
        );
        assert_eq!(status.topic_partitions, Some(8));
    }

    #[test]
    fn unrolled_deployment_is_progressing() {
        let s = stack();
        let mut deployments = all_ready(&s);
        let d = deployments
            .get_mut(&Component::UrlApi)
            .unwrap()
            .as_mut()
            .unwrap();
        d.metadata.generation = Some(3);
        let status = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Succeeded),
            &deployments,
            None,
            now(),
        );
        let p = condition(&status, "Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "RollingOut")
        );
        assert!(p.message.contains("demo-url-api"));
        assert_eq!(condition(&status, "Ready").reason, "ComponentsNotReady");
    }

    #[test]
    fn recomputing_a_settled_status_gives_the_same_status() {
        let mut s = stack();
        let first = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Succeeded),
            &all_ready(&s),
            None,
            now(),
        );
        s.status = Some(first.clone());
        let later = now() + chrono::Duration::minutes(5);
        let second = compute(
            &s,
            &TopicObservation::Ready { partitions: 4 },
            &migration(JobOutcome::Succeeded),
            &all_ready(&s),
            None,
            later,
        );
        assert_eq!(first, second);
    }

    #[test]
    fn kafka_reachable_follows_topic_management_and_the_lag_measurement() {
        let s = stack();
        let with = |topic: TopicObservation, lag: Option<BrokerCheck>| {
            let status = compute(
                &s,
                &topic,
                &migration(JobOutcome::Succeeded),
                &all_ready(&s),
                lag.as_ref(),
                now(),
            );
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "KafkaReachable")
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        };
        let ready = || TopicObservation::Ready { partitions: 4 };
        let (status, reason, message) = with(ready(), Some(BrokerCheck::Reached)).unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "BrokersAnswered")
        );
        assert_eq!(
            message,
            "the brokers answered topic management and lag measurement"
        );

        let (status, reason, message) = with(
            ready(),
            Some(BrokerCheck::Unreachable("measuring timed out".into())),
        )
        .unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BrokerUnreachable")
        );
        assert_eq!(message, "lag measurement: measuring timed out");

        let unreachable = TopicObservation::Failed {
            reason: Reason::BrokerUnreachable,
            message: "describe timed out".into(),
        };
        let (status, _, message) = with(unreachable, None).unwrap();
        assert_eq!(status, "False");
        assert_eq!(message, "topic management: describe timed out");

        // Nothing tried (credentials not usable): no claim either way.
        let not_tried = TopicObservation::Failed {
            reason: Reason::SecretNotOptedIn,
            message: "label it".into(),
        };
        assert_eq!(with(not_tried, None), None);
    }
}
