//! The builtin autoscaler: measure, decide, and write only when something changed.
//!
//! It is driven by the stack's reconcile (see `docs/autoscaling.md`): the reconciler calls
//! [`Autoscaler::reconcile`] after applying the children and requeues the stack after the
//! returned interval. kube-runtime never runs two reconciles of one object at once, so the
//! per-stack history needs no further coordination, and a deleted or changed stack needs
//! no task bookkeeping.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use super::lag::{LagError, LagReport, LagSource};
use super::metrics::{AutoscalingMetrics, ScaleLabels, StackLabels};
use super::policy::{self, Decision, History};
use super::{keda, ScalingParams};
use crate::crd::{AutoscalingMode, ShortenerStack};
use crate::events::{EventReason, Note};
use crate::resources::{labels, Component};
use crate::topic::KafkaConnection;

#[derive(Debug, thiserror::Error)]
pub enum AutoscalingError {
    #[error("cannot measure the consumer lag: {0}")]
    Lag(#[from] LagError),
    #[error("cannot reach the stack's Kafka settings: {0}")]
    Connection(String),
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Whether the last lag measurement reached the brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerCheck {
    Reached,
    /// No broker answered; the message says what failed.
    Unreachable(String),
}

/// What one builtin pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleOutcome {
    pub report: LagReport,
    pub decision: Decision,
    /// The Deployment's scale was patched.
    pub scaled: bool,
    /// The stack's status was patched.
    pub status_written: bool,
}

#[derive(Default)]
struct StackState {
    history: History,
    /// Mode seen at the last reconcile; `None` until the first one after a start.
    mode: Option<AutoscalingMode>,
    /// No ScaledObject competes with the builtin autoscaler (checked on the first builtin
    /// reconcile after a start or a switch from keda mode, and until none is found).
    keda_clear: bool,
    /// When the lag was last measured: reconciles in between (e.g. caused by the status
    /// write itself) do not measure again.
    last_pass: Option<Instant>,
    /// What the last measurement said about the brokers (`None`: none measured).
    brokers: Option<BrokerCheck>,
}

/// Per-stack autoscaling state and the clients to act on it. One per operator process.
pub struct Autoscaler {
    client: Client,
    lag: Arc<dyn LagSource>,
    recorder: Recorder,
    metrics: AutoscalingMetrics,
    stacks: Mutex<HashMap<String, StackState>>,
}

fn key(stack: &ShortenerStack) -> String {
    format!(
        "{}/{}",
        stack.namespace().unwrap_or_default(),
        stack.name_any()
    )
}

fn stack_labels(stack: &ShortenerStack) -> StackLabels {
    StackLabels {
        namespace: stack.namespace().unwrap_or_default(),
        name: stack.name_any(),
    }
}

impl Autoscaler {
    pub fn new(client: Client, lag: Arc<dyn LagSource>, metrics: AutoscalingMetrics) -> Self {
        let reporter = Reporter {
            controller: labels::MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            lag,
            metrics,
            stacks: Mutex::new(HashMap::new()),
        }
    }

