//! Drift: where a live child differs from what the operator would apply.
//!
//! A settled reconcile must not write, and a hand edit must be reverted on the next pass.
//! The desired-hash annotation catches changes of the desired object; this comparison
//! catches changes of the live one. It looks only at the fields the operator sets (every
//! field of the desired object) and accepts what the API server adds around them:
//! defaulted fields of maps and of list items (a container's `terminationMessagePath`, a
//! port's `nodePort`). Lists must have the same length and match item by item, so an
//! added or removed container, env var or port is drift too.

use serde_json::Value;

/// Dotted paths of the desired fields whose live value differs (empty: no drift).
pub fn drifted(desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(desired, Some(live), &mut String::new(), &mut out);
    out
}

fn walk(desired: &Value, live: Option<&Value>, path: &mut String, out: &mut Vec<String>) {
    match (desired, live) {
        (Value::Object(want), live @ (Some(Value::Object(_)) | None)) => {
            let have = live.and_then(Value::as_object);
            for (key, value) in want {
                if path.is_empty() && key == "status" {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(value, have.and_then(|h| h.get(key)), path, out);
                path.truncate(len);
            }
        }
        (Value::Array(want), Some(Value::Array(have))) if want.len() == have.len() => {
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(w, Some(h), path, out);
                path.truncate(len);
            }
        }
        (Value::Number(a), Some(Value::Number(b))) if a.as_f64() == b.as_f64() => {}
        (want, Some(have)) if want == have => {}
        // An empty list the server dropped is no drift.
        (Value::Array(a), None) if a.is_empty() => {}
        (Value::Null, None) => {}
        _ => out.push(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str) -> Value {
        json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
        ]}}}})
    }

    #[test]
    fn server_defaults_are_no_drift() {
        let mut live = deployment("app:1");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            "/dev/termination-log".into();
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP".into();
        live["status"] = json!({"replicas": 2});
        let mut desired = deployment("app:1");
        desired["status"] = json!({"replicas": 9});
        desired["metadata"] = json!({"annotations": {}});
        assert!(drifted(&desired, &live).is_empty());
    }

    #[test]
    fn edits_of_managed_fields_are_drift() {
        let live = deployment("app:hacked");
        assert_eq!(
            drifted(&deployment("app:1"), &live),
            ["spec.template.spec.containers[0].image"]
        );
        let mut extra = deployment("app:1");
        extra["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar"}));
        assert_eq!(
            drifted(&deployment("app:1"), &extra),
            ["spec.template.spec.containers"]
        );
        let mut gone = deployment("app:1");
        gone["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(drifted(&deployment("app:1"), &gone), ["spec.replicas"]);
    }
}
