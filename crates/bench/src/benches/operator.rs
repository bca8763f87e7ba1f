//! Operator reconcile cost: the real `reconcile` function against the shared in-memory API
//! server (`shortener_testkit::kube_api`, no network, so the figures are the operator's own
//! CPU and client overhead, not API-server latency). Measures each pass of a stack's
//! creation, then many no-op passes of the settled stack: their duration, their requests,
//! their PATCH requests and the resourceVersion changes they cause, counted apart (a PATCH
//! that changes nothing still costs the API server a request; a resourceVersion change
//! wakes every watcher). Both must be 0.
//!
//! It also measures the alternative the reconciler does not take: server-side applying
//! every settled child again. The fake, like the API server, leaves resourceVersion alone
//! on such a no-op apply, so that design would also change nothing, but at one PATCH per
//! child per pass; comparing the managed fields first costs reads only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use shortener_operator::crd::ShortenerStack;
use shortener_operator::reconcile::{reconcile, stack_store, Context, FIELD_MANAGER};
use shortener_operator::resources::configmap::config_map_for;
use shortener_operator::resources::deployment::deployment_for;
use shortener_operator::resources::hash::with_desired_hash;
use shortener_operator::resources::service::service_for;
use shortener_operator::resources::Component;
use shortener_operator::topic::MemoryTopicManager;
use shortener_testkit::kube_api::FakeApiServer;

use super::BenchEnv;
use crate::results::Row;

const NS: &str = "shop";
const STACK_PATH: &str = "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo";
const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";
const JOBS: &str = "/apis/batch/v1/namespaces/shop/jobs";

/// What one pass cost.
#[derive(Default, Clone, Copy)]
struct Cost {
    requests: u64,
    patches: u64,
    writes: u64,
    versions_changed: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.requests += other.requests;
        self.patches += other.patches;
        self.writes += other.writes;
        self.versions_changed += other.versions_changed;
    }
}

struct Harness {
    api: FakeApiServer,
    ctx: Arc<Context>,
}

