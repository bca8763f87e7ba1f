//! Content hashes: the config checksum that rolls pods, and the desired-state hash that
//! lets a settled reconcile skip its writes.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Pod-template annotation: changes whenever the component's ConfigMap data or the set of
/// Secrets it references changes, so the Deployment rolls its pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "shortener.example.io/config-checksum";

/// Object annotation: hash of the desired object the operator last applied (computed
/// without this annotation). The reconciler compares it with the live object's value: a
/// match with no drift of the live fields (`crate::drift`) skips the server-side apply, so
/// an unchanged stack costs reads only.
pub const DESIRED_HASH_ANNOTATION: &str = "shortener.example.io/desired-hash";

/// Hex SHA-256 of the JSON encoding of `value`. k8s-openapi structs serialize their fields
/// in a fixed order and maps are `BTreeMap`s, so the result is stable across runs.
pub fn sha256_json<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("Kubernetes objects serialize to JSON");
    hex::encode(Sha256::digest(bytes))
}

/// Stamps `DESIRED_HASH_ANNOTATION` on a desired object.
pub fn with_desired_hash<K>(mut object: K) -> K
where
    K: kube::Resource + Serialize,
{
    let hash = sha256_json(&object);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DESIRED_HASH_ANNOTATION.to_string(), hash);
    object
}

/// The desired-state hash a live object carries, if any.
pub fn desired_hash_of<K: kube::Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_HASH_ANNOTATION))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;

    fn cm(value: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([("K".to_string(), value.to_string())])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        assert_eq!(sha256_json(&cm("a")), sha256_json(&cm("a")));
        assert_ne!(sha256_json(&cm("a")), sha256_json(&cm("b")));
        assert_eq!(sha256_json(&cm("a")).len(), 64);
    }

    #[test]
    fn desired_hash_excludes_itself() {
        let stamped = with_desired_hash(cm("a"));
        let hash = desired_hash_of(&stamped).unwrap().to_string();
        assert_eq!(hash, sha256_json(&cm("a")));
        assert_eq!(desired_hash_of(&with_desired_hash(cm("a"))), Some(&*hash));
        assert_eq!(desired_hash_of(&cm("a")), None);
    }
}
