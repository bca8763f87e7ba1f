//! Operator reconcile cost: the real `reconcile` function against an in-memory API server
//! behind `tower_test`'s mock service (no network, so the figures are the operator's own
//! CPU and client overhead, not API-server latency). Measures each pass of a stack's
//! creation, then many no-op passes of the settled stack: their duration, and their
//! writes, which must be 0.
//!
//! The fake server answers the way the API server does for what the reconciler uses:
//! GET by path (404 as a Status), server-side apply creates or replaces, status apply sets
//! `status`, JSON patches edit finalizers, events are stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use shortener_operator::crd::ShortenerStack;
use shortener_operator::reconcile::{reconcile, Context};
use shortener_operator::topic::MemoryTopicManager;

use super::BenchEnv;
use crate::results::Row;

const NS: &str = "shop";
const STACK_PATH: &str = "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo";
const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";
const JOBS: &str = "/apis/batch/v1/namespaces/shop/jobs";

#[derive(Default)]
struct FakeApi {
    objects: BTreeMap<String, Value>,
    requests: u64,
    writes: u64,
}

fn not_found(path: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

impl FakeApi {
    fn handle(
        &mut self,
        method: &str,
        path: String,
        content_type: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.requests += 1;
        if method != "GET" {
            self.writes += 1;
        }
        match method {
            "GET" => match self.objects.get(&path) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => not_found(&path),
            },
            "POST" => {
                let name = body["metadata"]["name"].as_str().unwrap_or("x").to_string();
                self.objects.insert(format!("{path}/{name}"), body.clone());
                (StatusCode::CREATED, body)
            }
            "PATCH" => {
                if let Some(object) = path.strip_suffix("/status") {
                    let Some(obj) = self.objects.get_mut(object) else {
                        return not_found(&path);
                    };
                    obj["status"] = body["status"].clone();
                    return (StatusCode::OK, obj.clone());
                }
                if content_type.starts_with("application/apply-patch") {
                    let mut obj = body;
                    let generation = match self.objects.get(&path) {
                        Some(old) => {
                            obj["status"] = old["status"].clone();
                            old["metadata"]["generation"].as_i64().unwrap_or(1)
                                + i64::from(old["spec"] != obj["spec"])
                        }
                        None => 1,
                    };
                    obj["metadata"]["generation"] = generation.into();
                    obj["metadata"]["uid"] = format!("uid-{}", self.objects.len()).into();
                    self.objects.insert(path, obj.clone());
                    return (StatusCode::OK, obj);
                }
                if content_type.starts_with("application/json-patch") {
                    let Some(obj) = self.objects.get_mut(&path) else {
                        return not_found(&path);
                    };
                    for op in body.as_array().into_iter().flatten() {
                        let target = op["path"].as_str().unwrap_or_default();
                        match op["op"].as_str().unwrap_or_default() {
                            "add" if target == "/metadata/finalizers" => {
                                obj["metadata"]["finalizers"] = op["value"].clone()
                            }
                            "add" if target == "/metadata/finalizers/-" => {
                                if let Some(list) = obj["metadata"]["finalizers"].as_array_mut() {
                                    list.push(op["value"].clone());
                                }
                            }
                            _ => {}
                        }
                    }
                    return (StatusCode::OK, obj.clone());
                }
                (StatusCode::OK, body)
            }
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }
}

struct Harness {
    api: Arc<Mutex<FakeApi>>,
    ctx: Arc<Context>,
}

impl Harness {
    fn new() -> Self {
        let stack = json!({
            "apiVersion": "shortener.example.io/v1alpha1", "kind": "ShortenerStack",
            "metadata": {"name": "demo", "namespace": NS, "uid": "8d4a3c1e-0000-4000-8000-000000000001",
                         "generation": 1, "resourceVersion": "1"},
            "spec": {"kafka": {"bootstrapServers": "kafka:9092"},
                     "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}}}
        });
        let api = Arc::new(Mutex::new(FakeApi {
            objects: BTreeMap::from([(STACK_PATH.to_string(), stack)]),
            ..FakeApi::default()
        }));
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let served = api.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let (status, value) = served.lock().expect("fake api lock").handle(
                    parts.method.as_str(),
                    parts.uri.path().to_string(),
                    &content_type,
                    body,
                );
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                    .expect("valid response");
                send.send_response(response);
            }
        });
        let client = Client::new(service, NS);
        let ctx = Arc::new(Context::new(
            client,
            Arc::new(MemoryTopicManager::default()),
            Default::default(),
        ));
        Self { api, ctx }
    }

    /// One reconcile pass; returns its duration, requests and writes.
    async fn pass(&self) -> anyhow::Result<(Duration, u64, u64)> {
        let (stack, r0, w0) = {
            let api = self.api.lock().expect("fake api lock");
            let stack: ShortenerStack = serde_json::from_value(api.objects[STACK_PATH].clone())?;
            (Arc::new(stack), api.requests, api.writes)
        };
        let t = Instant::now();
        reconcile(stack, self.ctx.clone()).await?;
        let took = t.elapsed();
        let api = self.api.lock().expect("fake api lock");
        Ok((took, api.requests - r0, api.writes - w0))
    }

    /// Plays the controllers that do not exist here: the migration Job completes and the
    /// Deployments become ready.
    fn settle_children(&self) {
        let mut api = self.api.lock().expect("fake api lock");
        for (path, obj) in api.objects.iter_mut() {
            if path.starts_with(JOBS) {
                obj["status"] = json!({"conditions": [{"type": "Complete", "status": "True", "reason": "", "message": ""}]});
            }
            if path.starts_with(DEPLOY) {
                let replicas = obj["spec"]["replicas"].clone();
                obj["status"] = json!({"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
            }
        }
    }
}

pub async fn run(env: &BenchEnv, noop_passes: usize) -> anyhow::Result<Vec<Row>> {
    let h = Harness::new();
    // Creation: finalizer, config + migration Job, rollout, ready.
    let mut creation = Vec::new();
    for step in 0..4 {
        if step >= 2 {
            h.settle_children();
        }
        let (took, requests, writes) = h.pass().await?;
        creation.push(json!({"pass": step + 1, "ms": took.as_secs_f64() * 1000.0, "requests": requests, "writes": writes}));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut writes, mut requests) = (0, 0);
    for _ in 0..noop_passes {
        let (took, r, w) = h.pass().await?;
        hist.record(took.as_micros().max(1) as u64)?;
        writes += w;
        requests += r;
    }
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
            requests as f64 / noop_passes as f64,
            "req",
        ),
        Row::new(
            "operator",
            "writes per no-op pass",
            writes as f64 / noop_passes as f64,
            "writes",
        )
        .equals(0.0),
    ];
    crate::results::write_json(
        &env.results_dir,
        "operator",
        &rows,
        json!({
            "api": "in-memory fake API server behind tower_test::mock (no network)",
            "creation_passes": creation,
            "noop_passes": noop_passes,
            "noop_writes_total": writes,
        }),
    )?;
    Ok(rows)
}
