//! The stack's children in the cluster (observe and apply, client required): ConfigMaps,
//! Services, PodDisruptionBudgets, NetworkPolicies and PodMonitors, then the Deployments
//! behind the migration gate. The desired objects come from the pure builders in
//! `crate::resources`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tracing::warn;

use super::children::{
    apply_child, apply_or_delete_child, create_child, delete_owned_child, Changes,
};
use super::{plan, Context, FIELD_MANAGER};
use crate::autoscaling::keda;
use crate::crd::{AutoscalingMode, ShortenerStack};
use crate::error::Error;
use crate::events::EventReason;
use crate::resources::configmap::config_map_for;
use crate::resources::deployment::{deployment_with_secrets, SecretVersions};
use crate::resources::env::referenced_secret_names;
use crate::resources::network_policy::network_policy_for;
use crate::resources::pdb::pdb_for;
use crate::resources::pod_monitor::{pod_monitor_for, PodMonitor};
use crate::resources::service::service_for;
use crate::resources::Component;
use crate::status::DeploymentObservation;

/// The stack as the desired objects are built from it. KEDA mode: whether KEDA's HPA holds
/// the consumer's replicas yet decides whether the Deployment still declares them
/// (`scaling::desired_consumer_replicas`), so the HPA's name goes into the status copy.
pub(super) async fn with_keda_hpa<'a>(
    stack: &'a ShortenerStack,
    ctx: &Context,
) -> Result<Cow<'a, ShortenerStack>, Error> {
    if stack.spec.consumer.autoscaling.mode != AutoscalingMode::Keda {
        return Ok(Cow::Borrowed(stack));
    }
    let hpa = keda::hpa_name(&ctx.client, stack).await?;
    let mut copy = stack.clone();
    copy.status
        .get_or_insert_with(Default::default)
        .consumer
        .keda_hpa = hpa;
    Ok(Cow::Owned(copy))
}

/// Applies every child but the Deployments; publishes the `Created` event. ConfigMaps are
/// only created while the migration gate is closed (an existing one keeps the old image's
/// config); optional children the spec turned off are looked for only when
/// `spec_changed`.
pub(super) async fn apply_children(
    stack: &ShortenerStack,
    ctx: &Context,
    gate_open: bool,
    spec_changed: bool,
) -> Result<Changes, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let client = &ctx.client;
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
    apply_pod_monitors(stack, ctx, spec_changed, &mut changes).await?;
    if !changes.created.is_empty() {
        ctx.event(
            stack,
            EventReason::Created,
            format!("created {}", changes.created.join(", ")),
        )
        .await;
    }
    Ok(changes)
}

/// PodMonitors. A cluster without the Prometheus Operator's CRDs answers 404: when
/// enabled, a Warning Event (once, when that starts); when turned off, nothing to delete
/// (`get_opt` reads the 404 as absent).
async fn apply_pod_monitors(
    stack: &ShortenerStack,
    ctx: &Context,
    spec_changed: bool,
    changes: &mut Changes,
) -> Result<(), Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let monitors: Api<PodMonitor> = Api::namespaced(ctx.client.clone(), &ns);
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
                if !ctx.pod_monitors_available(stack, false) {
                    // Said when it started; still so.
                    return Ok(());
                }
                warn!(
                    "podMonitor.enabled but the cluster has no monitoring.coreos.com/v1 PodMonitor"
                );
                ctx.event(stack, EventReason::PodMonitorUnavailable, "podMonitor.enabled, but the cluster serves no monitoring.coreos.com/v1 PodMonitor: install the Prometheus Operator's CRDs or turn podMonitor off".into(),
                )
                .await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    ctx.pod_monitors_available(stack, true);
    Ok(())
}

/// The Deployments: applied (with the referenced Secrets' versions in the pod template)
/// once the migration gate is open; while it is closed only read, and scaled when the
/// spec's replica count changed. Returns the live Deployments.
pub(super) async fn apply_deployments(
    stack: &ShortenerStack,
    ctx: &Context,
    gate_open: bool,
    changes: &mut Changes,
) -> Result<DeploymentObservation, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let secrets = secret_versions(stack, ctx).await?;
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let mut deployments: DeploymentObservation = BTreeMap::new();
    for component in Component::ALL {
        let live = if gate_open {
            let desired = deployment_with_secrets(stack, component, &secrets);
            let (live, applied) = apply_child(&api, desired).await?;
            changes.note_deployment(&live, applied);
            Some(live)
        } else {
            let live = api.get_opt(&component.object_name(stack)).await?;
            if let Some(live) = &live {
                if let Some(replicas) = plan::scale_during_gate(stack, component, live) {
                    let patch = serde_json::json!({"spec": {"replicas": replicas}});
                    api.patch_scale(
                        &live.name_any(),
                        &PatchParams {
                            field_manager: Some(FIELD_MANAGER.into()),
                            ..PatchParams::default()
                        },
                        &Patch::Merge(&patch),
                    )
                    .await?;
                    changes.rolled.push(format!(
                        "scaled Deployment {} to {replicas}",
                        live.name_any()
                    ));
                }
            }
            live
        };
        deployments.insert(component, live);
    }
    Ok(deployments)
}

/// The resourceVersions of the Secrets the workloads read (metadata only; a missing
/// Secret is left out, its pods fail to start and say so).
pub(super) async fn secret_versions(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<SecretVersions, Error> {
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
