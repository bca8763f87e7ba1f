//! `consumer.autoscaling.mode: keda`: KEDA scales the consumer.
//!
//! The operator emits a `ScaledObject` (keda.sh/v1alpha1) with a `kafka` trigger for the
//! stack's topic and consumer group, plus a `TriggerAuthentication` pointing at the same
//! Secrets the pods use when SASL or TLS client material is configured. KEDA's HPA then
//! owns the Deployment's `spec.replicas`; the operator leaves that field out of its apply
//! (see `scaling::desired_consumer_replicas`). The objects are applied as `DynamicObject`s,
//! so the operator needs no KEDA types and runs on clusters without KEDA in builtin mode.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::ScalingParams;
use crate::crd::{SaslMechanism, ShortenerStack};
use crate::resources::hash::{desired_hash_of, with_desired_hash};
use crate::resources::{labels, Component};

pub const KEDA_GROUP: &str = "keda.sh";
pub const KEDA_VERSION: &str = "v1alpha1";

/// `keda.sh/v1alpha1` `ScaledObject`, plural `scaledobjects`.
pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(KEDA_GROUP, KEDA_VERSION, "ScaledObject"),
        "scaledobjects",
    )
}

/// `keda.sh/v1alpha1` `TriggerAuthentication`, plural `triggerauthentications`.
pub fn trigger_authentication_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(KEDA_GROUP, KEDA_VERSION, "TriggerAuthentication"),
        "triggerauthentications",
    )
}

/// Name of the ScaledObject: the consumer Deployment's name (KEDA names its HPA
/// `keda-hpa-<this>`).
pub fn scaled_object_name(stack: &ShortenerStack) -> String {
    Component::Consumer.object_name(stack)
}

/// Name of the TriggerAuthentication: `<stack>-consumer-kafka`.
pub fn trigger_authentication_name(stack: &ShortenerStack) -> String {
    format!("{}-kafka", Component::Consumer.object_name(stack))
}

/// KEDA's spelling of a SASL mechanism (`sasl` trigger parameter).
pub fn keda_sasl_mode(mechanism: SaslMechanism) -> &'static str {
    match mechanism {
        SaslMechanism::Plain => "plaintext",
        SaslMechanism::ScramSha256 => "scram_sha256",
        SaslMechanism::ScramSha512 => "scram_sha512",
    }
}

fn meta(stack: &ShortenerStack, name: String) -> ObjectMeta {
    labels::child_meta(stack, name, labels::labels(stack, Component::Consumer))
}

fn dynamic(resource: &ApiResource, metadata: ObjectMeta, spec: Value) -> DynamicObject {
    let name = metadata.name.clone().unwrap_or_default();
    let mut object = DynamicObject::new(&name, resource).data(json!({ "spec": spec }));
    object.metadata = metadata;
    object
}

/// `secretTargetRef` entries for the Kafka credentials and TLS material, in the order
/// KEDA documents them.
fn secret_target_refs(stack: &ShortenerStack) -> Vec<Value> {
    let kafka = &stack.spec.kafka;
    let mut refs = Vec::new();
    let mut add = |parameter: &str, name: &str, key: &str| {
        refs.push(json!({"parameter": parameter, "name": name, "key": key}));
    };
    if let Some(sasl) = &kafka.sasl {
        add("username", &sasl.secret_ref.name, "username");
        add("password", &sasl.secret_ref.name, "password");
    }
    if let Some(tls) = &kafka.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            add("ca", &ca.name, &ca.key);
        }
        if let Some(cert) = &tls.cert_secret_ref {
            add("cert", &cert.name, "tls.crt");
            add("key", &cert.name, "tls.key");
        }
    }
    refs
}

/// The TriggerAuthentication, when the connection needs Secret material (SASL
/// credentials, a CA bundle or a client certificate); `None` for plaintext or TLS with the
/// system CAs.
pub fn trigger_authentication(stack: &ShortenerStack) -> Option<DynamicObject> {
    let refs = secret_target_refs(stack);
    if refs.is_empty() {
        return None;
    }
    Some(dynamic(
        &trigger_authentication_resource(),
        meta(stack, trigger_authentication_name(stack)),
        json!({ "secretTargetRef": refs }),
    ))
}

