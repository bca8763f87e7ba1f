//! How the operator reaches a stack's brokers: the same settings the pods get, with the
//! Secret material inline (librdkafka's `*.pem` and SASL options) instead of mounted files.

use rdkafka::ClientConfig;
use shortener_common::kafka::KafkaArgs;

/// Admin-client settings for one stack. `Debug` never prints the Secret material.
#[derive(Clone)]
pub struct KafkaConnection {
    /// Brokers, topic and security protocol (the credentials fields are filled from
    /// Secrets by the reconciler).
    pub args: KafkaArgs,
    pub ca_pem: Option<String>,
    pub certificate_pem: Option<String>,
    pub key_pem: Option<String>,
}

impl KafkaConnection {
    pub fn plaintext(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            args: KafkaArgs::new(bootstrap_servers, "clicks"),
            ca_pem: None,
            certificate_pem: None,
            key_pem: None,
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.args.kafka_bootstrap_servers
    }

    /// Client configuration for an admin client.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = self.args.client_config();
        cfg.set("client.id", "shortener-operator");
        for (key, value) in [
            ("ssl.ca.pem", &self.ca_pem),
            ("ssl.certificate.pem", &self.certificate_pem),
            ("ssl.key.pem", &self.key_pem),
        ] {
            if let Some(v) = value {
                cfg.set(key, v);
            }
        }
        cfg
    }
}

impl KafkaConnection {
    /// A digest of every client setting, Secret material included: equal digests mean an
    /// admin client built earlier can be reused. Never logged.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let cfg = self.client_config();
        let settings: std::collections::BTreeMap<&String, &String> =
            cfg.config_map().iter().collect();
        let mut digest = Sha256::new();
        for (key, value) in settings {
            digest.update(key.as_bytes());
            digest.update([0]);
            digest.update(value.as_bytes());
            digest.update([0]);
        }
        hex::encode(digest.finalize())
    }
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("bootstrap_servers", &self.args.kafka_bootstrap_servers)
            .field("security_protocol", &self.args.kafka_security_protocol)
            .field("sasl_mechanism", &self.args.kafka_sasl_mechanism)
            .field("tls_ca", &self.ca_pem.is_some())
            .field("tls_client_cert", &self.certificate_pem.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_config_carries_pem() {
        let mut c = KafkaConnection::plaintext("b:9092");
        c.args.kafka_sasl_password = Some("hunter2".into());
        c.ca_pem = Some("-----BEGIN CERTIFICATE-----".into());
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"));
        assert!(!debug.contains("BEGIN"));
        let cfg = c.client_config();
        assert_eq!(cfg.get("ssl.ca.pem"), Some("-----BEGIN CERTIFICATE-----"));
        assert_eq!(cfg.get("sasl.password"), Some("hunter2"));
        assert_eq!(cfg.get("client.id"), Some("shortener-operator"));

        let before = c.fingerprint();
        assert_eq!(before, c.clone().fingerprint());
        c.args.kafka_sasl_password = Some("rotated".into());
        assert_ne!(
            before,
            c.fingerprint(),
            "a rotated Secret needs a new client"
        );
    }
}
