//! Day-2 scenarios through the real `reconcile` against the shared fake API server: hand
//! edits of owned objects, upgrades, and what a settled stack costs.

mod common;

use common::*;
use serde_json::json;

/// Each kind of child edited by hand is applied back in the next pass, and that pass is
/// the only one that writes.
#[tokio::test]
async fn hand_edits_of_each_child_kind_are_reverted_in_one_pass() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    let deploy = format!("{DEPLOY}/demo-url-api");
    let cm = format!("{CM}/demo-consumer-config");
    let svc = format!("{SVC}/demo-url-api");
    let image =
        h.get(&deploy).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let security = h.get(&deploy).unwrap()["spec"]["template"]["spec"]["containers"][0]
        ["securityContext"]
        .clone();

    h.hand_edit(&deploy, |d| {
        let c = &mut d["spec"]["template"]["spec"]["containers"][0];
        c["image"] = "evil.example/url-api:latest".into();
        c["securityContext"]["runAsNonRoot"] = false.into();
        c["securityContext"]["privileged"] = true.into();
    });
    h.hand_edit(&cm, |c| {
        c["data"]["BATCH_SIZE"] = "1".into();
        c["data"]["EXTRA"] = "kept".into();
    });
    h.hand_edit(&svc, |s| s["spec"]["ports"][0]["port"] = 9999.into());

    let (_, log) = h.pass().await;
    let mut w = writes(&log);
    w.sort();
    let mut expected = s(&[
        &format!("PATCH {CM}/demo-consumer-config"),
        &format!("PATCH {DEPLOY}/demo-url-api"),
        &format!("PATCH {SVC}/demo-url-api"),
        &format!("POST {EVENTS}"),
        // The reverted Deployment's generation moved: status says it rolls again.
        &format!("PATCH {STACK_PATH}/status"),
    ]);
    expected.sort();
    assert_eq!(w, expected);
    let event = log.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(event.body["reason"], "DriftReverted");
    let note = event.body["note"].as_str().unwrap();
    assert!(
        note.contains("Deployment demo-url-api: spec.template.spec.containers[0].image"),
        "{note}"
    );

    let d = h.get(&deploy).unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], image);
    assert_eq!(c["securityContext"], security);
    let data = &h.get(&cm).unwrap()["data"];
    assert_eq!(data["BATCH_SIZE"], "2000");
    // A key the operator never set is not the operator's to remove.
    assert_eq!(data["EXTRA"], "kept");
    assert_eq!(h.get(&svc).unwrap()["spec"]["ports"][0]["port"], 80);
    assert_eq!(
        h.api.owners_of(&deploy, "spec.template.spec.containers"),
        ["shortener-operator"]
    );

    // Converged: the next pass reads only.
    h.mark_deployments_ready();
    h.pass().await;
    let (_, log) = h.pass().await;
    assert_eq!(writes(&log), Vec::<String>::new());
}

/// A settled stack sends no PATCH and changes no resourceVersion, pass after pass.
#[tokio::test]
async fn a_settled_stack_writes_nothing() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    h.pass().await;
    for _ in 0..3 {
        let (_, log) = h.pass().await;
        assert_eq!(writes(&log), Vec::<String>::new());
        assert!(log.iter().all(|r| !r.changed));
    }
}

/// An upgrade (new image tag): a new migration Job runs first, then every Deployment
/// rolls to the new image.
#[tokio::test]
async fn upgrade_to_a_new_image_migrates_then_rolls() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    let old_job = h.job_path();
    h.edit_stack(|s| s["spec"]["image"] = json!({"tag": "0.2.0"}));
    let new_job = h.job_path();
    assert_ne!(old_job, new_job);

    let (_, log) = h.pass().await;
    assert!(writes(&log).contains(&format!("PATCH {new_job}")));
    for name in COMPONENTS {
        let d = h.get(&format!("{DEPLOY}/{name}")).unwrap();
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .ends_with(":0.1.0"),
            "{name} keeps the old image until the migration succeeded"
        );
    }
    h.mark_job("Complete", "", "");
    h.pass().await;
    for name in COMPONENTS {
        let d = h.get(&format!("{DEPLOY}/{name}")).unwrap();
        assert!(d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(":0.2.0"));
    }
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stack, "Progressing")["reason"], "RollingOut");
}