/// The ScaledObject for the consumer Deployment. `maxReplicaCount` is capped at the
/// partition count and the HPA behaviour mirrors the builtin policy (scale-down window,
/// scale-up step per interval).
pub fn scaled_object(stack: &ShortenerStack) -> DynamicObject {
    let spec = &stack.spec;
    let autoscaling = &spec.consumer.autoscaling;
    let params = ScalingParams::from_spec(stack, spec.kafka.partitions);

    let mut metadata = serde_json::Map::new();
    let mut set = |k: &str, v: String| {
        metadata.insert(k.to_string(), Value::String(v));
    };
    set("bootstrapServers", spec.kafka.bootstrap_servers.clone());
    set("consumerGroup", spec.consumer.group_id.clone());
    set("topic", spec.kafka.topic.clone());
    set(
        "lagThreshold",
        autoscaling.target_lag_per_replica.to_string(),
    );
    set("offsetResetPolicy", "earliest".into());
    set("allowIdleConsumers", "false".into());
    if let Some(sasl) = &spec.kafka.sasl {
        set("sasl", keda_sasl_mode(sasl.mechanism).into());
    }
    if spec.kafka.tls.is_some() {
        set("tls", "enable".into());
    }

    let mut trigger = json!({ "type": "kafka", "metadata": metadata });
    if trigger_authentication(stack).is_some() {
        trigger["authenticationRef"] = json!({ "name": trigger_authentication_name(stack) });
    }

    dynamic(
        &scaled_object_resource(),
        meta(stack, scaled_object_name(stack)),
        json!({
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": Component::Consumer.object_name(stack),
            },
            "pollingInterval": autoscaling.interval_seconds,
            // KEDA uses the cooldown only for the last pod (scaling to minReplicaCount 0).
            "cooldownPeriod": autoscaling.scale_down_stabilization_seconds,
            "minReplicaCount": params.lower(),
            "maxReplicaCount": params.upper(),
            // When KEDA cannot read the lag (brokers unreachable) it runs the most consumers
            // the stack allows, so a backlog that built up meanwhile is not starved.
            "fallback": {
                "failureThreshold": 3,
                "replicas": params.upper().max(1),
            },
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": autoscaling.scale_down_stabilization_seconds,
                        },
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{
                                "type": "Pods",
                                "value": autoscaling.max_scale_up_step.max(1),
                                "periodSeconds": autoscaling.interval_seconds,
                            }],
                        },
                    },
                },
            },
            "triggers": [trigger],
        }),
    )
}

/// Server-side applies `object` unless the live copy already carries its desired-hash.
/// Returns whether it wrote.
async fn apply_one(api: &Api<DynamicObject>, object: DynamicObject) -> Result<bool, kube::Error> {
    let object = with_desired_hash(object);
    let name = object.name_any();
    if let Some(live) = api.get_opt(&name).await? {
        // Unchanged and not edited by hand (`drift`): nothing to write.
        if desired_hash_of(&live) == desired_hash_of(&object)
            && crate::drift::drifted(
                &serde_json::to_value(&object).expect("objects serialize"),
                &serde_json::to_value(&live).expect("objects serialize"),
            )
            .is_empty()
        {
            return Ok(false);
        }
    }
    let params = PatchParams::apply(labels::MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object)).await?;
    Ok(true)
}

fn apis(client: &Client, stack: &ShortenerStack) -> (Api<DynamicObject>, Api<DynamicObject>) {
    let ns = stack.namespace().unwrap_or_default();
    (
        Api::namespaced_with(client.clone(), &ns, &trigger_authentication_resource()),
        Api::namespaced_with(client.clone(), &ns, &scaled_object_resource()),
    )
}

/// Applies the TriggerAuthentication (first, so the ScaledObject never references a
/// missing one) and the ScaledObject, and deletes a TriggerAuthentication of this stack
/// that is no longer referenced. Returns whether anything was written.
pub async fn apply(client: &Client, stack: &ShortenerStack) -> Result<bool, kube::Error> {
    let (auths, scaled_objects) = apis(client, stack);
    let mut wrote = false;
    match trigger_authentication(stack) {
        Some(auth) => wrote |= apply_one(&auths, auth).await?,
        None => {
            wrote |= delete_owned(&auths, &trigger_authentication_name(stack), stack).await?
                == Found::Deleted
        }
    }
    wrote |= apply_one(&scaled_objects, scaled_object(stack)).await?;
    Ok(wrote)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    Absent,
    Deleted,
    /// Exists but another owner's: left alone.
    Foreign,
}

