//! `operator run`: the controller, its admin endpoints and leader election.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use shortener_common::health::{self, Readiness};
use tracing::{info, warn};

use crate::autoscaling::{Autoscaler, KafkaLagReader};
use crate::crd::ShortenerStack;
use crate::leader::{LeaderElector, LeaseSettings};
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
}

fn owned_watch_config() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster or kubeconfig)")?;

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let reconciling = Arc::new(AtomicBool::new(false));
    let readiness = {
        let reconciling = reconciling.clone();
        Readiness::new(move || {
            let ok = reconciling.load(Ordering::Relaxed);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("standing by (not the leader)".to_string())
                }
            }
        })
    };
    let router = health::router(Arc::new(registry), readiness);
    let admin = tokio::spawn(health::serve(
        args.metrics_addr,
        router,
        shortener_common::shutdown::signal(),
    ));

    let elector = if args.leader_election {
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
        );
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shortener_common::shutdown::signal() => return Ok(()),
        }
        Some(elector)
    } else {
        None
    };

    let mut ctx = Context::new(
        client.clone(),
        Arc::new(KafkaTopicManager::new(Duration::from_secs(
            args.kafka_admin_timeout_secs,
        ))),
        metrics,
    );
    ctx.autoscaler = Some(Autoscaler::new(
        client.clone(),
        Arc::new(KafkaLagReader::new(Duration::from_secs(
            args.kafka_admin_timeout_secs,
        ))),
        ctx.metrics.autoscaling.clone(),
    ));
    let ctx = Arc::new(ctx);
    let stacks: Api<ShortenerStack> = Api::all(client.clone());
    stacks
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list ShortenerStacks: is the CRD installed (operator crd | kubectl apply -f -)?")?;

    reconciling.store(true, Ordering::Relaxed);
    info!("controller started");
    let controller = Controller::new(stacks, watcher::Config::default().any_semantic())
        .owns(Api::<Deployment>::all(client.clone()), owned_watch_config())
        .owns(Api::<Service>::all(client.clone()), owned_watch_config())
        .owns(Api::<ConfigMap>::all(client.clone()), owned_watch_config())
        .owns(Api::<Job>::all(client.clone()), owned_watch_config())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile request failed");
            }
        });

    match &elector {
        Some(elector) => {
            tokio::select! {
                _ = controller => {}
                _ = elector.hold() => {
                    reconciling.store(false, Ordering::Relaxed);
                    // Exit so the pod restarts as a fresh candidate; continuing would risk
                    // two reconcilers.
                    anyhow::bail!("lost the leader lease");
                }
            }
        }
        None => controller.await,
    }
    reconciling.store(false, Ordering::Relaxed);
    info!("controller stopped");
    admin.abort();
    Ok(())
}
