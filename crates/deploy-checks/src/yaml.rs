//! Multi-document YAML parsing into JSON values (what Kubernetes and the schema checks see).

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// Every non-empty document of a YAML stream, converted to JSON values. `what` names the
/// source in errors.
pub fn documents(text: &str, what: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Parse {
            what: format!("{what} (document {})", i + 1),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| Error::Parse {
            what: format!("{what} (document {}) as JSON", i + 1),
            message: e.to_string(),
        })?;
        docs.push(json);
    }
    Ok(docs)
}

/// Exactly one document.
pub fn single(text: &str, what: &str) -> Result<Value> {
    let mut docs = documents(text, what)?;
    if docs.len() != 1 {
        return Err(Error::Parse {
            what: what.to_string(),
            message: format!("expected one YAML document, found {}", docs.len()),
        });
    }
    Ok(docs.remove(0))
}

/// `kind/name` of a Kubernetes object, for messages and lookups.
pub fn object_id(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["metadata"]["name"].as_str().unwrap_or("?")
    )
}
