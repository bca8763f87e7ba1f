//! The permissions the operator needs, as data: `operator rbac` prints them and the Helm
//! chart's ClusterRole and Role are tested against `required_cluster_rules()` and
//! `required_namespace_rules()`.
//!
//! Stacks live in any namespace, so what the reconciler touches is granted cluster-wide;
//! the leader-election Lease is one object in the operator's own namespace, so it is granted
//! there only (a Role bound in the release namespace).
//!
//! Children are written with server-side apply, which the API server authorizes as `patch`
//! and, when the object does not exist yet, also as `create`.

use k8s_openapi::api::rbac::v1::PolicyRule;

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// Rules for the ClusterRole, least privilege: only the verbs the controller issues.
pub fn required_cluster_rules() -> Vec<PolicyRule> {
    vec![
        // Watch stacks; add/remove the finalizer (JSON patch).
        rule(
            "shortener.example.io",
            &["shortenerstacks"],
            &["get", "list", "watch", "patch"],
        ),
        // Status is written with server-side apply.
        rule(
            "shortener.example.io",
            &["shortenerstacks/status"],
            &["get", "patch"],
        ),
        // Owned children: watched, read, applied. Never deleted by the operator (garbage
        // collection follows the owner references).
        rule(
            "apps",
            &["deployments"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // Builtin consumer autoscaling: read and set the consumer's replica count.
        rule("apps", &["deployments/scale"], &["get", "patch"]),
        // Keda mode: the ScaledObject and TriggerAuthentication, applied; the stack's own
        // are deleted when it leaves KEDA mode (or no longer needs the authentication).
        rule(
            "keda.sh",
            &["scaledobjects", "triggerauthentications"],
            &["get", "create", "patch", "delete"],
        ),
        // Optional NetworkPolicies, applied when the spec enables them, deleted when it turns them off.
        rule(
            "networking.k8s.io",
            &["networkpolicies"],
            &["get", "create", "patch", "delete"],
        ),
        // Optional PodMonitors (Prometheus Operator), applied when enabled, deleted when turned off.
        rule(
            "monitoring.coreos.com",
            &["podmonitors"],
            &["get", "create", "patch", "delete"],
        ),
        // A budget per component; deleted when the spec turns budgets off.
        rule(
            "policy",
            &["poddisruptionbudgets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "",
            &["configmaps", "services"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // Migration Jobs: one per attempt; the older attempts' Jobs are deleted once one
        // succeeds.
        rule(
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        // Kafka SASL credentials and TLS material the admin client needs (used only when
        // the Secret opts in, see `kafka_credentials`); the metadata of the Secrets the
        // workloads read, watched so a rotated Secret rolls their pods (the operator asks
        // for metadata only and never reads those values).
        rule("", &["secrets"], &["get", "list", "watch"]),
        // Kubernetes Events about stacks (a repeated event is patched into a series).
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

/// Rules for a Role in the operator's own namespace: only leader election, which reads and
/// writes one Lease there (`operator run`'s `POD_NAMESPACE`).
pub fn required_namespace_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )]
}

/// Both rule sets, as `operator rbac` prints them and the chart reads them
/// (`files/rbac-rules.yaml`).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredRules {
    /// For the ClusterRole.
    pub cluster_rules: Vec<PolicyRule>,
    /// For the Role in the operator's namespace.
    pub namespace_rules: Vec<PolicyRule>,
}

impl RequiredRules {
    pub fn get() -> Self {
        Self {
            cluster_rules: required_cluster_rules(),
            namespace_rules: required_namespace_rules(),
        }
    }
}

/// `RequiredRules` as YAML: `clusterRules:` (the ClusterRole's `rules:`) and
/// `namespaceRules:` (the Role's `rules:`), under a comment saying so.
pub fn rules_yaml() -> String {
    let body = serde_yaml::to_string(&RequiredRules::get()).expect("rules serialize");
    format!(
        "# Permissions of the shortener operator (`operator rbac`).\n\
         # clusterRules: a ClusterRole bound to its ServiceAccount.\n\
         # namespaceRules: a Role bound to it in the operator's own namespace (leader election).\n\
         {body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_rules() -> Vec<PolicyRule> {
        let mut rules = required_cluster_rules();
        rules.extend(required_namespace_rules());
        rules
    }

    fn grants_on<'a>(rules: &'a [PolicyRule], resource: &str) -> Vec<&'a PolicyRule> {
        rules
            .iter()
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .collect()
    }

    #[test]
    fn no_wildcards_and_delete_only_on_jobs_optional_children_and_keda_objects() {
        for r in all_rules() {
            let resources = r.resources.unwrap();
            assert!(!resources.iter().any(|x| x == "*"));
            assert!(!r.verbs.iter().any(|v| v == "*" || v == "deletecollection"));
            if r.verbs.iter().any(|v| v == "delete") {
                assert!(
                    resources == ["jobs"]
                        || resources == ["poddisruptionbudgets"]
                        || resources == ["networkpolicies"]
                        || resources == ["podmonitors"]
                        || resources == ["scaledobjects", "triggerauthentications"],
                    "delete only on migration Jobs, optional children and KEDA objects: {resources:?}"
                );
            }
            assert!(!r.api_groups.unwrap().iter().any(|g| g == "*"));
        }
    }

    #[test]
    fn secrets_are_read_only() {
        let rules = all_rules();
        let secrets = grants_on(&rules, "secrets");
        assert_eq!(secrets.len(), 1, "{secrets:?}");
        assert_eq!(secrets[0].verbs, ["get", "list", "watch"], "never written");
    }

    #[test]
    fn leases_only_in_the_operators_namespace() {
        assert!(grants_on(&required_cluster_rules(), "leases").is_empty());
        assert!(!required_cluster_rules()
            .iter()
            .flat_map(|r| r.api_groups.iter().flatten())
            .any(|g| g == "coordination.k8s.io"));
        let namespaced = required_namespace_rules();
        let leases = grants_on(&namespaced, "leases");
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].verbs, ["get", "create", "update"]);
        assert_eq!(namespaced.len(), 1, "only the Lease is namespaced");
    }

    #[test]
    fn yaml_round_trips_with_both_sets_labelled() {
        let yaml = rules_yaml();
        let back: RequiredRules = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, RequiredRules::get());
        let map: serde_yaml::Mapping = serde_yaml::from_str(&yaml).unwrap();
        let keys: Vec<&str> = map.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["clusterRules", "namespaceRules"]);
    }
}
