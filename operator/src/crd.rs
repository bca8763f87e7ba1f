//! The `ShortenerStack` custom resource (group `shortener.example.io`, version `v1alpha1`).
//!
//! Every field has a default, so `spec: {kafka: {bootstrapServers: ...}, database: {...}}` is a
//! complete stack. Doc comments become the schema descriptions `kubectl explain` shows.
//!
//! No scale subresource: its `specReplicasPath` would have to be `.spec.consumer.minReplicas`,
//! so `kubectl scale`/an HPA would silently rewrite the autoscaler's lower bound while the
//! operator (builtin mode) or KEDA owns the actual replica count. Scaling is configured
//! through `spec.consumer.{minReplicas,maxReplicas,autoscaling}` instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of this operator; the default image tag of every component.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Image repository prefix; each component appends its binary name.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/shortener-stack";

/// Desired state of one URL-shortener deployment: the url-api, analytics-rpc and consumer
/// workloads, their database migrations and their Kafka topic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shortener.example.io",
    version = "v1alpha1",
    kind = "ShortenerStack",
    plural = "shortenerstacks",
    shortname = "sst",
    namespaced,
    status = "ShortenerStackStatus",
    derive = "PartialEq",
    doc = "A URL shortener with its click-analytics pipeline, reconciled by shortener-operator.",
    // Child names are `<name>-<component>` and `<name>-migrate-<version>-<hash>`; they must
    // stay within the 63-character limit of Service names and label values.
    validation = Rule::new("self.metadata.name.size() <= 30").message("metadata.name must be at most 30 characters (child object names derive from it)"),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Consumers","type":"integer","jsonPath":".status.consumer.currentReplicas"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.lastMeasuredLag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ShortenerStackSpec {
    /// Container images of the components.
    #[serde(default)]
    pub image: ImageSpec,
    /// The HTTP API: shortening, redirects, stats.
    #[serde(default)]
    pub url_api: UrlApiSpec,
    /// The gRPC analytics service url-api asks for click statistics.
    #[serde(default)]
    pub analytics_rpc: AnalyticsRpcSpec,
    /// The Kafka consumer group that enriches and stores clicks.
    #[serde(default)]
    pub consumer: ConsumerSpec,
    /// Kafka brokers and the clicks topic.
    pub kafka: KafkaSpec,
    /// The Postgres database.
    pub database: DatabaseSpec,
    /// Optional GeoIP country database for the consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip: Option<GeoIpSpec>,
    /// OpenTelemetry trace export.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
    /// A PodDisruptionBudget per component (on by default).
    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,
    /// NetworkPolicies admitting only the traffic the stack needs (off by default).
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Prometheus Operator PodMonitors for the three services (off by default).
    #[serde(default)]
    pub pod_monitor: PodMonitorSpec,
}

/// PodMonitors (`monitoring.coreos.com/v1`) of the components.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Create one PodMonitor per component, scraping `/metrics` on its `admin` port. Needs
    /// the Prometheus Operator's CRDs; without them the stack gets a Warning Event
    /// `PodMonitorUnavailable` and everything else is reconciled. Turning it off deletes
    /// the stack's PodMonitors.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval (e.g. `30s`); unset: Prometheus's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
}

/// NetworkPolicies of the components.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create one NetworkPolicy per component: url-api's HTTP port open, analytics-rpc's
    /// gRPC port for url-api only, admin ports for pods of the cluster.
    #[serde(default)]
    pub enabled: bool,
}

/// PodDisruptionBudgets of the components.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Create one PodDisruptionBudget per component.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods of a component a voluntary disruption (node drain) may take at a time.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: 1,
        }
    }
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// Images

/// Image repositories and tags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Tag of every component image unless overridden; defaults to the operator's own version,
    /// so upgrading the operator upgrades the stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// url-api image (also runs the migration Job).
    #[serde(default)]
    pub url_api: ComponentImage,
    /// analytics-rpc image.
    #[serde(default)]
    pub analytics_rpc: ComponentImage,
    /// consumer image.
    #[serde(default)]
    pub consumer: ComponentImage,
}

