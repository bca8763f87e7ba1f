//! The consumer autoscaler's turn in a pass (client required), after the status write so
//! its status fields are the newest ones.

use std::time::Duration;

use chrono::Utc;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::report::write_status;
use super::topics::kafka_connection;
use super::{Context, PENDING_REQUEUE};
use crate::autoscaling::BrokerCheck;
use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::events::EventReason;
use crate::resources::Component;
use crate::status::{self, DeploymentObservation, MigrationObservation, TopicObservation};

/// Runs the autoscaler when there is one and the consumer Deployment exists; returns when
/// it wants the next pass. When its measurement found the brokers gone or back
/// (`lag_check` is what the status was computed with), the status is computed again on
/// the stack as the autoscaler left it, so KafkaReachable follows now.
pub(super) async fn run(
    stack: &ShortenerStack,
    ctx: &Context,
    topic: &TopicObservation,
    migration: &MigrationObservation,
    deployments: &DeploymentObservation,
    lag_check: Option<BrokerCheck>,
) -> Result<Option<Duration>, Error> {
    let consumer_exists = matches!(deployments.get(&Component::Consumer), Some(Some(_)));
    let Some(autoscaler) = ctx.autoscaler.as_ref().filter(|_| consumer_exists) else {
        return Ok(None);
    };
    let next = match autoscaler
        .reconcile(stack, || kafka_connection(stack, ctx))
        .await
    {
        Ok(next) => next,
        Err(e) => {
            warn!(error = %e, "consumer autoscaling skipped this round");
            ctx.event(
                stack,
                EventReason::AutoscalingUnavailable,
                format!("consumer replicas left as they are: {e}"),
            )
            .await;
            Some(PENDING_REQUEUE)
        }
    };
    let after = autoscaler.broker_check(stack);
    if after != lag_check {
        let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
        let stacks: Api<ShortenerStack> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(current) = stacks.get_opt(&stack.name_any()).await? {
            let status = status::compute(
                &current,
                topic,
                migration,
                deployments,
                after.as_ref(),
                Utc::now(),
            );
            if current.status.as_ref() != Some(&status) {
                write_status(ctx, &current, &status).await?;
            }
        }
    }
    Ok(next)
}
