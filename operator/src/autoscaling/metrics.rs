//! Autoscaling metrics, registered in the operator's one registry (served at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::policy::Direction;

/// Identifies a stack.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StackLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub namespace: String,
    pub name: String,
    /// `up` or `down`.
    pub direction: &'static str,
}

/// Handles to the autoscaling metrics; cheap to clone (the families are shared).
#[derive(Clone, Debug, Default)]
pub struct AutoscalingMetrics {
    /// `shortener_operator_consumer_lag`: total consumer-group lag at the last measurement.
    pub lag: Family<StackLabels, Gauge>,
    /// `shortener_operator_consumer_desired_replicas`: the builtin autoscaler's decision.
    pub desired_replicas: Family<StackLabels, Gauge>,
    /// `shortener_operator_consumer_scale_events_total{direction}`: replica changes made.
    pub scale_events: Family<ScaleLabels, Counter>,
}

impl AutoscalingMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        metrics.register_in(registry);
        metrics
    }

    /// Registers these metrics in `registry` (the operator's one registry; the
    /// `shortener_operator_` prefix is part of the names).
    pub fn register_in(&self, registry: &mut Registry) {
        registry.register(
            "shortener_operator_consumer_lag",
            "Consumer-group lag (messages) of a stack at the last measurement",
            self.lag.clone(),
        );
        registry.register(
            "shortener_operator_consumer_desired_replicas",
            "Consumer replicas the builtin autoscaler wants for a stack",
            self.desired_replicas.clone(),
        );
        registry.register(
            "shortener_operator_consumer_scale_events",
            "Consumer replica changes made by the builtin autoscaler, by direction",
            self.scale_events.clone(),
        );
    }

    /// Drops the series of a deleted stack.
    pub fn forget(&self, stack: &StackLabels) {
        self.lag.remove(stack);
        self.desired_replicas.remove(stack);
        for direction in [Direction::Up, Direction::Down] {
            self.scale_events.remove(&ScaleLabels {
                namespace: stack.namespace.clone(),
                name: stack.name.clone(),
                direction: direction.as_str(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn metrics_are_exposed_with_stack_labels() {
        let mut registry = Registry::default();
        let m = AutoscalingMetrics::register(&mut registry);
        let stack = StackLabels {
            namespace: "shop".into(),
            name: "demo".into(),
        };
        m.lag.get_or_create(&stack).set(1234);
        m.desired_replicas.get_or_create(&stack).set(3);
        m.scale_events
            .get_or_create(&ScaleLabels {
                namespace: "shop".into(),
                name: "demo".into(),
                direction: Direction::Up.as_str(),
            })
            .inc();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"shortener_operator_consumer_lag{namespace="shop",name="demo"} 1234"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"shortener_operator_consumer_desired_replicas{namespace="shop",name="demo"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"shortener_operator_consumer_scale_events_total{namespace="shop",name="demo",direction="up"} 1"#), "{text}");

        m.forget(&stack);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.contains(r#"name="demo""#), "{text}");
    }
}
