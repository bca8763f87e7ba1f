//! The autoscaler's Kubernetes API traffic, request by request, against the shared fake
//! API server (`shortener_testkit::kube_api`) and a fixed lag source.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use shortener_operator::autoscaling::{
    Autoscaler, AutoscalingMetrics, LagError, LagReport, LagSource, PartitionLag,
};
use shortener_operator::crd::ShortenerStack;
use shortener_operator::topic::KafkaConnection;
use shortener_testkit::kube_api::{FakeApiServer, Recorded};

const STACK_PATH: &str = "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/demo-consumer";
const SCALE_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/demo-consumer/scale";
const STATUS_PATH: &str =
    "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const SCALED_OBJECT_PATH: &str =
    "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/demo-consumer";
const TRIGGER_AUTH_PATH: &str =
    "/apis/keda.sh/v1alpha1/namespaces/shop/triggerauthentications/demo-consumer-kafka";

/// A lag source that reports `total` spread over `partitions`, counts its calls and
/// records the stacks it measured for and was told to forget.
struct FixedLag {
    total: i64,
    partitions: i32,
    calls: AtomicUsize,
    measured_for: Mutex<Vec<String>>,
    forgotten: Mutex<Vec<String>>,
}

impl FixedLag {
    fn new(total: i64, partitions: i32) -> Arc<Self> {
        Arc::new(Self {
            total,
            partitions,
            calls: AtomicUsize::new(0),
            measured_for: Mutex::default(),
            forgotten: Mutex::default(),
        })
    }
}

impl LagSource for FixedLag {
    fn measure<'a>(
        &'a self,
        stack: &'a str,
        _connection: &'a KafkaConnection,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<LagReport, LagError>> {
        assert_eq!(group, "shortener-consumer");
        assert_eq!(topic, "clicks");
        self.measured_for.lock().unwrap().push(stack.to_string());
        self.calls.fetch_add(1, Ordering::SeqCst);
        let per = self.total / i64::from(self.partitions);
        let mut parts: Vec<PartitionLag> = (0..self.partitions)
            .map(|p| PartitionLag::new(p, 0, per, Some(0)))
            .collect();
        let rest = self.total - per * i64::from(self.partitions);
        parts[0] = PartitionLag::new(0, 0, per + rest, Some(0));
        async move { Ok(LagReport::from_partitions(parts)) }.boxed()
    }

    fn forget(&self, stack: &str) {
        self.forgotten.lock().unwrap().push(stack.to_string());
    }
}

/// `demo` in `shop` with the given consumer status (lastMeasuredLag, desired, current).
fn stack(mode: &str, status: Option<(i64, i32, i32)>) -> ShortenerStack {
    let mut object = json!({
        "apiVersion": "shortener.example.io/v1alpha1",
        "kind": "ShortenerStack",
        "metadata": {
            "name": "demo",
            "namespace": "shop",
            "uid": "8d4a3c1e-0000-4000-8000-000000000001",
            "generation": 1,
        },
        "spec": {
            "kafka": {"bootstrapServers": "kafka:9092"},
            "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}},
            "consumer": {"autoscaling": {"mode": mode}},
        },
    });
    if let Some((lag, desired, current)) = status {
        object["status"] = json!({
            "lastMeasuredLag": lag,
            "consumer": {"readyReplicas": current, "desiredReplicas": desired, "currentReplicas": current},
        });
    }
    serde_json::from_value(object).expect("stack parses")
}

/// The fake API server holding the stack and its consumer Deployment (`spec_replicas`
/// declared, `status_replicas` running), and an autoscaler talking to it.
struct World {
    api: FakeApiServer,
    autoscaler: Autoscaler,
    registry: Registry,
}

