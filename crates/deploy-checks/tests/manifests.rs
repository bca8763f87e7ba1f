//! Every YAML file of the project parses; the example stack matches the CRD schema; the kind,
//! skaffold and e2e manifests agree with each other and with what the operator creates.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shortener_deploy_checks::crd_schema::CrdValidator;
use shortener_deploy_checks::{helm, repo, workspace, yaml};
use shortener_operator::resources::{deployment, service, Component};
use shortener_operator::ShortenerStack;

const E2E_NAMESPACE: &str = "shortener";

fn docs(rel: &str) -> Vec<Value> {
    yaml::documents(&repo::read(rel).unwrap(), rel).unwrap_or_else(|e| panic!("{e}"))
}

fn one(rel: &str) -> Value {
    yaml::single(&repo::read(rel).unwrap(), rel).unwrap_or_else(|e| panic!("{e}"))
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// A ShortenerStack manifest as the API server would hand it to the operator.
fn as_stored(mut obj: Value) -> ShortenerStack {
    obj["metadata"]["namespace"] = json!(E2E_NAMESPACE);
    obj["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000001");
    serde_json::from_value(obj).expect("the manifest deserializes as a ShortenerStack")
}

#[test]
fn every_yaml_file_parses() {
    let files = repo::yaml_files();
    for required in [
        "kind-config.yaml",
        "skaffold.yaml",
        ".github/workflows/ci.yaml",
        ".github/workflows/e2e.yaml",
        "examples/shortener.yaml",
        "crds/shortenerstack.yaml",
        "charts/shortener-operator/Chart.yaml",
        "charts/shortener-operator/values.yaml",
        "charts/shortener-operator/crds/shortenerstack.yaml",
        "deploy/e2e/kafka.yaml",
        "deploy/e2e/postgres.yaml",
        "deploy/kind/url-api-nodeport.yaml",
    ] {
        assert!(
            files.iter().any(|f| f == required),
            "{required} not found among {files:?}"
        );
    }
    assert!(
        !files.iter().any(|f| f.contains("/templates/")),
        "templates are Go templates"
    );
    for f in &files {
        let parsed = docs(f);
        assert!(!parsed.is_empty(), "{f} holds no YAML document");
        // Kubernetes manifests (not Helm values files) carry apiVersion, kind and a name.
        let manifest_dir = ["deploy/", "examples/", "crds/"]
            .iter()
            .any(|d| f.starts_with(d));
        if manifest_dir && !f.ends_with("values.yaml") {
            for d in &parsed {
                assert!(
                    d["apiVersion"].is_string() && d["kind"].is_string(),
                    "{f}: {d}"
                );
                assert!(
                    d["metadata"]["name"].is_string(),
                    "{f}: unnamed {}",
                    d["kind"]
                );
            }
        }
    }
}

#[test]
fn example_stack_matches_the_crd_schema() {
    let crd = one("crds/shortenerstack.yaml");
    let example = one("examples/shortener.yaml");
    assert_eq!(
        example["apiVersion"],
        format!("{}/v1alpha1", crd["spec"]["group"].as_str().unwrap())
    );
    assert_eq!(example["kind"], crd["spec"]["names"]["kind"]);
    let errors = CrdValidator::new(&crd, "v1alpha1")
        .unwrap()
        .errors(&example);
    assert_eq!(
        errors,
        Vec::<String>::new(),
        "examples/shortener.yaml against the CRD schema"
    );
    // Applied into the e2e namespace: it must not pin another one.
    let ns = &example["metadata"]["namespace"];
    assert!(
        ns.is_null() || ns == E2E_NAMESPACE,
        "example namespace {ns}"
    );
}

/// Every Secret key the example refers to exists in deploy/e2e/secrets.yaml, and the values
/// there reach the e2e Postgres and Kafka.
#[test]
fn e2e_secrets_and_services_serve_the_example() {
    let example = one("examples/shortener.yaml");
    let secrets = docs("deploy/e2e/secrets.yaml");
    let mut refs = Vec::new();
    collect_secret_key_refs(&example["spec"], &mut refs);
    assert!(
        refs.len() >= 2,
        "the example refers to the database and API-key Secrets: {refs:?}"
    );
    for (name, key) in &refs {
        let secret = find(&secrets, "Secret", name);
        assert!(
            secret["stringData"][key].is_string(),
            "Secret {name} lacks key {key}"
        );
    }

    // The database URL names the e2e Postgres Service with the credentials it starts with.
    let postgres = docs("deploy/e2e/postgres.yaml");
    let admin = &find(&postgres, "Secret", "postgres-admin")["stringData"];
    let db_ref = &example["spec"]["database"]["urlSecretRef"];
    let url = find(&secrets, "Secret", db_ref["name"].as_str().unwrap())["stringData"]
        [db_ref["key"].as_str().unwrap()]
    .as_str()
    .unwrap()
    .to_string();
    let pg_port = find(&postgres, "Service", "postgres")["spec"]["ports"][0]["port"].clone();
    let want = format!(
        "postgres://{}:{}@postgres:{}/{}",
        admin["POSTGRES_USER"].as_str().unwrap(),
        admin["POSTGRES_PASSWORD"].as_str().unwrap(),
        pg_port,
        admin["POSTGRES_DB"].as_str().unwrap()
    );
    assert_eq!(url, want);

    // The brokers the example names are the e2e Kafka Service.
    let kafka = docs("deploy/e2e/kafka.yaml");
    let kafka_port = find(&kafka, "Service", "kafka")["spec"]["ports"][0]["port"].clone();
    let bootstrap = example["spec"]["kafka"]["bootstrapServers"]
        .as_str()
        .unwrap();
    let host = bootstrap.split(':').next().unwrap();
    assert!(
        host == "kafka" || host.starts_with(&format!("kafka.{E2E_NAMESPACE}.")),
        "{bootstrap}"
    );
    assert_eq!(
        bootstrap.rsplit(':').next().unwrap(),
        kafka_port.to_string()
    );

    // The e2e script's API key is one of the keys url-api loads.
    let script = repo::read("scripts/e2e-kind").unwrap();
    assert!(
        script.contains("keys: *e2e:"),
        "the script reads the `e2e` key"
    );
    let key_ref = &example["spec"]["urlApi"]["apiKeySecretRef"];
    let keys = find(&secrets, "Secret", key_ref["name"].as_str().unwrap())["stringData"]
        [key_ref["key"].as_str().unwrap()]
    .as_str()
    .unwrap();
    assert!(
        keys.split(',')
            .any(|k| k.starts_with("e2e:") && k.len() > "e2e:".len() + 16),
        "{keys}"
    );

    let namespace = one("deploy/e2e/namespace.yaml");
    assert_eq!(namespace["metadata"]["name"], E2E_NAMESPACE);
}

fn collect_secret_key_refs(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k.ends_with("SecretRef") && child["name"].is_string() && child["key"].is_string()
                {
                    out.push((
                        child["name"].as_str().unwrap().to_string(),
                        child["key"].as_str().unwrap().to_string(),
                    ));
                } else {
                    collect_secret_key_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_secret_key_refs(i, out)),
        _ => {}
    }
}