    /// One autoscaling step for `stack`, called from its reconcile once the consumer
    /// Deployment exists. Returns when the stack should be reconciled again for the next
    /// measurement (`None`: nothing periodic to do).
    ///
    /// - keda mode: applies the ScaledObject (and TriggerAuthentication); KEDA measures.
    /// - builtin mode: at most once per `intervalSeconds` (reconciles in between return
    ///   the time left), obtains the Kafka connection from `connect`, and runs
    ///   [`scale_once`](Self::scale_once). While a ScaledObject for the stack exists (left
    ///   from keda mode), it does not scale and says so in a Warning Event.
    pub async fn reconcile<F, Fut, E>(
        &self,
        stack: &ShortenerStack,
        connect: F,
    ) -> Result<Option<Duration>, AutoscalingError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<KafkaConnection, E>>,
        E: std::fmt::Display,
    {
        let autoscaling = &stack.spec.consumer.autoscaling;
        let interval =
            Duration::from_secs(u64::try_from(autoscaling.interval_seconds.max(1)).unwrap_or(15));
        match autoscaling.mode {
            AutoscalingMode::Keda => {
                keda::apply(&self.client, stack).await?;
                self.with_state(stack, |s| {
                    // A later switch back to builtin starts afresh.
                    *s = StackState {
                        mode: Some(AutoscalingMode::Keda),
                        ..StackState::default()
                    }
                });
                // KEDA measures now: no client of ours stays connected for this stack.
                self.lag.forget(&key(stack));
                Ok(None)
            }
            AutoscalingMode::Builtin => {
                let now = Instant::now();
                let (keda_clear, last_pass) = self.with_state(stack, |s| {
                    if s.mode != Some(AutoscalingMode::Builtin) {
                        s.keda_clear = false;
                        s.mode = Some(AutoscalingMode::Builtin);
                    }
                    (s.keda_clear, s.last_pass)
                });
                if let Some(last) = last_pass {
                    let next = last + interval;
                    if next > now {
                        return Ok(Some(next - now));
                    }
                }
                self.with_state(stack, |s| s.last_pass = Some(now));
                if !keda_clear {
                    let removal = keda::remove(&self.client, stack).await?;
                    if !removal.deleted.is_empty() {
                        self.event(
                            stack,
                            EventReason::KedaObjectsRemoved,
                            format!(
                                "autoscaling mode is builtin: deleted {}",
                                removal.deleted.join(", ")
                            ),
                        )
                        .await;
                    }
                    if removal.foreign_scaled_object {
                        self.warn_keda_leftover(stack).await;
                        return Ok(Some(interval));
                    }
                    self.with_state(stack, |s| s.keda_clear = true);
                }
                let connection = connect()
                    .await
                    .map_err(|e| AutoscalingError::Connection(e.to_string()))?;
                let result = self.scale_once(stack, &connection, Utc::now()).await;
                let check = match &result {
                    Err(AutoscalingError::Lag(e)) if e.unreachable() => {
                        BrokerCheck::Unreachable(e.to_string())
                    }
                    // The brokers answered (a measurement, or an unknown topic); a later
                    // Kubernetes failure says nothing about them.
                    _ => BrokerCheck::Reached,
                };
                self.with_state(stack, |s| s.brokers = Some(check));
                result?;
                Ok(Some(interval))
            }
        }
    }

    async fn event(&self, stack: &ShortenerStack, reason: EventReason, note: String) {
        let event = Note { reason, note }.event();
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            tracing::warn!(stack = %key(stack), error = %e, "cannot record an Event");
        }
    }

    async fn warn_keda_leftover(&self, stack: &ShortenerStack) {
        let note = format!(
            "ScaledObject {} still exists, so KEDA scales the consumer; the builtin autoscaler waits until it is deleted (kubectl delete scaledobject {} -n {})",
            keda::scaled_object_name(stack),
            keda::scaled_object_name(stack),
            stack.namespace().unwrap_or_default(),
        );
        tracing::warn!(stack = %key(stack), "{note}");
        self.event(stack, EventReason::KedaScaledObjectPresent, note)
            .await;
    }