/// Per-component image override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentImage {
    /// Repository; defaults to `ghcr.io/shortener-stack/<component>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Tag; defaults to `image.tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pull policy; defaults to Kubernetes' rule (Always for `latest`, else IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_policy_schema")]
    pub pull_policy: Option<PullPolicy>,
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// `Option<enum>` would list `null` among the enum values; the API server wants a plain
/// nullable string enum.
fn pull_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Pull policy; defaults to Kubernetes' rule (Always for `latest`, else IfNotPresent).",
        "type": "string",
        "enum": ["Always", "IfNotPresent", "Never"],
        "nullable": true,
    })
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Secret references

/// One key of a Secret in the stack's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A Secret in the stack's namespace holding `username` and `password` keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret name; the Secret must have the keys `username` and `password`.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A Secret in the stack's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Pods

/// Scheduling and metadata of a component's pods, passed through unchanged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// Node and pod (anti-)affinity (a core/v1 Affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "affinity_schema")]
    pub affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra annotations on the pods (e.g. for a service mesh).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The Affinity schema is large and the same in every Kubernetes version; the API server
/// keeps the object as given and the operator parses it as a core/v1 Affinity.
fn affinity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Node and pod (anti-)affinity (a core/v1 Affinity).",
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

impl PodSettings {
    pub fn is_empty(&self) -> bool {
        self == &PodSettings::default()
    }
}

// ---------------------------------------------------------------------------------------------
// url-api

/// The url-api Deployment and Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UrlApiSpec {
    /// Number of pods.
    #[serde(default = "default_two")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Container resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and pod metadata passed to the pods as given.
    #[serde(default, skip_serializing_if = "PodSettings::is_empty")]
    pub pod: PodSettings,
    /// The Service in front of the pods.
    #[serde(default)]
    pub service: UrlApiServiceSpec,
    /// Secret key holding comma-separated `name:key` API keys (env `API_KEYS`); without it
    /// every write is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Per-client request rate limit.
    #[serde(default)]
    pub rate_limit: RateLimitSpec,
    /// Public origin used to build short links (env `PUBLIC_BASE_URL`), e.g. `https://sho.rt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Accept long URLs that point at private, loopback or link-local addresses.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// CIDRs of reverse proxies whose `X-Forwarded-For` is trusted; empty trusts none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Redirects per client that may miss the cache and query the database; beyond it a
    /// miss answers 429 without a query (cache hits are not counted).
    #[serde(default)]
    pub redirect_miss_limit: RedirectMissLimitSpec,
}

/// url-api's limit on cache-missing redirects per client (IPv4 address or IPv6 /64).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedirectMissLimitSpec {
    /// Sustained misses per second (env `REDIRECT_MISS_PER_SECOND`); 0 turns the limit off.
    #[serde(default = "default_redirect_miss_per_second")]
    #[schemars(range(min = 0, max = 4294967295_i64))]
    pub per_second: i64,
    /// Misses allowed in a burst (env `REDIRECT_MISS_BURST`).
    #[serde(default = "default_redirect_miss_burst")]
    #[schemars(range(min = 0, max = 4294967295_i64))]
    pub burst: i64,
}

impl Default for RedirectMissLimitSpec {
    fn default() -> Self {
        Self {
            per_second: default_redirect_miss_per_second(),
            burst: default_redirect_miss_burst(),
        }
    }
}

impl Default for UrlApiSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            resources: None,
            pod: PodSettings::default(),
            service: UrlApiServiceSpec::default(),
            api_key_secret_ref: None,
            rate_limit: RateLimitSpec::default(),
            base_url: None,
            allow_private_targets: false,
            trusted_proxies: Vec::new(),
            redirect_miss_limit: RedirectMissLimitSpec::default(),
        }
    }
}

/// How url-api is exposed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UrlApiServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port (the pods listen on 8080).
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for UrlApiServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_http_port(),
        }
    }
}