impl World {
    fn new(lag: Arc<FixedLag>, stack: &ShortenerStack, replicas: Option<(i32, i32)>) -> Self {
        let api = FakeApiServer::new();
        api.put_as("kubectl", serde_json::to_value(stack).unwrap());
        if let Some(status) = &stack.status {
            api.set_status(STACK_PATH, serde_json::to_value(status).unwrap());
        }
        if let Some((spec_replicas, status_replicas)) = replicas {
            api.put_as(
                "shortener-operator",
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "demo-consumer", "namespace": "shop"},
                    "spec": {"replicas": spec_replicas}
                }),
            );
            api.set_status(DEPLOY_PATH, json!({"replicas": status_replicas}));
        }
        let mut registry = Registry::default();
        let metrics = AutoscalingMetrics::register(&mut registry);
        let autoscaler = Autoscaler::new(api.client("shop"), lag, metrics);
        Self {
            api,
            autoscaler,
            registry,
        }
    }

    /// The stack as stored now (what the controller would hand the next pass).
    fn stack(&self) -> ShortenerStack {
        serde_json::from_value(self.api.get(STACK_PATH).unwrap()).unwrap()
    }

    fn replicas(&self) -> Value {
        self.api.get(DEPLOY_PATH).unwrap()["spec"]["replicas"].clone()
    }
}

fn lines(log: &[Recorded]) -> Vec<String> {
    log.iter().map(Recorded::line).collect()
}

/// The one request of the log with this method and path.
fn request<'a>(log: &'a [Recorded], method: &str, path: &str) -> &'a Recorded {
    let found: Vec<&Recorded> = log
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .collect();
    assert_eq!(found.len(), 1, "{method} {path} in {:?}", lines(log));
    found[0]
}

/// A merge patch of the scale subresource by this operator.
fn assert_scale_patch(log: &[Recorded], replicas: i32) {
    let patch = request(log, "PATCH", SCALE_PATH);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.query["fieldManager"], "shortener-operator");
    assert_eq!(patch.body, json!({"spec": {"replicas": replicas}}));
}

fn status_patch(log: &[Recorded]) -> &Value {
    let patch = request(log, "PATCH", STATUS_PATH);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    &patch.body
}