/// kind publishes node port 30080 on localhost:8080, and the NodePort Service selects the pods
/// the operator creates for the example stack, on the port it names.
#[test]
fn kind_port_mapping_reaches_the_example_url_api() {
    let kind = one("kind-config.yaml");
    assert_eq!(kind["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let mappings = kind["nodes"][0]["extraPortMappings"].as_array().unwrap();
    let mapping = mappings
        .iter()
        .find(|m| m["hostPort"] == 8080)
        .expect("host port 8080");
    assert_eq!(mapping["containerPort"], 30080);

    let svc = one("deploy/kind/url-api-nodeport.yaml");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["metadata"]["namespace"], E2E_NAMESPACE);
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["nodePort"], mapping["containerPort"]);

    let stack = as_stored(one("examples/shortener.yaml"));
    let deploy =
        serde_json::to_value(deployment::deployment_for(&stack, Component::UrlApi)).unwrap();
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[k], v,
            "selector {k} does not match the url-api pods {pod_labels}"
        );
    }
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    let named = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port["targetPort"])
        .unwrap_or_else(|| panic!("url-api has no port named {}", port["targetPort"]));
    assert_eq!(named["containerPort"], 8080);
}

/// The images scripts/e2e-kind builds and loads are exactly those the operator runs for the
/// example stack and the chart runs for the operator.
#[test]
fn e2e_images_are_the_ones_deployed() {
    let version = workspace::version().unwrap();
    let stack = as_stored(one("examples/shortener.yaml"));
    let mut deployed: BTreeMap<String, String> = Component::ALL
        .iter()
        .map(|c| (c.name().to_string(), c.image(&stack)))
        .collect();
    let r = helm::render(&json!({})).unwrap_or_else(|e| panic!("{e}"));
    let operator_image =
        r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    deployed.insert(
        "operator".into(),
        operator_image.as_str().unwrap().to_string(),
    );

    let script = repo::read("scripts/e2e-kind").unwrap();
    assert!(script.contains("images=(url-api analytics-rpc consumer operator)"));
    assert!(script.contains("registry=ghcr.io/shortener-stack"));
    for (name, image) in deployed {
        assert_eq!(image, format!("ghcr.io/shortener-stack/{name}:{version}"));
    }
}