/// Kubernetes Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Token-bucket rate limit per client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Sustained requests per second (env `RATE_LIMIT_PER_SECOND`).
    #[serde(default = "default_rate_per_second")]
    #[schemars(range(min = 1))]
    pub per_second: i32,
    /// Burst size (env `RATE_LIMIT_BURST`).
    #[serde(default = "default_rate_burst")]
    #[schemars(range(min = 1))]
    pub burst: i32,
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        Self {
            per_second: default_rate_per_second(),
            burst: default_rate_burst(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// analytics-rpc

/// The analytics-rpc Deployment and Service, and how url-api calls it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsRpcSpec {
    /// Number of pods.
    #[serde(default = "default_two")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Container resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and pod metadata passed to the pods as given.
    #[serde(default, skip_serializing_if = "PodSettings::is_empty")]
    pub pod: PodSettings,
    /// gRPC port of the pods and the Service.
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Deadline of each url-api → analytics-rpc call (env `ANALYTICS_RPC_TIMEOUT_MS` of url-api).
    #[serde(default = "default_rpc_timeout_ms")]
    #[schemars(range(min = 1))]
    pub rpc_timeout_ms: i64,
    /// url-api's circuit breaker around those calls.
    #[serde(default)]
    pub breaker: BreakerSpec,
    /// TLS between url-api and analytics-rpc. Unset, the calls go in plaintext (fine for
    /// development); production should set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RpcTlsSpec>,
    /// Shared bearer token every call to analytics-rpc must carry: analytics-rpc reads it
    /// as `RPC_AUTH_TOKEN`, url-api sends it as `ANALYTICS_RPC_TOKEN`, both from this
    /// Secret key (never a ConfigMap). Unset, analytics-rpc accepts any caller that can
    /// reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret_ref: Option<SecretKeyRef>,
    /// Most gRPC requests analytics-rpc handles at once; more wait their turn (env
    /// `MAX_CONCURRENT_REQUESTS`).
    #[serde(default = "default_max_concurrent_requests")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent_requests: i32,
}

/// TLS of analytics-rpc's gRPC port from a `kubernetes.io/tls` Secret holding `tls.crt`,
/// `tls.key` and `ca.crt` (as cert-manager writes it for a CA or self-signed issuer).
/// analytics-rpc mounts the certificate and key; url-api mounts only `ca.crt` and requires
/// the certificate to name `<stack>-analytics-rpc.<namespace>.svc`. A changed Secret rolls
/// both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RpcTlsSpec {
    /// Name of the Secret, in the stack's namespace.
    #[schemars(length(min = 1))]
    pub secret_name: String,
}

impl Default for AnalyticsRpcSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            resources: None,
            pod: PodSettings::default(),
            port: default_grpc_port(),
            rpc_timeout_ms: default_rpc_timeout_ms(),
            breaker: BreakerSpec::default(),
            tls: None,
            auth_token_secret_ref: None,
            max_concurrent_requests: default_max_concurrent_requests(),
        }
    }
}

/// Circuit breaker settings (env `BREAKER_FAILURE_THRESHOLD`, `BREAKER_RESET_MS` of url-api).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSpec {
    /// Consecutive failures that open the breaker.
    #[serde(default = "default_breaker_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
    /// How long the breaker stays open before a trial call, in milliseconds.
    #[serde(default = "default_breaker_reset_ms")]
    #[schemars(range(min = 1))]
    pub reset_ms: i64,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        Self {
            failure_threshold: default_breaker_threshold(),
            reset_ms: default_breaker_reset_ms(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// consumer

/// The consumer Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("consumer.minReplicas must not exceed consumer.maxReplicas"),
    // A new group would start from the topic's retention start (or skip to its end).
    validation = Rule::new("self.groupId == oldSelf.groupId").message("consumer.groupId cannot be changed: the new group would not have the old group's offsets")
)]
pub struct ConsumerSpec {
    /// Fewest consumer pods.
    #[serde(default = "default_one")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Most consumer pods. More consumers than topic partitions would sit idle, so the
    /// operator never runs more than `kafka.partitions`.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Container resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and pod metadata passed to the pods as given.
    #[serde(default, skip_serializing_if = "PodSettings::is_empty")]
    pub pod: PodSettings,
    /// Clicks written per database batch (env `BATCH_SIZE`).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: i32,
    /// Longest wait to fill a batch, in milliseconds (env `BATCH_MAX_WAIT_MS`).
    #[serde(default = "default_batch_max_wait_ms")]
    #[schemars(range(min = 1))]
    pub batch_max_wait_ms: i64,
    /// Batches processed in parallel per pod (env `CONCURRENCY`).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: i32,
    /// Kafka consumer group id (env `KAFKA_GROUP_ID`).
    #[serde(default = "default_group_id")]
    #[schemars(length(min = 1))]
    pub group_id: String,
    /// Days raw clicks are kept (env `CLICK_RETENTION_DAYS`): monthly partitions of the
    /// clicks table wholly older than this are dropped; rollups (counts, series,
    /// breakdowns) are kept.
    #[serde(default = "default_click_retention_days")]
    #[schemars(range(min = 1))]
    pub click_retention_days: i32,
    /// Store client addresses anonymized, IPv4 /24 and IPv6 /48 (env `ANONYMIZE_IPS`);
    /// false keeps them whole.
    #[serde(default = "default_anonymize_ips")]
    pub anonymize_ips: bool,
    /// Most bytes of fetched messages a consumer pod holds (env `MAX_IN_FLIGHT_BYTES`):
    /// what a database outage with a deep backlog can cost in memory, about twice over.
    /// Size `resources.limits.memory` with it.
    #[serde(default = "default_max_in_flight_bytes")]
    #[schemars(range(min = 1048576, max = 4294967295_i64))]
    pub max_in_flight_bytes: i64,
    /// How the number of consumer pods follows the consumer-group lag.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: default_max_replicas(),
            resources: None,
            pod: PodSettings::default(),
            batch_size: default_batch_size(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
            concurrency: default_concurrency(),
            group_id: default_group_id(),
            click_retention_days: default_click_retention_days(),
            anonymize_ips: default_anonymize_ips(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            autoscaling: AutoscalingSpec::default(),
        }
    }
}

