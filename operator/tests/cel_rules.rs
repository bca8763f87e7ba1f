//! Every CEL rule of the CRD (`x-kubernetes-validations`), evaluated with a CEL interpreter
//! the way the API server does: `self` is the value at the rule's place in the object
//! (defaults applied), `oldSelf` the stored one on updates (transition rules only run on
//! updates). Each rule must be seen both accepting and rejecting a case.

use std::collections::{BTreeMap, HashMap};

use cel::{Context, Program, Value as Cel};
use kube::CustomResourceExt;
use serde_json::{json, Value};
use shortener_operator::crd::{ShortenerStack, ShortenerStackSpec};

/// A rule and where in the object it applies (`[]` = the root).
#[derive(Debug, Clone)]
struct Rule {
    at: Vec<String>,
    rule: String,
    message: String,
}

fn collect(schema: &Value, at: &mut Vec<String>, out: &mut Vec<Rule>) {
    for v in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(Rule {
            at: at.clone(),
            rule: v["rule"].as_str().unwrap().to_string(),
            message: v["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
        at.push(name.clone());
        collect(sub, at, out);
        at.pop();
    }
}

fn rules() -> Vec<Rule> {
    let crd = serde_json::to_value(ShortenerStack::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    collect(schema, &mut Vec::new(), &mut out);
    out
}

/// JSON to CEL: integers are CEL ints (Kubernetes' int64), as the API server does.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap()),
        },
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(a) => Cel::from(a.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(m) => Cel::from(
            m.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<String, Cel>>(),
        ),
    }
}

/// The object as the API server validates it: the spec with its defaults filled in.
fn object(name: &str, spec: Value) -> Value {
    let spec: ShortenerStackSpec = serde_json::from_value(spec).expect("spec parses");
    json!({
        "apiVersion": "shortener.example.io/v1alpha1", "kind": "ShortenerStack",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": serde_json::to_value(spec).unwrap(),
    })
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// Messages of the rules `new` (updating `old`, if any) breaks; records what each rule did.
fn violations(
    new: &Value,
    old: Option<&Value>,
    seen: &mut BTreeMap<String, (bool, bool)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules() {
        let transition = r.rule.contains("oldSelf");
        let Some(value) = at(new, &r.at) else {
            continue;
        };
        let old_value = old.and_then(|o| at(o, &r.at));
        if transition && old_value.is_none() {
            continue;
        }
        let program = Program::compile(&r.rule).unwrap_or_else(|e| panic!("{}: {e:?}", r.rule));
        let mut ctx = Context::default();
        ctx.add_variable_from_value("self", to_cel(value));
        if let Some(o) = old_value {
            ctx.add_variable_from_value("oldSelf", to_cel(o));
        }
        let ok = match program.execute(&ctx) {
            Ok(Cel::Bool(b)) => b,
            other => panic!("{} gave {other:?}", r.rule),
        };
        let entry = seen.entry(r.rule.clone()).or_default();
        if ok {
            entry.0 = true;
        } else {
            entry.1 = true;
            out.push(r.message.clone());
        }
    }
    out
}

fn base() -> Value {
    json!({
        "kafka": {"bootstrapServers": "kafka:9092"},
        "database": {"urlSecretRef": {"name": "db", "key": "url"}}
    })
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut cursor = &mut v;
    for k in &path[..path.len() - 1] {
        cursor = &mut cursor[*k];
    }
    cursor[path[path.len() - 1]] = value;
    v
}

#[test]
fn every_cel_rule_accepts_valid_and_rejects_invalid_specs() {
    let mut seen = BTreeMap::new();
    let valid = object("demo", base());
    assert_eq!(
        violations(&valid, Some(&valid), &mut seen),
        Vec::<String>::new()
    );

    // Creation: (spec, name, the message expected).
    let creation = [
        (base(), "x".repeat(31), "metadata.name must be at most 30"),
        (
            with(base(), &["kafka", "partitions"], json!(0)),
            "demo".into(),
            "kafka.partitions must be at least 1",
        ),
        (
            with(base(), &["kafka", "topic"], json!("clicks/x")),
            "demo".into(),
            "kafka.topic must be a non-empty Kafka topic name",
        ),
        (
            with(
                base(),
                &["consumer"],
                json!({"minReplicas": 5, "maxReplicas": 2}),
            ),
            "demo".into(),
            "consumer.minReplicas must not exceed",
        ),
        (
            with(
                base(),
                &["database"],
                json!({"urlSecretRef": {"name": "db", "key": "url"}, "host": "pg"}),
            ),
            "demo".into(),
            "set exactly one of database.urlSecretRef and database.host",
        ),
        (
            with(base(), &["database"], json!({"host": "pg"})),
            "demo".into(),
            "database.host needs database.credentialsSecretRef",
        ),
        (
            with(base(), &["geoip"], json!({"path": "x.mmdb"})),
            "demo".into(),
            "set exactly one of geoip.configMap and geoip.persistentVolumeClaim",
        ),
    ];
    for (spec, name, expected) in creation {
        let v = violations(&object(&name, spec.clone()), None, &mut seen);
        assert!(v.iter().any(|m| m.contains(expected)), "{spec}: {v:?}");
    }
    // A valid geoip block, so its rule is also seen accepting.
    let geo = object(
        "demo",
        with(base(), &["geoip"], json!({"configMap": "geo"})),
    );
    assert!(violations(&geo, None, &mut seen).is_empty());

    // Updates (transition rules): (old spec, new spec, expected message or None).
    let updates = [
        (
            base(),
            with(base(), &["kafka", "partitions"], json!(8)),
            None,
        ),
        (
            with(base(), &["kafka", "partitions"], json!(8)),
            base(),
            Some("kafka.partitions cannot be decreased"),
        ),
        (
            base(),
            with(base(), &["kafka", "topic"], json!("clicks2")),
            Some("kafka.topic cannot be changed"),
        ),
        (
            base(),
            with(base(), &["kafka", "dlqTopic"], json!("other.dlq")),
            Some("kafka.dlqTopic cannot be changed"),
        ),
        // Spelling out the default DLQ name is no change.
        (
            base(),
            with(base(), &["kafka", "dlqTopic"], json!("clicks.dlq")),
            None,
        ),
        (
            base(),
            with(base(), &["consumer"], json!({"groupId": "other"})),
            Some("consumer.groupId cannot be changed"),
        ),
        (
            base(),
            with(base(), &["consumer"], json!({"maxReplicas": 8})),
            None,
        ),
    ];
    for (old, new, expected) in updates {
        let v = violations(
            &object("demo", new.clone()),
            Some(&object("demo", old)),
            &mut seen,
        );
        match expected {
            Some(m) => assert!(v.iter().any(|x| x.contains(m)), "{new}: {v:?}"),
            None => assert!(v.is_empty(), "{new}: {v:?}"),
        }
    }

    for r in rules() {
        let (accepted, rejected) = seen.get(&r.rule).copied().unwrap_or_default();
        assert!(
            accepted && rejected,
            "rule {} not exercised both ways: {:?}",
            r.rule,
            (accepted, rejected)
        );
    }
}
