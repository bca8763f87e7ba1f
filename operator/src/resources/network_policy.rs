//! Optional NetworkPolicies (off by default): each component's pods accept only the
//! traffic the stack needs. url-api's HTTP port is public; analytics-rpc's gRPC port
//! answers url-api's pods of the same stack only; the admin ports (probes, metrics) answer
//! pods of the cluster (Prometheus); the consumer serves nothing else. Egress is not
//! restricted: Postgres and the brokers may live outside the cluster.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, Component};
use crate::crd::ShortenerStack;

fn port(name: &str) -> Vec<NetworkPolicyPort> {
    vec![NetworkPolicyPort {
        port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }]
}

/// Any pod in any namespace of the cluster.
fn cluster_pods() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

/// The component's policy, or `None` unless `networkPolicy.enabled`.
pub fn network_policy_for(stack: &ShortenerStack, component: Component) -> Option<NetworkPolicy> {
    if !stack.spec.network_policy.enabled {
        return None;
    }
    let admin = NetworkPolicyIngressRule {
        from: Some(vec![cluster_pods()]),
        ports: Some(port("admin")),
    };
    let mut ingress = vec![admin];
    match component {
        Component::UrlApi => ingress.push(NetworkPolicyIngressRule {
            from: None,
            ports: Some(port("http")),
        }),
        Component::AnalyticsRpc => ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(labels::selector(stack, Component::UrlApi)),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(port("grpc")),
        }),
        Component::Consumer => {}
    }
    Some(NetworkPolicy {
        metadata: labels::child_meta(
            stack,
            component.object_name(stack),
            labels::labels(stack, component),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(stack, component)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    fn ports(p: &NetworkPolicy) -> Vec<String> {
        p.spec
            .as_ref()
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| r.ports.clone().unwrap_or_default())
            .map(|p| match p.port.unwrap() {
                IntOrString::String(s) => s,
                IntOrString::Int(i) => i.to_string(),
            })
            .collect()
    }

    #[test]
    fn off_by_default_and_only_the_needed_ports_when_on() {
        let mut s = stack();
        assert!(network_policy_for(&s, Component::UrlApi).is_none());
        s.spec.network_policy.enabled = true;
        let api = network_policy_for(&s, Component::UrlApi).unwrap();
        assert_eq!(ports(&api), ["admin", "http"]);
        let rpc = network_policy_for(&s, Component::AnalyticsRpc).unwrap();
        assert_eq!(ports(&rpc), ["admin", "grpc"]);
        let grpc_from = rpc.spec.as_ref().unwrap().ingress.as_ref().unwrap()[1]
            .from
            .clone()
            .unwrap();
        assert_eq!(
            grpc_from[0]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap(),
            &labels::selector(&s, Component::UrlApi),
            "gRPC from url-api's pods only"
        );
        assert!(
            grpc_from[0].namespace_selector.is_none(),
            "of this namespace"
        );
        let consumer = network_policy_for(&s, Component::Consumer).unwrap();
        assert_eq!(ports(&consumer), ["admin"]);
        assert_eq!(consumer.spec.unwrap().policy_types.unwrap(), ["Ingress"]);
    }
}