/// Lag-based autoscaling of the consumer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// `builtin`: the operator measures lag and sets the replica count; `keda`: a KEDA
    /// ScaledObject does (the operator then leaves the Deployment's replicas alone).
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Consumer-group lag (messages) one pod is expected to absorb. A url-api message holds
    /// up to CLICK_BATCH_MAX clicks (100 by default).
    #[serde(default = "default_target_lag")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: i64,
    /// Seconds between lag measurements.
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 1))]
    pub interval_seconds: i32,
    /// Seconds the desired count must stay lower before pods are removed.
    #[serde(default = "default_stabilization_seconds")]
    #[schemars(range(min = 0))]
    pub scale_down_stabilization_seconds: i32,
    /// Most pods added in one step.
    #[serde(default = "default_max_scale_up_step")]
    #[schemars(range(min = 1))]
    pub max_scale_up_step: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            target_lag_per_replica: default_target_lag(),
            interval_seconds: default_interval_seconds(),
            scale_down_stabilization_seconds: default_stabilization_seconds(),
            max_scale_up_step: default_max_scale_up_step(),
        }
    }
}

/// Who scales the consumer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingMode {
    #[default]
    Builtin,
    Keda,
}

// ---------------------------------------------------------------------------------------------
// Kafka

/// Kafka connection and the clicks topic the operator creates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.partitions >= 1").message("kafka.partitions must be at least 1"),
    validation = Rule::new("self.topic.matches('^[a-zA-Z0-9._-]+$')").message("kafka.topic must be a non-empty Kafka topic name (letters, digits, '.', '_', '-')"),
    validation = Rule::new("self.partitions >= oldSelf.partitions").message("kafka.partitions cannot be decreased (Kafka cannot remove partitions)"),
    // A new name would silently start a new, empty topic next to the old one's data.
    validation = Rule::new("self.topic == oldSelf.topic").message("kafka.topic cannot be changed: create a new stack for a new topic"),
    validation = Rule::new("(has(self.dlqTopic) ? self.dlqTopic : self.topic + '.dlq') == (has(oldSelf.dlqTopic) ? oldSelf.dlqTopic : oldSelf.topic + '.dlq')").message("kafka.dlqTopic cannot be changed: create a new stack for a new dead-letter topic")
)]
pub struct KafkaSpec {
    /// Comma-separated `host:port` bootstrap brokers (env `KAFKA_BOOTSTRAP_SERVERS`).
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topic of click events (env `KAFKA_TOPIC`).
    #[serde(default = "default_topic")]
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Partitions of the topic; also the most consumer pods that do useful work. Can be
    /// increased later (the operator adds partitions), never decreased.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1))]
    pub partitions: i32,
    /// Replication factor used when the operator creates the topics. Defaults to 1 so a
    /// single-broker development cluster works; use 3 on production clusters.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
    /// `retention.ms` of the topic; unset keeps the broker default. -1 keeps messages forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_ms: Option<i64>,
    /// Dead-letter topic (env `KAFKA_DLQ_TOPIC`); defaults to `<topic>.dlq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub dlq_topic: Option<String>,
    /// Delete both topics when the ShortenerStack is deleted. Off by default: the clicks
    /// in Kafka outlive the stack unless asked otherwise.
    #[serde(default)]
    pub delete_topic_on_delete: bool,
    /// TLS to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTlsSpec>,
    /// SASL authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSaslSpec>,
}

