//! The Helm chart, linted strictly and rendered by Helm with several value sets.

use serde_json::{json, Value};
use shortener_deploy_checks::helm::{self, Rendered, NAMESPACE, RELEASE};
use shortener_deploy_checks::{repo, workspace, yaml};

fn render(values: Value) -> Rendered {
    helm::render(&values).unwrap_or_else(|e| panic!("rendering the chart: {e}"))
}

fn render_ok(values: Value) -> Rendered {
    let r = render(values);
    assert!(
        r.render_error.is_none(),
        "render failed: {:?}",
        r.render_error
    );
    assert!(
        r.lint.errors.is_empty() && r.lint.problems().is_empty(),
        "helm lint --strict: {:?} {:?}",
        r.lint.errors,
        r.lint.problems()
    );
    r
}

fn stack_values() -> Value {
    json!({
        "image": {"repository": "registry.local/shortener/operator", "tag": "9.9.9-rc.1", "pullPolicy": "Never"},
        "replicaCount": 2,
        "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
        "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel:4317"}],
        "stack": {
            "create": true,
            "name": "demo",
            "spec": {
                "kafka": {"bootstrapServers": "kafka.kafka.svc:9092"},
                "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}},
                "urlApi": {"replicas": 1, "service": {"type": "NodePort"}}
            }
        }
    })
}

fn operator_container(r: &Rendered) -> Value {
    let deploy = r.one("Deployment");
    let containers = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .clone();
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    containers[0].clone()
}

#[test]
fn default_values_lint_clean_and_render_the_operator() {
    let r = render_ok(json!({}));
    let kinds: Vec<String> = r.objects().unwrap().iter().map(yaml::object_id).collect();
    for want in [
        "Deployment/shortener-operator",
        "ServiceAccount/shortener-operator",
        "ClusterRole/shortener-operator",
        "ClusterRoleBinding/shortener-operator",
        "Role/shortener-operator",
        "RoleBinding/shortener-operator",
        "Service/shortener-operator-metrics",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
    assert!(
        r.all("ServiceMonitor").is_empty(),
        "ServiceMonitor is opt-in"
    );
    assert!(
        r.all("ShortenerStack").is_empty(),
        "stack.create defaults to false"
    );
    // Namespaced objects land in the release namespace.
    for obj in r.objects().unwrap() {
        let kind = obj["kind"].as_str().unwrap();
        if !kind.starts_with("Cluster") {
            assert_eq!(
                obj["metadata"]["namespace"],
                NAMESPACE,
                "{}",
                yaml::object_id(&obj)
            );
        }
    }
    assert!(r
        .notes()
        .contains("rollout status deployment/shortener-operator"));
}

#[test]
fn image_tag_defaults_to_app_version_which_is_the_crate_version() {
    let chart = yaml::single(
        &repo::read("charts/shortener-operator/Chart.yaml").unwrap(),
        "Chart.yaml",
    )
    .unwrap();
    let version = workspace::version().unwrap();
    assert_eq!(
        chart["appVersion"],
        version.as_str(),
        "appVersion follows Cargo.toml"
    );
    assert_eq!(
        chart["version"],
        version.as_str(),
        "chart version follows Cargo.toml"
    );

    let c = operator_container(&render_ok(json!({})));
    assert_eq!(
        c["image"],
        format!("ghcr.io/shortener-stack/operator:{version}")
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");

    let c = operator_container(&render_ok(stack_values()));
    assert_eq!(c["image"], "registry.local/shortener/operator:9.9.9-rc.1");
    assert_eq!(c["imagePullPolicy"], "Never");

    let digest = format!("sha256:{}", "ab".repeat(32));
    let c = operator_container(&render_ok(
        json!({"image": {"tag": "ignored", "digest": digest}}),
    ));
    assert_eq!(
        c["image"],
        format!("ghcr.io/shortener-stack/operator@{digest}")
    );
}

#[test]
fn operator_pod_runs_locked_down_with_probes_on_the_metrics_port() {
    let r = render_ok(json!({}));
    let deploy = r.one("Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["serviceAccountName"],
        r.one("ServiceAccount")["metadata"]["name"]
    );

    let c = operator_container(&r);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));

    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][0]["name"], "http-metrics");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "http-metrics");
    }
    let env = c["env"].as_array().unwrap();
    let metrics_addr = env
        .iter()
        .find(|e| e["name"] == "METRICS_ADDR")
        .expect("METRICS_ADDR");
    assert_eq!(metrics_addr["value"], "0.0.0.0:8080");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());

    // The metrics Service selects exactly the operator pods.
    let svc = r.one("Service");
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http-metrics");
}