/// An upgrade whose migration fails: the workloads keep their image and config (only the
/// replica count follows the spec), a new Job retries after the backoff, and its success
/// rolls everything and removes the older Jobs.
#[tokio::test]
async fn failed_migration_is_retried_with_a_new_job_then_rolls() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    let v1_job = h.current_job_path();
    let cm = format!("{CM}/demo-url-api-config");
    let version =
        |v: &serde_json::Value| v["metadata"]["labels"]["app.kubernetes.io/version"].clone();
    h.edit_stack(|s| {
        s["spec"]["image"] = json!({"tag": "0.2.0"});
        s["spec"]["urlApi"] = json!({"replicas": 5});
    });
    h.pass().await;
    let first = h.current_job_path();
    assert_ne!(first, v1_job);
    h.finish_job(
        &first,
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
        Some(5),
    );

    let (_, log) = h.pass().await;
    let warning = log
        .iter()
        .find(|r| r.method == "POST" && r.body["reason"] == "MigrationFailed")
        .expect("a Warning event for the failed Job");
    assert_eq!(warning.body["type"], "Warning");
    let second = h.current_job_path();
    assert_ne!(second, first, "a retry is a new Job");
    assert!(writes(&log).contains(&format!("PATCH {second}")));
    let job = h.get(&second).unwrap();
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86_400);
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(stack["status"]["migration"]["attempts"], 2);
    assert_eq!(
        condition(&stack, "MigrationsApplied")["reason"],
        "MigrationRunning"
    );

    // Held back: image and config of the running version; scaling went through.
    let d = h.get(&format!("{DEPLOY}/demo-url-api")).unwrap();
    assert!(d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with(":0.1.0"));
    assert_eq!(
        d["spec"]["replicas"], 5,
        "scaling is not blocked by the migration"
    );
    assert_eq!(
        version(&h.get(&cm).unwrap()),
        "0.1.0",
        "config of the new image is held back"
    );

    h.finish_job(&second, "Complete", "", "", None);
    h.pass().await;
    let d = h.get(&format!("{DEPLOY}/demo-url-api")).unwrap();
    assert!(d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with(":0.2.0"));
    assert_eq!(version(&h.get(&cm).unwrap()), "0.2.0");
    assert_eq!(h.api.paths(JOBS), [second], "older Jobs removed");
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stack, "MigrationsApplied")["status"], "True");
}

/// A rollout the Deployment controller gave up on (pods never ready: an image that cannot
/// be pulled, a crash loop) degrades the stack instead of showing Progressing forever.
#[tokio::test]
async fn a_stuck_rollout_is_degraded_not_progressing() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    h.edit_stack(|s| s["spec"]["image"] = json!({"urlApi": {"tag": "does-not-exist"}}));
    h.pass().await;
    h.mark_job("Complete", "", "");
    h.pass().await;
    let path = format!("{DEPLOY}/demo-url-api");
    let d = h.get(&path).unwrap();
    h.api.set_status(
        &path,
        json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "unavailableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"demo-url-api-7c9\" has timed out progressing."}
            ]
        }),
    );
    h.pass().await;
    let stack = h.get(STACK_PATH).unwrap();
    let degraded = condition(&stack, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "RolloutStuck");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("demo-url-api") && message.contains("ProgressDeadlineExceeded"),
        "{message}"
    );
    let progressing = condition(&stack, "Progressing");
    assert_eq!(
        (
            progressing["status"].as_str(),
            progressing["reason"].as_str()
        ),
        (Some("False"), Some("RolloutStuck"))
    );
    assert_eq!(condition(&stack, "Ready")["status"], "False");
}

/// A pass that fails on an API error says so in the status instead of leaving the old
/// Ready=True, and the next good pass restores it.
#[tokio::test]
async fn an_api_error_on_a_child_is_written_to_the_status() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    assert_eq!(
        condition(&h.get(STACK_PATH).unwrap(), "Ready")["status"],
        "True"
    );
    h.api.fail(Fault {
        method: Some("GET".into()),
        path_contains: "/deployments/".into(),
        status: 500,
        times: None,
    });
    let (result, _) = h.try_pass().await;
    assert!(result.is_err());
    let stack = h.get(STACK_PATH).unwrap();
    let ready = condition(&stack, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ReconcileError"))
    );
    let degraded = condition(&stack, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"].as_str().unwrap().contains("500"),
        "{degraded}"
    );
    assert_eq!(
        condition(&stack, "MigrationsApplied")["status"],
        "True",
        "not observed again, kept"
    );

    h.api.heal();
    h.pass().await;
    assert_eq!(
        condition(&h.get(STACK_PATH).unwrap(), "Ready")["status"],
        "True"
    );
}