#[test]
fn skaffold_builds_every_image_and_deploys_the_chart_with_them() {
    let sk = one("skaffold.yaml");
    assert!(
        sk["apiVersion"]
            .as_str()
            .unwrap()
            .starts_with("skaffold/v4beta"),
        "{}",
        sk["apiVersion"]
    );
    assert_eq!(sk["kind"], "Config");
    assert_eq!(
        sk["build"]["local"]["push"], false,
        "kind loads images; nothing is pushed"
    );

    let artifacts = sk["build"]["artifacts"].as_array().unwrap();
    let mut targets = Vec::new();
    for a in artifacts {
        let image = a["image"].as_str().unwrap();
        let target = a["docker"]["target"].as_str().unwrap();
        assert_eq!(image, format!("ghcr.io/shortener-stack/{target}"));
        assert_eq!(a["docker"]["dockerfile"], "Dockerfile");
        targets.push(target.to_string());
    }
    targets.sort();
    assert_eq!(
        targets,
        ["analytics-rpc", "consumer", "operator", "url-api"]
    );

    for f in sk["manifests"]["rawYaml"].as_array().unwrap() {
        assert!(repo::path(f.as_str().unwrap()).is_file(), "{f} missing");
    }

    let release = &sk["deploy"]["helm"]["releases"][0];
    assert_eq!(release["chartPath"], helm::CHART_DIR);
    let ns = release["namespace"].as_str().unwrap();
    assert_eq!(
        ns, E2E_NAMESPACE,
        "stack and e2e services share the namespace"
    );
    assert_eq!(sk["deploy"]["kubectl"]["defaultNamespace"], ns);

    // Every template names an image skaffold builds, and sets a value the chart has.
    let mut values = json!({});
    for f in release["valuesFiles"].as_array().unwrap() {
        let file = one(f.as_str().unwrap());
        merge(&mut values, &file);
    }
    let keys = release["setValueTemplates"].as_object().unwrap();
    assert!(keys.contains_key("image.repository") && keys.contains_key("image.tag"));
    for (key, template) in keys {
        let t = template.as_str().unwrap();
        let var = t.trim_start_matches("{{.").trim_end_matches("}}");
        let (kind, image) = var
            .split_once("_ghcr_io_shortener_stack_")
            .expect("IMAGE_*_<image>");
        assert!(kind == "IMAGE_REPO" || kind == "IMAGE_TAG", "{t}");
        let image = image.replace('_', "-");
        assert!(targets.contains(&image), "{t} names no built image");
        set_path(
            &mut values,
            key,
            json!(format!("test.local/{image}-{kind}")),
        );
    }
    let r = helm::render(&values).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.render_error.is_none(), "{:?}", r.render_error);
    let c = &r.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "test.local/operator-IMAGE_REPO:test.local/operator-IMAGE_TAG"
    );
    let rendered_stack = r.one("ShortenerStack");
    let crd = one("crds/shortenerstack.yaml");
    assert_eq!(
        CrdValidator::new(&crd, "v1alpha1")
            .unwrap()
            .errors(&rendered_stack),
        Vec::<String>::new()
    );
    let stack = as_stored(rendered_stack);
    for c in Component::ALL {
        let image = c.image(&stack);
        assert!(
            image.starts_with(&format!("test.local/{}-IMAGE_REPO:", c.name())),
            "{image}"
        );
    }

    // Port-forward targets the url-api Service the operator creates for that stack.
    let svc =
        serde_json::to_value(service::service_for(&stack, Component::UrlApi).unwrap()).unwrap();
    let pf = &sk["portForward"][0];
    assert_eq!(pf["resourceType"], "service");
    assert_eq!(pf["resourceName"], svc["metadata"]["name"]);
    assert_eq!(pf["namespace"], ns);
    assert_eq!(pf["port"], svc["spec"]["ports"][0]["port"]);
    assert_ne!(pf["localPort"], 8080, "8080 is the kind port mapping");

    // The NodePort Service of deploy/kind selects this stack's url-api too.
    let nodeport = one("deploy/kind/url-api-nodeport.yaml");
    assert_eq!(
        nodeport["spec"]["selector"]["app.kubernetes.io/instance"],
        stack.metadata.name.clone().unwrap()
    );
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn set_path(values: &mut Value, dotted: &str, v: Value) {
    let mut cur = values;
    for part in dotted.split('.') {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(part.to_string())
            .or_insert(Value::Null);
    }
    *cur = v;
}

