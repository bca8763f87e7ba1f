//! How many consumer pods to run.
//!
//! Today the desired count is the previous desired count (kept in
//! `status.consumer.desiredReplicas`) clamped into the bounds, so it starts at
//! `minReplicas` and follows changes of min/max/partitions. The lag-based builtin
//! autoscaler replaces `desired_consumer_replicas` with a measurement-driven decision and
//! records `status.lastMeasuredLag`; the Deployment builder already reads this function.

use crate::crd::{AutoscalingMode, ShortenerStack};

/// `(min, max)` consumer pods: `maxReplicas` capped at the partition count (a consumer
/// beyond that owns no partition), and `minReplicas` capped at that max.
pub fn consumer_replica_bounds(stack: &ShortenerStack) -> (i32, i32) {
    let spec = &stack.spec;
    let max = spec.consumer.max_replicas.min(spec.kafka.partitions).max(0);
    let min = spec.consumer.min_replicas.clamp(0, max);
    (min, max)
}

/// Replicas the consumer Deployment should declare, or `None` when KEDA's HPA owns the
/// count (then the operator leaves `spec.replicas` out of its apply and never fights KEDA).
/// Right after a switch to KEDA mode, until KEDA reports its HPA
/// (`status.consumer.kedaHpa`), the operator keeps declaring the count it had: leaving
/// the field with no owner would reset the Deployment to 1 replica.
pub fn desired_consumer_replicas(stack: &ShortenerStack) -> Option<i32> {
    let keda_holds = stack
        .status
        .as_ref()
        .is_some_and(|s| s.consumer.keda_hpa.is_some());
    if stack.spec.consumer.autoscaling.mode == AutoscalingMode::Keda && keda_holds {
        return None;
    }
    let (min, max) = consumer_replica_bounds(stack);
    let previous = stack
        .status
        .as_ref()
        .map(|s| s.consumer.desired_replicas)
        .unwrap_or(min);
    Some(previous.clamp(min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ShortenerStackStatus;
    use crate::test_support::stack;

    #[test]
    fn max_is_capped_at_partitions() {
        let mut s = stack();
        s.spec.consumer.min_replicas = 2;
        s.spec.consumer.max_replicas = 10;
        s.spec.kafka.partitions = 6;
        assert_eq!(consumer_replica_bounds(&s), (2, 6));
        s.spec.consumer.min_replicas = 8;
        assert_eq!(consumer_replica_bounds(&s), (6, 6));
    }

    #[test]
    fn desired_starts_at_min_and_stays_within_bounds() {
        let mut s = stack();
        s.spec.consumer.min_replicas = 2;
        assert_eq!(desired_consumer_replicas(&s), Some(2));
        let mut status = ShortenerStackStatus::default();
        status.consumer.desired_replicas = 3;
        s.status = Some(status);
        assert_eq!(desired_consumer_replicas(&s), Some(3));
        s.spec.consumer.max_replicas = 2;
        assert_eq!(desired_consumer_replicas(&s), Some(2));
        s.spec.consumer.autoscaling.mode = AutoscalingMode::Keda;
        assert_eq!(
            desired_consumer_replicas(&s),
            Some(2),
            "until KEDA's HPA exists"
        );
        s.status.as_mut().unwrap().consumer.keda_hpa = Some("keda-hpa-demo-consumer".into());
        assert_eq!(desired_consumer_replicas(&s), None);
    }
}