/// Rotating a Secret's value in place rolls the pods that read it (env vars from a Secret
/// are read at container start only); the operator reads the Secret's metadata, not its
/// value.
#[tokio::test]
async fn rotating_a_secret_rolls_the_pods_that_read_it() {
    let h = Harness::new(stack_json(false));
    let secret = format!("{SECRETS}/shortener-db");
    h.api.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "shortener-db", "namespace": NS},
        "data": {"url": "cG9zdGdyZXM6Ly9vbGQ="}
    }));
    h.settle().await;
    h.pass().await;
    let checksum = |name: &str| {
        h.get(&format!("{DEPLOY}/{name}")).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["shortener.example.io/config-checksum"]
            .clone()
    };
    let before: Vec<_> = COMPONENTS.iter().map(|c| checksum(c)).collect();
    let (_, log) = h.pass().await;
    assert_eq!(
        writes(&log),
        Vec::<String>::new(),
        "settled with the Secret read"
    );
    let secret_reads: Vec<&Recorded> = log.iter().filter(|r| r.path == secret).collect();
    assert_eq!(secret_reads.len(), 1);
    assert!(
        secret_reads[0]
            .accept
            .as_deref()
            .is_some_and(|a| a.contains("as=PartialObjectMetadata")),
        "metadata only: {:?}",
        secret_reads[0]
    );

    h.hand_edit(&secret, |s| {
        s["data"]["url"] = "cG9zdGdyZXM6Ly9uZXc=".into()
    });
    let (_, log) = h.pass().await;
    let mut rolled: Vec<String> = writes(&log)
        .into_iter()
        .filter(|w| w.starts_with(&format!("PATCH {DEPLOY}")))
        .collect();
    rolled.sort();
    assert_eq!(
        rolled.len(),
        3,
        "every component reads DATABASE_URL: {rolled:?}"
    );
    for (c, b) in COMPONENTS.iter().zip(&before) {
        assert_ne!(&checksum(c), b, "{c} rolls");
    }
}