/// Deletes the object if it exists and this stack owns it.
async fn delete_owned(
    api: &Api<DynamicObject>,
    name: &str,
    stack: &ShortenerStack,
) -> Result<Found, kube::Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(Found::Absent);
    };
    let uid = stack.metadata.uid.as_deref();
    let owned = live
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid);
    if !owned {
        return Ok(Found::Foreign);
    }
    api.delete(name, &Default::default()).await?;
    Ok(Found::Deleted)
}

/// What leaving KEDA mode found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Objects of this stack deleted now, `Kind/name`.
    pub deleted: Vec<String>,
    /// A ScaledObject of that name this stack does not own (it keeps scaling the consumer).
    pub foreign_scaled_object: bool,
}

/// Deletes the stack's ScaledObject and TriggerAuthentication (builtin mode owns the
/// replica count). A cluster without KEDA answers 404: nothing to delete.
pub async fn remove(client: &Client, stack: &ShortenerStack) -> Result<Removal, kube::Error> {
    let (auths, scaled_objects) = apis(client, stack);
    let mut removal = Removal::default();
    let so = scaled_object_name(stack);
    match delete_owned(&scaled_objects, &so, stack).await? {
        Found::Deleted => removal.deleted.push(format!("ScaledObject/{so}")),
        Found::Foreign => removal.foreign_scaled_object = true,
        Found::Absent => {}
    }
    let auth = trigger_authentication_name(stack);
    if delete_owned(&auths, &auth, stack).await? == Found::Deleted {
        removal
            .deleted
            .push(format!("TriggerAuthentication/{auth}"));
    }
    Ok(removal)
}

/// The HPA KEDA created for the stack's ScaledObject (`status.hpaName`), once it exists:
/// from then on KEDA holds the consumer's replica count.
pub async fn hpa_name(
    client: &Client,
    stack: &ShortenerStack,
) -> Result<Option<String>, kube::Error> {
    let (_, scaled_objects) = apis(client, stack);
    Ok(scaled_objects
        .get_opt(&scaled_object_name(stack))
        .await?
        .and_then(|so| so.data["status"]["hpaName"].as_str().map(str::to_string)))
}