impl Harness {
    fn new() -> Self {
        let api = FakeApiServer::new();
        api.put_as(
            "kubectl",
            json!({
                "apiVersion": "shortener.example.io/v1alpha1", "kind": "ShortenerStack",
                "metadata": {"name": "demo", "namespace": NS, "uid": "8d4a3c1e-0000-4000-8000-000000000001"},
                "spec": {"kafka": {"bootstrapServers": "kafka:9092"},
                         "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}}}
            }),
        );
        let mut ctx = Context::new(
            api.client(NS),
            Arc::new(MemoryTopicManager::default()),
            Default::default(),
        );
        // What the controller's reflector holds: the stack itself.
        let stack: ShortenerStack =
            serde_json::from_value(api.get(STACK_PATH).expect("the stack was put"))
                .expect("a ShortenerStack");
        ctx.stacks = stack_store([stack]);
        Self {
            api,
            ctx: Arc::new(ctx),
        }
    }

    fn stack(&self) -> anyhow::Result<ShortenerStack> {
        let value = self
            .api
            .get(STACK_PATH)
            .ok_or_else(|| anyhow::anyhow!("the stack is gone"))?;
        Ok(serde_json::from_value(value)?)
    }

    fn cost_since(&self, mark: usize) -> Cost {
        let log = self.api.log_since(mark);
        Cost {
            requests: log.len() as u64,
            patches: log.iter().filter(|r| r.method == "PATCH").count() as u64,
            writes: log.iter().filter(|r| r.is_write()).count() as u64,
            versions_changed: log.iter().filter(|r| r.changed).count() as u64,
        }
    }

    /// One reconcile pass; returns its duration and cost.
    async fn pass(&self) -> anyhow::Result<(Duration, Cost)> {
        let stack = Arc::new(self.stack()?);
        let mark = self.api.mark();
        let t = Instant::now();
        reconcile(stack, self.ctx.clone()).await?;
        let took = t.elapsed();
        Ok((took, self.cost_since(mark)))
    }

    /// Server-side applies every settled child as the reconciler would, unconditionally.
    async fn apply_all(&self) -> anyhow::Result<Cost> {
        let stack = self.stack()?;
        let client = self.ctx.client.clone();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let mark = self.api.mark();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
        let deps: Api<Deployment> = Api::namespaced(client, NS);
        for c in Component::ALL {
            let cm = with_desired_hash(config_map_for(&stack, c));
            cms.patch(&c.config_map_name(&stack), &pp, &Patch::Apply(&cm))
                .await?;
            if let Some(svc) = service_for(&stack, c) {
                svcs.patch(
                    &c.object_name(&stack),
                    &pp,
                    &Patch::Apply(&with_desired_hash(svc)),
                )
                .await?;
            }
            let d = with_desired_hash(deployment_for(&stack, c));
            deps.patch(&c.object_name(&stack), &pp, &Patch::Apply(&d))
                .await?;
        }
        Ok(self.cost_since(mark))
    }

    /// Plays the controllers that do not exist here: the migration Job completes and the
    /// Deployments become ready.
    fn settle_children(&self) {
        for path in self.api.paths(JOBS) {
            self.api.set_status(
                &path,
                json!({"conditions": [{"type": "Complete", "status": "True", "reason": "", "message": ""}]}),
            );
        }
        for path in self.api.paths(DEPLOY) {
            let Some(d) = self.api.get(&path) else {
                continue;
            };
            let replicas = d["spec"]["replicas"].clone();
            self.api.set_status(
                &path,
                json!({"observedGeneration": d["metadata"]["generation"], "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}),
            );
        }
    }
}

pub async fn run(env: &BenchEnv, noop_passes: usize) -> anyhow::Result<Vec<Row>> {
    let h = Harness::new();
    // Creation: config + migration Job, the Job still running, rollout, ready (a stack that
    // keeps its topics has no finalizer to add).
    let mut creation = Vec::new();
    for step in 0..4 {
        if step >= 2 {
            h.settle_children();
        }
        let (took, cost) = h.pass().await?;
        creation.push(json!({"pass": step + 1, "ms": took.as_secs_f64() * 1000.0,
            "requests": cost.requests, "patches": cost.patches, "writes": cost.writes,
            "resource_versions_changed": cost.versions_changed}));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut total = Cost::default();
    for _ in 0..noop_passes {
        let (took, cost) = h.pass().await?;
        hist.record(took.as_micros().max(1) as u64)?;
        total.add(cost);
    }
    let reapply = h.apply_all().await?;
    let per_pass = |v: u64| v as f64 / noop_passes as f64;
    let ms = |v: u64| v as f64 / 1000.0;
    let creation_ms: f64 = creation.iter().filter_map(|c| c["ms"].as_f64()).sum();
    let rows = vec![
        Row::new("operator", "creation, 4 passes total", creation_ms, "ms"),
        Row::new(
            "operator",
            "no-op reconcile p50",
            ms(hist.value_at_quantile(0.5)),
            "ms",
        ),
        Row::new(
            "operator",
            "no-op reconcile p99",
            ms(hist.value_at_quantile(0.99)),
            "ms",
        ),
        Row::new(
            "operator",
            "API requests per no-op pass",
            per_pass(total.requests),
            "req",
        ),
        Row::new(
            "operator",
            "PATCH requests per no-op pass",
            per_pass(total.patches),
            "req",
        )
        .equals(0.0),
        Row::new(
            "operator",
            "writes per no-op pass",
            per_pass(total.writes),
            "writes",
        )
        .equals(0.0),
        Row::new(
            "operator",
            "resourceVersion changes per no-op pass",
            per_pass(total.versions_changed),
            "changes",
        )
        .equals(0.0),
        Row::new(
            "operator",
            "re-applying every settled child: PATCH requests",
            reapply.patches as f64,
            "req",
        ),
        Row::new(
            "operator",
            "re-applying every settled child: resourceVersion changes",
            reapply.versions_changed as f64,
            "changes",
        )
        .equals(0.0),
    ];
    crate::results::write_json(
        &env.results_dir,
        "operator",
        &rows,
        json!({
            "api": "shortener_testkit::kube_api fake API server behind tower_test::mock (no network)",
            "creation_passes": creation,
            "noop_passes": noop_passes,
            "noop_requests_total": total.requests,
            "noop_patches_total": total.patches,
            "noop_resource_versions_changed_total": total.versions_changed,
        }),
    )?;
    Ok(rows)
}
