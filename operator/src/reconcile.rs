//! One reconciliation of a ShortenerStack.
//!
//! Order: finalizer → topics → ConfigMaps → Services → migration Job → Deployments (only
//! once the Job succeeded) → status.
//!
//! Zero writes when nothing changed, drift reverted within one pass: every child is built
//! by a pure function and stamped with a hash of itself (`DESIRED_HASH_ANNOTATION`). The
//! reconciler reads the live child and applies when it is missing, when the live hash
//! differs (the desired object changed), or when a field the operator sets differs on the
//! live object (`drift`: a hand-edited image, securityContext or ConfigMap entry). A
//! settled stack therefore costs one GET per child and no PATCH. Every apply is a forced
//! server-side apply under the fixed field manager `shortener-operator`, so fields that
//! others own (e.g. KEDA's replicas) are left alone, and fields a hand edit added beside
//! the operator's stay (the operator does not own them).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shortener_common::kafka::KafkaArgs;
use tracing::{info, warn};

use crate::autoscaling::{keda, Autoscaler};
use crate::conditions::{self, ConditionType, Reason};
use crate::crd::AutoscalingMode;
use crate::crd::ShortenerStack;
use crate::drift;
use crate::error::Error;
use crate::kafka_credentials;
use crate::metrics::Metrics;
use crate::migration::{self, JobSeen, Step};
use crate::resources::configmap::config_map_for;
use crate::resources::deployment::{deployment_for, deployment_with_secrets, SecretVersions};
use crate::resources::env::referenced_secret_names;
use crate::resources::hash::{desired_hash_of, with_desired_hash};
use crate::resources::labels;
use crate::resources::migration_job::{
    job_finished_at, job_outcome, migration_job_for, migration_version, JobOutcome,
};
use crate::resources::network_policy::network_policy_for;
use crate::resources::pdb::pdb_for;
use crate::resources::pod_monitor::{pod_monitor_for, PodMonitor};
use crate::resources::service::service_for;
use crate::resources::Component;
use crate::status::{self, DeploymentObservation, MigrationObservation, TopicObservation};
use crate::topic::{
    ownership, KafkaConnection, TopicAdmin, TopicError, TopicManager, TopicOutcome, TopicRequest,
};

/// Finalizer that holds a deleted stack until its Kafka topics are dealt with.
pub const FINALIZER: &str = "shortener.example.io/kafka-topics";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "shortener-operator";

/// Requeue of a settled stack: catches changes made behind the operator's back on the
/// brokers (topic deleted, partitions changed).
const SETTLED_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue while something is pending that no watch reports (a broker coming back).
const PENDING_REQUEUE: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub topics: Arc<dyn TopicManager>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Lag-based consumer autoscaling; `None` leaves the consumer's replicas to the spec
    /// bounds (the controller sets it, see `docs/autoscaling.md`).
    pub autoscaler: Option<Autoscaler>,
    /// The watched ShortenerStacks as the controller's reflector holds them (topic
    /// ownership between stacks reads them here, costing no request).
    pub stacks: Store<ShortenerStack>,
    /// Consecutive failures per stack, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// One Kafka admin client per stack, reused across passes while the connection
    /// settings (Secret material included, by fingerprint) stay the same.
    admins: Mutex<HashMap<String, CachedAdmin>>,
    /// Stacks whose PodMonitors the cluster could not take (no CRD), so the Warning Event
    /// goes out when that starts, not on every pass.
    pod_monitors_unavailable: Mutex<HashSet<String>>,
}

/// An admin client and the fingerprint of the settings it was built with.
type CachedAdmin = (String, Arc<dyn TopicAdmin>);