/// Whether a ScaledObject for the stack exists (e.g. left from keda mode). While one does,
/// KEDA's HPA owns the replica count and the builtin autoscaler must not compete with it.
/// A cluster without KEDA answers 404, which counts as "none".
pub async fn scaled_object_exists(
    client: &Client,
    stack: &ShortenerStack,
) -> Result<bool, kube::Error> {
    let (_, scaled_objects) = apis(client, stack);
    Ok(scaled_objects
        .get_opt(&scaled_object_name(stack))
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingMode, KafkaTlsSpec};
    use crate::test_support::stack;

    fn keda_stack() -> ShortenerStack {
        let mut s = stack();
        s.spec.consumer.autoscaling.mode = AutoscalingMode::Keda;
        s
    }

    #[test]
    fn scaled_object_identity_and_ownership() {
        let so = scaled_object(&keda_stack());
        let types = so.types.as_ref().unwrap();
        assert_eq!(types.api_version, "keda.sh/v1alpha1");
        assert_eq!(types.kind, "ScaledObject");
        assert_eq!(so.metadata.name.as_deref(), Some("demo-consumer"));
        assert_eq!(so.metadata.namespace.as_deref(), Some("shop"));
        let owner = &so.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ShortenerStack");
        assert_eq!(owner.controller, Some(true));
        let l = so.metadata.labels.as_ref().unwrap();
        assert_eq!(l[labels::NAME], "consumer");
        assert_eq!(l[labels::INSTANCE], "demo");
        assert_eq!(l[labels::MANAGED_BY], "shortener-operator");
    }

    #[test]
    fn scaled_object_targets_the_consumer_deployment() {
        let so = scaled_object(&keda_stack());
        let spec = &so.data["spec"];
        assert_eq!(spec["scaleTargetRef"]["apiVersion"], "apps/v1");
        assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(spec["scaleTargetRef"]["name"], "demo-consumer");
        assert_eq!(spec["pollingInterval"], 15);
        assert_eq!(spec["cooldownPeriod"], 300);
        assert_eq!(spec["minReplicaCount"], 1);
        assert_eq!(spec["maxReplicaCount"], 4);
        let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 300);
        assert_eq!(behavior["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(
            behavior["scaleUp"]["policies"],
            json!([{"type": "Pods", "value": 2, "periodSeconds": 15}])
        );
    }

    #[test]
    fn max_replica_count_is_capped_at_partitions() {
        let mut s = keda_stack();
        s.spec.consumer.min_replicas = 0;
        s.spec.consumer.max_replicas = 20;
        s.spec.kafka.partitions = 6;
        let spec = &scaled_object(&s).data["spec"];
        assert_eq!(spec["minReplicaCount"], 0);
        assert_eq!(spec["maxReplicaCount"], 6);
    }

    #[test]
    fn kafka_trigger_metadata_is_all_strings() {
        let mut s = keda_stack();
        s.spec.consumer.group_id = "clicks-workers".into();
        s.spec.kafka.topic = "clicks-v2".into();
        s.spec.consumer.autoscaling.target_lag_per_replica = 250;
        let spec = &scaled_object(&s).data["spec"];
        let triggers = spec["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 1);
        assert_eq!(triggers[0]["type"], "kafka");
        assert_eq!(
            triggers[0]["metadata"],
            json!({
                "bootstrapServers": "kafka:9092",
                "consumerGroup": "clicks-workers",
                "topic": "clicks-v2",
                "lagThreshold": "250",
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
            })
        );
        assert!(triggers[0].get("authenticationRef").is_none());
        assert!(trigger_authentication(&s).is_none());
    }

    #[test]
    fn sasl_and_tls_use_a_trigger_authentication_on_the_same_secrets() {
        let mut s = keda_stack();
        crate::test_support::secure_kafka(&mut s, SaslMechanism::ScramSha256);
        let so = scaled_object(&s);
        let trigger = &so.data["spec"]["triggers"][0];
        assert_eq!(trigger["metadata"]["sasl"], "scram_sha256");
        assert_eq!(trigger["metadata"]["tls"], "enable");
        assert_eq!(
            trigger["authenticationRef"],
            json!({"name": "demo-consumer-kafka"})
        );

        let ta = trigger_authentication(&s).unwrap();
        let types = ta.types.as_ref().unwrap();
        assert_eq!(types.api_version, "keda.sh/v1alpha1");
        assert_eq!(types.kind, "TriggerAuthentication");
        assert_eq!(ta.metadata.name.as_deref(), Some("demo-consumer-kafka"));
        assert_eq!(ta.metadata.namespace.as_deref(), Some("shop"));
        assert!(ta.metadata.owner_references.is_some());
        assert_eq!(
            ta.data["spec"]["secretTargetRef"],
            json!([
                {"parameter": "username", "name": "kafka-user", "key": "username"},
                {"parameter": "password", "name": "kafka-user", "key": "password"},
                {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"},
                {"parameter": "cert", "name": "kafka-client", "key": "tls.crt"},
                {"parameter": "key", "name": "kafka-client", "key": "tls.key"},
            ])
        );
    }

    #[test]
    fn tls_with_system_cas_needs_no_trigger_authentication() {
        let mut s = keda_stack();
        s.spec.kafka.tls = Some(KafkaTlsSpec::default());
        let so = scaled_object(&s);
        assert_eq!(so.data["spec"]["triggers"][0]["metadata"]["tls"], "enable");
        assert!(so.data["spec"]["triggers"][0]
            .get("authenticationRef")
            .is_none());
        assert!(trigger_authentication(&s).is_none());
    }

    #[test]
    fn sasl_modes_use_keda_names() {
        assert_eq!(keda_sasl_mode(SaslMechanism::Plain), "plaintext");
        assert_eq!(keda_sasl_mode(SaslMechanism::ScramSha256), "scram_sha256");
        assert_eq!(keda_sasl_mode(SaslMechanism::ScramSha512), "scram_sha512");
    }
}
