//! Fixtures for unit tests.

use kube::api::ObjectMeta;

use crate::crd::{ShortenerStack, ShortenerStackSpec};

/// The minimal stack: `demo` in namespace `shop`, everything else at its default.
pub fn stack() -> ShortenerStack {
    let spec: ShortenerStackSpec = serde_json::from_value(serde_json::json!({
        "kafka": {"bootstrapServers": "kafka:9092"},
        "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}},
    }))
    .expect("minimal spec parses");
    let mut stack = ShortenerStack::new("demo", spec);
    stack.metadata = ObjectMeta {
        name: Some("demo".into()),
        namespace: Some("shop".into()),
        uid: Some("8d4a3c1e-0000-4000-8000-000000000001".into()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    stack
}
