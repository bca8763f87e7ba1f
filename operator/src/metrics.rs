//! Operator metrics, served on `/metrics` by `shortener_common::health`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: crate::error::ErrorKind,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<OutcomeLabels, Histogram>,
    /// 1 while this replica reconciles (holds the leader Lease, or runs without election).
    pub leader: Gauge,
    pub autoscaling: crate::autoscaling::AutoscalingMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            }),
            leader: Gauge::default(),
            autoscaling: Default::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "shortener_operator_reconciles",
            "Reconciliations of ShortenerStacks, by outcome",
            self.reconciles.clone(),
        );
        registry.register(
            "shortener_operator_reconcile_errors",
            "Failed reconciliations, by error kind",
            self.errors.clone(),
        );
        registry.register(
            "shortener_operator_reconcile_duration_seconds",
            "Time spent in one reconciliation, by outcome",
            self.duration.clone(),
        );
        registry.register(
            "shortener_operator_leader",
            "1 while this replica holds the leader Lease and reconciles, 0 on standby",
            self.leader.clone(),
        );
        self.autoscaling.register_in(registry);
    }

    pub fn observe(&self, elapsed: Duration, error: Option<crate::error::ErrorKind>) {
        let outcome = OutcomeLabels {
            outcome: if error.is_some() { "error" } else { "ok" },
        };
        self.reconciles.get_or_create(&outcome).inc();
        self.duration
            .get_or_create(&outcome)
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.errors.get_or_create(&ErrorLabels { kind }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_show_up_in_the_text_format() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.observe(Duration::from_millis(20), None);
        metrics.observe(
            Duration::from_millis(20),
            Some(crate::error::ErrorKind::MissingNamespace),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"shortener_operator_reconciles_total{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text
            .contains(r#"shortener_operator_reconcile_errors_total{kind="missing_namespace"} 1"#));
        assert!(text
            .contains(r#"shortener_operator_reconcile_duration_seconds_count{outcome="error"} 1"#));
    }
}