/// Deleting a stack whose brokers are gone: deletion retries for a bounded time, then
/// gives up on the topics with a Warning event and lets the stack go.
#[tokio::test]
async fn deletion_with_kafka_unreachable_gives_up_after_the_deadline() {
    use shortener_operator::reconcile::{CLEANUP_DEADLINE, FINALIZER};
    let h = Harness::new(stack_json(true));
    h.settle().await;
    assert_eq!(
        h.get(STACK_PATH).unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    h.topics.set_unreachable(true);
    h.api.delete(STACK_PATH);

    // Just deleted: the cleanup fails and is retried; the finalizer holds the stack.
    let (result, log) = h.try_pass().await;
    assert!(result.is_err());
    assert!(h.get(STACK_PATH).is_some());
    assert!(!log
        .iter()
        .any(|r| r.body["reason"] == "TopicCleanupAbandoned"));

    // The deletion started longer ago than the deadline: give up, say so, let it go.
    let started = chrono::Utc::now()
        - chrono::Duration::from_std(CLEANUP_DEADLINE).unwrap()
        - chrono::Duration::seconds(5);
    let mut stack = h.get(STACK_PATH).unwrap();
    stack["metadata"]["deletionTimestamp"] =
        started.format("%Y-%m-%dT%H:%M:%SZ").to_string().into();
    let api = FakeApiServer::new();
    api.put_as("kubectl", stack);
    let h = Harness {
        api,
        topics: h.topics.clone(),
    };
    let (result, log) = h.try_pass().await;
    assert!(result.is_ok(), "{result:?}");
    let warning = log
        .iter()
        .find(|r| r.method == "POST" && r.body["reason"] == "TopicCleanupAbandoned")
        .expect("a Warning event");
    assert_eq!(warning.body["type"], "Warning");
    assert!(warning.body["note"].as_str().unwrap().contains("clicks"));
    assert!(
        h.get(STACK_PATH).is_none(),
        "the finalizer is gone, so is the stack"
    );
    assert!(h.topics.deleted().is_empty());
}

mod mode_switch {
    use super::*;
    use futures::future::BoxFuture;
    use futures::FutureExt;
    use shortener_operator::autoscaling::{
        Autoscaler, LagError, LagReport, LagSource, PartitionLag,
    };
    use shortener_operator::reconcile::Context;
    use shortener_operator::topic::KafkaConnection;
    use std::sync::Arc;

    const SO: &str = "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/demo-consumer";
    const AUTH: &str =
        "/apis/keda.sh/v1alpha1/namespaces/shop/triggerauthentications/demo-consumer-kafka";

    /// No lag: the builtin autoscaler keeps the lower bound.
    struct NoLag;
    impl LagSource for NoLag {
        fn measure<'a>(
            &'a self,
            _: &'a str,
            _: &'a KafkaConnection,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<LagReport, LagError>> {
            let parts = (0..4)
                .map(|p| PartitionLag::new(p, 0, 0, Some(0)))
                .collect();
            async move { Ok(LagReport::from_partitions(parts)) }.boxed()
        }
    }

    /// Brokers that stop answering the lag measurement while `down` is set.
    #[derive(Default)]
    struct FlakyLag {
        down: std::sync::atomic::AtomicBool,
    }
    impl LagSource for FlakyLag {
        fn measure<'a>(
            &'a self,
            s: &'a str,
            c: &'a KafkaConnection,
            g: &'a str,
            t: &'a str,
        ) -> BoxFuture<'a, Result<LagReport, LagError>> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                let e = LagError::Timeout {
                    topic: t.to_string(),
                    seconds: 10,
                };
                return async move { Err(e) }.boxed();
            }
            NoLag.measure(s, c, g, t)
        }
    }

    /// The lag scaler finding no broker: a Warning Event and `KafkaReachable=False`
    /// with the reason, cleared by the first measurement that reaches them again.
    #[tokio::test(start_paused = true)]
    async fn unreachable_brokers_for_the_lag_scaler_set_a_condition_until_they_answer() {
        let h = Harness::new(stack_json(false));
        h.settle().await;
        let lag = Arc::new(FlakyLag::default());
        let client = h.api.client(NS);
        let mut ctx = Context::new(client.clone(), h.topics.clone(), Default::default());
        ctx.autoscaler = Some(Autoscaler::new(client, lag.clone(), Default::default()));
        let ctx = Arc::new(ctx);
        let reachable = |h: &Harness| {
            let c = condition(&h.get(STACK_PATH).unwrap(), "KafkaReachable");
            (
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        };
        h.pass_with(&ctx).await;
        assert_eq!(reachable(&h).0, "True");

        lag.down.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(std::time::Duration::from_secs(20)).await;
        let log = h.pass_with(&ctx).await;
        let (status, reason, message) = reachable(&h);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BrokerUnreachable")
        );
        assert!(message.starts_with("lag measurement: "), "{message}");
        assert!(log
            .iter()
            .any(|r| r.method == "POST" && r.body["reason"] == "AutoscalingUnavailable"));
        // Still down on the next pass: nothing new to write.
        let log = h.pass_with(&ctx).await;
        assert!(
            !log.iter().any(|r| r.path.ends_with("/status")),
            "{:?}",
            lines(&log)
        );

        lag.down.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(std::time::Duration::from_secs(20)).await;
        h.pass_with(&ctx).await;
        assert_eq!(reachable(&h).0, "True");
    }

    /// Hand edits of the ScaledObject and TriggerAuthentication are applied back in the
    /// next pass; a settled KEDA stack writes nothing.
    #[tokio::test]
    async fn hand_edits_of_keda_objects_are_reverted() {
        let mut stack = stack_json(false);
        stack["spec"]["consumer"] = json!({"maxReplicas": 4, "autoscaling": {"mode": "keda"}});
        stack["spec"]["kafka"]["sasl"] =
            json!({"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}});
        let h = Harness::new(stack);
        h.api.put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kafka-user", "namespace": NS,
                         "labels": {"shortener.example.io/kafka-credentials": "true"}},
            "data": {"username": "dXNlcg==", "password": "cGFzcw=="}
        }));
        h.settle().await;
        pass(&h).await;
        let so = h.get(SO).unwrap();
        let auth = h.get(AUTH).unwrap();
        let log = pass(&h).await;
        assert_eq!(writes(&log), Vec::<String>::new(), "settled");

        h.hand_edit(SO, |o| o["spec"]["maxReplicaCount"] = 40.into());
        h.hand_edit(AUTH, |o| {
            o["spec"]["secretTargetRef"][0]["name"] = "someone-elses".into()
        });
        let log = pass(&h).await;
        let w = writes(&log);
        assert!(w.contains(&format!("PATCH {SO}")), "{w:?}");
        assert!(w.contains(&format!("PATCH {AUTH}")), "{w:?}");
        assert_eq!(h.get(SO).unwrap()["spec"], so["spec"]);
        assert_eq!(h.get(AUTH).unwrap()["spec"], auth["spec"]);
        let log = pass(&h).await;
        assert_eq!(writes(&log), Vec::<String>::new(), "converged");
    }

    /// A pass of a freshly started operator with the builtin autoscaler wired in.
    async fn pass(h: &Harness) -> Vec<Recorded> {
        let mark = h.api.mark();
        let client = h.api.client(NS);
        let mut ctx = Context::new(client.clone(), h.topics.clone(), Default::default());
        ctx.autoscaler = Some(Autoscaler::new(client, Arc::new(NoLag), Default::default()));
        shortener_operator::reconcile::reconcile(h.stack(), Arc::new(ctx))
            .await
            .expect("reconcile succeeds");
        h.api.log_since(mark)
    }

    fn consumer_replicas(h: &Harness) -> serde_json::Value {
        h.get(&format!("{DEPLOY}/demo-consumer")).unwrap()["spec"]["replicas"].clone()
    }

    /// builtin → KEDA → builtin: the replica count never falls back to the default of 1,
    /// and leaving KEDA mode deletes the ScaledObject and TriggerAuthentication.
    #[tokio::test]
    async fn builtin_to_keda_and_back_keeps_replicas_and_leaves_no_debris() {
        let mut stack = stack_json(false);
        stack["spec"]["consumer"] = json!({"minReplicas": 2, "maxReplicas": 4});
        stack["spec"]["kafka"]["sasl"] =
            json!({"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}});
        let h = Harness::new(stack);
        h.api.put(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "kafka-user", "namespace": NS,
                         "labels": {"shortener.example.io/kafka-credentials": "true"}},
            "data": {"username": "dXNlcg==", "password": "cGFzcw=="}
        }));
        h.settle().await;
        pass(&h).await;
        assert_eq!(consumer_replicas(&h), 2);

        // To KEDA: the ScaledObject (with a fallback) appears; replicas stay declared
        // until KEDA reports its HPA.
        h.edit_stack(|s| s["spec"]["consumer"]["autoscaling"] = json!({"mode": "keda"}));
        pass(&h).await;
        let so = h.get(SO).expect("a ScaledObject");
        assert_eq!(so["spec"]["fallback"]["replicas"], 4);
        assert!(h.get(AUTH).is_some());
        assert_eq!(
            consumer_replicas(&h),
            2,
            "not dropped before KEDA's HPA holds it"
        );

        // KEDA's HPA exists and sets the count through the scale subresource.
        h.api
            .set_status(SO, json!({"hpaName": "keda-hpa-demo-consumer"}));
        h.api.edit_as(
            "kube-controller-manager",
            &format!("{DEPLOY}/demo-consumer"),
            |d| d["spec"]["replicas"] = 3.into(),
        );
        pass(&h).await;
        pass(&h).await;
        assert_eq!(consumer_replicas(&h), 3, "the HPA's count stands");
        assert_eq!(
            h.api
                .owners_of(&format!("{DEPLOY}/demo-consumer"), "spec.replicas"),
            ["kube-controller-manager"]
        );

        // Back to builtin: the KEDA objects go, the operator declares the count again.
        h.edit_stack(|s| s["spec"]["consumer"]["autoscaling"] = json!({"mode": "builtin"}));
        let log = pass(&h).await;
        assert!(h.get(SO).is_none(), "ScaledObject deleted");
        assert!(h.get(AUTH).is_none(), "TriggerAuthentication deleted");
        assert!(log.iter().any(|r| r.body["reason"] == "KedaObjectsRemoved"));
        assert_eq!(consumer_replicas(&h), 3, "no drop to 1 on the way back");
    }
}

