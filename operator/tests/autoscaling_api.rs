//! The autoscaler's Kubernetes API traffic, request by request, against a mocked API
//! server (`tower_test::mock::pair` behind `kube::Client`) and a fixed lag source.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use shortener_operator::autoscaling::{
    Autoscaler, AutoscalingMetrics, LagError, LagReport, LagSource, PartitionLag,
};
use shortener_operator::crd::ShortenerStack;
use shortener_operator::topic::KafkaConnection;
use tower_test::mock::{self, Handle, SendResponse};

const SCALE_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/demo-consumer/scale";
const STATUS_PATH: &str =
    "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const SCALED_OBJECT_PATH: &str =
    "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/demo-consumer";
const TRIGGER_AUTH_PATH: &str =
    "/apis/keda.sh/v1alpha1/namespaces/shop/triggerauthentications/demo-consumer-kafka";

/// A lag source that reports `total` spread over `partitions` and counts its calls.
struct FixedLag {
    total: i64,
    partitions: i32,
    calls: AtomicUsize,
}

impl FixedLag {
    fn new(total: i64, partitions: i32) -> Arc<Self> {
        Arc::new(Self {
            total,
            partitions,
            calls: AtomicUsize::new(0),
        })
    }
}

impl LagSource for FixedLag {
    fn measure<'a>(
        &'a self,
        _connection: &'a KafkaConnection,
        group: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<LagReport, LagError>> {
        assert_eq!(group, "shortener-consumer");
        assert_eq!(topic, "clicks");
        self.calls.fetch_add(1, Ordering::SeqCst);
        let per = self.total / i64::from(self.partitions);
        let mut parts: Vec<PartitionLag> = (0..self.partitions)
            .map(|p| PartitionLag::new(p, 0, per, Some(0)))
            .collect();
        let rest = self.total - per * i64::from(self.partitions);
        parts[0] = PartitionLag::new(0, 0, per + rest, Some(0));
        async move { Ok(LagReport::from_partitions(parts)) }.boxed()
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

fn setup(lag: Arc<FixedLag>) -> (Autoscaler, Handle<Request<Body>, Response<Body>>, Registry) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut registry = Registry::default();
    let metrics = AutoscalingMetrics::register(&mut registry);
    (Autoscaler::new(client, lag, metrics), handle, registry)
}

/// The next request, or a panic naming what was expected.
async fn next(
    handle: &mut Handle<Request<Body>, Response<Body>>,
    expected: &str,
) -> (Request<Body>, SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(30), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request arrived; expected {expected}"))
        .unwrap_or_else(|| panic!("client gone; expected {expected}"))
}

async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn query(request: &Request<Body>) -> String {
    request.uri().query().unwrap_or_default().to_string()
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn not_found(send: SendResponse<Response<Body>>) {
    respond(
        send,
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    );
}

fn scale(spec_replicas: i32, status_replicas: i32) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "demo-consumer", "namespace": "shop"},
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": "app.kubernetes.io/name=consumer"},
    })
}

/// Serves `GET scale` with the given counts.
async fn serve_get_scale(
    handle: &mut Handle<Request<Body>, Response<Body>>,
    spec_replicas: i32,
    status_replicas: i32,
) {
    let (req, send) = next(handle, "GET scale").await;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), SCALE_PATH);
    respond(send, StatusCode::OK, scale(spec_replicas, status_replicas));
}

/// Serves `PATCH scale` and returns its body.
async fn serve_patch_scale(handle: &mut Handle<Request<Body>, Response<Body>>) -> Value {
    let (req, send) = next(handle, "PATCH scale").await;
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), SCALE_PATH);
    assert_eq!(
        req.headers()["content-type"],
        "application/merge-patch+json"
    );
    assert!(
        query(&req).contains("fieldManager=shortener-operator"),
        "{}",
        query(&req)
    );
    let body = body_json(req).await;
    let replicas = body["spec"]["replicas"].as_i64().unwrap() as i32;
    respond(send, StatusCode::OK, scale(replicas, replicas));
    body
}

