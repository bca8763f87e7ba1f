//! The Deployment of each component.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, PodSpec, PodTemplateSpec,
};
use k8s_openapi::api::core::v1::{Probe, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::component::URL_API_HTTP_PORT;
use super::hash::{sha256_json, CONFIG_CHECKSUM_ANNOTATION};
use super::{env, labels, pod, Component};
use crate::crd::{PodSettings, ShortenerStack};
use crate::scaling;

/// `resourceVersion` of each Secret the stack references, by name (a Secret that does not
/// exist is absent). Read as metadata only: the operator never needs the values to notice
/// a rotation.
pub type SecretVersions = BTreeMap<String, String>;

/// SHA-256 of what the container reads from outside its image: the ConfigMap data, the
/// Secrets (and keys) it references and those Secrets' resourceVersions. Stamped on the
/// pod template so a config change or a rotated Secret rolls the pods (env vars from
/// Secrets are read only at container start).
pub fn config_checksum(
    stack: &ShortenerStack,
    component: Component,
    secrets: &SecretVersions,
) -> String {
    let refs = env::referenced_secrets(stack, component);
    let versions: BTreeMap<&str, &str> = env::referenced_secret_names(stack, component)
        .into_iter()
        .filter_map(|name| {
            secrets
                .get_key_value(name.as_str())
                .map(|(k, v)| (k.as_str(), v.as_str()))
        })
        .collect();
    if versions.is_empty() {
        // Keeps the checksum of stacks whose Secrets were never read unchanged.
        return sha256_json(&(env::config_data(stack, component), refs));
    }
    sha256_json(&(env::config_data(stack, component), refs, versions))
}

fn replicas(stack: &ShortenerStack, component: Component) -> Option<i32> {
    match component {
        Component::UrlApi => Some(stack.spec.url_api.replicas),
        Component::AnalyticsRpc => Some(stack.spec.analytics_rpc.replicas),
        Component::Consumer => scaling::desired_consumer_replicas(stack),
    }
}

fn ports(stack: &ShortenerStack, component: Component) -> Vec<ContainerPort> {
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    match component {
        Component::UrlApi => vec![
            port("http", URL_API_HTTP_PORT),
            port("admin", component.admin_port()),
        ],
        Component::AnalyticsRpc => vec![
            port("grpc", stack.spec.analytics_rpc.port),
            port("admin", component.admin_port()),
        ],
        Component::Consumer => vec![port("admin", component.admin_port())],
    }
}

fn subcommand(component: Component) -> Option<&'static str> {
    match component {
        Component::UrlApi => Some("serve"),
        Component::Consumer => Some("run"),
        Component::AnalyticsRpc => None,
    }
}

/// The spec's resources, or default requests so no pod runs BestEffort (the first to be
/// evicted under node pressure). No default limits: a CPU limit throttles latency-bound
/// url-api, and the right memory ceiling depends on the load.
fn resources(
    stack: &ShortenerStack,
    component: Component,
) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
    let given = match component {
        Component::UrlApi => stack.spec.url_api.resources.clone(),
        Component::AnalyticsRpc => stack.spec.analytics_rpc.resources.clone(),
        Component::Consumer => stack.spec.consumer.resources.clone(),
    };
    given.or_else(|| {
        let (cpu, memory) = match component {
            Component::UrlApi | Component::Consumer => ("100m", "128Mi"),
            Component::AnalyticsRpc => ("50m", "64Mi"),
        };
        Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ])),
            ..Default::default()
        })
    })
}

fn pod_settings(stack: &ShortenerStack, component: Component) -> &PodSettings {
    match component {
        Component::UrlApi => &stack.spec.url_api.pod,
        Component::AnalyticsRpc => &stack.spec.analytics_rpc.pod,
        Component::Consumer => &stack.spec.consumer.pod,
    }
}

