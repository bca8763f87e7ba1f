//! The stack's Kafka topics (observe and apply against the brokers, client required): the
//! connection settings with their Secret material, ownership between stacks, and
//! `TopicManager::ensure` for the clicks topic and its DLQ.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use shortener_common::kafka::KafkaArgs;
use tracing::{info, warn};

use super::{plan, Context};
use crate::conditions::Reason;
use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::kafka_credentials;
use crate::status::TopicObservation;
use crate::topic::{ownership, KafkaConnection, TopicRequest};

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
    let mut reports = Vec::new();
    for name in [kafka.topic.clone(), kafka.dlq_topic()] {
        let request = TopicRequest {
            name,
            partitions: kafka.partitions,
            replication_factor: kafka.replication_factor,
            retention_ms: kafka.retention_ms,
        };
        match admin.ensure(&request).await {
            Ok(report) => reports.push((request, report)),
            Err(e) => {
                warn!(topic = %request.name, error = %e, "topic not ready");
                return Ok(TopicObservation::Failed {
                    reason: e.reason(),
                    message: e.to_string(),
                });
            }
        }
    }
    let (observation, notes) = plan::topics(&reports);
    for note in notes {
        info!(changes = %note.note, "topics changed");
        ctx.event(stack, note.reason, note.note).await;
    }
    Ok(observation)
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
