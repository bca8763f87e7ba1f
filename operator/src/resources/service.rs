//! Services of url-api (HTTP) and analytics-rpc (gRPC). The consumer has none.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, Component};
use crate::crd::ShortenerStack;

/// The component's Service, or `None` for the consumer.
pub fn service_for(stack: &ShortenerStack, component: Component) -> Option<Service> {
    let (type_, ports) = match component {
        Component::UrlApi => (
            stack.spec.url_api.service.type_.as_str(),
            vec![ServicePort {
                name: Some("http".into()),
                port: stack.spec.url_api.service.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }],
        ),
        Component::AnalyticsRpc => (
            "ClusterIP",
            vec![ServicePort {
                name: Some("grpc".into()),
                port: stack.spec.analytics_rpc.port,
                target_port: Some(IntOrString::String("grpc".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("kubernetes.io/h2c".into()),
                ..ServicePort::default()
            }],
        ),
        Component::Consumer => return None,
    };
    Some(Service {
        metadata: labels::child_meta(
            stack,
            component.object_name(stack),
            labels::labels(stack, component),
        ),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(labels::selector(stack, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceType;
    use crate::test_support::stack;

    #[test]
    fn url_api_service_uses_spec_type_and_port() {
        let mut s = stack();
        s.spec.url_api.service.type_ = ServiceType::LoadBalancer;
        s.spec.url_api.service.port = 8000;
        let svc = service_for(&s, Component::UrlApi).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-url-api"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 8000);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(
            spec.selector.unwrap(),
            labels::selector(&s, Component::UrlApi)
        );
    }

    #[test]
    fn rpc_service_is_cluster_ip_grpc_and_consumer_has_none() {
        let s = stack();
        let spec = service_for(&s, Component::AnalyticsRpc)
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 50051);
        assert_eq!(port.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
        assert!(service_for(&s, Component::Consumer).is_none());
    }
}
