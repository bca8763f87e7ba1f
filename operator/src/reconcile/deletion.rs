//! Deleting a stack that holds the finalizer: the topics, when the spec asks, within a
//! bounded time.

use std::time::Duration;

use chrono::Utc;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::topics::{kafka_connection, topic_conflict};
use super::{plan, Context};
use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::events::EventReason;

/// How long deletion waits for the topics to be deleted before it gives up on them (the
/// brokers or their credentials may be gone for good: namespace deletion, `helm uninstall`).
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(300);

/// Deletion: the children go with the owner references; the topics only when asked. When
/// Kafka cannot be reached (credentials or brokers gone), deletion retries until
/// `CLEANUP_DEADLINE` after the deletion started, then gives up on the topics with a
/// Warning event, so the stack (and its namespace) is not held forever.
pub(super) async fn cleanup(stack: &ShortenerStack, ctx: &Context) -> Result<Action, Error> {
    if let Some(autoscaler) = &ctx.autoscaler {
        autoscaler.forget(stack);
    }
    let kafka = &stack.spec.kafka;
    if !kafka.delete_topic_on_delete {
        info!(topic = %kafka.topic, "stack deleted; keeping its topics (deleteTopicOnDelete is false)");
        return Ok(Action::await_change());
    }
    if let Some(conflict) = topic_conflict(stack, ctx) {
        info!(owner = %conflict.owner, "stack deleted; its topics are managed by another stack, kept");
        ctx.event(
            stack,
            EventReason::TopicKept,
            format!(
                "topics {} kept: managed by ShortenerStack {}",
                conflict.topics.join(", "),
                conflict.owner
            ),
        )
        .await;
        ctx.forget_stack(stack);
        return Ok(Action::await_change());
    }
    let deleted = async {
        let connection = kafka_connection(stack, ctx).await?;
        let admin = ctx.topic_admin(stack, &connection)?;
        for topic in [kafka.topic.clone(), kafka.dlq_topic()] {
            admin.delete(&topic).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if deleted.is_ok() || plan::cleanup_overdue(stack, Utc::now()) {
        ctx.forget_stack(stack);
    }
    match deleted {
        Ok(()) => {
            info!(topic = %kafka.topic, "topics deleted with the stack");
            ctx.event(
                stack,
                EventReason::TopicDeleted,
                format!("deleted topics {} and {}", kafka.topic, kafka.dlq_topic()),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if plan::cleanup_overdue(stack, Utc::now()) => {
            warn!(error = %e, "giving up on deleting the topics");
            ctx.event(stack, EventReason::TopicCleanupAbandoned, format!(
                    "topics {} and {} were not deleted ({e}); gave up {}s after the deletion started, delete them by hand",
                    kafka.topic,
                    kafka.dlq_topic(),
                    CLEANUP_DEADLINE.as_secs()
                ),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}