/// The pause annotation stops every write but the status, which says so; removing it
/// resumes, and the drift made meanwhile is reverted.
#[tokio::test]
async fn pause_annotation_stops_reconciliation_until_removed() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    let deploy = format!("{DEPLOY}/demo-url-api");
    h.edit_stack(|s| {
        s["metadata"]["annotations"] = json!({"shortener.example.io/pause-reconciliation": "true"});
    });
    h.hand_edit(&deploy, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "debug:1".into()
    });
    let (action, log) = h.pass().await;
    assert_eq!(writes(&log), [format!("PATCH {STACK_PATH}/status")]);
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let stack = h.get(STACK_PATH).unwrap();
    let paused = condition(&stack, "ReconciliationPaused");
    assert_eq!(paused["status"], "True");
    assert_eq!(
        condition(&stack, "Ready")["status"],
        "True",
        "last observation kept"
    );
    let (_, log) = h.pass().await;
    assert_eq!(writes(&log), Vec::<String>::new());
    assert_eq!(
        h.get(&deploy).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "debug:1"
    );

    h.edit_stack(|s| {
        s["metadata"]["annotations"] = json!({});
    });
    h.pass().await;
    let d = h.get(&deploy).unwrap();
    assert_ne!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "debug:1"
    );
    let stack = h.get(STACK_PATH).unwrap();
    assert!(stack["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["type"] != "ReconciliationPaused"));
}

/// A PodDisruptionBudget per component: a hand edit is reverted, turning budgets off
/// removes them.
#[tokio::test]
async fn disruption_budgets_follow_the_spec() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    let pdb = format!("{PDB}/demo-consumer");
    assert_eq!(h.get(&pdb).unwrap()["spec"]["maxUnavailable"], 1);
    h.hand_edit(&pdb, |p| p["spec"]["maxUnavailable"] = 0.into());
    h.pass().await;
    assert_eq!(h.get(&pdb).unwrap()["spec"]["maxUnavailable"], 1);

    h.edit_stack(|s| s["spec"]["podDisruptionBudget"] = json!({"enabled": false}));
    h.pass().await;
    assert!(h.api.paths(PDB).is_empty());
}

