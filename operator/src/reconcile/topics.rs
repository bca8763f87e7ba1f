//! The stack's Kafka topics (observe and apply against the brokers, client required): the
//! connection settings with their Secret material, ownership between stacks, and
//! `TopicManager::ensure` for the clicks topic and its DLQ.

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use shortener_common::kafka::KafkaArgs;
use tracing::{info, warn};

use super::Context;
use crate::conditions::Reason;
use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::kafka_credentials;
use crate::status::TopicObservation;
use crate::topic::{ownership, KafkaConnection, TopicOutcome, TopicRequest};

/// The other stack that manages this stack's topics, if any (`topic::ownership`), among
/// the stacks the controller watches.
pub(super) fn topic_conflict(stack: &ShortenerStack, ctx: &Context) -> Option<ownership::Conflict> {
    let stacks: Vec<ShortenerStack> = ctx.stacks.state().iter().map(|s| (**s).clone()).collect();
    ownership::conflict(stack, &stacks)
}

/// Creates or grows the clicks topic and its DLQ and alters drifted configs back, unless
/// another stack manages them. Kafka failures become the TopicReady condition (the rest of
/// the stack is still reconciled); only a failed Kubernetes request is an error.
pub(super) async fn ensure(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<TopicObservation, Error> {
    let kafka = &stack.spec.kafka;
    if let Some(conflict) = topic_conflict(stack, ctx) {
        return Ok(TopicObservation::Failed {
            reason: Reason::ResourceConflict,
            message: conflict.message(&kafka.bootstrap_servers),
        });
    }
    let connection = match kafka_connection(stack, ctx).await {
        Ok(c) => c,
        Err(e) => {
            // No broker is contacted without the credentials the spec asks for.
            let reason = match e {
                Error::SecretNotOptedIn { .. } => Reason::SecretNotOptedIn,
                _ => Reason::KafkaCredentialsUnavailable,
            };
            return Ok(TopicObservation::Failed {
                reason,
                message: e.to_string(),
            });
        }
    };
    let admin = match ctx.topic_admin(stack, &connection) {
        Ok(admin) => admin,
        Err(e) => {
            return Ok(TopicObservation::Failed {
                reason: e.reason(),
                message: e.to_string(),
            })
        }
    };
    let mut changes = Vec::new();
    let mut partitions = 0;
    let mut mismatched = Vec::new();
    for (i, name) in [kafka.topic.clone(), kafka.dlq_topic()]
        .into_iter()
        .enumerate()
    {
        let request = TopicRequest {
            name: name.clone(),
            partitions: kafka.partitions,
            replication_factor: kafka.replication_factor,
            retention_ms: kafka.retention_ms,
        };
        match admin.ensure(&request).await {
            Ok(report) => {
                if i == 0 {
                    partitions = report.outcome.partitions();
                }
                match report.outcome {
                    TopicOutcome::Created { partitions } => changes.push((
                        "TopicCreated",
                        format!("created topic {name} with {partitions} partitions"),
                    )),
                    TopicOutcome::PartitionsIncreased { from, to } => changes.push((
                        "PartitionsIncreased",
                        format!("topic {name}: partitions {from} -> {to}"),
                    )),
                    TopicOutcome::Unchanged { .. } => {}
                }
                for r in &report.reverted {
                    changes.push((
                        "TopicConfigReverted",
                        format!(
                            "topic {name}: {} was {}, set back to {}",
                            r.key,
                            r.found.as_deref().unwrap_or("the broker default"),
                            r.wanted
                        ),
                    ));
                }
                if report.replication_factor != request.replication_factor {
                    mismatched.push(format!(
                        "topic {name} has replication factor {} and the spec asks for {}: Kafka \
                         cannot change it in place; reassign its partitions \
                         (kafka-reassign-partitions.sh) or set kafka.replicationFactor to {}",
                        report.replication_factor,
                        request.replication_factor,
                        report.replication_factor
                    ));
                }
            }
            Err(e) => {
                warn!(topic = %name, error = %e, "topic not ready");
                return Ok(TopicObservation::Failed {
                    reason: e.reason(),
                    message: e.to_string(),
                });
            }
        }
    }
    for reason in ["TopicCreated", "PartitionsIncreased", "TopicConfigReverted"] {
        let notes: Vec<&str> = changes
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n.as_str())
            .collect();
        if !notes.is_empty() {
            info!(changes = %notes.join("; "), "topics changed");
            ctx.event(
                stack,
                EventType::Normal,
                reason,
                "EnsureTopic",
                notes.join("; "),
            )
            .await;
        }
    }
    if !mismatched.is_empty() {
        return Ok(TopicObservation::Mismatched {
            partitions,
            reason: Reason::ReplicationFactorMismatch,
            message: mismatched.join("; "),
        });
    }
    Ok(TopicObservation::Ready { partitions })
}

/// Admin-client settings for the stack's brokers, with SASL credentials and TLS material
/// read from the referenced Secrets (only when the spec uses them, and only Secrets that
/// opt in, see `kafka_credentials`).
pub async fn kafka_connection(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<KafkaConnection, Error> {
    let kafka = &stack.spec.kafka;
    let mut args = KafkaArgs::new(&kafka.bootstrap_servers, &kafka.topic);
    args.kafka_dlq_topic = Some(kafka.dlq_topic());
    args.kafka_security_protocol = kafka.security_protocol().into();
    let mut connection = KafkaConnection {
        args,
        ca_pem: None,
        certificate_pem: None,
        key_pem: None,
    };
    if kafka.sasl.is_none() && kafka.tls.is_none() {
        return Ok(connection);
    }
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(sasl) = &kafka.sasl {
        let secret = kafka_credentials::read(&secrets, &ns, &sasl.secret_ref.name).await?;
        connection.args.kafka_sasl_mechanism = Some(sasl.mechanism.as_str().into());
        connection.args.kafka_sasl_username = Some(kafka_credentials::value(&secret, "username")?);
        connection.args.kafka_sasl_password = Some(kafka_credentials::value(&secret, "password")?);
    }
    if let Some(tls) = &kafka.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            let secret = kafka_credentials::read(&secrets, &ns, &ca.name).await?;
            connection.ca_pem = Some(kafka_credentials::value(&secret, &ca.key)?);
        }
        if let Some(cert) = &tls.cert_secret_ref {
            let secret = kafka_credentials::read(&secrets, &ns, &cert.name).await?;
            connection.certificate_pem = Some(kafka_credentials::value(&secret, "tls.crt")?);
            connection.key_pem = Some(kafka_credentials::value(&secret, "tls.key")?);
        }
    }
    Ok(connection)
}
