//! Optional Prometheus Operator PodMonitors (off by default): one per component, scraping
//! `/metrics` on the pods' `admin` port. Needs the `monitoring.coreos.com` CRDs; the
//! reconciler reports a cluster without them in an Event instead of failing.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{labels, Component};
use crate::crd::ShortenerStack;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The fields of `monitoring.coreos.com/v1` PodMonitor the operator sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub selector: LabelSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    pub port: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// The component's PodMonitor, or `None` unless `podMonitor.enabled`.
pub fn pod_monitor_for(stack: &ShortenerStack, component: Component) -> Option<PodMonitor> {
    let spec = &stack.spec.pod_monitor;
    if !spec.enabled {
        return None;
    }
    let mut monitor = PodMonitor::new(
        &component.object_name(stack),
        PodMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(labels::selector(stack, component)),
                ..LabelSelector::default()
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: "admin".into(),
                path: "/metrics".into(),
                interval: spec.interval.clone(),
            }],
        },
    );
    monitor.metadata = labels::child_meta(
        stack,
        component.object_name(stack),
        labels::labels(stack, component),
    );
    Some(monitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    #[test]
    fn off_by_default_then_one_per_component_on_the_admin_port() {
        let mut s = stack();
        assert!(pod_monitor_for(&s, Component::UrlApi).is_none());
        s.spec.pod_monitor.enabled = true;
        s.spec.pod_monitor.interval = Some("15s".into());
        for component in Component::ALL {
            let m = pod_monitor_for(&s, component).unwrap();
            let json = serde_json::to_value(&m).unwrap();
            assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
            assert_eq!(json["kind"], "PodMonitor");
            assert_eq!(json["metadata"]["name"], component.object_name(&s));
            assert_eq!(
                json["metadata"]["ownerReferences"][0]["kind"],
                "ShortenerStack"
            );
            assert_eq!(
                json["spec"]["selector"]["matchLabels"],
                serde_json::to_value(labels::selector(&s, component)).unwrap()
            );
            assert_eq!(
                json["spec"]["podMetricsEndpoints"],
                serde_json::json!([{"port": "admin", "path": "/metrics", "interval": "15s"}])
            );
        }
    }
}