    /// Measures the lag, runs the policy and, only when the replica count must change,
    /// patches the consumer Deployment's `scale` subresource once and records an Event.
    /// The status is patched (once) only when what it shows changes.
    pub async fn scale_once(
        &self,
        stack: &ShortenerStack,
        connection: &KafkaConnection,
        now: DateTime<Utc>,
    ) -> Result<ScaleOutcome, AutoscalingError> {
        let spec = &stack.spec;
        let report = self
            .lag
            .measure(
                &key(stack),
                connection,
                &spec.consumer.group_id,
                &spec.kafka.topic,
            )
            .await?;
        let ns = stack.namespace().unwrap_or_default();
        let deployment = Component::Consumer.object_name(stack);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let scale = deployments.get_scale(&deployment).await?;
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let running = scale.status.as_ref().map_or(0, |s| s.replicas);

        // The spec's count is what the Deployment builder clamps to as well; the brokers'
        // count is lower while partitions are being added.
        let partitions = if report.partitions.is_empty() {
            spec.kafka.partitions
        } else {
            report.partition_count().min(spec.kafka.partitions)
        };
        let params = ScalingParams::from_spec(stack, partitions);
        let decision = self.with_state(stack, |s| {
            policy::decide(&mut s.history, &params, now, report.total, current)
        });

        let series = stack_labels(stack);
        self.metrics.lag.get_or_create(&series).set(report.total);
        self.metrics
            .desired_replicas
            .get_or_create(&series)
            .set(i64::from(decision.desired));

        let direction = decision.direction();
        if let Some(direction) = direction {
            let patch = json!({ "spec": { "replicas": decision.desired } });
            let params = PatchParams {
                field_manager: Some(labels::MANAGER.into()),
                ..PatchParams::default()
            };
            deployments
                .patch_scale(&deployment, &params, &Patch::Merge(&patch))
                .await?;
            self.metrics
                .scale_events
                .get_or_create(&ScaleLabels {
                    namespace: series.namespace.clone(),
                    name: series.name.clone(),
                    direction: direction.as_str(),
                })
                .inc();
            tracing::info!(
                stack = %key(stack),
                from = decision.current,
                to = decision.desired,
                lag = report.total,
                reason = %decision.reason,
                "scaled the consumer"
            );
        }

        let status_written = self
            .write_status(stack, &decision, running, direction.is_some(), now)
            .await?;

        if direction.is_some() {
            let event = Event {
                type_: EventType::Normal,
                reason: decision.reason.name().into(),
                note: Some(decision.reason.to_string()),
                action: "ScaleConsumer".into(),
                secondary: None,
            };
            // The scale already happened; a lost Event must not fail the reconcile.
            if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
                tracing::warn!(stack = %key(stack), error = %e, "cannot record the scaling Event");
            }
        }

        Ok(ScaleOutcome {
            report,
            decision,
            scaled: direction.is_some(),
            status_written,
        })
    }

    /// Patches `status.lastMeasuredLag` and `status.consumer.{desired,current}Replicas`
    /// (plus `lastScaleTime`/`lastScaleReason` after a scale) when they differ from what the
    /// stack shows. A merge patch, so the reconciler's other status fields stay untouched.
    async fn write_status(
        &self,
        stack: &ShortenerStack,
        decision: &Decision,
        running: i32,
        scaled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, kube::Error> {
        let status = stack.status.clone().unwrap_or_default();
        let unchanged = status.last_measured_lag == Some(decision.lag)
            && status.consumer.desired_replicas == decision.desired
            && status.consumer.current_replicas == running;
        if unchanged && !scaled {
            return Ok(false);
        }
        let mut consumer = json!({
            "desiredReplicas": decision.desired,
            "currentReplicas": running,
        });
        if scaled {
            consumer["lastScaleTime"] = json!(now.to_rfc3339_opts(SecondsFormat::Secs, true));
            consumer["lastScaleReason"] = json!(decision.reason.to_string());
        }
        let patch = json!({
            "status": {
                "lastMeasuredLag": decision.lag,
                "consumer": consumer,
            }
        });
        let api: Api<ShortenerStack> =
            Api::namespaced(self.client.clone(), &stack.namespace().unwrap_or_default());
        api.patch_status(
            &stack.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(true)
    }

    /// Drops the state and metric series of a deleted stack.
    pub fn forget(&self, stack: &ShortenerStack) {
        self.stacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(stack));
        self.lag.forget(&key(stack));
        self.metrics.forget(&stack_labels(stack));
    }

    /// What the last lag measurement of `stack` said about its brokers (`None`: not
    /// measured since the start or a switch to keda mode, where KEDA measures).
    pub fn broker_check(&self, stack: &ShortenerStack) -> Option<BrokerCheck> {
        self.with_state(stack, |s| s.brokers.clone())
    }

    /// The recommendation history kept for `stack` (for inspection and tests).
    pub fn history(&self, stack: &ShortenerStack) -> History {
        self.with_state(stack, |s| s.history.clone())
    }

    fn with_state<T>(&self, stack: &ShortenerStack, f: impl FnOnce(&mut StackState) -> T) -> T {
        let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        f(stacks.entry(key(stack)).or_default())
    }
}
