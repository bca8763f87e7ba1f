//! The cluster permissions the operator needs, as data: `operator rbac` prints them and the
//! Helm chart's ClusterRole is tested against `required_rules()`.
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

/// Every rule, least privilege: only the verbs the controller issues.
pub fn required_rules() -> Vec<PolicyRule> {
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
        // Keda mode: the ScaledObject and TriggerAuthentication (applied, never deleted;
        // in builtin mode only read, to notice a leftover ScaledObject).
        rule(
            "keda.sh",
            &["scaledobjects", "triggerauthentications"],
            &["get", "create", "patch"],
        ),
        rule(
            "",
            &["configmaps", "services"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // Kafka SASL credentials and TLS material the admin client needs.
        rule("", &["secrets"], &["get"]),
        // Kubernetes Events about stacks (a repeated event is patched into a series).
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        // Leader election.
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ),
    ]
}

/// `required_rules()` as the YAML list that goes under a ClusterRole's `rules:`.
pub fn rules_yaml() -> String {
    serde_yaml::to_string(&required_rules()).expect("rules serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wildcards_and_no_delete() {
        for r in required_rules() {
            let resources = r.resources.unwrap();
            assert!(!resources.iter().any(|x| x == "*"));
            assert!(!r
                .verbs
                .iter()
                .any(|v| v == "*" || v == "delete" || v == "deletecollection"));
            assert!(!r.api_groups.unwrap().iter().any(|g| g == "*"));
        }
    }

    #[test]
    fn secrets_are_read_only_by_name() {
        let rules = required_rules();
        let secrets = rules
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .unwrap()
                    .contains(&"secrets".to_string())
            })
            .unwrap();
        assert_eq!(secrets.verbs, ["get"]);
    }

    #[test]
    fn yaml_round_trips() {
        let back: Vec<PolicyRule> = serde_yaml::from_str(&rules_yaml()).unwrap();
        assert_eq!(back, required_rules());
    }
}