/// NetworkPolicies appear only when enabled, one per component.
#[tokio::test]
async fn network_policies_are_opt_in() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    assert!(h.api.paths(NETPOL).is_empty());
    h.edit_stack(|s| s["spec"]["networkPolicy"] = json!({"enabled": true}));
    h.pass().await;
    let mut names = h.api.paths(NETPOL);
    names.sort();
    assert_eq!(
        names,
        COMPONENTS
            .iter()
            .map(|c| format!("{NETPOL}/{c}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
}

/// A hand-edited NetworkPolicy is applied back in the next pass.
#[tokio::test]
async fn hand_edits_of_network_policies_are_reverted() {
    let path = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/demo-analytics-rpc";
    let mut stack = stack_json(false);
    stack["spec"]["networkPolicy"] = json!({"enabled": true});
    let h = Harness::new(stack);
    h.settle().await;
    let spec = h.get(path).unwrap()["spec"].clone();
    // Opened to every pod of the cluster by hand.
    h.hand_edit(path, |p| {
        p["spec"]["ingress"][1]["from"] = json!([{"podSelector": {}}])
    });
    let (_, log) = h.pass().await;
    assert!(writes(&log).contains(&format!("PATCH {path}")));
    assert_eq!(h.get(path).unwrap()["spec"], spec);
    let (_, log) = h.pass().await;
    assert_eq!(writes(&log), Vec::<String>::new());
}

/// PodMonitors: none by default; one per component when enabled, applied back when
/// edited by hand; a cluster without the Prometheus Operator's CRDs gets a Warning Event
/// and the rest of the stack is reconciled.
#[tokio::test]
async fn pod_monitors_are_opt_in_and_kept_as_specified() {
    let h = Harness::new(stack_json(false));
    h.settle().await;
    assert!(h.api.paths(MONITORS).is_empty());

    h.edit_stack(|s| s["spec"]["podMonitor"] = json!({"enabled": true, "interval": "30s"}));
    h.pass().await;
    let mut paths = h.api.paths(MONITORS);
    paths.sort();
    let mut expected: Vec<String> = COMPONENTS
        .iter()
        .map(|c| format!("{MONITORS}/{c}"))
        .collect();
    expected.sort();
    assert_eq!(paths, expected);
    let url_api = format!("{MONITORS}/demo-url-api");
    let monitor = h.get(&url_api).unwrap();
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"],
        json!([{"port": "admin", "path": "/metrics", "interval": "30s"}])
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "url-api"
    );

    h.hand_edit(&url_api, |m| {
        m["spec"]["podMetricsEndpoints"][0]["port"] = "http".into()
    });
    let (_, log) = h.pass().await;
    assert!(writes(&log).contains(&format!("PATCH {url_api}")));
    assert_eq!(h.get(&url_api).unwrap()["spec"], monitor["spec"]);

    // No such API on the cluster: said once when it starts, not on every pass.
    let no_crd = || {
        h.api.fail(Fault {
            method: None,
            path_contains: "/podmonitors".into(),
            status: 404,
            times: None,
        })
    };
    // A repeat within kube's event cache is a PATCH of the event series, still a request.
    let unavailable = |log: &[Recorded]| {
        log.iter()
            .filter(|r| r.path.starts_with(EVENTS) && r.body["reason"] == "PodMonitorUnavailable")
            .map(|r| r.body["type"].clone())
            .collect::<Vec<_>>()
    };
    let ctx = h.context();
    no_crd();
    assert_eq!(unavailable(&h.pass_with(&ctx).await), ["Warning"]);
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stack, "Ready")["status"], "True");
    assert!(unavailable(&h.pass_with(&ctx).await).is_empty());
    // Installed, then removed again: a new Warning.
    h.api.heal();
    assert!(unavailable(&h.pass_with(&ctx).await).is_empty());
    no_crd();
    assert_eq!(unavailable(&h.pass_with(&ctx).await), ["Warning"]);
}

/// Turning NetworkPolicies, PodMonitors or budgets off deletes the stack's own (an object
/// someone else made under the same name stays); a settled pass asks nothing about the kinds
/// that are off.
#[tokio::test]
async fn optional_children_turned_off_are_deleted() {
    let mut stack = stack_json(false);
    stack["spec"]["networkPolicy"] = json!({"enabled": true});
    stack["spec"]["podMonitor"] = json!({"enabled": true});
    let h = Harness::new(stack);
    h.settle().await;
    assert_eq!(h.api.paths(NETPOL).len(), 3);
    assert_eq!(h.api.paths(MONITORS).len(), 3);
    // Someone else's policy under one of the names (not owned by the stack).
    let foreign = format!("{NETPOL}/demo-consumer");
    h.api.delete(&foreign);
    h.api.put_as(
        "kubectl",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "demo-consumer", "namespace": "shop"},
            "spec": {"podSelector": {}}
        }),
    );

    h.edit_stack(|s| {
        s["spec"]["networkPolicy"] = json!({"enabled": false});
        s["spec"]["podMonitor"] = json!({"enabled": false});
        s["spec"]["podDisruptionBudget"] = json!({"enabled": false});
    });
    let (_, log) = h.pass().await;
    let mut deletes: Vec<String> = writes(&log)
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    deletes.sort();
    let mut expected: Vec<String> = ["demo-url-api", "demo-analytics-rpc", "demo-consumer"]
        .iter()
        .flat_map(|c| {
            [
                format!("DELETE {MONITORS}/{c}"),
                format!("DELETE {PDB}/{c}"),
            ]
        })
        .chain(
            ["demo-url-api", "demo-analytics-rpc"]
                .iter()
                .map(|c| format!("DELETE {NETPOL}/{c}")),
        )
        .collect();
    expected.sort();
    assert_eq!(deletes, expected);
    assert_eq!(h.api.paths(NETPOL), vec![foreign.clone()]);
    assert!(h.api.paths(MONITORS).is_empty());
    assert!(h.api.paths(PDB).is_empty());

    let (_, log) = h.pass().await;
    let asked: Vec<String> = lines(&log)
        .into_iter()
        .filter(|l| l.contains(NETPOL) || l.contains(MONITORS) || l.contains(PDB))
        .collect();
    assert_eq!(asked, Vec::<String>::new());
    assert!(h.get(&foreign).is_some());
}