/// Spread a component's pods over nodes and zones when the scheduler can (never blocks
/// scheduling on a small cluster).
fn topology_spread(stack: &ShortenerStack, component: Component) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(stack, component)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// The container of a component.
pub fn container_for(stack: &ShortenerStack, component: Component) -> Container {
    let (_, tmp_mount) = pod::tmp_volume();
    let mut mounts = vec![tmp_mount];
    mounts.extend(env::volume_mounts(stack, component));
    Container {
        name: component.name().into(),
        image: Some(component.image(stack)),
        image_pull_policy: component.pull_policy(stack).map(|p| p.as_str().to_string()),
        command: Some(vec![format!("/usr/local/bin/{}", component.name())]),
        args: subcommand(component).map(|s| vec![s.to_string()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: component.config_map_name(stack),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env::secret_env_vars(stack, component)).filter(|e| !e.is_empty()),
        ports: Some(ports(stack, component)),
        // Every component answers its probes on its admin port.
        liveness_probe: Some(pod::http_probe("/healthz", "admin", 10)),
        readiness_probe: Some(pod::http_probe("/readyz", "admin", 5)),
        // Up to a minute to start (migrations are a Job, so this is process start-up)
        // before the liveness probe may restart the container.
        startup_probe: Some(Probe {
            failure_threshold: Some(30),
            ..pod::http_probe("/healthz", "admin", 2)
        }),
        resources: resources(stack, component),
        security_context: Some(pod::container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The Deployment without Secret versions in its checksum (see `deployment_with_secrets`).
pub fn deployment_for(stack: &ShortenerStack, component: Component) -> Deployment {
    deployment_with_secrets(stack, component, &SecretVersions::new())
}

pub fn deployment_with_secrets(
    stack: &ShortenerStack,
    component: Component,
    secrets: &SecretVersions,
) -> Deployment {
    let labels = labels::labels(stack, component);
    let (tmp, _) = pod::tmp_volume();
    let mut volumes = vec![tmp];
    volumes.extend(env::volumes(stack, component));
    let settings = pod_settings(stack, component);
    let mut annotations = settings.annotations.clone();
    annotations.insert(
        CONFIG_CHECKSUM_ANNOTATION.to_string(),
        config_checksum(stack, component, secrets),
    );
    Deployment {
        metadata: labels::child_meta(stack, component.object_name(stack), labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: replicas(stack, component),
            selector: LabelSelector {
                match_labels: Some(labels::selector(stack, component)),
                ..LabelSelector::default()
            },
            revision_history_limit: Some(5),
            // A new pod is ready before an old one goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container_for(stack, component)],
                    security_context: Some(pod::pod_security_context()),
                    volumes: Some(volumes),
                    // The services never call the Kubernetes API.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    topology_spread_constraints: Some(topology_spread(stack, component)),
                    node_selector: Some(settings.node_selector.clone()).filter(|m| !m.is_empty()),
                    tolerations: Some(settings.tolerations.clone()).filter(|t| !t.is_empty()),
                    affinity: settings.affinity.clone(),
                    priority_class_name: settings.priority_class_name.clone(),
                    // The consumer finishes and commits its in-flight batch on SIGTERM.
                    termination_grace_period_seconds: Some(match component {
                        Component::Consumer => 60,
                        _ => 30,
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PullPolicy, SecretKeyRef};
    use crate::test_support::stack;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod_spec(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn checksum(d: &Deployment) -> String {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_CHECKSUM_ANNOTATION]
            .clone()
    }

    #[test]
    fn url_api_deployment_fields() {
        let mut s = stack();
        s.spec.url_api.replicas = 3;
        s.spec.url_api.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("100m".into()))])),
            ..ResourceRequirements::default()
        });
        s.spec.image.url_api.pull_policy = Some(PullPolicy::Always);
        let d = deployment_for(&s, Component::UrlApi);
        assert_eq!(d.metadata.name.as_deref(), Some("demo-url-api"));
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap(),
            &labels::selector(&s, Component::UrlApi)
        );
        let p = pod_spec(&d);
        assert_eq!(p.automount_service_account_token, Some(false));
        let c = &p.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/shortener-stack/url-api:0.1.0")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.command.as_ref().unwrap(), &["/usr/local/bin/url-api"]);
        assert_eq!(c.args.as_ref().unwrap(), &["serve"]);
        assert_eq!(
            c.env_from.as_ref().unwrap()[0]
                .config_map_ref
                .as_ref()
                .unwrap()
                .name,
            "demo-url-api-config"
        );
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(ports, [("http".into(), 8080), ("admin".into(), 9095)]);
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        // Readiness and metrics are not on the public port.
        for port in [&live.port, &ready.port] {
            assert_eq!(
                *port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into())
            );
        }
        assert_eq!(
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"],
            Quantity("100m".into())
        );
    }

    #[test]
    fn containers_are_locked_down() {
        let s = stack();
        for component in Component::ALL {
            let d = deployment_for(&s, component);
            let p = pod_spec(&d);
            let psc = p.security_context.as_ref().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true));
            assert_eq!(psc.run_as_user, Some(65532));
            let sc = p.containers[0].security_context.as_ref().unwrap();
            assert_eq!(sc.run_as_non_root, Some(true), "{component}");
            assert_eq!(sc.run_as_user, Some(65532));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
                &["ALL"]
            );
            assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        }
    }

    #[test]
    fn rpc_and_consumer_probe_their_admin_ports() {
        let s = stack();
        let rpc = deployment_for(&s, Component::AnalyticsRpc);
        let c = &pod_spec(&rpc).containers[0];
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(ports, [("grpc".into(), 50051), ("admin".into(), 9091)]);
        assert_eq!(c.args, None);
        let consumer = deployment_for(&s, Component::Consumer);
        let c = &pod_spec(&consumer).containers[0];
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9090);
        assert_eq!(c.args.as_ref().unwrap(), &["run"]);
        assert_eq!(consumer.spec.as_ref().unwrap().replicas, Some(1));
    }

    #[test]
    fn config_change_or_new_secret_ref_rolls_the_pods() {
        let mut s = stack();
        let before = checksum(&deployment_for(&s, Component::UrlApi));
        assert_eq!(before, checksum(&deployment_for(&s, Component::UrlApi)));
        s.spec.url_api.rate_limit.burst = 99;
        let after_config = checksum(&deployment_for(&s, Component::UrlApi));
        assert_ne!(before, after_config);
        s.spec.url_api.api_key_secret_ref = Some(SecretKeyRef {
            name: "keys-v2".into(),
            key: "keys".into(),
        });
        assert_ne!(
            after_config,
            checksum(&deployment_for(&s, Component::UrlApi))
        );
        // A url-api setting does not roll the consumer.
        let mut t = stack();
        let consumer_before = checksum(&deployment_for(&t, Component::Consumer));
        t.spec.url_api.rate_limit.burst = 99;
        assert_eq!(
            consumer_before,
            checksum(&deployment_for(&t, Component::Consumer))
        );
    }

    #[test]
    fn snapshot_of_every_deployment() {
        let s = stack();
        for component in Component::ALL {
            insta::assert_yaml_snapshot!(
                format!("deployment_{}", component.name().replace('-', "_")),
                deployment_for(&s, component)
            );
        }
    }

    /// analytics-rpc with TLS: the Secret's certificate and key mounted read-only where
    /// RPC_TLS_CERT/RPC_TLS_KEY point; a renewed Secret (new resourceVersion) rolls the pods
    /// of both ends.
    #[test]
    fn rpc_tls_mounts_and_rolls_on_renewal() {
        let mut s = stack();
        s.spec.analytics_rpc.tls = Some(crate::crd::RpcTlsSpec {
            secret_name: "rpc-tls".into(),
        });
        let rpc = deployment_for(&s, Component::AnalyticsRpc);
        insta::assert_yaml_snapshot!("deployment_analytics_rpc_tls", rpc);
        let mounts = pod_spec(&rpc).containers[0]
            .volume_mounts
            .clone()
            .unwrap_or_default();
        assert!(mounts.iter().any(|m| m.name == "analytics-rpc-tls"
            && m.mount_path == env::RPC_TLS_DIR
            && m.read_only == Some(true)));
        for component in [Component::AnalyticsRpc, Component::UrlApi] {
            let v1 = SecretVersions::from([("rpc-tls".to_string(), "100".to_string())]);
            let v2 = SecretVersions::from([("rpc-tls".to_string(), "101".to_string())]);
            assert_ne!(
                checksum(&deployment_with_secrets(&s, component, &v1)),
                checksum(&deployment_with_secrets(&s, component, &v2)),
                "{component:?}"
            );
        }
    }

    #[test]
    fn production_defaults_and_pass_through_scheduling() {
        use crate::crd::PodSettings;
        use k8s_openapi::api::core::v1::Toleration;
        let mut s = stack();
        s.spec.consumer.pod = PodSettings {
            node_selector: BTreeMap::from([("pool".into(), "workers".into())]),
            tolerations: vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Toleration::default()
            }],
            priority_class_name: Some("high".into()),
            annotations: BTreeMap::from([("mesh/inject".into(), "false".into())]),
            ..PodSettings::default()
        };
        for component in Component::ALL {
            let d = deployment_for(&s, component);
            let spec = d.spec.as_ref().unwrap();
            let strategy = spec.strategy.as_ref().unwrap();
            assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
            let rolling = strategy.rolling_update.as_ref().unwrap();
            assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
            let p = pod_spec(&d);
            let c = &p.containers[0];
            // Not BestEffort: requests for CPU and memory by default.
            let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
            assert!(
                requests.contains_key("cpu") && requests.contains_key("memory"),
                "{component}"
            );
            let startup = c.startup_probe.as_ref().unwrap();
            assert_eq!(
                startup.http_get.as_ref().unwrap().path.as_deref(),
                Some("/healthz")
            );
            assert_eq!(startup.failure_threshold, Some(30));
            let spread = p.topology_spread_constraints.as_ref().unwrap();
            let keys: Vec<&str> = spread.iter().map(|t| t.topology_key.as_str()).collect();
            assert_eq!(
                keys,
                ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
            );
            assert!(spread
                .iter()
                .all(|t| t.when_unsatisfiable == "ScheduleAnyway"));
        }
        let consumer = deployment_for(&s, Component::Consumer);
        let p = pod_spec(&consumer);
        assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "workers");
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(p.priority_class_name.as_deref(), Some("high"));
        let annotations = consumer
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(annotations["mesh/inject"], "false");
        assert!(annotations.contains_key(CONFIG_CHECKSUM_ANNOTATION));
        // Others keep theirs empty; given resources win over the defaults.
        assert!(pod_spec(&deployment_for(&s, Component::UrlApi))
            .node_selector
            .is_none());
    }
}