/// TLS settings; present means the connection uses TLS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTlsSpec {
    /// PEM CA bundle that signed the brokers' certificates; unset trusts the system CAs.
    /// The operator reads it only if the Secret is labelled
    /// `shortener.example.io/kafka-credentials: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) for mutual TLS. The operator reads
    /// it only if the Secret is labelled `shortener.example.io/kafka-credentials: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretRef>,
}

/// SASL settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSaslSpec {
    /// SASL mechanism (env `KAFKA_SASL_MECHANISM`).
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Secret with `username` and `password` keys. The operator reads it (to manage topics
    /// and measure lag) only if the Secret is labelled
    /// `shortener.example.io/kafka-credentials: "true"`; the pods get it either way.
    pub secret_ref: CredentialsSecretRef,
}

/// Supported SASL mechanisms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSpec {
    /// The dead-letter topic name.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.topic, shortener_common::kafka::DLQ_SUFFIX))
    }

    /// `KAFKA_SECURITY_PROTOCOL` implied by the TLS and SASL blocks.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Database

/// Postgres: either a whole connection string from a Secret, or host/port/name with the
/// credentials from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.urlSecretRef) != has(self.host)").message("set exactly one of database.urlSecretRef and database.host"),
    validation = Rule::new("!has(self.host) || has(self.credentialsSecretRef)").message("database.host needs database.credentialsSecretRef")
)]
pub struct DatabaseSpec {
    /// Secret key holding a full `postgres://` URL (env `DATABASE_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Postgres host; the URL is assembled in the pod from the credentials Secret, so the
    /// password must not need URL escaping (use `urlSecretRef` if it does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub host: Option<String>,
    /// Postgres port.
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Database name.
    #[serde(default = "default_db_name")]
    #[schemars(length(min = 1))]
    pub name: String,
    /// Secret with `username` and `password` keys, used with `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,
    /// libpq `sslmode` appended to the assembled URL (e.g. `require`, `verify-full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// GeoIP

/// A MaxMind-format country database mounted read-only into the consumer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.configMap) != has(self.persistentVolumeClaim)").message("set exactly one of geoip.configMap and geoip.persistentVolumeClaim")
)]
pub struct GeoIpSpec {
    /// ConfigMap holding the database file (as binaryData).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// PersistentVolumeClaim holding the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
    /// File name within the volume.
    #[serde(default = "default_geoip_file")]
    #[schemars(length(min = 1))]
    pub path: String,
    /// Give url-api the database too, for redirect rules by country (env `GEOIP_DB_PATH`
    /// of url-api; without it such rules never match). A PersistentVolumeClaim must then
    /// allow several nodes (ReadOnlyMany or ReadWriteMany).
    #[serde(default)]
    pub url_api: bool,
}

// ---------------------------------------------------------------------------------------------
// Telemetry

/// OpenTelemetry settings passed to every component.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// OTLP gRPC endpoint (env `OTEL_EXPORTER_OTLP_ENDPOINT`); unset disables trace export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled (parent-based trace-id ratio).
    #[serde(default = "default_sampling_ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
    /// Extra resource attributes (env `OTEL_RESOURCE_ATTRIBUTES`).
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sampling_ratio: default_sampling_ratio(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortenerStackStatus {
    /// Ready, Progressing, Degraded, MigrationsApplied, TopicReady, KafkaReachable and,
    /// while paused, ReconciliationPaused.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// url-api pods.
    #[serde(default)]
    pub url_api: ComponentStatus,
    /// analytics-rpc pods.
    #[serde(default)]
    pub analytics_rpc: ComponentStatus,
    /// consumer pods.
    #[serde(default)]
    pub consumer: ConsumerStatus,
    /// Consumer-group lag at the last measurement (messages), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_lag: Option<i64>,
    /// Newest database migration version applied by a successful migration Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_migration_version: Option<i64>,
    /// Partitions of the clicks topic as last seen on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_partitions: Option<i32>,
    /// The migration gate: attempts for the current image and database, and their outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
}

/// Migration attempts for one target (migration version, url-api image, database).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// `<version>-<hash>` of the migration inputs the attempts are for.
    pub target: String,
    /// Jobs created for this target.
    #[serde(default)]
    pub attempts: i32,
    /// Job of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Whether a Job of this target succeeded (the workloads may roll).
    #[serde(default)]
    pub succeeded: bool,
    /// The latest failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<MigrationFailure>,
    /// Value of the `shortener.example.io/retry-migration` annotation already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_token: Option<String>,
}

