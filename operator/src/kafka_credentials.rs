//! Reading Kafka credentials (SASL and TLS material) from the Secrets a stack references.
//!
//! The operator may read any Secret (`secrets: get` cluster-wide), but a stack's author
//! chooses both the Secret and the brokers the admin client sends it to. So the operator
//! only uses Secrets that opt in with `KAFKA_CREDENTIALS_LABEL`; anyone who can label a
//! Secret can also read it, so the label is the Secret owner's consent. The pods are not
//! affected: the kubelet mounts their Secrets by reference, with or without the label.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use crate::error::Error;

/// Label a Secret must carry, with value `"true"`, before the operator reads Kafka
/// credentials from it.
pub const KAFKA_CREDENTIALS_LABEL: &str = "shortener.example.io/kafka-credentials";

/// Whether the Secret carries `KAFKA_CREDENTIALS_LABEL: "true"`.
pub fn opted_in(secret: &Secret) -> bool {
    secret
        .labels()
        .get(KAFKA_CREDENTIALS_LABEL)
        .is_some_and(|v| v == "true")
}

/// Reads the Secret `name`; one without the opt-in label is refused before any of its
/// data is used.
pub async fn read(secrets: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, Error> {
    let secret = secrets.get(name).await?;
    if !opted_in(&secret) {
        return Err(Error::SecretNotOptedIn {
            namespace: namespace.to_string(),
            secret: name.to_string(),
        });
    }
    Ok(secret)
}

/// The UTF-8 value of `key`.
pub fn value(secret: &Secret, key: &str) -> Result<String, Error> {
    let missing = || Error::MissingSecretKey {
        secret: secret.name_any(),
        key: key.to_string(),
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(missing)?;
    String::from_utf8(bytes.0.clone()).map_err(|_| missing())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn secret(labels: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("kafka".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    #[test]
    fn only_the_label_with_value_true_opts_in() {
        assert!(opted_in(&secret(&[(KAFKA_CREDENTIALS_LABEL, "true")])));
        assert!(!opted_in(&secret(&[])));
        assert!(!opted_in(&secret(&[(KAFKA_CREDENTIALS_LABEL, "false")])));
        assert!(!opted_in(&secret(&[(KAFKA_CREDENTIALS_LABEL, "yes")])));
        assert!(!opted_in(&secret(&[("kafka-credentials", "true")])));
        assert!(!opted_in(&Secret::default()));
    }

    #[test]
    fn the_crd_documents_the_label() {
        assert!(crate::crd::crd_yaml().contains(KAFKA_CREDENTIALS_LABEL));
    }

    #[test]
    fn refusal_names_the_secret_and_the_label_to_add() {
        let message = Error::SecretNotOptedIn {
            namespace: "shop".into(),
            secret: "kafka-user".into(),
        }
        .to_string();
        assert!(message.contains("shop/kafka-user"), "{message}");
        assert!(
            message.contains(&format!("{KAFKA_CREDENTIALS_LABEL}=true")),
            "{message}"
        );
    }
}
