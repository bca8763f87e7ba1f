//! What a pass reports (apply, client required): the status (server-side applied through
//! the status subresource) and the Events for what changed.

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::children::{apply_params, Changes};
use super::{plan, Context};
use crate::crd::{ShortenerStack, ShortenerStackStatus};
use crate::error::Error;
use crate::events::EventReason;
use crate::status;

/// Paused: only the status is written (once), and no requeue: removing the annotation is
/// a change that brings the stack back.
pub(super) async fn pause(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    let status = status::paused(stack, Utc::now());
    if stack.status.as_ref() != Some(&status) {
        info!("reconciliation paused by annotation");
        write_status(ctx, stack, &status).await?;
    }
    Ok(Action::await_change())
}

/// Writes the failed pass into the status (Ready=False, Degraded=True with the error), so
/// an old Ready=True does not outlive a pass that could not check it. Best effort: the
/// error is what the controller retries on.
pub(super) async fn record_failure(stack: &ShortenerStack, ctx: &Context, error: &Error) {
    if stack.metadata.deletion_timestamp.is_some() || stack.namespace().is_none() {
        return;
    }
    let status = status::failed_pass(stack, &error.to_string(), Utc::now());
    if stack.status.as_ref() == Some(&status) {
        return;
    }
    if let Err(e) = write_status(ctx, stack, &status).await {
        warn!(error = %e, "cannot record the failed reconcile in the status");
    }
}

/// Server-side applies the stack's status.
pub(super) async fn write_status(
    ctx: &Context,
    stack: &ShortenerStack,
    status: &ShortenerStackStatus,
) -> Result<(), Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": ShortenerStack::api_version(&()),
        "kind": ShortenerStack::kind(&()),
        "status": status,
    });
    api.patch_status(&stack.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// The `DriftReverted` and `RolloutStarted` events of a pass (its `Created` event went out
/// with the children, before the Deployments).
pub(super) async fn changes(stack: &ShortenerStack, ctx: &Context, changes: &Changes) {
    if !changes.reverted.is_empty() {
        let note = changes.reverted.join("; ");
        info!(drift = %note, "reverted changes made to owned objects");
        ctx.event(stack, EventReason::DriftReverted, note).await;
    }
    if !changes.rolled.is_empty() {
        info!(changes = %changes.rolled.join(", "), "applied Deployments");
        ctx.event(
            stack,
            EventReason::RolloutStarted,
            changes.rolled.join(", "),
        )
        .await;
    }
}

/// Events for condition changes worth a human's attention (`plan::transitions`).
pub(super) async fn publish_transitions(
    stack: &ShortenerStack,
    ctx: &Context,
    before: &[Condition],
    after: &[Condition],
) {
    for note in plan::transitions(before, after) {
        if note.reason == EventReason::Degraded {
            warn!(message = %note.note, "stack degraded");
        }
        ctx.event(stack, note.reason, note.note).await;
    }
}
