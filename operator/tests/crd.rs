//! The committed CRD matches the code, and the example resource is valid against it.

use std::path::PathBuf;

use serde_json::Value;
use shortener_operator::crd::{crd_yaml, ShortenerStack};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let path = repo_root().join("crds/shortenerstack.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        committed == crd_yaml(),
        "crds/shortenerstack.yaml is out of date with the ShortenerStack types.\n\
         Regenerate it with:\n    cargo run -q -p shortener-operator -- crd > crds/shortenerstack.yaml"
    );
}

fn schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Validates `value` against the structural-schema subset a CRD uses, the way the API
/// server's strict field validation would: unknown fields, types, required fields,
/// enums, minimum/maximum, minLength/maxLength. CEL rules are not evaluated here.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(format!("{path}: expected int or string"));
        }
        return;
    }
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            errors.push(format!("{path}: schema has unknown type {other}"));
            return;
        }
        None => true,
    };
    if !type_ok {
        errors.push(format!("{path}: expected {}, got {value}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(min), Some(v)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if v < min {
            errors.push(format!("{path}: {v} is below the minimum {min}"));
        }
    }
    if let (Some(max), Some(v)) = (schema["maximum"].as_f64(), value.as_f64()) {
        if v > max {
            errors.push(format!("{path}: {v} is above the maximum {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        if let Some(min) = schema["minLength"].as_u64() {
            if (s.chars().count() as u64) < min {
                errors.push(format!("{path}: shorter than {min}"));
            }
        }
        if let Some(max) = schema["maxLength"].as_u64() {
            if s.chars().count() as u64 > max {
                errors.push(format!("{path}: longer than {max}"));
            }
        }
    }
    if let Some(obj) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap();
            if !obj.contains_key(key) {
                errors.push(format!("{path}: missing required field {key}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, child) in obj {
            let child_path = format!("{path}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => validate(s, child, &child_path, errors),
                (None, Some(extra)) if extra.is_object() => {
                    validate(extra, child, &child_path, errors)
                }
                (None, _) if path.is_empty() && (key == "apiVersion" || key == "kind") => {}
                (None, _) if path == ".metadata" || path.is_empty() && key == "metadata" => {}
                (None, _) => errors.push(format!("{child_path}: unknown field")),
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn errors_for(value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(&schema(), value, "", &mut errors);
    errors
}

fn example() -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/shortener.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn example_parses_into_the_rust_type_and_validates_against_the_schema() {
    let value = example();
    let stack: ShortenerStack = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(stack.metadata.name.as_deref(), Some("shortener"));
    assert_eq!(stack.spec.kafka.bootstrap_servers, "kafka:9092");
    assert_eq!(stack.spec.kafka.topic, "clicks");
    assert_eq!(stack.spec.kafka.partitions, 4);
    assert_eq!(
        stack.spec.url_api.api_key_secret_ref.as_ref().unwrap().name,
        "shortener-api-keys"
    );
    let errors = errors_for(&value);
    assert!(errors.is_empty(), "example is invalid: {errors:#?}");
    // The defaults the API server would fill in also validate.
    let defaulted = serde_json::to_value(&stack).unwrap();
    let errors = errors_for(&defaulted);
    assert!(
        errors.is_empty(),
        "defaulted example is invalid: {errors:#?}"
    );
}

#[test]
fn the_schema_check_rejects_bad_resources() {
    let mut bad = example();
    bad["spec"]["kafka"]["partitions"] = 0.into();
    bad["spec"]["kafka"]["topic"] = "".into();
    bad["spec"]["urlApi"]["replicaz"] = 3.into();
    bad["spec"]["image"] = serde_json::json!({"urlApi": {"pullPolicy": "Sometimes"}});
    bad["spec"]["database"] = serde_json::json!({});
    let errors = errors_for(&bad);
    let joined = errors.join("\n");
    assert!(
        joined.contains(".spec.kafka.partitions: 0 is below the minimum 1"),
        "{joined}"
    );
    assert!(
        joined.contains(".spec.kafka.topic: shorter than 1"),
        "{joined}"
    );
    assert!(
        joined.contains(".spec.urlApi.replicaz: unknown field"),
        "{joined}"
    );
    assert!(joined.contains(".spec.image.urlApi.pullPolicy"), "{joined}");
    assert_eq!(errors.len(), 4, "{joined}");
}

#[test]
fn schema_carries_the_cel_rules_and_names() {
    let crd: Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["group"], "shortener.example.io");
    assert_eq!(crd["spec"]["names"]["plural"], "shortenerstacks");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "sst");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Consumers", "Lag", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rules = |v: &Value| -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(rules(&spec["consumer"]).contains(&"self.minReplicas <= self.maxReplicas".to_string()));
    let kafka = rules(&spec["kafka"]);
    assert!(kafka.contains(&"self.partitions >= 1".to_string()));
    assert!(kafka.iter().any(|r| r.starts_with("self.topic.matches(")));
    assert!(kafka.contains(&"self.partitions >= oldSelf.partitions".to_string()));
}

/// `kubectl apply --dry-run=client` still needs an API server for discovery, and none
/// exists here; `kubectl label --local` parses the same files with kubectl's decoder
/// without contacting one.
#[test]
fn kubectl_parses_the_crd_and_example() {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("skipping: kubectl is not installed (the Rust schema checks above still ran)");
        return;
    };
    assert!(out.status.success());
    let out = std::process::Command::new("kubectl")
        .args(["label", "--local", "-o", "name", "-f"])
        .arg(repo_root().join("crds/shortenerstack.yaml"))
        .arg("-f")
        .arg(repo_root().join("examples/shortener.yaml"))
        .arg("check=ok")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl rejected the files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "customresourcedefinition.apiextensions.k8s.io/shortenerstacks.shortener.example.io"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("shortenerstack.shortener.example.io/shortener"),
        "{stdout}"
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    let s = schema();
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    // A map key must be required in every item.
    assert!(conditions["items"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "type"));
}

/// A stack that leaves the consumer's privacy settings out gets the consumer binary's own
/// defaults: the API server fills in the schema's defaults, the operator passes them on.
#[test]
fn consumer_privacy_defaults_are_the_consumers() {
    use shortener_common::privacy::{
        DEFAULT_ANONYMIZE_IPS, DEFAULT_CLICK_RETENTION_DAYS, MIN_CLICK_RETENTION_DAYS,
    };
    let consumer = &schema()["properties"]["spec"]["properties"]["consumer"];
    let fields = &consumer["properties"];
    assert_eq!(
        fields["clickRetentionDays"]["default"],
        serde_json::json!(DEFAULT_CLICK_RETENTION_DAYS),
        "{consumer:#}"
    );
    assert_eq!(
        fields["clickRetentionDays"]["minimum"].as_f64(),
        Some(f64::from(MIN_CLICK_RETENTION_DAYS))
    );
    assert_eq!(
        fields["anonymizeIps"]["default"],
        serde_json::json!(DEFAULT_ANONYMIZE_IPS)
    );
    // The default of the whole consumer object (when `consumer` is left out) agrees.
    if let Some(default) = consumer.get("default").filter(|d| !d.is_null()) {
        assert_eq!(
            default["clickRetentionDays"],
            serde_json::json!(400),
            "{default:#}"
        );
        assert_eq!(
            default["anonymizeIps"],
            serde_json::json!(true),
            "{default:#}"
        );
    }
    let mut errors = Vec::new();
    let mut bad = example();
    bad["spec"]["consumer"]["clickRetentionDays"] = serde_json::json!(0);
    validate(&schema(), &bad, "", &mut errors);
    assert!(
        errors.iter().any(|e| e.contains("clickRetentionDays")),
        "{errors:?}"
    );
}
