//! Kafka client settings shared by the producer (url-api), the consumer group, and the
//! operator's admin client.

use rdkafka::{ClientConfig, Offset};

/// Message header carrying the ClickEvent schema version, so a consumer can route a
/// message it cannot read to the DLQ without decoding it.
pub const HEADER_SCHEMA_VERSION: &str = "schema-version";
/// DLQ message headers: why the message was rejected and where it came from.
pub const HEADER_DLQ_ERROR: &str = "dlq-error";
pub const HEADER_DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
pub const HEADER_DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
pub const HEADER_DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";

/// Suffix that names the dead-letter topic after the main topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Connection to the brokers and the clicks topic. `Debug` masks the SASL password.
#[derive(clap::Args, Clone)]
pub struct KafkaArgs {
    /// Comma-separated `host:port` list of Kafka bootstrap brokers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,
    /// Topic that carries ClickEvents.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "clicks")]
    pub kafka_topic: String,
    /// Dead-letter topic; defaults to `<topic>.dlq`.
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext")]
    pub kafka_security_protocol: String,
    /// SASL mechanism, e.g. `SCRAM-SHA-512` or `PLAIN`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<String>,
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<String>,
}

impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("kafka_bootstrap_servers", &self.kafka_bootstrap_servers)
            .field("kafka_topic", &self.kafka_topic)
            .field("kafka_dlq_topic", &self.kafka_dlq_topic)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "***"),
            )
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .field(
                "kafka_ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            )
            .field("kafka_ssl_key_location", &self.kafka_ssl_key_location)
            .finish()
    }
}

impl KafkaArgs {
    /// Settings for a broker at `bootstrap` with everything else at its default.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            kafka_bootstrap_servers: bootstrap.into(),
            kafka_topic: topic.into(),
            kafka_dlq_topic: None,
            kafka_security_protocol: "plaintext".into(),
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            kafka_ssl_certificate_location: None,
            kafka_ssl_key_location: None,
        }
    }

    pub fn dlq_topic(&self) -> String {
        self.kafka_dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.kafka_topic, DLQ_SUFFIX))
    }

    /// Base client configuration: brokers and security. Callers add producer, consumer or
    /// admin settings on top.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.kafka_bootstrap_servers)
            .set("security.protocol", &self.kafka_security_protocol)
            .set("client.id", env!("CARGO_PKG_NAME"));
        let optional = [
            ("sasl.mechanism", &self.kafka_sasl_mechanism),
            ("sasl.username", &self.kafka_sasl_username),
            ("sasl.password", &self.kafka_sasl_password),
            ("ssl.ca.location", &self.kafka_ssl_ca_location),
            (
                "ssl.certificate.location",
                &self.kafka_ssl_certificate_location,
            ),
            ("ssl.key.location", &self.kafka_ssl_key_location),
        ];
        for (key, value) in optional {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                cfg.set(key, v);
            }
        }
        cfg
    }
}

/// Messages a consumer group still has to read on one partition: from its committed offset
/// to the high watermark. A partition with no commit, or whose committed offset retention
/// already deleted, is read from the start of the retained log (`auto.offset.reset=earliest`),
/// so it counts from `low`. Never negative. The consumer's lag gauge and the operator's
/// autoscaler both measure lag with this.
pub fn partition_lag(low: i64, high: i64, committed: Option<i64>) -> i64 {
    let from = committed.map_or(low, |c| c.max(low));
    (high - from).max(0)
}

/// The offset a group committed, from an OffsetFetch answer; `None` for "nothing committed"
/// (librdkafka reports that as `Offset::Invalid`) and other logical offsets.
pub fn committed_offset(offset: Offset) -> Option<i64> {
    match offset {
        Offset::Offset(o) if o >= 0 => Some(o),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_log_start() {
        assert_eq!(partition_lag(0, 100, Some(40)), 60);
        assert_eq!(partition_lag(10, 100, None), 90);
        // Retention deleted the committed position: read from the log start.
        assert_eq!(partition_lag(50, 100, Some(20)), 50);
        // A commit past the high watermark (truncated log) is no negative lag.
        assert_eq!(partition_lag(0, 100, Some(120)), 0);
        assert_eq!(committed_offset(Offset::Offset(7)), Some(7));
        assert_eq!(committed_offset(Offset::Invalid), None);
        assert_eq!(committed_offset(Offset::End), None);
    }

    #[test]
    fn dlq_topic_defaults_to_suffix() {
        let mut args = KafkaArgs::new("b:9092", "clicks");
        assert_eq!(args.dlq_topic(), "clicks.dlq");
        args.kafka_dlq_topic = Some("dead".into());
        assert_eq!(args.dlq_topic(), "dead");
    }

    #[test]
    fn client_config_sets_only_given_security_options() {
        let mut args = KafkaArgs::new("b1:9092,b2:9092", "clicks");
        args.kafka_security_protocol = "sasl_ssl".into();
        args.kafka_sasl_mechanism = Some("SCRAM-SHA-512".into());
        args.kafka_sasl_username = Some("user".into());
        args.kafka_sasl_password = Some("secret".into());
        let cfg = args.client_config();
        assert_eq!(cfg.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cfg.get("sasl.password"), Some("secret"));
        assert_eq!(cfg.get("ssl.ca.location"), None);
        let debug = format!("{args:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(
            debug.contains(r#"kafka_sasl_password: Some("***")"#),
            "{debug}"
        );
    }
}
