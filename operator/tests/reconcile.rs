//! The reconciler against the shared fake API server (`tests/common`), request by request:
//! each test asserts the exact request sequence of a reconcile pass. The Deployment and
//! Job controllers do not run there: tests set those statuses as they would.

mod common;

use std::sync::Arc;

use common::*;
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use shortener_operator::reconcile::{FIELD_MANAGER, FINALIZER};
use shortener_operator::topic::MemoryTopicManager;

/// A read of an object's metadata only (`PartialObjectMetadata`), never its data.
fn metadata_only(r: &Recorded) -> bool {
    r.accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn job_path(h: &Harness) -> String {
    h.job_path()
}

/// Reads of a pass once the migration succeeded (its outcome is in the status, so the
/// Job is not read again).
fn pass_reads() -> Vec<String> {
    children_reads()
}

/// Reads of the children (after the topics and the migration gate).
fn children_reads() -> Vec<String> {
    let mut v = s(&[
        &format!("GET {CM}/demo-url-api-config"),
        &format!("GET {CM}/demo-analytics-rpc-config"),
        &format!("GET {CM}/demo-consumer-config"),
        &format!("GET {SVC}/demo-url-api"),
        &format!("GET {SVC}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-url-api"),
        &format!("GET {PDB}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-consumer"),
        // The Secret's metadata, for the pod templates' checksum.
        &format!("GET {SECRETS}/shortener-db"),
    ]);
    v.extend(s(&[
        &format!("GET {DEPLOY}/demo-url-api"),
        &format!("GET {DEPLOY}/demo-analytics-rpc"),
        &format!("GET {DEPLOY}/demo-consumer"),
    ]));
    v
}

/// Creation up to the migration Job: finalizer pass, then the first real pass.
/// Creation up to the migration Job; a stack that deletes its topics gets its finalizer
/// in a pass of its own first, any other none.
async fn create(h: &Harness) -> Vec<Recorded> {
    if h.stack().spec.kafka.delete_topic_on_delete {
        finalizer_pass(h).await;
    }
    let (_, log) = h.pass().await;
    assert!(h.get(STACK_PATH).unwrap()["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.len() == usize::from(h.stack().spec.kafka.delete_topic_on_delete)));
    log
}

async fn finalizer_pass(h: &Harness) {
    let (action, log) = h.pass().await;
    assert_eq!(lines(&log), [format!("PATCH {STACK_PATH}")]);
    assert_eq!(
        log[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(action, Action::await_change());
    assert_eq!(
        h.get(STACK_PATH).unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
}

#[tokio::test]
async fn first_creation_applies_config_and_the_migration_job_but_no_deployments() {
    let h = Harness::new(stack_json(false));
    let log = create(&h).await;
    let job = job_path(&h);
    let expected = s(&[
        &format!("POST {EVENTS}"),
        &format!("PATCH {job}"),
        &format!("POST {EVENTS}"),
        &format!("GET {CM}/demo-url-api-config"),
        &format!("PATCH {CM}/demo-url-api-config"),
        &format!("GET {CM}/demo-analytics-rpc-config"),
        &format!("PATCH {CM}/demo-analytics-rpc-config"),
        &format!("GET {CM}/demo-consumer-config"),
        &format!("PATCH {CM}/demo-consumer-config"),
        &format!("GET {SVC}/demo-url-api"),
        &format!("PATCH {SVC}/demo-url-api"),
        &format!("GET {SVC}/demo-analytics-rpc"),
        &format!("PATCH {SVC}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-url-api"),
        &format!("PATCH {PDB}/demo-url-api"),
        &format!("GET {PDB}/demo-analytics-rpc"),
        &format!("PATCH {PDB}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-consumer"),
        &format!("PATCH {PDB}/demo-consumer"),
        // No pass has completed yet: optional kinds that are off are looked for once.
        &format!("GET {NETPOL}/demo-url-api"),
        &format!("GET {NETPOL}/demo-analytics-rpc"),
        &format!("GET {NETPOL}/demo-consumer"),
        &format!("GET {MONITORS}/demo-url-api"),
        &format!("GET {MONITORS}/demo-analytics-rpc"),
        &format!("GET {MONITORS}/demo-consumer"),
        &format!("POST {EVENTS}"),
        &format!("GET {SECRETS}/shortener-db"),
        &format!("GET {DEPLOY}/demo-url-api"),
        &format!("GET {DEPLOY}/demo-analytics-rpc"),
        &format!("GET {DEPLOY}/demo-consumer"),
        &format!("PATCH {STACK_PATH}/status"),
    ]);
    assert_eq!(lines(&log), expected);

    for rec in log.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(rec.query["fieldManager"], FIELD_MANAGER, "{}", rec.line());
        assert_eq!(rec.query["force"], "true", "{}", rec.line());
        assert_eq!(
            rec.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
    let reasons: Vec<&str> = log
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["TopicCreated", "MigrationStarted", "Created"]);
    assert_eq!(h.topics.partitions("clicks"), Some(4));
    assert_eq!(h.topics.partitions("clicks.dlq"), Some(4));

    let job_body = &log[1].body;
    assert_eq!(
        job_body["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["migrate"])
    );
    assert_eq!(
        job_body["metadata"]["ownerReferences"][0]["controller"],
        true
    );

    let stack = h.get(STACK_PATH).unwrap();
    let progressing = condition(&stack, "Progressing");
    assert_eq!(
        (
            progressing["status"].as_str(),
            progressing["reason"].as_str()
        ),
        (Some("True"), Some("MigrationRunning"))
    );
    assert_eq!(condition(&stack, "Ready")["status"], "False");
    assert_eq!(condition(&stack, "TopicReady")["status"], "True");
    assert_eq!(condition(&stack, "Degraded")["status"], "False");
    assert_eq!(stack["status"]["observedGeneration"], 1);
    assert!(stack["status"].get("appliedMigrationVersion").is_none());
}

#[tokio::test]
async fn succeeded_migration_rolls_out_deployments_then_a_settled_pass_only_reads() {
    let h = Harness::new(stack_json(false));
    create(&h).await;
    h.mark_job("Complete", "", "");

    let (_, log) = h.pass().await;
    let expected = s(&[
        &format!("GET {}", job_path(&h)),
        // The first success removes the Jobs of earlier attempts.
        &format!("GET {JOBS}"),
        &format!("GET {CM}/demo-url-api-config"),
        &format!("GET {CM}/demo-analytics-rpc-config"),
        &format!("GET {CM}/demo-consumer-config"),
        &format!("GET {SVC}/demo-url-api"),
        &format!("GET {SVC}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-url-api"),
        &format!("GET {PDB}/demo-analytics-rpc"),
        &format!("GET {PDB}/demo-consumer"),
        &format!("GET {SECRETS}/shortener-db"),
        &format!("GET {DEPLOY}/demo-url-api"),
        &format!("PATCH {DEPLOY}/demo-url-api"),
        &format!("GET {DEPLOY}/demo-analytics-rpc"),
        &format!("PATCH {DEPLOY}/demo-analytics-rpc"),
        &format!("GET {DEPLOY}/demo-consumer"),
        &format!("PATCH {DEPLOY}/demo-consumer"),
        &format!("POST {EVENTS}"),
        &format!("POST {EVENTS}"),
        &format!("PATCH {STACK_PATH}/status"),
    ]);
    assert_eq!(lines(&log), expected);
    let url_api = &log[12].body;
    assert_eq!(url_api["kind"], "Deployment");
    assert_eq!(
        url_api["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/shortener-stack/url-api:0.1.0"
    );
    assert!(url_api["spec"]["template"]["metadata"]["annotations"]
        ["shortener.example.io/config-checksum"]
        .is_string());
    assert_eq!(log[17].body["reason"], "RolloutStarted");
    assert_eq!(log[18].body["reason"], "MigrationSucceeded");
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stack, "MigrationsApplied")["status"], "True");
    assert_eq!(
        stack["status"]["appliedMigrationVersion"],
        shortener_common::db::latest_migration_version()
    );
    assert_eq!(condition(&stack, "Progressing")["reason"], "RollingOut");

    // The pods come up: Ready flips (status write + event).
    h.mark_deployments_ready();
    let (action, log) = h.pass().await;
    let mut expected = pass_reads();
    expected.push(format!("POST {EVENTS}"));
    expected.push(format!("PATCH {STACK_PATH}/status"));
    assert_eq!(lines(&log), expected);
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stack, "Ready")["status"], "True");
    assert_eq!(stack["status"]["urlApi"]["readyReplicas"], 2);
    assert_eq!(stack["status"]["consumer"]["currentReplicas"], 1);
    assert_eq!(stack["status"]["consumer"]["desiredReplicas"], 1);
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));

    // Nothing changed: reads only, zero writes.
    let (_, log) = h.pass().await;
    assert_eq!(lines(&log), pass_reads());
    assert_eq!(log.iter().filter(|r| r.is_write()).count(), 0);
}

#[tokio::test]
async fn spec_change_reapplies_the_changed_children_with_a_rolled_checksum() {
    let h = Harness::new(stack_json(false));
    create(&h).await;
    h.mark_job("Complete", "", "");
    h.pass().await;
    h.mark_deployments_ready();
    h.pass().await;
    let checksum = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["shortener.example.io/config-checksum"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = checksum(&h.get(&format!("{DEPLOY}/demo-url-api")).unwrap());
    let consumer_before = h.get(&format!("{DEPLOY}/demo-consumer")).unwrap();

    h.edit_stack(|s| {
        s["spec"]["urlApi"] = json!({"rateLimit": {"perSecond": 50, "burst": 100}});
    });
    let (_, log) = h.pass().await;
    let writes: Vec<String> = log
        .iter()
        .filter(|r| r.is_write())
        .map(Recorded::line)
        .collect();
    assert_eq!(
        writes,
        s(&[
            &format!("PATCH {CM}/demo-url-api-config"),
            &format!("PATCH {DEPLOY}/demo-url-api"),
            &format!("POST {EVENTS}"),
            &format!("PATCH {STACK_PATH}/status"),
        ])
    );
    let cm = &log
        .iter()
        .find(|r| r.line() == format!("PATCH {CM}/demo-url-api-config"))
        .unwrap()
        .body;
    assert_eq!(cm["data"]["RATE_LIMIT_PER_SECOND"], "50");
    assert_eq!(cm["data"]["RATE_LIMIT_BURST"], "100");
    let applied = &log
        .iter()
        .find(|r| r.line() == format!("PATCH {DEPLOY}/demo-url-api"))
        .unwrap()
        .body;
    assert_ne!(
        checksum(applied),
        before,
        "config change must roll the pods"
    );
    assert_eq!(
        h.get(&format!("{DEPLOY}/demo-consumer")).unwrap(),
        consumer_before
    );
    let stack = h.get(STACK_PATH).unwrap();
    assert_eq!(stack["status"]["observedGeneration"], 2);
    assert_eq!(condition(&stack, "Progressing")["reason"], "RollingOut");
    assert_eq!(condition(&stack, "Ready")["observedGeneration"], 2);
}

#[tokio::test]
async fn failed_migration_degrades_and_blocks_the_rollout() {
    let h = Harness::new(stack_json(false));
    create(&h).await;
    h.mark_job(
        "Failed",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    );

    let (action, log) = h.pass().await;
    let mut expected = vec![format!("GET {}", job_path(&h)), format!("POST {EVENTS}")];
    expected.extend(children_reads());
    expected.push(format!("POST {EVENTS}"));
    expected.push(format!("PATCH {STACK_PATH}/status"));
    assert_eq!(lines(&log), expected);
    assert!(!log
        .iter()
        .any(|r| r.is_write() && r.path.starts_with(DEPLOY)));
    assert_eq!(log[1].body["reason"], "MigrationFailed");
    assert_eq!(log[1].body["type"], "Warning");
    assert!(log[1].body["note"]
        .as_str()
        .unwrap()
        .contains("BackoffLimitExceeded"));
    assert_eq!(log[14].body["reason"], "Degraded");
    // The first retry is due in 60 s; the pending requeue (30 s) comes first.
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));

    let stack = h.get(STACK_PATH).unwrap();
    let degraded = condition(&stack, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "MigrationFailed");
    let message = degraded["message"].as_str().unwrap();
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(message.contains("backoff limit"), "{message}");
    let applied = condition(&stack, "MigrationsApplied");
    assert_eq!(applied["reason"], "MigrationFailed");
    assert!(
        applied["message"]
            .as_str()
            .unwrap()
            .contains("attempt 2 of 4 starts at"),
        "{applied}"
    );
    assert_eq!(stack["status"]["migration"]["attempts"], 1);
    assert_eq!(
        stack["status"]["migration"]["failure"]["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(condition(&stack, "Ready")["status"], "False");

    // Still failed, retry not due: no new events, no writes.
    let (_, log) = h.pass().await;
    assert_eq!(
        log.iter().filter(|r| r.is_write()).count(),
        0,
        "{:?}",
        lines(&log)
    );
}

#[tokio::test]
async fn deletion_removes_topics_only_when_asked_then_the_finalizer() {
    let h = Harness::new(stack_json(true));
    create(&h).await;
    assert_eq!(h.topics.partitions("clicks"), Some(4));
    h.api.delete(STACK_PATH);
    let (action, log) = h.pass().await;
    assert_eq!(action, Action::await_change());
    assert_eq!(
        lines(&log),
        s(&[&format!("POST {EVENTS}"), &format!("PATCH {STACK_PATH}")])
    );
    assert_eq!(log[0].body["reason"], "TopicDeleted");
    assert_eq!(h.topics.deleted(), ["clicks", "clicks.dlq"]);
    let ops = log[1].body.as_array().unwrap();
    assert_eq!(ops[0]["op"], "test");
    assert_eq!(ops[0]["value"], FINALIZER);
    assert_eq!(ops[1]["op"], "remove");
    assert!(
        h.get(STACK_PATH).is_none(),
        "gone once its last finalizer is removed"
    );

    // Nothing to clean up: no finalizer, so the stack goes at once (even with no operator
    // running, as after `helm uninstall`).
    let h = Harness::new(stack_json(false));
    create(&h).await;
    h.pass().await;
    assert!(h.get(STACK_PATH).unwrap()["metadata"]["finalizers"].is_null());
    h.api.delete(STACK_PATH);
    assert!(h.get(STACK_PATH).is_none());
    assert!(h.topics.deleted().is_empty());
    assert_eq!(h.topics.partitions("clicks"), Some(4));
}

#[tokio::test]
async fn partition_decrease_is_degraded_but_the_rest_is_reconciled() {
    let topics = Arc::new(MemoryTopicManager::with_topics([
        ("clicks", 8),
        ("clicks.dlq", 8),
    ]));
    let h = Harness::with_topics(stack_json(false), topics);
    let log = create(&h).await;
    assert!(log
        .iter()
        .any(|r| r.line() == format!("PATCH {}", job_path(&h))));
    let stack = h.get(STACK_PATH).unwrap();
    let topic = condition(&stack, "TopicReady");
    assert_eq!(topic["status"], "False");
    assert_eq!(topic["reason"], "PartitionDecreaseRefused");
    assert!(topic["message"].as_str().unwrap().contains("8 partitions"));
    assert_eq!(condition(&stack, "Degraded")["status"], "True");
    assert_eq!(h.topics.partitions("clicks"), Some(8));
}

const KAFKA_PASSWORD: &str = "kafka-password-never-leaves";

/// A Secret with SASL and TLS keys, stored in the fake API server; `labels` decide
/// whether it opts in to the operator's use.
fn put_kafka_secret(h: &Harness, name: &str, labels: Value) {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let data = [
        ("username", "clicks-admin"),
        ("password", KAFKA_PASSWORD),
        ("ca.crt", "-----BEGIN CERTIFICATE-----ca"),
        ("tls.crt", "-----BEGIN CERTIFICATE-----client"),
        ("tls.key", "-----BEGIN PRIVATE KEY-----client"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let mut secret = serde_json::to_value(Secret {
        data: Some(data),
        ..Secret::default()
    })
    .unwrap();
    secret["apiVersion"] = "v1".into();
    secret["kind"] = "Secret".into();
    secret["metadata"] = json!({"name": name, "namespace": NS, "labels": labels});
    h.api.put(secret);
}

fn stack_with_kafka(kafka: Value) -> Value {
    let mut stack = stack_json(false);
    for (k, v) in kafka.as_object().unwrap() {
        stack["spec"]["kafka"][k] = v.clone();
    }
    stack
}

fn sasl_stack() -> Value {
    stack_with_kafka(
        json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}}}),
    )
}

fn opted_in() -> Value {
    json!({(shortener_operator::kafka_credentials::KAFKA_CREDENTIALS_LABEL): "true"})
}

#[tokio::test]
async fn kafka_secret_without_the_opt_in_label_degrades_and_reaches_no_broker() {
    use shortener_operator::kafka_credentials::KAFKA_CREDENTIALS_LABEL;
    // Each way a spec can point the operator at a Secret: SASL, CA bundle, client cert.
    let cases = [
        sasl_stack(),
        stack_with_kafka(json!({"tls": {"caSecretRef": {"name": "kafka-user", "key": "ca.crt"}}})),
        stack_with_kafka(json!({"tls": {"certSecretRef": {"name": "kafka-user"}}})),
    ];
    for stack in cases {
        let h = Harness::new(stack.clone());
        // Labelled, but not with the opt-in value: still refused.
        put_kafka_secret(
            &h,
            "kafka-user",
            json!({"app": "billing", (KAFKA_CREDENTIALS_LABEL): "false"}),
        );
        let log = create(&h).await;

        assert_eq!(
            log[0].line(),
            format!("GET {SECRETS}/kafka-user"),
            "{stack}"
        );
        assert_eq!(
            log.iter()
                .filter(|r| r.path.starts_with(SECRETS) && !metadata_only(r))
                .count(),
            1,
            "{:?}",
            lines(&log)
        );
        assert!(h.topics.ensure_calls().is_empty(), "a broker was contacted");
        assert_eq!(h.topics.partitions("clicks"), None);

        let stored = h.get(STACK_PATH).unwrap();
        let topic = condition(&stored, "TopicReady");
        assert_eq!(
            (topic["status"].as_str(), topic["reason"].as_str()),
            (Some("False"), Some("SecretNotOptedIn"))
        );
        let message = topic["message"].as_str().unwrap();
        assert!(message.contains("shop/kafka-user"), "{message}");
        assert!(
            message.contains(&format!("{KAFKA_CREDENTIALS_LABEL}=true")),
            "{message}"
        );
        let degraded = condition(&stored, "Degraded");
        assert_eq!(
            (degraded["status"].as_str(), degraded["reason"].as_str()),
            (Some("True"), Some("SecretNotOptedIn"))
        );
        assert_eq!(condition(&stored, "Ready")["status"], "False");
        let warnings: Vec<&Value> = log
            .iter()
            .filter(|r| r.method == "POST" && r.body["type"] == "Warning")
            .map(|r| &r.body)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0]["reason"], "Degraded");

        // The rest of the stack is still reconciled, and no Secret data is written anywhere.
        assert!(log
            .iter()
            .any(|r| r.line() == format!("PATCH {}", job_path(&h))));
        for rec in &log {
            let body = rec.body.to_string();
            assert!(!body.contains(KAFKA_PASSWORD), "{}", rec.line());
            assert!(!body.contains("BEGIN"), "{}", rec.line());
        }

        // Opting in is enough: the next pass creates the topics.
        put_kafka_secret(&h, "kafka-user", opted_in());
        h.pass().await;
        assert_eq!(h.topics.ensure_calls().len(), 2);
        let stored = h.get(STACK_PATH).unwrap();
        assert_eq!(condition(&stored, "TopicReady")["status"], "True");
        assert_eq!(condition(&stored, "Degraded")["status"], "False");
    }
}