/// Serves the status `PATCH` and returns its body.
async fn serve_patch_status(
    handle: &mut Handle<Request<Body>, Response<Body>>,
    stack: &ShortenerStack,
) -> Value {
    let (req, send) = next(handle, "PATCH status").await;
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), STATUS_PATH);
    assert_eq!(
        req.headers()["content-type"],
        "application/merge-patch+json"
    );
    let body = body_json(req).await;
    respond(send, StatusCode::OK, serde_json::to_value(stack).unwrap());
    body
}

/// Serves the Event `POST` and returns its body.
async fn serve_event(handle: &mut Handle<Request<Body>, Response<Body>>) -> Value {
    let (req, send) = next(handle, "POST event").await;
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), EVENTS_PATH);
    let body = body_json(req).await;
    respond(send, StatusCode::CREATED, body.clone());
    body
}

/// Drops the autoscaler (every client clone) and asserts no request is left.
async fn assert_no_more_requests(
    autoscaler: Autoscaler,
    mut handle: Handle<Request<Body>, Response<Body>>,
) {
    drop(autoscaler);
    let rest = tokio::time::timeout(Duration::from_secs(30), handle.next_request())
        .await
        .expect("the mock service is released once the client is gone");
    if let Some((req, _)) = rest {
        panic!("unexpected request: {} {}", req.method(), req.uri());
    }
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
    let (autoscaler, mut handle, registry) = setup(lag.clone());
    let s = stack("builtin", Some((0, 1, 1)));
    let connection = KafkaConnection::plaintext("kafka:9092");

    let (outcome, ()) = tokio::join!(autoscaler.scale_once(&s, &connection, t(0)), async {
        serve_get_scale(&mut handle, 1, 1).await;

        let patch = serve_patch_scale(&mut handle).await;
        // 5000 messages at 1000 per pod need 4 pods; maxScaleUpStep 2 allows 3.
        assert_eq!(patch, json!({"spec": {"replicas": 3}}));

        let status = serve_patch_status(&mut handle, &s).await;
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

        let event = serve_event(&mut handle).await;
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
    });
    let outcome = outcome.expect("scale pass");
    assert!(outcome.scaled);
    assert!(outcome.status_written);
    assert_eq!(outcome.decision.desired, 3);
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);

    let text = metrics_text(&registry);
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

    assert_no_more_requests(autoscaler, handle).await;
}

#[tokio::test]
async fn unchanged_decision_writes_nothing() {
    let lag = FixedLag::new(800, 4);
    let (autoscaler, mut handle, registry) = setup(lag.clone());
    // The status already shows this lag and count.
    let s = stack("builtin", Some((800, 1, 1)));
    let connection = KafkaConnection::plaintext("kafka:9092");

    let (outcome, ()) = tokio::join!(autoscaler.scale_once(&s, &connection, t(0)), async {
        serve_get_scale(&mut handle, 1, 1).await;
    });
    let outcome = outcome.expect("scale pass");
    assert!(!outcome.scaled);
    assert!(!outcome.status_written);
    assert_eq!(outcome.decision.desired, 1);
    assert_eq!(outcome.decision.reason.name(), "Steady");
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"shortener_operator_consumer_lag{namespace="shop",name="demo"} 800"#),
        "{text}"
    );
    assert!(!text.contains("direction="), "{text}");

    assert_no_more_requests(autoscaler, handle).await;
}

