//! What each container is told: plain settings (for its ConfigMap), Secret-backed env vars
//! (`secretKeyRef`, never values), and the volumes that carry files (Kafka TLS, analytics-rpc
//! TLS, GeoIP).
//!
//! Variable names are the services' configuration contract (their clap `env = ...`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use kube::ResourceExt;

use super::component::URL_API_HTTP_PORT;
use super::Component;
use crate::crd::{DatabaseSpec, ShortenerStack};

pub const KAFKA_CA_DIR: &str = "/etc/shortener/kafka/ca";
pub const KAFKA_CLIENT_CERT_DIR: &str = "/etc/shortener/kafka/client";
pub const GEOIP_DIR: &str = "/var/lib/shortener/geoip";
/// analytics-rpc's TLS Secret: its certificate and key in analytics-rpc, `ca.crt` in url-api.
pub const RPC_TLS_DIR: &str = "/etc/shortener/analytics-rpc-tls";

/// Plain (non-secret) settings of a component, served through its ConfigMap and `envFrom`.
pub fn config_data(stack: &ShortenerStack, component: Component) -> BTreeMap<String, String> {
    let spec = &stack.spec;
    let mut data = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        data.insert(k.to_string(), v);
    };
    set("LOG_FORMAT", "json".into());
    match component {
        Component::UrlApi => {
            let api = &spec.url_api;
            set("LISTEN_ADDR", format!("0.0.0.0:{URL_API_HTTP_PORT}"));
            set("ADMIN_ADDR", format!("0.0.0.0:{}", component.admin_port()));
            if let Some(base) = &api.base_url {
                set("PUBLIC_BASE_URL", base.clone());
            }
            set(
                "RATE_LIMIT_PER_SECOND",
                api.rate_limit.per_second.to_string(),
            );
            set("RATE_LIMIT_BURST", api.rate_limit.burst.to_string());
            set(
                "ALLOW_PRIVATE_TARGETS",
                api.allow_private_targets.to_string(),
            );
            set("TRUSTED_PROXIES", api.trusted_proxies.join(","));
            set(
                "REDIRECT_MISS_PER_SECOND",
                api.redirect_miss_limit.per_second.to_string(),
            );
            set(
                "REDIRECT_MISS_BURST",
                api.redirect_miss_limit.burst.to_string(),
            );
            if let Some(geoip) = spec.geoip.as_ref().filter(|g| g.url_api) {
                set("GEOIP_DB_PATH", format!("{GEOIP_DIR}/{}", geoip.path));
            }
            set("ANALYTICS_RPC_URL", analytics_rpc_url(stack));
            let rpc = &spec.analytics_rpc;
            if rpc.tls.is_some() {
                set("ANALYTICS_RPC_CA", format!("{RPC_TLS_DIR}/ca.crt"));
                set(
                    "ANALYTICS_RPC_SERVER_NAME",
                    analytics_rpc_server_name(stack),
                );
            }
            set("ANALYTICS_RPC_TIMEOUT_MS", rpc.rpc_timeout_ms.to_string());
            set(
                "BREAKER_FAILURE_THRESHOLD",
                rpc.breaker.failure_threshold.to_string(),
            );
            set("BREAKER_RESET_MS", rpc.breaker.reset_ms.to_string());
        }
        Component::AnalyticsRpc => {
            set("GRPC_ADDR", format!("0.0.0.0:{}", spec.analytics_rpc.port));
            set("ADMIN_ADDR", format!("0.0.0.0:{}", component.admin_port()));
            set(
                "MAX_CONCURRENT_REQUESTS",
                spec.analytics_rpc.max_concurrent_requests.to_string(),
            );
            if spec.analytics_rpc.tls.is_some() {
                set("RPC_TLS_CERT", format!("{RPC_TLS_DIR}/tls.crt"));
                set("RPC_TLS_KEY", format!("{RPC_TLS_DIR}/tls.key"));
            }
        }
        Component::Consumer => {
            let c = &spec.consumer;
            set("ADMIN_ADDR", format!("0.0.0.0:{}", component.admin_port()));
            set("KAFKA_GROUP_ID", c.group_id.clone());
            set("BATCH_SIZE", c.batch_size.to_string());
            set("BATCH_MAX_WAIT_MS", c.batch_max_wait_ms.to_string());
            set("CONCURRENCY", c.concurrency.to_string());
            set("CLICK_RETENTION_DAYS", c.click_retention_days.to_string());
            set("ANONYMIZE_IPS", c.anonymize_ips.to_string());
            set("MAX_IN_FLIGHT_BYTES", c.max_in_flight_bytes.to_string());
            if let Some(geoip) = &spec.geoip {
                set("GEOIP_DB_PATH", format!("{GEOIP_DIR}/{}", geoip.path));
            }
        }
    }
    if uses_kafka(component) {
        let kafka = &spec.kafka;
        set("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers.clone());
        set("KAFKA_TOPIC", kafka.topic.clone());
        set("KAFKA_DLQ_TOPIC", kafka.dlq_topic());
        set("KAFKA_SECURITY_PROTOCOL", kafka.security_protocol().into());
        if let Some(sasl) = &kafka.sasl {
            set("KAFKA_SASL_MECHANISM", sasl.mechanism.as_str().into());
        }
        if let Some(tls) = &kafka.tls {
            if tls.ca_secret_ref.is_some() {
                set("KAFKA_SSL_CA_LOCATION", format!("{KAFKA_CA_DIR}/ca.crt"));
            }
            if tls.cert_secret_ref.is_some() {
                set(
                    "KAFKA_SSL_CERTIFICATE_LOCATION",
                    format!("{KAFKA_CLIENT_CERT_DIR}/tls.crt"),
                );
                set(
                    "KAFKA_SSL_KEY_LOCATION",
                    format!("{KAFKA_CLIENT_CERT_DIR}/tls.key"),
                );
            }
        }
    }
    let telemetry = &spec.telemetry;
    set("OTEL_SERVICE_NAME", component.name().into());
    set("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into());
    set(
        "OTEL_TRACES_SAMPLER_ARG",
        telemetry.sampling_ratio.to_string(),
    );
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        set("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone());
    }
    let mut attributes: Vec<String> = telemetry
        .resource_attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(ns) = stack.namespace() {
        if !telemetry
            .resource_attributes
            .contains_key("k8s.namespace.name")
        {
            attributes.push(format!("k8s.namespace.name={ns}"));
        }
    }
    if !attributes.is_empty() {
        set("OTEL_RESOURCE_ATTRIBUTES", attributes.join(","));
    }
    data
}

/// In-cluster URL of the analytics-rpc Service, for url-api.
pub fn analytics_rpc_url(stack: &ShortenerStack) -> String {
    let scheme = if stack.spec.analytics_rpc.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!(
        "{scheme}://{}:{}",
        Component::AnalyticsRpc.object_name(stack),
        stack.spec.analytics_rpc.port
    )
}

/// The name url-api requires in analytics-rpc's certificate: the Service's DNS name
/// `<service>.<namespace>.svc`, the usual `dnsNames` entry of a cert-manager Certificate.
pub fn analytics_rpc_server_name(stack: &ShortenerStack) -> String {
    let service = Component::AnalyticsRpc.object_name(stack);
    match stack.namespace() {
        Some(ns) => format!("{service}.{ns}.svc"),
        None => service,
    }
}

fn uses_kafka(component: Component) -> bool {
    matches!(component, Component::UrlApi | Component::Consumer)
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// `DATABASE_URL`, from a Secret key or assembled in the pod from credential variables
/// (Kubernetes expands `$(DB_USER)` from the variables defined before it).
pub fn database_env(db: &DatabaseSpec) -> Vec<EnvVar> {
    if let Some(url) = &db.url_secret_ref {
        return vec![secret_env("DATABASE_URL", &url.name, &url.key)];
    }
    let host = db.host.clone().unwrap_or_default();
    let mut url = format!(
        "postgres://$(DB_USER):$(DB_PASSWORD)@{host}:{}/{}",
        db.port, db.name
    );
    if let Some(mode) = &db.ssl_mode {
        url.push_str(&format!("?sslmode={mode}"));
    }
    let mut env = Vec::new();
    if let Some(creds) = &db.credentials_secret_ref {
        env.push(secret_env("DB_USER", &creds.name, "username"));
        env.push(secret_env("DB_PASSWORD", &creds.name, "password"));
    }
    env.push(plain_env("DATABASE_URL", url));
    env
}

/// Secret-backed variables of a component, in the order Kubernetes must define them.
pub fn secret_env_vars(stack: &ShortenerStack, component: Component) -> Vec<EnvVar> {
    let spec = &stack.spec;
    let mut env = Vec::new();
    if component == Component::UrlApi {
        if let Some(keys) = &spec.url_api.api_key_secret_ref {
            env.push(secret_env("API_KEYS", &keys.name, &keys.key));
        }
    }
    // One token, both ends: analytics-rpc checks it, url-api presents it.
    if let Some(token) = &spec.analytics_rpc.auth_token_secret_ref {
        match component {
            Component::UrlApi => {
                env.push(secret_env("ANALYTICS_RPC_TOKEN", &token.name, &token.key))
            }
            Component::AnalyticsRpc => {
                env.push(secret_env("RPC_AUTH_TOKEN", &token.name, &token.key))
            }
            Component::Consumer => {}
        }
    }
    // url-api resolves links, analytics-rpc reads clicks, the consumer stores them: all
    // three talk to Postgres.
    env.extend(database_env(&spec.database));
    if uses_kafka(component) {
        if let Some(sasl) = &spec.kafka.sasl {
            env.push(secret_env(
                "KAFKA_SASL_USERNAME",
                &sasl.secret_ref.name,
                "username",
            ));
            env.push(secret_env(
                "KAFKA_SASL_PASSWORD",
                &sasl.secret_ref.name,
                "password",
            ));
        }
    }
    env
}

/// `secret/key` pairs a component reads (env and mounted files), for the config checksum
/// (with the Secrets' resourceVersions, so rotating a value in place rolls the pods).
pub fn referenced_secrets(stack: &ShortenerStack, component: Component) -> BTreeSet<String> {
    let mut refs: BTreeSet<String> = secret_env_vars(stack, component)
        .iter()
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|s| format!("{}/{}", s.name, s.key))
        .collect();
    for volume in volumes(stack, component) {
        if let Some(secret) = volume.secret.and_then(|s| s.secret_name) {
            refs.insert(format!("{secret}/*"));
        }
    }
    refs
}

/// Names of the Secrets a component reads.
pub fn referenced_secret_names(stack: &ShortenerStack, component: Component) -> BTreeSet<String> {
    referenced_secrets(stack, component)
        .into_iter()
        .filter_map(|r| r.split_once('/').map(|(name, _)| name.to_string()))
        .collect()
}

/// Volumes (and their mounts) that carry files: Kafka and analytics-rpc TLS material and the
/// GeoIP database.
pub fn volumes(stack: &ShortenerStack, component: Component) -> Vec<Volume> {
    volumes_and_mounts(stack, component)
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

pub fn volume_mounts(stack: &ShortenerStack, component: Component) -> Vec<VolumeMount> {
    volumes_and_mounts(stack, component)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

fn volumes_and_mounts(stack: &ShortenerStack, component: Component) -> Vec<(Volume, VolumeMount)> {
    let mut out = Vec::new();
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    if uses_kafka(component) {
        if let Some(tls) = &stack.spec.kafka.tls {
            if let Some(ca) = &tls.ca_secret_ref {
                out.push((
                    secret_volume("kafka-ca", &ca.name, &[(&ca.key, "ca.crt")]),
                    mount("kafka-ca", KAFKA_CA_DIR),
                ));
            }
            if let Some(cert) = &tls.cert_secret_ref {
                out.push((
                    secret_volume(
                        "kafka-client-cert",
                        &cert.name,
                        &[("tls.crt", "tls.crt"), ("tls.key", "tls.key")],
                    ),
                    mount("kafka-client-cert", KAFKA_CLIENT_CERT_DIR),
                ));
            }
        }
    }
    if let Some(tls) = &stack.spec.analytics_rpc.tls {
        // Each side gets only what it needs: url-api never sees the server's key.
        let items: &[(&str, &str)] = match component {
            Component::AnalyticsRpc => &[("tls.crt", "tls.crt"), ("tls.key", "tls.key")],
            Component::UrlApi => &[("ca.crt", "ca.crt")],
            Component::Consumer => &[],
        };
        if !items.is_empty() {
            out.push((
                secret_volume("analytics-rpc-tls", &tls.secret_name, items),
                mount("analytics-rpc-tls", RPC_TLS_DIR),
            ));
        }
    }
    let reads_geoip = |g: &crate::crd::GeoIpSpec| match component {
        Component::Consumer => true,
        Component::UrlApi => g.url_api,
        Component::AnalyticsRpc => false,
    };
    if let Some(geoip) = stack.spec.geoip.as_ref().filter(|g| reads_geoip(g)) {
        let mut volume = Volume {
            name: "geoip".into(),
            ..Volume::default()
        };
        if let Some(cm) = &geoip.config_map {
            volume.config_map = Some(ConfigMapVolumeSource {
                name: cm.clone(),
                ..ConfigMapVolumeSource::default()
            });
        } else if let Some(claim) = &geoip.persistent_volume_claim {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            });
        }
        out.push((volume, mount("geoip", GEOIP_DIR)));
    }
    out
}

fn secret_volume(name: &str, secret: &str, items: &[(&str, &str)]) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            // Readable by the pod's group (fsGroup 65532) only.
            default_mode: Some(0o440),
            items: Some(
                items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.to_string(),
                        path: path.to_string(),
                        mode: None,
                    })
                    .collect(),
            ),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialsSecretRef, GeoIpSpec, SaslMechanism, SecretKeyRef};
    use crate::test_support::stack;

    fn names(env: &[EnvVar]) -> Vec<&str> {
        env.iter().map(|e| e.name.as_str()).collect()
    }

    /// (Secret name, key) an env var takes its value from.
    fn secret_of(var: &EnvVar) -> (&str, &str) {
        let sel = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{} is not from a Secret", var.name));
        (sel.name.as_str(), sel.key.as_str())
    }

    #[test]
    fn url_api_config_carries_the_contract_variables() {
        let mut s = stack();
        s.spec.url_api.base_url = Some("https://sho.rt".into());
        s.spec.url_api.trusted_proxies = vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()];
        s.spec.url_api.rate_limit.per_second = 50;
        s.spec.analytics_rpc.breaker.failure_threshold = 7;
        let d = config_data(&s, Component::UrlApi);
        assert_eq!(d["LISTEN_ADDR"], "0.0.0.0:8080");
        assert_eq!(d["ADMIN_ADDR"], "0.0.0.0:9095");
        assert_eq!(d["PUBLIC_BASE_URL"], "https://sho.rt");
        assert_eq!(d["RATE_LIMIT_PER_SECOND"], "50");
        assert_eq!(d["RATE_LIMIT_BURST"], "20");
        assert_eq!(d["ALLOW_PRIVATE_TARGETS"], "false");
        assert_eq!(d["TRUSTED_PROXIES"], "10.0.0.0/8,192.168.0.0/16");
        assert_eq!(d["ANALYTICS_RPC_URL"], "http://demo-analytics-rpc:50051");
        assert_eq!(d["ANALYTICS_RPC_TIMEOUT_MS"], "300");
        assert_eq!(d["BREAKER_FAILURE_THRESHOLD"], "7");
        assert_eq!(d["BREAKER_RESET_MS"], "10000");
        assert_eq!(d["KAFKA_BOOTSTRAP_SERVERS"], "kafka:9092");
        assert_eq!(d["KAFKA_TOPIC"], "clicks");
        assert_eq!(d["KAFKA_DLQ_TOPIC"], "clicks.dlq");
        assert_eq!(d["KAFKA_SECURITY_PROTOCOL"], "plaintext");
        assert_eq!(d["OTEL_SERVICE_NAME"], "url-api");
        assert_eq!(d["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert_eq!(d["OTEL_TRACES_SAMPLER_ARG"], "1");
        assert_eq!(d["OTEL_RESOURCE_ATTRIBUTES"], "k8s.namespace.name=shop");
        assert!(!d.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert!(
            !d.contains_key("DATABASE_URL"),
            "secrets never go to ConfigMaps"
        );
    }

    #[test]
    fn consumer_and_rpc_config() {
        let mut s = stack();
        s.spec.geoip = Some(GeoIpSpec {
            config_map: Some("geo".into()),
            persistent_volume_claim: None,
            path: "country.mmdb".into(),
            url_api: false,
        });
        s.spec.telemetry.otlp_endpoint = Some("http://otel:4317".into());
        s.spec.telemetry.sampling_ratio = 0.25;
        s.spec.telemetry.resource_attributes =
            BTreeMap::from([("deployment.environment".into(), "prod".into())]);
        let c = config_data(&s, Component::Consumer);
        assert_eq!(c["ADMIN_ADDR"], "0.0.0.0:9090");
        assert_eq!(c["KAFKA_GROUP_ID"], "shortener-consumer");
        assert_eq!(c["BATCH_SIZE"], "2000");
        assert_eq!(c["BATCH_MAX_WAIT_MS"], "200");
        assert_eq!(c["CONCURRENCY"], "4");
        assert_eq!(c["CLICK_RETENTION_DAYS"], "400");
        assert_eq!(c["ANONYMIZE_IPS"], "true");
        assert_eq!(c["GEOIP_DB_PATH"], "/var/lib/shortener/geoip/country.mmdb");
        assert_eq!(c["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel:4317");
        assert_eq!(c["OTEL_TRACES_SAMPLER_ARG"], "0.25");
        assert_eq!(
            c["OTEL_RESOURCE_ATTRIBUTES"],
            "deployment.environment=prod,k8s.namespace.name=shop"
        );
        let r = config_data(&s, Component::AnalyticsRpc);
        assert_eq!(r["GRPC_ADDR"], "0.0.0.0:50051");
        assert_eq!(r["ADMIN_ADDR"], "0.0.0.0:9091");
        assert!(!r.contains_key("KAFKA_BOOTSTRAP_SERVERS"));
        assert!(!r.contains_key("GEOIP_DB_PATH"));
    }

    #[test]
    fn database_url_from_secret_or_assembled_from_credentials() {
        let mut s = stack();
        let env = database_env(&s.spec.database);
        assert_eq!(names(&env), ["DATABASE_URL"]);
        assert_eq!(secret_of(&env[0]), ("shortener-db", "url"));
        assert!(env[0].value.is_none());

        s.spec.database.url_secret_ref = None;
        s.spec.database.host = Some("pg.db.svc".into());
        s.spec.database.credentials_secret_ref = Some(CredentialsSecretRef {
            name: "pg-creds".into(),
        });
        s.spec.database.ssl_mode = Some("require".into());
        let env = database_env(&s.spec.database);
        assert_eq!(names(&env), ["DB_USER", "DB_PASSWORD", "DATABASE_URL"]);
        assert_eq!(
            env[2].value.as_deref(),
            Some("postgres://$(DB_USER):$(DB_PASSWORD)@pg.db.svc:5432/shortener?sslmode=require")
        );
        assert_eq!(secret_of(&env[1]), ("pg-creds", "password"));
    }

    #[test]
    fn kafka_security_comes_from_secrets_and_mounted_files() {
        let mut s = stack();
        s.spec.url_api.api_key_secret_ref = Some(SecretKeyRef {
            name: "api-keys".into(),
            key: "keys".into(),
        });
        crate::test_support::secure_kafka(&mut s, SaslMechanism::ScramSha512);
        let env = secret_env_vars(&s, Component::UrlApi);
        assert_eq!(
            names(&env),
            [
                "API_KEYS",
                "DATABASE_URL",
                "KAFKA_SASL_USERNAME",
                "KAFKA_SASL_PASSWORD"
            ]
        );
        assert_eq!(
            names(&secret_env_vars(&s, Component::AnalyticsRpc)),
            ["DATABASE_URL"]
        );
        let d = config_data(&s, Component::Consumer);
        assert_eq!(d["KAFKA_SECURITY_PROTOCOL"], "sasl_ssl");
        assert_eq!(d["KAFKA_SASL_MECHANISM"], "SCRAM-SHA-512");
        assert_eq!(d["KAFKA_SSL_CA_LOCATION"], "/etc/shortener/kafka/ca/ca.crt");
        assert_eq!(
            d["KAFKA_SSL_CERTIFICATE_LOCATION"],
            "/etc/shortener/kafka/client/tls.crt"
        );
        assert_eq!(
            d["KAFKA_SSL_KEY_LOCATION"],
            "/etc/shortener/kafka/client/tls.key"
        );
        let vols = volumes(&s, Component::Consumer);
        assert_eq!(vols.len(), 2);
        assert_eq!(
            vols[0].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("kafka-ca")
        );
        assert!(volumes(&s, Component::AnalyticsRpc).is_empty());
        assert!(volume_mounts(&s, Component::UrlApi)
            .iter()
            .all(|m| m.read_only == Some(true)));
        let refs = referenced_secrets(&s, Component::UrlApi);
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            [
                "api-keys/keys",
                "kafka-ca/*",
                "kafka-client/*",
                "kafka-user/password",
                "kafka-user/username",
                "shortener-db/url"
            ]
        );
    }

    #[test]
    fn rpc_tls_mounts_the_key_only_in_analytics_rpc_and_the_ca_in_url_api() {
        let mut s = stack();
        assert!(!config_data(&s, Component::UrlApi).contains_key("ANALYTICS_RPC_CA"));
        assert!(!config_data(&s, Component::AnalyticsRpc).contains_key("RPC_TLS_CERT"));
        s.spec.analytics_rpc.tls = Some(crate::crd::RpcTlsSpec {
            secret_name: "rpc-tls".into(),
        });

        let api = config_data(&s, Component::UrlApi);
        assert_eq!(api["ANALYTICS_RPC_URL"], "https://demo-analytics-rpc:50051");
        assert_eq!(
            api["ANALYTICS_RPC_CA"],
            "/etc/shortener/analytics-rpc-tls/ca.crt"
        );
        assert_eq!(
            api["ANALYTICS_RPC_SERVER_NAME"],
            "demo-analytics-rpc.shop.svc"
        );
        let rpc = config_data(&s, Component::AnalyticsRpc);
        assert_eq!(
            rpc["RPC_TLS_CERT"],
            "/etc/shortener/analytics-rpc-tls/tls.crt"
        );
        assert_eq!(
            rpc["RPC_TLS_KEY"],
            "/etc/shortener/analytics-rpc-tls/tls.key"
        );

        let files = |component| -> Vec<(String, Vec<String>)> {
            volumes(&s, component)
                .into_iter()
                .filter_map(|v| v.secret)
                .map(|secret| {
                    let items = secret.items.unwrap_or_default();
                    (
                        secret.secret_name.unwrap_or_default(),
                        items.into_iter().map(|i| i.key).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(
            files(Component::AnalyticsRpc),
            [(
                "rpc-tls".to_string(),
                vec!["tls.crt".into(), "tls.key".into()]
            )]
        );
        assert_eq!(
            files(Component::UrlApi),
            [("rpc-tls".to_string(), vec!["ca.crt".to_string()])]
        );
        assert!(files(Component::Consumer).is_empty());
        for component in [Component::UrlApi, Component::AnalyticsRpc] {
            let mounts = volume_mounts(&s, component);
            assert_eq!(mounts.len(), 1);
            assert_eq!(mounts[0].mount_path, RPC_TLS_DIR);
            assert_eq!(mounts[0].read_only, Some(true));
            // The Secret's resourceVersion is in the checksum: a renewal rolls the pods.
            assert!(referenced_secret_names(&s, component).contains("rpc-tls"));
        }
        assert!(!referenced_secret_names(&s, Component::Consumer).contains("rpc-tls"));
    }

    #[test]
    fn geoip_from_a_claim_is_mounted_read_only() {
        let mut s = stack();
        s.spec.geoip = Some(GeoIpSpec {
            config_map: None,
            persistent_volume_claim: Some("geoip-pvc".into()),
            path: "GeoLite2-Country.mmdb".into(),
            url_api: false,
        });
        let vols = volumes(&s, Component::Consumer);
        let claim = vols[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "geoip-pvc");
        assert_eq!(claim.read_only, Some(true));
        let mounts = volume_mounts(&s, Component::Consumer);
        assert_eq!(mounts[0].mount_path, GEOIP_DIR);
        assert_eq!(mounts[0].read_only, Some(true));
        assert!(volumes(&s, Component::UrlApi).is_empty());
    }

    #[test]
    fn service_limits_default_to_the_services_own_defaults_and_follow_the_spec() {
        let mut s = stack();
        let url_api = config_data(&s, Component::UrlApi);
        assert_eq!(url_api["REDIRECT_MISS_PER_SECOND"], "50");
        assert_eq!(url_api["REDIRECT_MISS_BURST"], "200");
        assert!(!url_api.contains_key("GEOIP_DB_PATH"));
        assert_eq!(
            config_data(&s, Component::AnalyticsRpc)["MAX_CONCURRENT_REQUESTS"],
            "64"
        );
        assert_eq!(
            config_data(&s, Component::Consumer)["MAX_IN_FLIGHT_BYTES"],
            (32u64 << 20).to_string()
        );

        s.spec.url_api.redirect_miss_limit.per_second = 0;
        s.spec.url_api.redirect_miss_limit.burst = 10;
        s.spec.analytics_rpc.max_concurrent_requests = 8;
        s.spec.consumer.max_in_flight_bytes = 8 << 20;
        let url_api = config_data(&s, Component::UrlApi);
        assert_eq!(url_api["REDIRECT_MISS_PER_SECOND"], "0");
        assert_eq!(url_api["REDIRECT_MISS_BURST"], "10");
        assert_eq!(
            config_data(&s, Component::AnalyticsRpc)["MAX_CONCURRENT_REQUESTS"],
            "8"
        );
        assert_eq!(
            config_data(&s, Component::Consumer)["MAX_IN_FLIGHT_BYTES"],
            "8388608"
        );
    }

    #[test]
    fn the_rpc_token_reaches_both_ends_from_the_secret_only() {
        let mut s = stack();
        for c in Component::ALL {
            let env = secret_env_vars(&s, c);
            assert!(!names(&env).contains(&"RPC_AUTH_TOKEN"));
            assert!(!names(&env).contains(&"ANALYTICS_RPC_TOKEN"));
        }
        s.spec.analytics_rpc.auth_token_secret_ref = Some(SecretKeyRef {
            name: "rpc-token".into(),
            key: "token".into(),
        });
        let rpc = secret_env_vars(&s, Component::AnalyticsRpc);
        let var = rpc.iter().find(|e| e.name == "RPC_AUTH_TOKEN").unwrap();
        assert_eq!(secret_of(var), ("rpc-token", "token"));
        let api = secret_env_vars(&s, Component::UrlApi);
        let var = api
            .iter()
            .find(|e| e.name == "ANALYTICS_RPC_TOKEN")
            .unwrap();
        assert_eq!(secret_of(var), ("rpc-token", "token"));
        assert!(!names(&secret_env_vars(&s, Component::Consumer)).contains(&"RPC_AUTH_TOKEN"));
        // Never a plain value, and its rotation rolls both.
        for c in Component::ALL {
            assert!(config_data(&s, c)
                .values()
                .all(|v| !v.contains("rpc-token")));
        }
        assert!(referenced_secret_names(&s, Component::UrlApi).contains("rpc-token"));
        assert!(referenced_secret_names(&s, Component::AnalyticsRpc).contains("rpc-token"));
    }

    #[test]
    fn url_api_gets_the_geoip_database_only_when_asked() {
        let mut s = stack();
        s.spec.geoip = Some(GeoIpSpec {
            config_map: Some("geoip".into()),
            persistent_volume_claim: None,
            path: "country.mmdb".into(),
            url_api: false,
        });
        assert!(volumes(&s, Component::UrlApi).is_empty());
        assert!(!config_data(&s, Component::UrlApi).contains_key("GEOIP_DB_PATH"));
        s.spec.geoip.as_mut().unwrap().url_api = true;
        assert_eq!(
            config_data(&s, Component::UrlApi)["GEOIP_DB_PATH"],
            format!("{GEOIP_DIR}/country.mmdb")
        );
        assert_eq!(
            volume_mounts(&s, Component::UrlApi)[0].mount_path,
            GEOIP_DIR
        );
        assert_eq!(
            volumes(&s, Component::UrlApi)[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            "geoip"
        );
        assert!(volumes(&s, Component::AnalyticsRpc).is_empty());
    }
}