fn s(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

#[tokio::test]
async fn scale_up_is_one_scale_patch_one_status_patch_and_an_event() {
    let lag = FixedLag::new(5000, 4);
    let w = World::new(
        lag.clone(),
        &stack("builtin", Some((0, 1, 1))),
        Some((1, 1)),
    );
    let connection = KafkaConnection::plaintext("kafka:9092");

    let mark = w.api.mark();
    let outcome = w
        .autoscaler
        .scale_once(&w.stack(), &connection, t(0))
        .await
        .expect("scale pass");
    let log = w.api.log_since(mark);
    assert_eq!(
        lines(&log),
        s(&[
            &format!("GET {SCALE_PATH}"),
            &format!("PATCH {SCALE_PATH}"),
            &format!("PATCH {STATUS_PATH}"),
            &format!("POST {EVENTS_PATH}"),
        ])
    );
    // 5000 messages at 1000 per pod need 4 pods; maxScaleUpStep 2 allows 3.
    assert_scale_patch(&log, 3);
    assert_eq!(w.replicas(), 3);

    let status = status_patch(&log);
    assert_eq!(status["status"]["lastMeasuredLag"], 5000);
    let consumer = &status["status"]["consumer"];
    assert_eq!(consumer["desiredReplicas"], 3);
    assert_eq!(consumer["currentReplicas"], 1);
    assert_eq!(consumer["lastScaleTime"], "2027-01-15T08:00:00Z");
    assert_eq!(
        consumer["lastScaleReason"],
        "lag 5000 needs 4 replicas: scaled up from 1 to 3 (limited by maxScaleUpStep)"
    );
    // A merge patch of exactly these fields: readyReplicas, conditions... stay as they are.
    assert_eq!(status["status"].as_object().unwrap().len(), 2);
    assert_eq!(consumer.as_object().unwrap().len(), 4);
    let stored = w.api.get(STACK_PATH).unwrap();
    assert_eq!(stored["status"]["consumer"]["readyReplicas"], 1);
    assert_eq!(stored["status"]["consumer"]["desiredReplicas"], 3);

    let event = &request(&log, "POST", EVENTS_PATH).body;
    assert_eq!(event["reason"], "ScaledUp");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["action"], "ScaleConsumer");
    assert_eq!(event["regarding"]["kind"], "ShortenerStack");
    assert_eq!(event["regarding"]["name"], "demo");
    assert_eq!(event["reportingController"], "shortener-operator");
    assert!(event["note"]
        .as_str()
        .unwrap()
        .contains("scaled up from 1 to 3"));

    assert!(outcome.scaled);
    assert!(outcome.status_written);
    assert_eq!(outcome.decision.desired, 3);
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);

    let text = metrics_text(&w.registry);
    assert!(
        text.contains(r#"shortener_operator_consumer_lag{namespace="shop",name="demo"} 5000"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"shortener_operator_consumer_desired_replicas{namespace="shop",name="demo"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"shortener_operator_consumer_scale_events_total{namespace="shop",name="demo",direction="up"} 1"#), "{text}");
}

#[tokio::test]
async fn unchanged_decision_writes_nothing() {
    let lag = FixedLag::new(800, 4);
    // The status already shows this lag and count.
    let w = World::new(
        lag.clone(),
        &stack("builtin", Some((800, 1, 1))),
        Some((1, 1)),
    );
    let connection = KafkaConnection::plaintext("kafka:9092");

    let mark = w.api.mark();
    let outcome = w
        .autoscaler
        .scale_once(&w.stack(), &connection, t(0))
        .await
        .expect("scale pass");
    assert_eq!(
        lines(&w.api.log_since(mark)),
        s(&[&format!("GET {SCALE_PATH}")])
    );
    assert!(!outcome.scaled);
    assert!(!outcome.status_written);
    assert_eq!(outcome.decision.desired, 1);
    assert_eq!(outcome.decision.reason.name(), "Steady");
    let text = metrics_text(&w.registry);
    assert!(
        text.contains(r#"shortener_operator_consumer_lag{namespace="shop",name="demo"} 800"#),
        "{text}"
    );
    assert!(!text.contains("direction="), "{text}");
}

#[tokio::test]
async fn scale_down_waits_for_the_window_then_patches_once() {
    let lag = FixedLag::new(0, 4);
    let w = World::new(lag, &stack("builtin", Some((0, 3, 3))), Some((3, 3)));
    let connection = KafkaConnection::plaintext("kafka:9092");
    let only_read = s(&[&format!("GET {SCALE_PATH}")]);

    // First sight with 3 pods and no lag: the pods are held for the 300 s window.
    let mark = w.api.mark();
    let outcome = w
        .autoscaler
        .scale_once(&w.stack(), &connection, t(0))
        .await
        .expect("first pass");
    assert_eq!(lines(&w.api.log_since(mark)), only_read);
    assert!(!outcome.scaled && !outcome.status_written);
    assert_eq!(outcome.decision.reason.name(), "Stabilized");

    let mark = w.api.mark();
    let outcome = w
        .autoscaler
        .scale_once(&w.stack(), &connection, t(299))
        .await
        .expect("second pass");
    assert_eq!(lines(&w.api.log_since(mark)), only_read);
    assert!(!outcome.scaled);
    assert_eq!(w.replicas(), 3);

    let mark = w.api.mark();
    let outcome = w
        .autoscaler
        .scale_once(&w.stack(), &connection, t(300))
        .await
        .expect("third pass");
    let log = w.api.log_since(mark);
    assert_eq!(
        lines(&log),
        s(&[
            &format!("GET {SCALE_PATH}"),
            &format!("PATCH {SCALE_PATH}"),
            &format!("PATCH {STATUS_PATH}"),
            &format!("POST {EVENTS_PATH}"),
        ])
    );
    assert_scale_patch(&log, 1);
    assert_eq!(w.replicas(), 1);
    let status = status_patch(&log);
    assert_eq!(status["status"]["consumer"]["desiredReplicas"], 1);
    assert_eq!(status["status"]["consumer"]["currentReplicas"], 3);
    assert_eq!(
        request(&log, "POST", EVENTS_PATH).body["reason"],
        "ScaledDown"
    );
    assert!(outcome.scaled);
    assert_eq!(outcome.decision.desired, 1);
    let text = metrics_text(&w.registry);
    assert!(text.contains(r#"direction="down"} 1"#), "{text}");
}

async fn connect() -> Result<KafkaConnection, std::convert::Infallible> {
    Ok(KafkaConnection::plaintext("kafka:9092"))
}

#[tokio::test]
async fn builtin_reconcile_measures_once_per_interval() {
    let lag = FixedLag::new(800, 4);
    let mut s0 = stack("builtin", Some((800, 1, 1)));
    s0.spec.consumer.autoscaling.interval_seconds = 1;
    let w = World::new(lag.clone(), &s0, Some((1, 1)));
    let stack = w.stack();

    // First pass after a start: KEDA objects (from keda mode) to remove? None.
    let mark = w.api.mark();
    let requeue = w.autoscaler.reconcile(&stack, connect).await;
    assert_eq!(
        lines(&w.api.log_since(mark)),
        s(&[
            &format!("GET {SCALED_OBJECT_PATH}"),
            &format!("GET {TRIGGER_AUTH_PATH}"),
            &format!("GET {SCALE_PATH}"),
        ])
    );
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(1)));
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);

    // From here on the clock only moves when told, so a slow machine cannot push the next
    // pass past the interval.
    tokio::time::pause();

    // A reconcile within the interval (e.g. caused by a status write) does nothing and
    // asks to come back when the interval is over.
    let mark = w.api.mark();
    let requeue = w
        .autoscaler
        .reconcile(&stack, connect)
        .await
        .expect("reconcile");
    assert!(requeue.unwrap() <= Duration::from_secs(1), "{requeue:?}");
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);
    assert_eq!(lines(&w.api.log_since(mark)), Vec::<String>::new());

    // Once the interval has passed: measured again, without the KEDA check.
    tokio::time::advance(Duration::from_millis(1100)).await;
    let mark = w.api.mark();
    let requeue = w.autoscaler.reconcile(&stack, connect).await;
    assert_eq!(
        lines(&w.api.log_since(mark)),
        s(&[&format!("GET {SCALE_PATH}")])
    );
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(1)));
    assert_eq!(lag.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn builtin_mode_does_not_compete_with_a_leftover_scaled_object() {
    let lag = FixedLag::new(50_000, 4);
    let w = World::new(
        lag.clone(),
        &stack("builtin", Some((0, 1, 1))),
        Some((1, 1)),
    );
    // Not this stack's (no owner reference): left alone.
    w.api.put_as(
        "kubectl",
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
               "metadata": {"name": "demo-consumer", "namespace": "shop"}, "spec": {}}),
    );

    let mark = w.api.mark();
    let requeue = w.autoscaler.reconcile(&w.stack(), connect).await;
    let log = w.api.log_since(mark);
    assert_eq!(
        lines(&log),
        s(&[
            &format!("GET {SCALED_OBJECT_PATH}"),
            &format!("GET {TRIGGER_AUTH_PATH}"),
            &format!("POST {EVENTS_PATH}"),
        ])
    );
    let event = &log[2].body;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "KedaScaledObjectPresent");
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(15)));
    // Neither measured nor scaled.
    assert_eq!(lag.calls.load(Ordering::SeqCst), 0);
    assert_eq!(w.replicas(), 1);
    assert!(w.api.get(SCALED_OBJECT_PATH).is_some());
}

