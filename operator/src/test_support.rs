//! Fixtures for unit tests.

use kube::api::ObjectMeta;

use crate::crd::{
    CredentialsSecretRef, KafkaSaslSpec, KafkaTlsSpec, SaslMechanism, SecretKeyRef, SecretRef,
    ShortenerStack, ShortenerStackSpec,
};

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

/// SASL credentials from Secret `kafka-user`, the CA from `kafka-ca` (key `ca.crt`) and a
/// client certificate from `kafka-client`.
pub fn secure_kafka(stack: &mut ShortenerStack, mechanism: SaslMechanism) {
    stack.spec.kafka.sasl = Some(KafkaSaslSpec {
        mechanism,
        secret_ref: CredentialsSecretRef {
            name: "kafka-user".into(),
        },
    });
    stack.spec.kafka.tls = Some(KafkaTlsSpec {
        ca_secret_ref: Some(SecretKeyRef {
            name: "kafka-ca".into(),
            key: "ca.crt".into(),
        }),
        cert_secret_ref: Some(SecretRef {
            name: "kafka-client".into(),
        }),
    });
}
