//! Consumer autoscaling by Kafka consumer-group lag.
//!
//! - [`policy`]: the pure scaling policy (recommendation, stabilization, step, bounds);
//! - [`lag`]: reading the group's lag from the brokers behind the [`LagSource`] trait;
//! - [`scaler`]: the builtin autoscaler the reconcile drives (scale subresource, status,
//!   Events, metrics);
//! - [`keda`]: the `ScaledObject`/`TriggerAuthentication` emitted in keda mode;
//! - [`metrics`]: the autoscaling series in the operator's registry.
//!
//! Behaviour, defaults and status fields are described in `docs/autoscaling.md`.

pub mod keda;
pub mod lag;
pub mod metrics;
pub mod policy;
pub mod scaler;

pub use lag::{KafkaLagReader, LagError, LagReport, LagSource, PartitionLag};
pub use metrics::AutoscalingMetrics;
pub use policy::{Decision, Direction, History, ScaleReason, ScalingParams};
pub use scaler::{Autoscaler, AutoscalingError, BrokerCheck, ScaleOutcome};

use crate::crd::ShortenerStack;

impl ScalingParams {
    /// The policy's knobs from `spec.consumer`, with the topic's `partitions`.
    pub fn from_spec(stack: &ShortenerStack, partitions: i32) -> Self {
        let consumer = &stack.spec.consumer;
        let autoscaling = &consumer.autoscaling;
        Self {
            min_replicas: consumer.min_replicas,
            max_replicas: consumer.max_replicas,
            partitions,
            target_lag_per_replica: autoscaling.target_lag_per_replica,
            scale_down_stabilization: chrono::Duration::seconds(i64::from(
                autoscaling.scale_down_stabilization_seconds.max(0),
            )),
            max_scale_up_step: autoscaling.max_scale_up_step,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    #[test]
    fn params_follow_the_spec_defaults() {
        let p = ScalingParams::from_spec(&stack(), 4);
        assert_eq!(p.min_replicas, 1);
        assert_eq!(p.max_replicas, 4);
        assert_eq!(p.partitions, 4);
        assert_eq!(p.target_lag_per_replica, 1000);
        assert_eq!(p.scale_down_stabilization, chrono::Duration::seconds(300));
        assert_eq!(p.max_scale_up_step, 2);
        assert_eq!((p.lower(), p.upper()), (1, 4));
    }
}