/// A failed migration Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationFailure {
    pub job: String,
    /// The Job's `Failed` condition reason, e.g. `BackoffLimitExceeded`.
    pub reason: String,
    pub message: String,
    /// When the Job failed.
    pub time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// Conditions as a list-type map keyed by `type` (the Kubernetes API convention), so
/// server-side apply merges them by type instead of replacing the whole list.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert(
        "description".into(),
        "Ready, Progressing, Degraded, MigrationsApplied, TopicReady, KafkaReachable and, while paused, ReconciliationPaused.".into(),
    );
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Pods of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
}

/// Pods of the consumer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods the Deployment currently runs.
    #[serde(default)]
    pub current_replicas: i32,
    /// Pods the operator wants (within min/max and at most the partition count).
    #[serde(default)]
    pub desired_replicas: i32,
    /// When the builtin autoscaler last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Why the builtin autoscaler last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// KEDA mode: the HPA KEDA created for the ScaledObject, once it exists; until then the
    /// operator keeps the Deployment's replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keda_hpa: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Defaults (functions, because serde and the schema's `default` need them)

fn default_one() -> i32 {
    1
}
fn default_two() -> i32 {
    2
}
fn default_http_port() -> i32 {
    80
}
fn default_grpc_port() -> i32 {
    50051
}
fn default_rate_per_second() -> i32 {
    10
}
fn default_rate_burst() -> i32 {
    20
}
fn default_rpc_timeout_ms() -> i64 {
    300
}
fn default_breaker_threshold() -> i32 {
    5
}
fn default_breaker_reset_ms() -> i64 {
    10_000
}
fn default_max_replicas() -> i32 {
    4
}
fn default_batch_size() -> i32 {
    2000
}
fn default_batch_max_wait_ms() -> i64 {
    200
}
fn default_concurrency() -> i32 {
    4
}
fn default_group_id() -> String {
    "shortener-consumer".into()
}
// The consumer's own defaults, so a stack that leaves them out behaves like the binary.
fn default_click_retention_days() -> i32 {
    shortener_common::privacy::DEFAULT_CLICK_RETENTION_DAYS as i32
}
fn default_anonymize_ips() -> bool {
    shortener_common::privacy::DEFAULT_ANONYMIZE_IPS
}
fn default_target_lag() -> i64 {
    1000
}
fn default_interval_seconds() -> i32 {
    15
}
fn default_stabilization_seconds() -> i32 {
    300
}
fn default_max_scale_up_step() -> i32 {
    2
}
fn default_topic() -> String {
    "clicks".into()
}
fn default_partitions() -> i32 {
    4
}
fn default_pg_port() -> i32 {
    5432
}
fn default_db_name() -> String {
    "shortener".into()
}
fn default_redirect_miss_per_second() -> i64 {
    50
}
fn default_redirect_miss_burst() -> i64 {
    200
}
fn default_max_concurrent_requests() -> i32 {
    64
}
/// 32 MiB, the consumer's own default.
fn default_max_in_flight_bytes() -> i64 {
    32 << 20
}
fn default_geoip_file() -> String {
    "GeoLite2-Country.mmdb".into()
}
fn default_sampling_ratio() -> f64 {
    1.0
}

/// The CRD as YAML, exactly what `operator crd` prints and `crds/shortenerstack.yaml` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&ShortenerStack::crd()).expect("the CRD serializes");
    format!("# Output of `operator crd`; regenerate with `cargo run -p shortener-operator -- crd > crds/shortenerstack.yaml`.\n{yaml}")
}