/// Topic management on the brokers: configs, replication factor, ownership, admin client.
mod topics {
    use super::*;
    use std::sync::Arc;

    use shortener_operator::reconcile::{reconcile, Context};
    use shortener_operator::ShortenerStack;

    fn events(log: &[Recorded]) -> Vec<serde_json::Value> {
        log.iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
            .map(|r| r.body.clone())
            .collect()
    }

    /// `retention.ms` changed on the brokers by hand is set back to the spec in the next
    /// pass, with an Event saying what was found; a settled topic is left alone.
    #[tokio::test]
    async fn a_topic_config_changed_by_hand_is_altered_back() {
        let mut stack = stack_json(false);
        stack["spec"]["kafka"]["retentionMs"] = 86_400_000.into();
        let h = Harness::new(stack);
        h.settle().await;
        assert_eq!(
            h.topics.config("clicks", "retention.ms").as_deref(),
            Some("86400000")
        );

        h.topics.set_config("clicks", "retention.ms", "1000");
        let (_, log) = h.pass().await;
        assert_eq!(
            h.topics.config("clicks", "retention.ms").as_deref(),
            Some("86400000")
        );
        let events = events(&log);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["reason"], "TopicConfigReverted");
        assert_eq!(
            events[0]["note"],
            "topic clicks: retention.ms was 1000, set back to 86400000"
        );
        let (_, log) = h.pass().await;
        assert_eq!(writes(&log), Vec::<String>::new());
    }

    /// Kafka cannot change a replication factor in place: a topic whose replication
    /// factor differs from the spec is reported in TopicReady and Degraded, not touched.
    #[tokio::test]
    async fn a_replication_factor_mismatch_is_reported_in_a_condition() {
        let h = Harness::new(stack_json(false));
        h.settle().await;
        h.topics.set_replication_factor("clicks.dlq", 3);
        h.pass().await;
        let stack = h.get(STACK_PATH).unwrap();
        let topic = condition(&stack, "TopicReady");
        assert_eq!(
            (topic["status"].as_str(), topic["reason"].as_str()),
            (Some("False"), Some("ReplicationFactorMismatch"))
        );
        let message = topic["message"].as_str().unwrap();
        assert!(
            message.contains("topic clicks.dlq has replication factor 3 and the spec asks for 1"),
            "{message}"
        );
        assert_eq!(
            condition(&stack, "Degraded")["reason"],
            "ReplicationFactorMismatch"
        );
        assert_eq!(condition(&stack, "Ready")["status"], "False");
        assert_eq!(stack["status"]["topicPartitions"], 4);
        assert_eq!(h.topics.replication_factor("clicks.dlq"), Some(3));

        // Reassigned back by hand: the condition clears.
        h.topics.set_replication_factor("clicks.dlq", 1);
        h.pass().await;
        let stack = h.get(STACK_PATH).unwrap();
        assert_eq!(condition(&stack, "TopicReady")["status"], "True");
        assert_eq!(condition(&stack, "Ready")["status"], "True");
    }

    /// A second stack naming the same topic on the same brokers: the older one manages
    /// it; the younger gets `ResourceConflict` and neither creates, alters nor deletes
    /// the topic, even when it is deleted with `deleteTopicOnDelete`.
    #[tokio::test]
    async fn a_younger_stack_claiming_the_same_topic_gets_a_conflict_and_leaves_it_alone() {
        let mut first = stack_json(false);
        first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
        first["spec"]["kafka"]["retentionMs"] = 86_400_000.into();
        let h = Harness::new(first);
        h.settle().await;

        let mut second = stack_json(true);
        second["metadata"] = json!({
            "name": "copy", "namespace": "other",
            "uid": "8d4a3c1e-0000-4000-8000-000000000002",
            "creationTimestamp": "2026-01-02T00:00:00Z",
            "finalizers": [shortener_operator::reconcile::FINALIZER]
        });
        second["spec"]["kafka"]["bootstrapServers"] = "KAFKA:9092,kafka-1:9092".into();
        second["spec"]["kafka"]["partitions"] = 8.into();
        second["spec"]["kafka"]["retentionMs"] = 1000.into();
        let second_path = h.api.put_as("kubectl", second);
        let second = || -> Arc<ShortenerStack> {
            Arc::new(serde_json::from_value(h.get(&second_path).unwrap()).unwrap())
        };
        let calls = h.topics.ensure_calls().len();

        reconcile(second(), h.context()).await.unwrap();
        let stored = h.get(&second_path).unwrap();
        let topic = condition(&stored, "TopicReady");
        assert_eq!(
            (topic["status"].as_str(), topic["reason"].as_str()),
            (Some("False"), Some("ResourceConflict"))
        );
        let message = topic["message"].as_str().unwrap();
        assert!(
            message.contains("managed by ShortenerStack shop/demo"),
            "{message}"
        );
        assert_eq!(condition(&stored, "Degraded")["reason"], "ResourceConflict");
        assert_eq!(
            h.topics.ensure_calls().len(),
            calls,
            "the loser contacted the brokers"
        );
        assert_eq!(h.topics.partitions("clicks"), Some(4));
        assert_eq!(
            h.topics.config("clicks", "retention.ms").as_deref(),
            Some("86400000")
        );

        // The winner is not affected by the younger claim.
        h.pass().await;
        let first = h.get(STACK_PATH).unwrap();
        assert_eq!(condition(&first, "TopicReady")["status"], "True");
        assert_eq!(condition(&first, "Ready")["status"], "True");

        // Deleting the loser keeps the topics.
        h.api.delete(&second_path);
        let mark = h.api.mark();
        reconcile(second(), h.context()).await.unwrap();
        assert_eq!(h.topics.deleted(), Vec::<String>::new());
        let events = events(&h.api.log_since(mark));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["reason"], "TopicKept");
        assert!(h.get(&second_path).is_none(), "finalizer removed");
    }

    /// Topic management finding no broker says so in `KafkaReachable`, cleared when the
    /// brokers answer again.
    #[tokio::test]
    async fn unreachable_brokers_for_topic_management_set_kafka_reachable_false() {
        let h = Harness::new(stack_json(false));
        h.settle().await;
        let reachable = |h: &Harness| condition(&h.get(STACK_PATH).unwrap(), "KafkaReachable");
        assert_eq!(reachable(&h)["status"], "True");
        h.topics.set_unreachable(true);
        h.pass().await;
        let c = reachable(&h);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("BrokerUnreachable"))
        );
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .starts_with("topic management: "),
            "{c}"
        );
        h.topics.set_unreachable(false);
        h.pass().await;
        assert_eq!(reachable(&h)["status"], "True");
    }

    /// One admin client per stack, kept across passes; a new one only when the Kafka
    /// settings or the credentials in the Secret change.
    #[tokio::test]
    async fn one_admin_client_per_stack_is_reused_until_the_kafka_settings_change() {
        let mut stack = stack_json(false);
        stack["spec"]["kafka"]["sasl"] =
            json!({"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}});
        let h = Harness::new(stack);
        // base64 of "user", "first" and "second".
        let secret = |password: &str| {
            let encoded = match password {
                "first" => "Zmlyc3Q=",
                _ => "c2Vjb25k",
            };
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "kafka-user", "namespace": NS,
                             "labels": {"shortener.example.io/kafka-credentials": "true"}},
                "data": {"username": "dXNlcg==", "password": encoded}
            })
        };
        h.api.put(secret("first"));
        let ctx = h.context();
        for _ in 0..4 {
            h.pass_with(&ctx).await;
        }
        assert_eq!(h.topics.connects().len(), 1);
        assert_eq!(h.topics.ensure_calls().len(), 8, "both topics every pass");

        // Rotated password: a new client with it.
        h.api.put(secret("second"));
        h.pass_with(&ctx).await;
        h.pass_with(&ctx).await;
        let connects = h.topics.connects();
        assert_eq!(connects.len(), 2);
        assert_eq!(
            connects[1].args.kafka_sasl_password.as_deref(),
            Some("second")
        );

        // Other brokers: a new client for them.
        h.edit_stack(|s| s["spec"]["kafka"]["bootstrapServers"] = "kafka-2:9092".into());
        h.pass_with(&ctx).await;
        h.pass_with(&ctx).await;
        let connects = h.topics.connects();
        assert_eq!(connects.len(), 3);
        assert_eq!(connects[2].bootstrap_servers(), "kafka-2:9092");

        // Another stack has its own.
        let other = Context::new(h.api.client(NS), h.topics.clone(), Default::default());
        h.pass_with(&Arc::new(other)).await;
        assert_eq!(h.topics.connects().len(), 4);
    }
}