impl Context {
    pub fn new(client: Client, topics: Arc<dyn TopicManager>, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            topics,
            metrics,
            autoscaler: None,
            stacks: stack_store(std::iter::empty()),
            failures: Mutex::default(),
            admins: Mutex::default(),
            pod_monitors_unavailable: Mutex::default(),
        }
    }

    /// The stack's admin client: the cached one while `connection` is unchanged, else a
    /// new one (the old one is dropped, closing its connections).
    fn topic_admin(
        &self,
        stack: &ShortenerStack,
        connection: &KafkaConnection,
    ) -> Result<Arc<dyn TopicAdmin>, TopicError> {
        let key = Self::key(stack);
        let fingerprint = connection.fingerprint();
        let mut admins = self.admins.lock().expect("admins lock");
        if let Some((known, admin)) = admins.get(&key) {
            if *known == fingerprint {
                return Ok(admin.clone());
            }
        }
        let admin = self.topics.connect(connection)?;
        admins.insert(key, (fingerprint, admin.clone()));
        Ok(admin)
    }

    /// Drops a deleted stack's admin client (and what was remembered about it).
    fn forget_stack(&self, stack: &ShortenerStack) {
        self.admins
            .lock()
            .expect("admins lock")
            .remove(&Self::key(stack));
        self.pod_monitors_available(stack, true);
    }

    /// Records whether the cluster took the stack's PodMonitors; true when they just
    /// became unavailable (the moment to say so).
    fn pod_monitors_available(&self, stack: &ShortenerStack, available: bool) -> bool {
        let mut unavailable = self
            .pod_monitors_unavailable
            .lock()
            .expect("pod monitor lock");
        if available {
            unavailable.remove(&Self::key(stack));
            false
        } else {
            unavailable.insert(Self::key(stack))
        }
    }

    fn key(stack: &ShortenerStack) -> String {
        format!(
            "{}/{}",
            stack.namespace().unwrap_or_default(),
            stack.name_any()
        )
    }

    /// Backoff for the next retry after a failure: 5 s, 10 s, 20 s … capped at 5 min.
    fn next_backoff(&self, stack: &ShortenerStack) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(Self::key(stack)).or_insert(0);
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(16);
        MIN_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
    }

    fn reset_backoff(&self, stack: &ShortenerStack) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&Self::key(stack));
    }

    /// Publishes an event on the stack. Events are informational: a failure is logged,
    /// never fails the reconcile.
    async fn event(
        &self,
        stack: &ShortenerStack,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// Entry point for the controller.
#[tracing::instrument(skip_all, fields(name = %stack.name_any(), namespace = %stack.namespace().unwrap_or_default()))]
pub async fn reconcile(stack: Arc<ShortenerStack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(stack.clone(), &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err().map(Error::kind));
    if result.is_ok() {
        ctx.reset_backoff(&stack);
    }
    result
}

/// Annotation that stops reconciliation while it is `"true"` (Strimzi's idiom): nothing is
/// applied, the status says `ReconciliationPaused`; deletion still runs.
pub const PAUSE_ANNOTATION: &str = "shortener.example.io/pause-reconciliation";

fn paused(stack: &ShortenerStack) -> bool {
    stack
        .annotations()
        .get(PAUSE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// How long deletion waits for the topics to be deleted before it gives up on them (the
/// brokers or their credentials may be gone for good: namespace deletion, `helm uninstall`).
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(300);

/// Whether deleting the stack has anything to do beyond garbage collection.
fn needs_finalizer(stack: &ShortenerStack) -> bool {
    stack.spec.kafka.delete_topic_on_delete
}

async fn reconcile_inner(stack: Arc<ShortenerStack>, ctx: &Context) -> Result<Action, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
    let index = stack.finalizers().iter().position(|f| f == FINALIZER);
    let result = match (stack.metadata.deletion_timestamp.is_some(), index) {
        (true, None) => {
            if let Some(autoscaler) = &ctx.autoscaler {
                autoscaler.forget(&stack);
            }
            ctx.forget_stack(&stack);
            return Ok(Action::await_change());
        }
        (true, Some(i)) => match cleanup(&stack, ctx).await {
            Ok(action) => {
                remove_finalizer(&api, &stack, i).await?;
                Ok(action)
            }
            Err(e) => Err(e),
        },
        (false, None) if needs_finalizer(&stack) => {
            // Added before anything is created, so nothing outlives a deletion unseen; the
            // patch brings the stack back with it.
            add_finalizer(&api, &stack).await?;
            return Ok(Action::await_change());
        }
        (false, Some(i)) if !needs_finalizer(&stack) => {
            // Nothing to clean up any more (deleteTopicOnDelete turned off).
            remove_finalizer(&api, &stack, i).await?;
            apply(&stack, ctx).await
        }
        (false, _) if paused(&stack) => pause(&stack, ctx).await,
        (false, _) => apply(&stack, ctx).await,
    };
    if let Err(error) = &result {
        record_failure(&stack, ctx, error).await;
    }
    result
}

/// Paused: only the status is written (once), and no requeue: removing the annotation is
/// a change that brings the stack back.
async fn pause(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    let status = status::paused(stack, Utc::now());
    if stack.status.as_ref() != Some(&status) {
        info!("reconciliation paused by annotation");
        let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
        let api: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": ShortenerStack::api_version(&()),
            "kind": ShortenerStack::kind(&()),
            "status": status,
        });
        api.patch_status(&stack.name_any(), &apply_params(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// JSON patch that adds the finalizer, testing the list it saw (Kubernetes does not
/// deduplicate finalizers).
async fn add_finalizer(api: &Api<ShortenerStack>, stack: &ShortenerStack) -> Result<(), Error> {
    let patch = if stack.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": stack.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a valid JSON patch");
    api.patch(
        &stack.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

/// JSON patch that removes the finalizer at `index`, testing it is still ours there.
async fn remove_finalizer(
    api: &Api<ShortenerStack>,
    stack: &ShortenerStack,
    index: usize,
) -> Result<(), Error> {
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .expect("a valid JSON patch");
    api.patch(
        &stack.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

/// Writes the failed pass into the status (Ready=False, Degraded=True with the error), so
/// an old Ready=True does not outlive a pass that could not check it. Best effort: the
/// error is what the controller retries on.
async fn record_failure(stack: &ShortenerStack, ctx: &Context, error: &Error) {
    if stack.metadata.deletion_timestamp.is_some() {
        return;
    }
    let Some(ns) = stack.namespace() else { return };
    let status = status::failed_pass(stack, &error.to_string(), Utc::now());
    if stack.status.as_ref() == Some(&status) {
        return;
    }
    let api: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": ShortenerStack::api_version(&()),
        "kind": ShortenerStack::kind(&()),
        "status": status,
    });
    if let Err(e) = api
        .patch_status(&stack.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
    {
        warn!(error = %e, "cannot record the failed reconcile in the status");
    }
}

/// Retry after an error, with per-stack exponential backoff.
pub fn error_policy(stack: Arc<ShortenerStack>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&stack);
    warn!(name = %stack.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Applied {
    Created,
    Updated,
    /// The desired object was unchanged but these live fields had drifted; applied back.
    Reverted(Vec<String>),
    Unchanged,
}

/// Reads the live child and server-side applies `desired` when it is missing, its hash
/// changed, or the live object drifted from it. Returns the live object after the call.
async fn apply_child<K>(api: &Api<K>, desired: K) -> Result<(K, Applied), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let desired = with_desired_hash(desired);
    let name = desired.name_any();
    let outcome = match api.get_opt(&name).await? {
        None => Applied::Created,
        Some(live) if desired_hash_of(&live) != desired_hash_of(&desired) => Applied::Updated,
        Some(live) => {
            let drift = drift::drifted(
                &serde_json::to_value(&desired).expect("objects serialize"),
                &serde_json::to_value(&live).expect("objects serialize"),
            );
            if drift.is_empty() {
                return Ok((live, Applied::Unchanged));
            }
            Applied::Reverted(drift)
        }
    };
    let applied = api
        .patch(&name, &apply_params(), &Patch::Apply(&desired))
        .await?;
    Ok((applied, outcome))
}

/// Creates `desired` if it is missing; leaves a live object as it is.
async fn create_child<K>(api: &Api<K>, desired: K) -> Result<(K, Applied), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let desired = with_desired_hash(desired);
    if let Some(live) = api.get_opt(&desired.name_any()).await? {
        return Ok((live, Applied::Unchanged));
    }
    let applied = api
        .patch(
            &desired.name_any(),
            &apply_params(),
            &Patch::Apply(&desired),
        )
        .await?;
    Ok((applied, Applied::Created))
}

/// What a pass created and reverted, for its `Created` and `DriftReverted` events.
#[derive(Default)]
struct Changes {
    /// `Kind name` of each child created.
    created: Vec<String>,
    /// [`drift_note`] of each child whose hand edits were applied back.
    reverted: Vec<String>,
}

impl Changes {
    fn note<K: Resource<DynamicType = ()>>(&mut self, live: &K, applied: Applied) {
        match applied {
            Applied::Created => self.created.push(format!(
                "{} {}",
                K::kind(&()),
                live.meta().name.as_deref().unwrap_or_default()
            )),
            Applied::Reverted(fields) => self.reverted.push(drift_note(live, &fields)),
            Applied::Updated | Applied::Unchanged => {}
        }
    }
}

/// An optional child: applied when the spec asks for it, deleted (if this stack owns it)
/// when the spec turned it off; looked for only when the spec changed.
async fn apply_or_delete_child<K>(
    api: &Api<K>,
    desired: Option<K>,
    name: &str,
    stack: &ShortenerStack,
    spec_changed: bool,
    changes: &mut Changes,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    match desired {
        Some(desired) => {
            let (live, applied) = apply_child(api, desired).await?;
            changes.note(&live, applied);
        }
        None if spec_changed => {
            delete_owned_child(api, name, stack).await?;
        }
        None => {}
    }
    Ok(())
}

/// Deletes the child of that name if this stack owns it (an object someone else made under
/// the name is left alone). Returns whether it deleted one.
async fn delete_owned_child<K>(
    api: &Api<K>,
    name: &str,
    stack: &ShortenerStack,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let Some(live) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let owned = live
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == stack.metadata.uid.as_ref());
    if owned {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(owned)
}

/// `Kind name: field, field` for the drift event.
fn drift_note<K: Resource<DynamicType = ()>>(object: &K, fields: &[String]) -> String {
    format!(
        "{} {}: {}",
        K::kind(&()),
        object.meta().name.as_deref().unwrap_or_default(),
        fields.join(", ")
    )
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let client = &ctx.client;
    let stored_status = stack.status.clone();
    let previous = stack.status.clone().unwrap_or_default();
    // KEDA mode: whether KEDA's HPA holds the consumer's replicas yet decides whether the
    // Deployment still declares them (`scaling::desired_consumer_replicas`).
    let observed;
    let stack = if stack.spec.consumer.autoscaling.mode == AutoscalingMode::Keda {
        let hpa = keda::hpa_name(client, stack).await?;
        let mut copy = stack.clone();
        copy.status
            .get_or_insert_with(Default::default)
            .consumer
            .keda_hpa = hpa;
        observed = copy;
        &observed
    } else {
        stack
    };

    let topic = ensure_topics(stack, ctx).await?;
    let migration = ensure_migration(stack, ctx).await?;
    // Closed until the migration for the current image and database succeeded: until then
    // the workloads keep their config and pod template (only their replica counts follow
    // the spec), so no pod of the old image starts with the new image's config.
    let gate_open = migration.step == Step::Succeeded;

    let mut changes = Changes::default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for component in Component::ALL {
        let desired = config_map_for(stack, component);
        let (live, applied) = if gate_open {
            apply_child(&config_maps, desired).await?
        } else {
            create_child(&config_maps, desired).await?
        };
        changes.note(&live, applied);
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for component in Component::ALL {
        if let Some(service) = service_for(stack, component) {
            let (live, applied) = apply_child(&services, service).await?;
            changes.note(&live, applied);
        }
    }
    // Optional children turned off in the spec are deleted; the spec can only have changed
    // since the last complete pass when the generation did, so a settled pass asks nothing.
    let spec_changed = previous.observed_generation != stack.metadata.generation;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    for component in Component::ALL {
        let name = component.object_name(stack);
        let pdb = pdb_for(stack, component);
        apply_or_delete_child(&budgets, pdb, &name, stack, spec_changed, &mut changes).await?;
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    for component in Component::ALL {
        let name = component.object_name(stack);
        let policy = network_policy_for(stack, component);
        apply_or_delete_child(&policies, policy, &name, stack, spec_changed, &mut changes).await?;
    }
    // A cluster without the Prometheus Operator's CRDs answers 404: when enabled, a Warning
    // Event; when turned off, nothing to delete (`get_opt` reads the 404 as absent).
    let monitors: Api<PodMonitor> = Api::namespaced(client.clone(), &ns);
    let mut monitors_available = true;
    for component in Component::ALL {
        let Some(monitor) = pod_monitor_for(stack, component) else {
            if spec_changed {
                delete_owned_child(&monitors, &component.object_name(stack), stack).await?;
            }
            continue;
        };
        match apply_child(&monitors, monitor).await {
            Ok((live, applied)) => changes.note(&live, applied),
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
                monitors_available = false;
                if !ctx.pod_monitors_available(stack, false) {
                    // Said when it started; still so.
                    break;
                }
                warn!(
                    "podMonitor.enabled but the cluster has no monitoring.coreos.com/v1 PodMonitor"
                );
                ctx.event(
                    stack,
                    EventType::Warning,
                    "PodMonitorUnavailable",
                    "ApplyConfig",
                    "podMonitor.enabled, but the cluster serves no monitoring.coreos.com/v1 PodMonitor: install the Prometheus Operator's CRDs or turn podMonitor off".into(),
                )
                .await;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if monitors_available {
        ctx.pod_monitors_available(stack, true);
    }
    if !changes.created.is_empty() {
        ctx.event(
            stack,
            EventType::Normal,
            "Created",
            "ApplyConfig",
            format!("created {}", changes.created.join(", ")),
        )
        .await;
    }

    let secrets = secret_versions(stack, ctx).await?;
    let deployments_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut deployments: DeploymentObservation = BTreeMap::new();
    let mut rolled = Vec::new();
    for component in Component::ALL {
        let live = if gate_open {
            let (live, applied) = apply_child(
                &deployments_api,
                deployment_with_secrets(stack, component, &secrets),
            )
            .await?;
            match applied {
                Applied::Created => rolled.push(format!("created Deployment {}", live.name_any())),
                Applied::Updated => rolled.push(format!("updated Deployment {}", live.name_any())),
                Applied::Reverted(fields) => changes.reverted.push(drift_note(&live, &fields)),
                Applied::Unchanged => {}
            }
            Some(live)
        } else {
            let live = deployments_api
                .get_opt(&component.object_name(stack))
                .await?;
            if let Some(live) = &live {
                if let Some(replicas) = scale_during_gate(stack, component, live) {
                    let patch = serde_json::json!({"spec": {"replicas": replicas}});
                    deployments_api
                        .patch_scale(
                            &live.name_any(),
                            &PatchParams {
                                field_manager: Some(FIELD_MANAGER.into()),
                                ..PatchParams::default()
                            },
                            &Patch::Merge(&patch),
                        )
                        .await?;
                    rolled.push(format!(
                        "scaled Deployment {} to {replicas}",
                        live.name_any()
                    ));
                }
            }
            live
        };
        deployments.insert(component, live);
    }
    if !changes.reverted.is_empty() {
        let note = changes.reverted.join("; ");
        info!(drift = %note, "reverted changes made to owned objects");
        ctx.event(
            stack,
            EventType::Normal,
            "DriftReverted",
            "ApplyConfig",
            note,
        )
        .await;
    }
    if !rolled.is_empty() {
        info!(changes = %rolled.join(", "), "applied Deployments");
        ctx.event(
            stack,
            EventType::Normal,
            "RolloutStarted",
            "ApplyWorkloads",
            rolled.join(", "),
        )
        .await;
    }

    let lag_check = ctx.autoscaler.as_ref().and_then(|a| a.broker_check(stack));
    let status = status::compute(
        stack,
        &topic,
        &migration,
        &deployments,
        lag_check.as_ref(),
        Utc::now(),
    );
    publish_transitions(stack, ctx, &previous.conditions, &status.conditions).await;
    let stacks: Api<ShortenerStack> = Api::namespaced(client.clone(), &ns);
    if stored_status.as_ref() != Some(&status) {
        write_status(&stacks, stack, &status).await?;
    }

    let settled = conditions::is_true(&status.conditions, ConditionType::Ready);
    let mut requeue = if settled {
        SETTLED_REQUEUE
    } else {
        PENDING_REQUEUE
    };
    if let Step::Backoff { retry_at } = migration.step {
        let wait = (retry_at - Utc::now()).to_std().unwrap_or_default();
        requeue = requeue.min(wait.max(Duration::from_secs(1)));
    }
    // After the status write, so the autoscaler's status fields are the newest ones.
    let consumer_exists = matches!(deployments.get(&Component::Consumer), Some(Some(_)));
    if let (Some(autoscaler), true) = (&ctx.autoscaler, consumer_exists) {
        match autoscaler
            .reconcile(stack, || kafka_connection(stack, ctx))
            .await
        {
            Ok(Some(next)) => requeue = requeue.min(next),
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "consumer autoscaling skipped this round");
                ctx.event(
                    stack,
                    EventType::Warning,
                    "AutoscalingUnavailable",
                    "ScaleConsumer",
                    format!("consumer replicas left as they are: {e}"),
                )
                .await;
                requeue = requeue.min(PENDING_REQUEUE);
            }
        }
        // The measurement found the brokers gone or back: KafkaReachable follows now, on
        // the status as the autoscaler left it.
        let after = autoscaler.broker_check(stack);
        if after != lag_check {
            if let Some(current) = stacks.get_opt(&stack.name_any()).await? {
                let status = status::compute(
                    &current,
                    &topic,
                    &migration,
                    &deployments,
                    after.as_ref(),
                    Utc::now(),
                );
                if current.status.as_ref() != Some(&status) {
                    write_status(&stacks, &current, &status).await?;
                }
            }
        }
    }
    Ok(Action::requeue(requeue))
}

/// Server-side applies the stack's status.
async fn write_status(
    api: &Api<ShortenerStack>,
    stack: &ShortenerStack,
    status: &crate::crd::ShortenerStackStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": ShortenerStack::api_version(&()),
        "kind": ShortenerStack::kind(&()),
        "status": status,
    });
    api.patch_status(&stack.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Events for condition changes worth a human's attention.
async fn publish_transitions(
    stack: &ShortenerStack,
    ctx: &Context,
    before: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    after: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    let find = |list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
                t: ConditionType| {
        list.iter()
            .find(|c| c.type_ == t.as_str())
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let changed = |t: ConditionType| {
        find(before, t).map(|c| (c.0, c.1)) != find(after, t).map(|c| (c.0, c.1))
    };
    if changed(ConditionType::MigrationsApplied) {
        // Each failed attempt has its own Warning from `ensure_migration`.
        if let Some((status, _, message)) = find(after, ConditionType::MigrationsApplied) {
            if status == "True" {
                ctx.event(
                    stack,
                    EventType::Normal,
                    "MigrationSucceeded",
                    "Migrate",
                    message,
                )
                .await
            }
        }
    }
    if changed(ConditionType::Degraded) {
        if let Some((status, reason, message)) = find(after, ConditionType::Degraded) {
            if status == "True" {
                warn!(%reason, %message, "stack degraded");
                ctx.event(stack, EventType::Warning, "Degraded", "Reconcile", message)
                    .await;
            }
        }
    }
    if changed(ConditionType::Ready) {
        if let Some((status, _, _)) = find(after, ConditionType::Ready) {
            if status == "True" {
                ctx.event(
                    stack,
                    EventType::Normal,
                    "Ready",
                    "Reconcile",
                    "all components are ready".into(),
                )
                .await;
            }
        }
    }
}

/// The migration gate: reads the current attempt's Job (none once the status records a
/// success), lets `migration::decide` choose, and does what it chose: create a Job, or
/// remove the older attempts' Jobs once one succeeded.
async fn ensure_migration(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<MigrationObservation, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let current = migration::current(stack);
    let seen = match (&current.job, current.succeeded) {
        (_, true) => JobSeen::Found(JobOutcome::Succeeded, None),
        (None, false) => JobSeen::NoAttempt,
        (Some(name), false) => match jobs.get_opt(name).await? {
            None => JobSeen::Missing,
            Some(job) => JobSeen::Found(job_outcome(&job), job_finished_at(&job)),
        },
    };
    let decision = migration::decide(stack, &seen, Utc::now());
    if let Some(failure) = &decision.new_failure {
        warn!(job = %failure.job, reason = %failure.reason, "migration Job failed");
        ctx.event(
            stack,
            EventType::Warning,
            "MigrationFailed",
            "Migrate",
            format!(
                "Job {} failed ({}): {} (attempt {} of {})",
                failure.job,
                failure.reason,
                failure.message,
                decision.status.attempts,
                migration::MAX_ATTEMPTS
            ),
        )
        .await;
    }
    match &decision.step {
        Step::Create { job, attempt } => {
            // A Job's pod template is immutable: every attempt is a new Job.
            jobs.patch(
                job,
                &apply_params(),
                &Patch::Apply(&migration_job_for(stack, job)),
            )
            .await?;
            info!(%job, attempt, version = migration_version(), "migration Job created");
            ctx.event(
                stack,
                EventType::Normal,
                "MigrationStarted",
                "Migrate",
                format!(
                    "Job {job} applies migration {} (attempt {attempt} of {})",
                    migration_version(),
                    migration::MAX_ATTEMPTS
                ),
            )
            .await;
        }
        Step::Succeeded if !current.succeeded => {
            remove_old_migration_jobs(stack, &jobs, decision.status.job.as_deref()).await;
        }
        _ => {}
    }
    Ok(decision)
}

/// Deletes the stack's migration Jobs other than `keep` (earlier attempts and targets).
/// Best effort: `ttlSecondsAfterFinished` removes whatever this misses.
async fn remove_old_migration_jobs(stack: &ShortenerStack, jobs: &Api<Job>, keep: Option<&str>) {
    let selector = format!(
        "{}={},{}=migration",
        labels::INSTANCE,
        stack.name_any(),
        labels::COMPONENT
    );
    let list = match jobs.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "cannot list old migration Jobs");
            return;
        }
    };
    for job in list.items {
        let name = job.name_any();
        if Some(name.as_str()) == keep {
            continue;
        }
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => info!(job = %name, "removed an old migration Job"),
            Err(e) => warn!(job = %name, error = %e, "cannot remove an old migration Job"),
        }
    }
}

/// The resourceVersions of the Secrets the workloads read (metadata only; a missing
/// Secret is left out, its pods fail to start and say so).
async fn secret_versions(stack: &ShortenerStack, ctx: &Context) -> Result<SecretVersions, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let names: BTreeSet<String> = Component::ALL
        .iter()
        .flat_map(|c| referenced_secret_names(stack, *c))
        .collect();
    let mut versions = SecretVersions::new();
    for name in names {
        if let Some(meta) = api.get_metadata_opt(&name).await? {
            if let Some(rv) = meta.metadata.resource_version {
                versions.insert(name, rv);
            }
        }
    }
    Ok(versions)
}

/// Replicas to set through the scale subresource while the migration gate holds the rest
/// of the Deployment back: a replica change in the spec is not a schema change.
fn scale_during_gate(
    stack: &ShortenerStack,
    component: Component,
    live: &Deployment,
) -> Option<i32> {
    let desired = deployment_for(stack, component).spec?.replicas?;
    let current = live.spec.as_ref().and_then(|s| s.replicas);
    (current != Some(desired)).then_some(desired)
}

/// The other stack that manages this stack's topics, if any (`topic::ownership`), among
/// the stacks the controller watches.
fn topic_conflict(stack: &ShortenerStack, ctx: &Context) -> Option<ownership::Conflict> {
    let stacks: Vec<ShortenerStack> = ctx.stacks.state().iter().map(|s| (**s).clone()).collect();
    ownership::conflict(stack, &stacks)
}

/// A store holding `stacks`, as the controller's reflector would (for a `Context` outside
/// the controller: tests, the bench, one-off commands).
pub fn stack_store(stacks: impl IntoIterator<Item = ShortenerStack>) -> Store<ShortenerStack> {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for stack in stacks {
        writer.apply_watcher_event(&watcher::Event::InitApply(stack));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// Creates or grows the clicks topic and its DLQ and alters drifted configs back, unless
/// another stack manages them. Kafka failures become the TopicReady condition (the rest of
/// the stack is still reconciled); only a failed Kubernetes request is an error.
async fn ensure_topics(stack: &ShortenerStack, ctx: &Context) -> Result<TopicObservation, Error> {
    let kafka = &stack.spec.kafka;
    if let Some(conflict) = topic_conflict(stack, ctx) {
        return Ok(TopicObservation::Failed {
            reason: Reason::ResourceConflict,
            message: conflict.message(&kafka.bootstrap_servers),
        });
    }
    let connection = match kafka_connection(stack, ctx).await {
        Ok(c) => c,
        Err(e) => {
            // No broker is contacted without the credentials the spec asks for.
            let reason = match e {
                Error::SecretNotOptedIn { .. } => Reason::SecretNotOptedIn,
                _ => Reason::KafkaCredentialsUnavailable,
            };
            return Ok(TopicObservation::Failed {
                reason,
                message: e.to_string(),
            });
        }
    };
    let admin = match ctx.topic_admin(stack, &connection) {
        Ok(admin) => admin,
        Err(e) => {
            return Ok(TopicObservation::Failed {
                reason: e.reason(),
                message: e.to_string(),
            })
        }
    };
    let mut changes = Vec::new();
    let mut partitions = 0;
    let mut mismatched = Vec::new();
    for (i, name) in [kafka.topic.clone(), kafka.dlq_topic()]
        .into_iter()
        .enumerate()
    {
        let request = TopicRequest {
            name: name.clone(),
            partitions: kafka.partitions,
            replication_factor: kafka.replication_factor,
            retention_ms: kafka.retention_ms,
        };
        match admin.ensure(&request).await {
            Ok(report) => {
                if i == 0 {
                    partitions = report.outcome.partitions();
                }
                match report.outcome {
                    TopicOutcome::Created { partitions } => changes.push((
                        "TopicCreated",
                        format!("created topic {name} with {partitions} partitions"),
                    )),
                    TopicOutcome::PartitionsIncreased { from, to } => changes.push((
                        "PartitionsIncreased",
                        format!("topic {name}: partitions {from} -> {to}"),
                    )),
                    TopicOutcome::Unchanged { .. } => {}
                }
                for r in &report.reverted {
                    changes.push((
                        "TopicConfigReverted",
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
                        report.replication_factor,
                        request.replication_factor,
                        report.replication_factor
                    ));
                }
            }
            Err(e) => {
                warn!(topic = %name, error = %e, "topic not ready");
                return Ok(TopicObservation::Failed {
                    reason: e.reason(),
                    message: e.to_string(),
                });
            }
        }
    }
    for reason in ["TopicCreated", "PartitionsIncreased", "TopicConfigReverted"] {
        let notes: Vec<&str> = changes
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n.as_str())
            .collect();
        if !notes.is_empty() {
            info!(changes = %notes.join("; "), "topics changed");
            ctx.event(
                stack,
                EventType::Normal,
                reason,
                "EnsureTopic",
                notes.join("; "),
            )
            .await;
        }
    }
    if !mismatched.is_empty() {
        return Ok(TopicObservation::Mismatched {
            partitions,
            reason: Reason::ReplicationFactorMismatch,
            message: mismatched.join("; "),
        });
    }
    Ok(TopicObservation::Ready { partitions })
}

/// Admin-client settings for the stack's brokers, with SASL credentials and TLS material
/// read from the referenced Secrets (only when the spec uses them, and only Secrets that
/// opt in, see `kafka_credentials`).
pub async fn kafka_connection(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<KafkaConnection, Error> {
    let kafka = &stack.spec.kafka;
    let mut args = KafkaArgs::new(&kafka.bootstrap_servers, &kafka.topic);
    args.kafka_dlq_topic = Some(kafka.dlq_topic());
    args.kafka_security_protocol = kafka.security_protocol().into();
    let mut connection = KafkaConnection {
        args,
        ca_pem: None,
        certificate_pem: None,
        key_pem: None,
    };
    if kafka.sasl.is_none() && kafka.tls.is_none() {
        return Ok(connection);
    }
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(sasl) = &kafka.sasl {
        let secret = kafka_credentials::read(&secrets, &ns, &sasl.secret_ref.name).await?;
        connection.args.kafka_sasl_mechanism = Some(sasl.mechanism.as_str().into());
        connection.args.kafka_sasl_username = Some(kafka_credentials::value(&secret, "username")?);
        connection.args.kafka_sasl_password = Some(kafka_credentials::value(&secret, "password")?);
    }
    if let Some(tls) = &kafka.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            let secret = kafka_credentials::read(&secrets, &ns, &ca.name).await?;
            connection.ca_pem = Some(kafka_credentials::value(&secret, &ca.key)?);
        }
        if let Some(cert) = &tls.cert_secret_ref {
            let secret = kafka_credentials::read(&secrets, &ns, &cert.name).await?;
            connection.certificate_pem = Some(kafka_credentials::value(&secret, "tls.crt")?);
            connection.key_pem = Some(kafka_credentials::value(&secret, "tls.key")?);
        }
    }
    Ok(connection)
}

/// Deletion: the children go with the owner references; the topics only when asked. When
/// Kafka cannot be reached (credentials or brokers gone), deletion retries until
/// `CLEANUP_DEADLINE` after the deletion started, then gives up on the topics with a
/// Warning event, so the stack (and its namespace) is not held forever.
async fn cleanup(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    if let Some(autoscaler) = &ctx.autoscaler {
        autoscaler.forget(stack);
    }
    let kafka = &stack.spec.kafka;
    if !kafka.delete_topic_on_delete {
        info!(topic = %kafka.topic, "stack deleted; keeping its topics (deleteTopicOnDelete is false)");
        return Ok(Action::await_change());
    }
    if let Some(conflict) = topic_conflict(stack, ctx) {
        info!(owner = %conflict.owner, "stack deleted; its topics are managed by another stack, kept");
        ctx.event(
            stack,
            EventType::Normal,
            "TopicKept",
            "DeleteTopic",
            format!(
                "topics {} kept: managed by ShortenerStack {}",
                conflict.topics.join(", "),
                conflict.owner
            ),
        )
        .await;
        ctx.forget_stack(stack);
        return Ok(Action::await_change());
    }
    let deleted = async {
        let connection = kafka_connection(stack, ctx).await?;
        let admin = ctx.topic_admin(stack, &connection)?;
        for topic in [kafka.topic.clone(), kafka.dlq_topic()] {
            admin.delete(&topic).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if deleted.is_ok() || cleanup_overdue(stack, Utc::now()) {
        ctx.forget_stack(stack);
    }
    match deleted {
        Ok(()) => {
            info!(topic = %kafka.topic, "topics deleted with the stack");
            ctx.event(
                stack,
                EventType::Normal,
                "TopicDeleted",
                "DeleteTopic",
                format!("deleted topics {} and {}", kafka.topic, kafka.dlq_topic()),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if cleanup_overdue(stack, Utc::now()) => {
            warn!(error = %e, "giving up on deleting the topics");
            ctx.event(
                stack,
                EventType::Warning,
                "TopicCleanupAbandoned",
                "DeleteTopic",
                format!(
                    "topics {} and {} were not deleted ({e}); gave up {}s after the deletion started, delete them by hand",
                    kafka.topic,
                    kafka.dlq_topic(),
                    CLEANUP_DEADLINE.as_secs()
                ),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

/// Whether the deletion started more than `CLEANUP_DEADLINE` ago.
fn cleanup_overdue(stack: &ShortenerStack, now: chrono::DateTime<Utc>) -> bool {
    stack
        .metadata
        .deletion_timestamp
        .as_ref()
        .is_some_and(|t| now - t.0 > chrono::Duration::from_std(CLEANUP_DEADLINE).expect("fits"))
}