#[test]
fn service_monitor_and_stack_render_only_when_enabled() {
    let r = render_ok(stack_values());
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        r.one("Service")["spec"]["selector"]
    );

    let stack = r.one("ShortenerStack");
    assert_eq!(stack["apiVersion"], "shortener.example.io/v1alpha1");
    assert_eq!(stack["metadata"]["name"], "demo");
    assert_eq!(stack["metadata"]["namespace"], NAMESPACE);
    assert_eq!(stack["spec"], stack_values()["stack"]["spec"]);

    assert_eq!(r.one("Deployment")["spec"]["replicas"], 2);
    let env = operator_container(&r)["env"].clone();
    assert!(env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"));

    // Without a name the stack is named after the release.
    let mut values = stack_values();
    values["stack"]["name"] = json!("");
    assert_eq!(
        render_ok(values).one("ShortenerStack")["metadata"]["name"],
        RELEASE
    );
}

#[test]
fn rbac_can_be_left_to_the_cluster_admin() {
    let r = render_ok(
        json!({"rbac": {"create": false}, "serviceAccount": {"create": false, "name": "ops"}}),
    );
    assert!(r.all("ClusterRole").is_empty());
    assert!(r.all("ClusterRoleBinding").is_empty());
    assert!(r.all("Role").is_empty());
    assert!(r.all("RoleBinding").is_empty());
    assert!(r.all("ServiceAccount").is_empty());
    assert_eq!(
        r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "ops"
    );
}

#[test]
fn cluster_role_binding_grants_the_role_to_the_operator_service_account() {
    let r = render_ok(json!({}));
    let binding = r.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(
        binding["roleRef"]["name"],
        r.one("ClusterRole")["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(
        binding["subjects"][0]["name"],
        r.one("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
}

#[test]
fn role_binding_grants_the_lease_role_in_the_release_namespace() {
    let r = render_ok(json!({}));
    let (role, binding) = (r.one("Role"), r.one("RoleBinding"));
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subjects = binding["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(
        subjects[0]["name"],
        r.one("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(subjects[0]["namespace"], NAMESPACE);

    // Leader election off: no Lease, so no Role; the ClusterRole stays.
    let r = render_ok(json!({"leaderElection": {"enabled": false}}));
    assert!(r.all("Role").is_empty());
    assert!(r.all("RoleBinding").is_empty());
    assert_eq!(r.all("ClusterRole").len(), 1);
}

/// Values that break the schema are refused by both lint and render, naming the field.
#[test]
fn values_schema_rejects_bad_values() {
    let cases = [
        (json!({"replicaCount": "x"}), "/replicaCount"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"logFormat": "xml"}), "/logFormat"),
        (json!({"replicas": 3}), "replicas"),
        (json!({"stack": {"create": true}}), "/stack/spec"),
        (
            json!({"stack": {"create": true, "name": "Not_A_DNS_Label", "spec": stack_values()["stack"]["spec"]}}),
            "/stack/name",
        ),
        (json!({"metrics": {"port": 70000}}), "/metrics/port"),
    ];
    for (values, field) in cases {
        let r = render(values.clone());
        let err = r
            .render_error
            .unwrap_or_else(|| panic!("values {values} rendered although invalid"));
        assert!(
            err.contains(field),
            "error for {values} should name {field}: {err}"
        );
        assert!(!r.lint.errors.is_empty(), "lint accepted {values}");
    }
}

#[test]
fn leader_election_is_configured_and_required_for_several_replicas() {
    let env = operator_container(&render_ok(json!({})))["env"].clone();
    let var = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(var("LEADER_ELECTION")["value"], "true");
    assert_eq!(var("LEASE_NAME")["value"], RELEASE);
    assert_eq!(
        var("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    let r = render(json!({"replicaCount": 2, "leaderElection": {"enabled": false}}));
    let err = r
        .render_error
        .expect("two replicas without leader election must be refused");
    assert!(
        err.contains("replicaCount > 1 needs leaderElection.enabled"),
        "{err}"
    );
}

#[test]
fn service_monitor_without_the_service_is_refused() {
    let r = render(json!({"serviceMonitor": {"enabled": true}, "service": {"enabled": false}}));
    let err = r.render_error.expect("render must fail");
    assert!(
        err.contains("serviceMonitor.enabled needs service.enabled"),
        "{err}"
    );
}

#[test]
fn upgrades_bring_a_ready_standby_up_before_the_old_leader_stops() {
    let r = render_ok(json!({"replicaCount": 2}));
    let deploy = r.one("Deployment");
    let strategy = &deploy["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    // A new pod first, then the old one goes: this only finishes if the new pod turns
    // Ready while the old one still holds the Lease, which is why /readyz (the probe
    // below) must not wait for leadership (`controller::readiness`).
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], 1);
    let c = operator_container(&r);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Time after SIGTERM to release the Lease.
    assert!(
        deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap()
            >= 10
    );
}