/// The day-2 steps of scripts/e2e-kind check names as the operator writes them: a renamed
/// annotation, condition reason, Event reason, status field or child name fails here, not
/// only on the kind cluster.
#[test]
fn the_e2e_day2_steps_use_the_operators_names() {
    use shortener_operator::conditions::{ConditionType, Reason};
    use shortener_operator::events::EventReason;
    use shortener_operator::migration::RETRY_ANNOTATION;

    let script = repo::read("scripts/e2e-kind").unwrap();
    let stack = ShortenerStack::new(
        "STACK",
        serde_json::from_value(serde_json::json!({
            "kafka": {"bootstrapServers": "kafka:9092"},
            "database": {"urlSecretRef": {"name": "db", "key": "url"}},
        }))
        .unwrap(),
    );
    let config_map = Component::Consumer.config_map_name(&stack);
    let children: Vec<String> = Component::ALL
        .iter()
        .map(|c| c.object_name(&stack))
        .collect();
    let status = serde_json::to_value(shortener_operator::crd::MigrationStatus {
        job: Some("j".into()),
        retry_token: Some("t".into()),
        ..Default::default()
    })
    .unwrap();
    for field in ["job", "retryToken"] {
        assert!(status.get(field).is_some(), "status.migration.{field}");
    }
    for needed in [
        RETRY_ANNOTATION.to_string(),
        ConditionType::MigrationsApplied.to_string(),
        format!("\"{}\"", Reason::MigrationFailed),
        format!("has_event {}", EventReason::DriftReverted),
        format!("has_event {}", EventReason::MigrationFailed),
        ".status.migration.retryToken".into(),
        ".status.migration.job".into(),
        config_map.replace("STACK", "$stack"),
        children.join(" ").replace("STACK", "$stack"),
        "\"networkPolicy\": {\"enabled\": false}".into(),
        "\"podMonitor\": {\"enabled\": false}".into(),
        "--set replicaCount=2".into(),
        "{.metadata.finalizers}".into(),
    ] {
        assert!(
            script.contains(&needed),
            "scripts/e2e-kind does not check {needed}"
        );
    }
}