#[tokio::test]
async fn opted_in_kafka_secret_gives_the_admin_client_its_credentials() {
    let h = Harness::new(sasl_stack());
    put_kafka_secret(&h, "kafka-user", opted_in());
    let log = create(&h).await;

    // The same requests as a stack without credentials, after the one read of the Secret.
    let plain = Harness::new(stack_json(false));
    let plain_log = create(&plain).await;
    // Besides, the pods read the Kafka Secret: its metadata goes into their checksum.
    let normalize = |h: &Harness, log: &[Recorded]| -> Vec<String> {
        let job = job_path(h);
        let kept: Vec<Recorded> = log
            .iter()
            .filter(|r| !(metadata_only(r) && r.path.ends_with("/kafka-user")))
            .cloned()
            .collect();
        lines(&kept)
            .into_iter()
            .map(|l| l.replace(&job, "JOB"))
            .collect()
    };
    assert_eq!(log[0].line(), format!("GET {SECRETS}/kafka-user"));
    let without_secret: Vec<Recorded> = log[1..].to_vec();
    assert_eq!(
        normalize(&h, &without_secret),
        normalize(&plain, &plain_log)
    );

    let calls = h.topics.ensure_calls();
    let topics: Vec<&str> = calls.iter().map(|(_, r)| r.name.as_str()).collect();
    assert_eq!(topics, ["clicks", "clicks.dlq"]);
    for (connection, _) in &calls {
        let args = &connection.args;
        assert_eq!(args.kafka_bootstrap_servers, "kafka:9092");
        assert_eq!(args.kafka_security_protocol, "sasl_plaintext");
        assert_eq!(args.kafka_sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(args.kafka_sasl_username.as_deref(), Some("clicks-admin"));
        assert_eq!(args.kafka_sasl_password.as_deref(), Some(KAFKA_PASSWORD));
    }
    assert_eq!(h.topics.partitions("clicks"), Some(4));
    let stored = h.get(STACK_PATH).unwrap();
    assert_eq!(condition(&stored, "TopicReady")["status"], "True");
    assert_eq!(condition(&stored, "Degraded")["status"], "False");
}
