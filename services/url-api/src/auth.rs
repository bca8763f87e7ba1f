//! API keys: loading, constant-time verification, and the extractor that guards writes.
//!
//! Keys are kept only as SHA-256 digests. A presented key is hashed and compared with
//! every stored digest in constant time, so neither timing nor early exit reveals which
//! (or how much of a) key matched. Keys never appear in logs or errors.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Header accepted as an alternative to `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyConfigError {
    #[error("{var} entry #{index} is not `name:value`")]
    Malformed { var: &'static str, index: usize },
    #[error("{var} entry #{index} has an empty name or value")]
    Empty { var: &'static str, index: usize },
    #[error("{var} entry #{index} ({name}) is not a 64-digit hex SHA-256 digest")]
    BadDigest {
        var: &'static str,
        index: usize,
        name: String,
    },
    #[error("API key name {0:?} is configured twice")]
    Duplicate(String),
}

/// The configured keys: owner name and SHA-256 digest of the key.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Arc<Vec<(Arc<str>, [u8; 32])>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| &**n).collect();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn split_entries<'a>(
    var: &'static str,
    text: &'a str,
) -> impl Iterator<Item = Result<(usize, &'a str, &'a str), KeyConfigError>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(move |(i, entry)| {
            let index = i + 1;
            let (name, value) = entry
                .split_once(':')
                .ok_or(KeyConfigError::Malformed { var, index })?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || value.is_empty() {
                return Err(KeyConfigError::Empty { var, index });
            }
            Ok((index, name, value))
        })
}

impl ApiKeys {
    /// Parses `API_KEYS` (`name:key`, hashed here) and `API_KEY_HASHES` (`name:sha256hex`).
    pub fn parse(plain: &str, hashes: &str) -> Result<Self, KeyConfigError> {
        let mut entries: Vec<(Arc<str>, [u8; 32])> = Vec::new();
        for item in split_entries("API_KEYS", plain) {
            let (_, name, key) = item?;
            entries.push((name.into(), digest(key)));
        }
        for item in split_entries("API_KEY_HASHES", hashes) {
            let (index, name, hex_digest) = item?;
            let bad = || KeyConfigError::BadDigest {
                var: "API_KEY_HASHES",
                index,
                name: name.to_string(),
            };
            let bytes = hex::decode(hex_digest).map_err(|_| bad())?;
            let d: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
            entries.push((name.into(), d));
        }
        let mut names: Vec<&str> = entries.iter().map(|(n, _)| &**n).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(KeyConfigError::Duplicate(w[0].to_string()));
        }
        Ok(Self {
            entries: Arc::new(entries),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The owner name of `presented`, if it is a configured key. Compares against every
    /// digest without short-circuiting.
    pub fn verify(&self, presented: &str) -> Option<Arc<str>> {
        self.owner_of_digest(&digest(presented))
    }

    /// The owner of the key whose SHA-256 digest is `d`, if that key is still configured
    /// (a dashboard session keeps only the digest). Same constant-time comparison.
    pub fn owner_of_digest(&self, d: &[u8; 32]) -> Option<Arc<str>> {
        let mut found = None;
        for (name, stored) in self.entries.iter() {
            if bool::from(stored.ct_eq(d)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// The owner of the key presented in `headers`, if any and valid.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Arc<str>> {
        presented_key(headers).and_then(|k| self.verify(k))
    }
}

/// The key in `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    bearer
        .or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

/// An authenticated caller; the name is stored as `links.owner_key_id`.
#[derive(Debug, Clone)]
pub struct Owner(pub Arc<str>);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .keys
            .authenticate(&parts.headers)
            .map(Owner)
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn plain_and_hashed_keys_verify_to_their_names() {
        let h = hex::encode(digest("s3cret"));
        let keys = ApiKeys::parse("alice:k-alice, bob:k-bob", &format!("carol:{h}")).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.verify("k-alice").as_deref(), Some("alice"));
        assert_eq!(keys.verify("k-bob").as_deref(), Some("bob"));
        assert_eq!(keys.verify("s3cret").as_deref(), Some("carol"));
        assert_eq!(keys.verify("k-alic"), None);
        assert_eq!(keys.verify(""), None);
        // The plaintext is not kept: debug output shows names only.
        assert!(!format!("{keys:?}").contains("k-alice"));
    }

    #[test]
    fn key_values_may_contain_colons() {
        let keys = ApiKeys::parse("svc:a:b:c", "").unwrap();
        assert_eq!(keys.verify("a:b:c").as_deref(), Some("svc"));
    }

    #[test]
    fn malformed_key_config_is_rejected() {
        assert!(matches!(
            ApiKeys::parse("nocolon", ""),
            Err(KeyConfigError::Malformed { index: 1, .. })
        ));
        assert!(matches!(
            ApiKeys::parse("a:1,:x", ""),
            Err(KeyConfigError::Empty { index: 2, .. })
        ));
        assert!(matches!(
            ApiKeys::parse("", "a:abcd"),
            Err(KeyConfigError::BadDigest { .. })
        ));
        assert!(matches!(
            ApiKeys::parse("", &format!("a:{}", "zz".repeat(32))),
            Err(KeyConfigError::BadDigest { .. })
        ));
        assert_eq!(
            ApiKeys::parse("a:1,a:2", "").unwrap_err(),
            KeyConfigError::Duplicate("a".into())
        );
        assert!(ApiKeys::parse(" , ", "").unwrap().is_empty());
    }

    #[test]
    fn key_is_read_from_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(API_KEY_HEADER, HeaderValue::from_static("xk"));
        assert_eq!(presented_key(&h), Some("xk"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  bk "),
        );
        assert_eq!(presented_key(&h), Some("bk"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9v"),
        );
        assert_eq!(presented_key(&h), Some("xk"));
    }
}
