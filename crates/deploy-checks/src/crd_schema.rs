//! Validation of custom resources against a CRD's `openAPIV3Schema`, the way the API server
//! would check them: Kubernetes' OpenAPI dialect is turned into JSON Schema first.
//!
//! * `nullable: true` becomes a `null` alternative of the type;
//! * `x-kubernetes-int-or-string` becomes integer-or-string;
//! * objects with `properties` and no `additionalProperties` reject unknown fields (the API
//!   server would prune them silently, and `kubectl apply --validate=strict` rejects them),
//!   except under `x-kubernetes-preserve-unknown-fields`.
//!
//! CEL rules (`x-kubernetes-validations`) are not evaluated here: they need a CEL runtime
//! (the operator's own tests cover the rules it documents).

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The `openAPIV3Schema` of `version` in a CRD object.
pub fn version_schema<'a>(crd: &'a Value, version: &str) -> Result<&'a Value> {
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == version)
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .filter(|s| s.is_object())
        .ok_or_else(|| Error::Schema(format!("CRD has no openAPIV3Schema for version {version}")))
}

/// Kubernetes structural schema -> JSON Schema (draft 7).
pub fn to_json_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let converted = match k.as_str() {
            "properties" | "patternProperties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), to_json_schema(s)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" if v.is_object() => to_json_schema(v),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(to_json_schema)
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), converted);
    }

    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !obj.contains_key("type")
    {
        out.insert(
            "anyOf".into(),
            serde_json::json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = obj.get("type") {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
        // An enum must list null too for a null value to pass.
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            if !values.contains(&Value::Null) {
                values.push(Value::Null);
            }
        }
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !preserves {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// A compiled validator for the custom resources of one CRD version.
pub struct CrdValidator {
    validator: jsonschema::Validator,
}

impl CrdValidator {
    pub fn new(crd: &Value, version: &str) -> Result<Self> {
        let mut schema = to_json_schema(version_schema(crd, version)?);
        // The API server always accepts (and itself validates) the object's envelope, even
        // where the generated schema lists only spec and status.
        if let Some(props) = schema["properties"].as_object_mut() {
            props
                .entry("apiVersion")
                .or_insert(serde_json::json!({"type": "string"}));
            props
                .entry("kind")
                .or_insert(serde_json::json!({"type": "string"}));
            props
                .entry("metadata")
                .or_insert(serde_json::json!({"type": "object"}));
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&schema)
            .map_err(|e| Error::Schema(e.to_string()))?;
        Ok(Self { validator })
    }

    /// Every violation as `<instance path>: <message>`; empty when valid.
    pub fn errors(&self, object: &Value) -> Vec<String> {
        self.validator
            .iter_errors(object)
            .map(|e| format!("{}: {}", e.instance_path(), e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn crd(schema: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}})
    }

    #[test]
    fn kubernetes_extensions_become_json_schema() {
        let v = CrdValidator::new(
            &crd(json!({
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                             "properties": {"a": {"type": "integer"}}}
                }}}
            })),
            "v1",
        )
        .unwrap();
        let ok = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"port": "http", "note": null, "free": {"a": 1, "other": true}}});
        assert_eq!(v.errors(&ok), Vec::<String>::new());
        assert!(v.errors(&json!({"spec": {"port": 8080}})).is_empty());
        assert!(!v.errors(&json!({"spec": {"port": 1.5}})).is_empty());
        assert!(!v.errors(&json!({"spec": {"unknown": 1}})).is_empty());
        assert!(!v.errors(&json!({"spec": {"free": {"a": "x"}}})).is_empty());
    }

    #[test]
    fn missing_version_is_an_error() {
        assert!(CrdValidator::new(&crd(json!({"type": "object"})), "v2").is_err());
    }
}