#[tokio::test]
async fn keda_mode_applies_a_scaled_object_and_never_touches_the_scale() {
    let lag = FixedLag::new(5000, 4);
    let w = World::new(lag.clone(), &stack("keda", None), Some((1, 1)));

    let mark = w.api.mark();
    let requeue = w.autoscaler.reconcile(&w.stack(), connect).await;
    let log = w.api.log_since(mark);
    // Plaintext Kafka: no TriggerAuthentication, and none left from an earlier spec.
    assert_eq!(
        lines(&log),
        s(&[
            &format!("GET {TRIGGER_AUTH_PATH}"),
            &format!("GET {SCALED_OBJECT_PATH}"),
            &format!("PATCH {SCALED_OBJECT_PATH}"),
        ])
    );
    let apply = request(&log, "PATCH", SCALED_OBJECT_PATH);
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(apply.query["fieldManager"], "shortener-operator");
    assert_eq!(apply.query["force"], "true");
    let body = &apply.body;
    assert_eq!(body["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(body["kind"], "ScaledObject");
    assert_eq!(body["metadata"]["name"], "demo-consumer");
    assert_eq!(body["metadata"]["ownerReferences"][0]["name"], "demo");
    assert!(body["metadata"]["annotations"]["shortener.example.io/desired-hash"].is_string());
    let spec = &body["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], "demo-consumer");
    assert_eq!(spec["minReplicaCount"], 1);
    assert_eq!(spec["maxReplicaCount"], 4);
    assert_eq!(spec["triggers"][0]["type"], "kafka");
    assert_eq!(
        spec["triggers"][0]["metadata"]["consumerGroup"],
        "shortener-consumer"
    );
    assert_eq!(spec["triggers"][0]["metadata"]["topic"], "clicks");
    assert_eq!(spec["triggers"][0]["metadata"]["lagThreshold"], "1000");
    assert_eq!(
        w.api.get(SCALED_OBJECT_PATH).unwrap()["spec"]["scaleTargetRef"]["name"],
        "demo-consumer"
    );
    assert_eq!(requeue.expect("reconcile"), None);
    // KEDA measures; the operator neither read the lag nor touched the Deployment.
    assert_eq!(lag.calls.load(Ordering::SeqCst), 0);
    assert_eq!(w.replicas(), 1);
}

#[tokio::test]
async fn keda_mode_with_sasl_applies_the_trigger_authentication_first() {
    let lag = FixedLag::new(0, 4);
    let mut s0 = stack("keda", None);
    s0.spec.kafka.sasl =
        serde_json::from_value(json!({"secretRef": {"name": "kafka-user"}})).unwrap();
    let w = World::new(lag, &s0, Some((1, 1)));

    let mark = w.api.mark();
    let requeue = w.autoscaler.reconcile(&w.stack(), connect).await;
    let log = w.api.log_since(mark);
    assert_eq!(
        lines(&log),
        s(&[
            &format!("GET {TRIGGER_AUTH_PATH}"),
            &format!("PATCH {TRIGGER_AUTH_PATH}"),
            &format!("GET {SCALED_OBJECT_PATH}"),
            &format!("PATCH {SCALED_OBJECT_PATH}"),
        ])
    );
    for r in log.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(r.query["fieldManager"], "shortener-operator");
    }
    let auth = &request(&log, "PATCH", TRIGGER_AUTH_PATH).body;
    assert_eq!(auth["kind"], "TriggerAuthentication");
    assert_eq!(
        auth["spec"]["secretTargetRef"][0],
        json!({"parameter": "username", "name": "kafka-user", "key": "username"})
    );
    let scaled = &request(&log, "PATCH", SCALED_OBJECT_PATH).body;
    assert_eq!(scaled["kind"], "ScaledObject");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["authenticationRef"]["name"], "demo-consumer-kafka");
    assert_eq!(trigger["metadata"]["sasl"], "scram_sha512");
    assert!(w.api.get(TRIGGER_AUTH_PATH).is_some());
    assert_eq!(requeue.expect("reconcile"), None);
}

#[tokio::test]
async fn the_lag_source_measures_per_stack_and_forgets_a_stack_that_goes_away() {
    let lag = FixedLag::new(800, 4);
    let w = World::new(
        lag.clone(),
        &stack("builtin", Some((800, 1, 1))),
        Some((1, 1)),
    );
    let stack = w.stack();
    w.autoscaler
        .reconcile(&stack, connect)
        .await
        .expect("reconcile");
    assert_eq!(*lag.measured_for.lock().unwrap(), s(&["shop/demo"]));
    assert!(lag.forgotten.lock().unwrap().is_empty());

    w.autoscaler.forget(&stack);
    assert_eq!(*lag.forgotten.lock().unwrap(), s(&["shop/demo"]));
}

#[tokio::test]
async fn keda_mode_lets_the_lag_source_drop_the_stacks_client() {
    let lag = FixedLag::new(800, 4);
    let w = World::new(
        lag.clone(),
        &stack("builtin", Some((800, 1, 1))),
        Some((1, 1)),
    );
    w.autoscaler
        .reconcile(&w.stack(), connect)
        .await
        .expect("builtin reconcile");
    assert!(lag.forgotten.lock().unwrap().is_empty());

    let keda = stack("keda", Some((800, 1, 1)));
    w.autoscaler
        .reconcile(&keda, connect)
        .await
        .expect("keda reconcile");
    assert_eq!(*lag.forgotten.lock().unwrap(), s(&["shop/demo"]));
}
