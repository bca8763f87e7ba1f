//! `operator run`: the controller, its admin endpoints and leader election.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Controller;
use kube::runtime::{metadata_watcher, watcher, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use shortener_common::health::{self, Readiness};
use tracing::{info, warn};

use crate::autoscaling::{Autoscaler, KafkaLagReader};
use crate::crd::ShortenerStack;
use crate::leader::{run_as_leader, LeaderElector, Leadership, LeaseSettings};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile, Context};
use crate::resources::labels;
use crate::topic::KafkaTopicManager;

/// Settings of `operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease, so several replicas can run (one reconciles).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "shortener-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the election (the pod name, from the downward API).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Deadline of each Kafka admin request, in seconds.
    #[arg(long, env = "KAFKA_ADMIN_TIMEOUT_SECS", default_value_t = 10)]
    pub kafka_admin_timeout_secs: u64,
    /// Watch ShortenerStacks (and their children and Secrets) in this namespace only, for
    /// a Role-scoped installation; unset: every namespace.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
}

/// `Api` over every namespace, or the watched one.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn owned_watch_config() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
}

/// `/readyz`: a running replica is ready whether it leads or stands by. Tying readiness
/// to leadership would keep a rolling update's new pod unready while the old one holds
/// the Lease, so the rollout (and `helm upgrade --wait`) would never finish.
pub fn readiness() -> Readiness {
    Readiness::always()
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster or kubeconfig)")?;

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let router = health::router(Arc::new(registry), readiness());
    let admin = tokio::spawn(health::serve(
        args.metrics_addr,
        router,
        shortener_common::shutdown::signal(),
    ));

    let mut ctx = Context::new(
        client.clone(),
        Arc::new(KafkaTopicManager::new(Duration::from_secs(
            args.kafka_admin_timeout_secs,
        ))),
        metrics.clone(),
    );
    ctx.autoscaler = Some(Autoscaler::new(
        client.clone(),
        Arc::new(KafkaLagReader::new(Duration::from_secs(
            args.kafka_admin_timeout_secs,
        ))),
        ctx.metrics.autoscaling.clone(),
    ));

    let outcome = if args.leader_election {
        let identity = args
            .pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .context("leader election needs POD_NAME (or HOSTNAME)")?;
        let elector = LeaderElector::new(
            client.clone(),
            LeaseSettings::new(
                args.lease_name.clone(),
                args.lease_namespace.clone(),
                identity,
            ),
        )
        .with_gauge(metrics.leader.clone());
        run_as_leader(
            &elector,
            shortener_common::shutdown::signal(),
            run_controller(client, ctx, args.watch_namespace.clone()),
        )
        .await
    } else {
        metrics.leader.set(1);
        Leadership::Released(run_controller(client, ctx, args.watch_namespace.clone()).await)
    };
    admin.abort();
    match outcome {
        // Exit so the pod restarts as a fresh candidate; continuing would risk two
        // reconcilers.
        Leadership::Lost => anyhow::bail!("lost the leader lease"),
        Leadership::NeverLed => Ok(()),
        Leadership::Released(result) => result,
    }
}

/// The controller, until SIGTERM (in-flight reconciles finish first).
async fn run_controller(
    client: Client,
    mut ctx: Context,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let ns = namespace.as_deref();
    let stacks: Api<ShortenerStack> = scoped(&client, ns);
    stacks
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list ShortenerStacks: is the CRD installed (operator crd | kubectl apply -f -)?")?;
    info!(namespace = ns.unwrap_or("*"), "controller started");
    // A changed Secret may be one a stack's pods read: reconcile the stacks, which compare
    // the Secrets' resourceVersions in the pod templates (rare, so all stacks is fine).
    // Relayed through a channel of one: changes arriving during a run coalesce.
    let (mut changed, secret_changes) = futures::channel::mpsc::channel::<()>(1);
    let secrets = metadata_watcher(scoped::<Secret>(&client, ns), watcher::Config::default())
        .default_backoff();
    let relay = tokio::spawn(async move {
        futures::pin_mut!(secrets);
        while let Some(event) = secrets.next().await {
            match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    let _ = changed.try_send(());
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "watching Secrets failed; retrying"),
            }
        }
    });
    let controller = Controller::new(stacks, watcher::Config::default().any_semantic());
    // Reconciles start once this store holds every stack (the controller waits for it).
    ctx.stacks = controller.store();
    controller
        .reconcile_all_on(secret_changes)
        .owns(scoped::<Deployment>(&client, ns), owned_watch_config())
        .owns(scoped::<Service>(&client, ns), owned_watch_config())
        .owns(scoped::<ConfigMap>(&client, ns), owned_watch_config())
        .owns(scoped::<Job>(&client, ns), owned_watch_config())
        .owns(
            scoped::<PodDisruptionBudget>(&client, ns),
            owned_watch_config(),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile request failed");
            }
        })
        .await;
    relay.abort();
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_standby_replica_is_ready() {
        // Nothing about leadership is known to the check: it passes before any election.
        assert_eq!(super::readiness().check().await, Ok(()));
    }
}
