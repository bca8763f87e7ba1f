//! One reconciliation of a ShortenerStack, written as named steps (the split kube-rs
//! controller-rs and Stackable's operators use):
//!
//! - observe (client required): read what exists: the live children, the migration Job,
//!   the topics on the brokers, the referenced Secrets, KEDA's HPA;
//! - compute (no client required): pure functions from the spec and what was observed to
//!   the desired objects (`crate::resources`), the decisions (`crate::migration::decide`,
//!   `crate::status::compute`) and the drift (`crate::drift`);
//! - apply (client required): server-side apply, delete, the status write, Events.
//!
//! Order: finalizer → topics → migration gate → ConfigMaps, Services, PodDisruptionBudgets,
//! NetworkPolicies, PodMonitors → Deployments (only once the migration succeeded) →
//! status → consumer autoscaler.
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
//!
//! Modules: `plan` (the pure decisions: lifecycle, requeue, scaling behind the gate),
//! `context` (shared state and per-stack caches), `children` (apply or delete one
//! child), `finalizer` and `deletion` (the stack's lifecycle), `topics`, `migrate`,
//! `workloads` (the children and the Deployments), `autoscale` (the consumer autoscaler's
//! turn) and `report` (status and Events).

mod autoscale;
mod children;
mod context;
mod deletion;
mod finalizer;
mod migrate;
mod plan;
mod report;
mod topics;
mod workloads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plan::Lifecycle;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::warn;

use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::migration::Step;
use crate::status;

pub use context::{stack_store, Context};
pub use deletion::CLEANUP_DEADLINE;
pub use topics::kafka_connection;

/// Finalizer that holds a deleted stack until its Kafka topics are dealt with.
pub const FINALIZER: &str = "shortener.example.io/kafka-topics";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "shortener-operator";

/// Requeue of a settled stack: catches changes made behind the operator's back on the
/// brokers (topic deleted, partitions changed).
const SETTLED_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue while something is pending that no watch reports (a broker coming back).
const PENDING_REQUEUE: Duration = Duration::from_secs(30);

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

async fn reconcile_inner(stack: Arc<ShortenerStack>, ctx: &Context) -> Result<Action, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
    let result = match plan::lifecycle(&stack) {
        Lifecycle::Forget => {
            if let Some(autoscaler) = &ctx.autoscaler {
                autoscaler.forget(&stack);
            }
            ctx.forget_stack(&stack);
            return Ok(Action::await_change());
        }
        Lifecycle::CleanUp { finalizer } => match deletion::cleanup(&stack, ctx).await {
            Ok(action) => {
                finalizer::remove(&api, &stack, finalizer).await?;
                Ok(action)
            }
            Err(e) => Err(e),
        },
        Lifecycle::AddFinalizer => {
            // Added before anything is created, so nothing outlives a deletion unseen; the
            // patch brings the stack back with it.
            finalizer::add(&api, &stack).await?;
            return Ok(Action::await_change());
        }
        Lifecycle::RemoveFinalizerAndApply { finalizer } => {
            // Nothing to clean up any more (deleteTopicOnDelete turned off).
            finalizer::remove(&api, &stack, finalizer).await?;
            apply(&stack, ctx).await
        }
        Lifecycle::Pause => report::pause(&stack, ctx).await,
        Lifecycle::Apply => apply(&stack, ctx).await,
    };
    if let Err(error) = &result {
        report::record_failure(&stack, ctx, error).await;
    }
    result
}

/// Retry after an error, with per-stack exponential backoff.
pub fn error_policy(stack: Arc<ShortenerStack>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_backoff(&stack);
    warn!(name = %stack.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A pass over a live stack: topics, the migration gate, the children, the status, then
/// the consumer autoscaler.
async fn apply(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    let stored_status = stack.status.clone();
    let previous = stack.status.clone().unwrap_or_default();
    let observed = workloads::with_keda_hpa(stack, ctx).await?;
    let stack = observed.as_ref();

    let topic = topics::ensure(stack, ctx).await?;
    let migration = migrate::ensure(stack, ctx).await?;
    // Closed until the migration for the current image and database succeeded: until then
    // the workloads keep their config and pod template (only their replica counts follow
    // the spec), so no pod of the old image starts with the new image's config.
    let gate_open = migration.step == Step::Succeeded;
    let spec_changed = plan::spec_changed(stack, &previous);
    let mut changes = workloads::apply_children(stack, ctx, gate_open, spec_changed).await?;
    let deployments = workloads::apply_deployments(stack, ctx, gate_open, &mut changes).await?;
    report::changes(stack, ctx, &changes).await;

    let lag_check = ctx.autoscaler.as_ref().and_then(|a| a.broker_check(stack));
    let status = status::compute(
        stack,
        &topic,
        &migration,
        &deployments,
        lag_check.as_ref(),
        Utc::now(),
    );
    report::publish_transitions(stack, ctx, &previous.conditions, &status.conditions).await;
    if stored_status.as_ref() != Some(&status) {
        report::write_status(ctx, stack, &status).await?;
    }

    let mut requeue = plan::requeue(&status, &migration.step, Utc::now());
    // After the status write, so the autoscaler's status fields are the newest ones.
    if let Some(next) =
        autoscale::run(stack, ctx, &topic, &migration, &deployments, lag_check).await?
    {
        requeue = requeue.min(next);
    }
    Ok(Action::requeue(requeue))
}