#[tokio::test]
async fn scale_down_waits_for_the_window_then_patches_once() {
    let lag = FixedLag::new(0, 4);
    let (autoscaler, mut handle, registry) = setup(lag);
    let s = stack("builtin", Some((0, 3, 3)));
    let connection = KafkaConnection::plaintext("kafka:9092");

    // First sight with 3 pods and no lag: the pods are held for the 300 s window.
    let (outcome, ()) = tokio::join!(autoscaler.scale_once(&s, &connection, t(0)), async {
        serve_get_scale(&mut handle, 3, 3).await;
    });
    let outcome = outcome.expect("first pass");
    assert!(!outcome.scaled && !outcome.status_written);
    assert_eq!(outcome.decision.reason.name(), "Stabilized");

    let (outcome, ()) = tokio::join!(autoscaler.scale_once(&s, &connection, t(299)), async {
        serve_get_scale(&mut handle, 3, 3).await;
    });
    assert!(!outcome.expect("second pass").scaled);

    let (outcome, ()) = tokio::join!(autoscaler.scale_once(&s, &connection, t(300)), async {
        serve_get_scale(&mut handle, 3, 3).await;
        assert_eq!(
            serve_patch_scale(&mut handle).await,
            json!({"spec": {"replicas": 1}})
        );
        let status = serve_patch_status(&mut handle, &s).await;
        assert_eq!(status["status"]["consumer"]["desiredReplicas"], 1);
        assert_eq!(status["status"]["consumer"]["currentReplicas"], 3);
        let event = serve_event(&mut handle).await;
        assert_eq!(event["reason"], "ScaledDown");
    });
    let outcome = outcome.expect("third pass");
    assert!(outcome.scaled);
    assert_eq!(outcome.decision.desired, 1);
    let text = metrics_text(&registry);
    assert!(text.contains(r#"direction="down"} 1"#), "{text}");

    assert_no_more_requests(autoscaler, handle).await;
}

async fn connect() -> Result<KafkaConnection, std::convert::Infallible> {
    Ok(KafkaConnection::plaintext("kafka:9092"))
}

#[tokio::test]
async fn builtin_reconcile_measures_once_per_interval() {
    let lag = FixedLag::new(800, 4);
    let (autoscaler, mut handle, _registry) = setup(lag.clone());
    let mut s = stack("builtin", Some((800, 1, 1)));
    s.spec.consumer.autoscaling.interval_seconds = 1;

    // First pass after a start: KEDA objects (from keda mode) to remove? None.
    let (requeue, ()) = tokio::join!(autoscaler.reconcile(&s, connect), async {
        let (req, send) = next(&mut handle, "GET ScaledObject").await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), SCALED_OBJECT_PATH);
        not_found(send);
        let (req, send) = next(&mut handle, "GET TriggerAuthentication").await;
        assert_eq!(req.uri().path(), TRIGGER_AUTH_PATH);
        not_found(send);
        serve_get_scale(&mut handle, 1, 1).await;
    });
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(1)));
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);

    // From here on the clock only moves when told, so a slow machine cannot push the next
    // pass past the interval.
    tokio::time::pause();

    // A reconcile within the interval (e.g. caused by a status write) does nothing and
    // asks to come back when the interval is over.
    let requeue = autoscaler.reconcile(&s, connect).await.expect("reconcile");
    assert!(requeue.unwrap() <= Duration::from_secs(1), "{requeue:?}");
    assert_eq!(lag.calls.load(Ordering::SeqCst), 1);

    // Once the interval has passed: measured again, without the KEDA check.
    tokio::time::advance(Duration::from_millis(1100)).await;
    let (requeue, ()) = tokio::join!(autoscaler.reconcile(&s, connect), async {
        serve_get_scale(&mut handle, 1, 1).await;
    });
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(1)));
    assert_eq!(lag.calls.load(Ordering::SeqCst), 2);

    assert_no_more_requests(autoscaler, handle).await;
}

