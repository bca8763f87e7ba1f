//! The three workloads of a stack and the names of their child objects.

use crate::crd::{ComponentImage, PullPolicy, ShortenerStack, DEFAULT_REGISTRY, OPERATOR_VERSION};
use kube::ResourceExt;

/// One of the stack's Deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    UrlApi,
    AnalyticsRpc,
    Consumer,
}

/// url-api's public HTTP port (API, redirects, dashboard), behind the stack's Service.
pub const URL_API_HTTP_PORT: i32 = 8080;

impl Component {
    pub const ALL: [Component; 3] = [
        Component::UrlApi,
        Component::AnalyticsRpc,
        Component::Consumer,
    ];

    /// Binary, image and `app.kubernetes.io/name` of the component.
    pub fn name(self) -> &'static str {
        match self {
            Component::UrlApi => "url-api",
            Component::AnalyticsRpc => "analytics-rpc",
            Component::Consumer => "consumer",
        }
    }

    /// `app.kubernetes.io/component`: the role the workload plays.
    pub fn role(self) -> &'static str {
        match self {
            Component::UrlApi => "api",
            Component::AnalyticsRpc => "rpc",
            Component::Consumer => "worker",
        }
    }

    /// Port of `/healthz`, `/readyz` and `/metrics`, never exposed by a Service.
    pub fn admin_port(self) -> i32 {
        match self {
            Component::UrlApi => 9095,
            Component::AnalyticsRpc => 9091,
            Component::Consumer => 9090,
        }
    }

    /// Whether the component has a Service (the consumer only pulls from Kafka).
    pub fn has_service(self) -> bool {
        !matches!(self, Component::Consumer)
    }

    fn image_override(self, stack: &ShortenerStack) -> &ComponentImage {
        let images = &stack.spec.image;
        match self {
            Component::UrlApi => &images.url_api,
            Component::AnalyticsRpc => &images.analytics_rpc,
            Component::Consumer => &images.consumer,
        }
    }

    /// Image tag: per-component override, then `image.tag`, then the operator's version.
    pub fn image_tag(self, stack: &ShortenerStack) -> String {
        self.image_override(stack)
            .tag
            .clone()
            .or_else(|| stack.spec.image.tag.clone())
            .unwrap_or_else(|| OPERATOR_VERSION.to_string())
    }

    /// Full image reference, `repository:tag`.
    pub fn image(self, stack: &ShortenerStack) -> String {
        let repository = self
            .image_override(stack)
            .repository
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_REGISTRY}/{}", self.name()));
        format!("{repository}:{}", self.image_tag(stack))
    }

    pub fn pull_policy(self, stack: &ShortenerStack) -> Option<PullPolicy> {
        self.image_override(stack).pull_policy
    }

    /// `<stack>-<component>`: the Deployment, Service and ServiceAccount-free pod prefix.
    pub fn object_name(self, stack: &ShortenerStack) -> String {
        format!("{}-{}", stack.name_any(), self.name())
    }

    /// `<stack>-<component>-config`: the ConfigMap read through `envFrom`.
    pub fn config_map_name(self, stack: &ShortenerStack) -> String {
        format!("{}-{}-config", stack.name_any(), self.name())
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