#[tokio::test]
async fn builtin_mode_does_not_compete_with_a_leftover_scaled_object() {
    let lag = FixedLag::new(50_000, 4);
    let (autoscaler, mut handle, _registry) = setup(lag.clone());
    let s = stack("builtin", Some((0, 1, 1)));

    let (requeue, ()) = tokio::join!(autoscaler.reconcile(&s, connect), async {
        let (req, send) = next(&mut handle, "GET ScaledObject").await;
        assert_eq!(req.uri().path(), SCALED_OBJECT_PATH);
        respond(
            send,
            StatusCode::OK,
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                   "metadata": {"name": "demo-consumer", "namespace": "shop"}, "spec": {}}),
        );
        // Not this stack's (no owner reference): left alone.
        let (req, send) = next(&mut handle, "GET TriggerAuthentication").await;
        assert_eq!(req.uri().path(), TRIGGER_AUTH_PATH);
        not_found(send);
        let event = serve_event(&mut handle).await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "KedaScaledObjectPresent");
    });
    assert_eq!(requeue.expect("reconcile"), Some(Duration::from_secs(15)));
    // Neither measured nor scaled.
    assert_eq!(lag.calls.load(Ordering::SeqCst), 0);

    assert_no_more_requests(autoscaler, handle).await;
}

#[tokio::test]
async fn keda_mode_applies_a_scaled_object_and_never_touches_the_scale() {
    let lag = FixedLag::new(5000, 4);
    let (autoscaler, mut handle, _registry) = setup(lag.clone());
    let s = stack("keda", None);

    let (requeue, ()) = tokio::join!(autoscaler.reconcile(&s, connect), async {
        // Plaintext Kafka: no TriggerAuthentication, and none left from an earlier spec.
        let (req, send) = next(&mut handle, "GET TriggerAuthentication").await;
        assert_eq!(req.uri().path(), TRIGGER_AUTH_PATH);
        not_found(send);
        let (req, send) = next(&mut handle, "GET ScaledObject").await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), SCALED_OBJECT_PATH);
        not_found(send);

        let (req, send) = next(&mut handle, "apply ScaledObject").await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri().path(), SCALED_OBJECT_PATH);
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let q = query(&req);
        assert!(q.contains("fieldManager=shortener-operator"), "{q}");
        assert!(q.contains("force=true"), "{q}");
        let body = body_json(req).await;
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
        respond(send, StatusCode::OK, body.clone());
    });
    assert_eq!(requeue.expect("reconcile"), None);
    // KEDA measures; the operator neither read the lag nor touched the Deployment.
    assert_eq!(lag.calls.load(Ordering::SeqCst), 0);

    assert_no_more_requests(autoscaler, handle).await;
}

#[tokio::test]
async fn keda_mode_with_sasl_applies_the_trigger_authentication_first() {
    let lag = FixedLag::new(0, 4);
    let (autoscaler, mut handle, _registry) = setup(lag);
    let mut s = stack("keda", None);
    s.spec.kafka.sasl =
        serde_json::from_value(json!({"secretRef": {"name": "kafka-user"}})).unwrap();

    let (requeue, ()) = tokio::join!(autoscaler.reconcile(&s, connect), async {
        for (path, kind) in [
            (TRIGGER_AUTH_PATH, "TriggerAuthentication"),
            (SCALED_OBJECT_PATH, "ScaledObject"),
        ] {
            let (req, send) = next(&mut handle, "GET").await;
            assert_eq!(req.method(), Method::GET);
            assert_eq!(req.uri().path(), path);
            not_found(send);
            let (req, send) = next(&mut handle, "apply").await;
            assert_eq!(req.method(), Method::PATCH);
            assert_eq!(req.uri().path(), path);
            assert!(query(&req).contains("fieldManager=shortener-operator"));
            let body = body_json(req).await;
            assert_eq!(body["kind"], kind);
            if kind == "TriggerAuthentication" {
                assert_eq!(
                    body["spec"]["secretTargetRef"][0],
                    json!({"parameter": "username", "name": "kafka-user", "key": "username"})
                );
            } else {
                let trigger = &body["spec"]["triggers"][0];
                assert_eq!(trigger["authenticationRef"]["name"], "demo-consumer-kafka");
                assert_eq!(trigger["metadata"]["sasl"], "scram_sha512");
            }
            respond(send, StatusCode::OK, body.clone());
        }
    });
    assert_eq!(requeue.expect("reconcile"), None);

    assert_no_more_requests(autoscaler, handle).await;
}
