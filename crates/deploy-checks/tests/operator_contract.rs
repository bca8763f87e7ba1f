//! The chart against the operator's code: ClusterRole and Role rules, the CRD, and custom resources
//! (the chart's optional stack, the kind dev values) against the CRD's schema.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{json, Value};
use shortener_deploy_checks::crd_schema::CrdValidator;
use shortener_deploy_checks::helm::NAMESPACE;
use shortener_deploy_checks::{helm, repo, yaml};

const CRD_FILE: &str = "crds/shortenerstack.yaml";
const RBAC_RULES_FILE: &str = "charts/shortener-operator/files/rbac-rules.yaml";
const CHART_CRD_FILE: &str = "charts/shortener-operator/crds/shortenerstack.yaml";

/// A rule set as individual grants (group, resource, verb, resource name), so two rule lists
/// compare equal exactly when they allow the same requests, however they are grouped.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        assert!(r.non_resource_urls.is_none(), "non-resource rule {r:?}");
        let names = r
            .resource_names
            .clone()
            .unwrap_or_else(|| vec![String::new()]);
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    for n in &names {
                        out.insert((g.clone(), res.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

fn crd() -> Value {
    yaml::single(&repo::read(CRD_FILE).unwrap(), CRD_FILE).unwrap()
}

fn validator() -> CrdValidator {
    CrdValidator::new(&crd(), "v1alpha1").unwrap()
}

fn rendered_stack(values: Value) -> Value {
    let r = helm::render(&values).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.render_error.is_none(), "{:?}", r.render_error);
    r.one("ShortenerStack")
}

type Grant = (String, String, String, String);

/// The rendered object's `rules` grant exactly `required`, and nothing through a wildcard.
fn assert_grants_exactly(object: &Value, required: &[PolicyRule]) -> BTreeSet<Grant> {
    let rendered: Vec<PolicyRule> = serde_json::from_value(object["rules"].clone()).unwrap();
    let what = yaml::object_id(object);
    let (have, want) = (grants(&rendered), grants(required));
    assert_eq!(
        have.difference(&want).collect::<Vec<_>>(),
        Vec::<&Grant>::new(),
        "{what} grants more than the operator needs; run ./scripts/sync-crd"
    );
    assert_eq!(
        want.difference(&have).collect::<Vec<_>>(),
        Vec::<&Grant>::new(),
        "{what} lacks rules the operator needs; run ./scripts/sync-crd"
    );
    for (g, res, v, _) in &have {
        assert!(
            g != "*" && res != "*" && v != "*",
            "wildcard in {what}: {g}/{res}/{v}"
        );
    }
    have
}

#[test]
fn cluster_role_and_role_grant_exactly_the_operators_required_rules() {
    let r = helm::render(&json!({})).unwrap_or_else(|e| panic!("{e}"));
    let cluster = assert_grants_exactly(
        &r.one("ClusterRole"),
        &shortener_operator::rbac::required_cluster_rules(),
    );
    let role = r.one("Role");
    let namespaced =
        assert_grants_exactly(&role, &shortener_operator::rbac::required_namespace_rules());
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);

    // The Lease is reachable only in the release namespace.
    let lease_grants = |set: &BTreeSet<Grant>| {
        set.iter()
            .filter(|(g, res, _, _)| g == "coordination.k8s.io" && res == "leases")
            .map(|(_, _, v, _)| v.clone())
            .collect::<BTreeSet<_>>()
    };
    assert!(
        lease_grants(&cluster).is_empty(),
        "Lease access cluster-wide"
    );
    assert_eq!(
        lease_grants(&namespaced),
        BTreeSet::from(["create".into(), "get".into(), "update".into()])
    );
    // Secrets: read (metadata watched for rotations), never written.
    let secrets: BTreeSet<&str> = cluster
        .iter()
        .chain(&namespaced)
        .filter(|(g, res, _, _)| g.is_empty() && res == "secrets")
        .map(|(_, _, v, _)| v.as_str())
        .collect();
    assert_eq!(secrets, BTreeSet::from(["get", "list", "watch"]));
}

#[test]
fn without_leader_election_there_is_no_role_and_no_lease_access() {
    let r = helm::render(&json!({"leaderElection": {"enabled": false}}))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.render_error.is_none(), "{:?}", r.render_error);
    assert!(r.all("Role").is_empty());
    assert!(r.all("RoleBinding").is_empty());
    assert_grants_exactly(
        &r.one("ClusterRole"),
        &shortener_operator::rbac::required_cluster_rules(),
    );
}

#[test]
fn chart_rbac_rules_file_is_what_operator_rbac_prints() {
    assert_eq!(
        repo::read(RBAC_RULES_FILE).unwrap(),
        shortener_operator::rbac::rules_yaml(),
        "{RBAC_RULES_FILE} differs from `operator rbac`; run ./scripts/sync-crd"
    );
}

#[test]
fn chart_crd_is_the_committed_crd_which_is_the_operators() {
    let committed = repo::read(CRD_FILE).unwrap();
    assert_eq!(
        repo::read(CHART_CRD_FILE).unwrap(),
        committed,
        "{CHART_CRD_FILE} differs from {CRD_FILE}; run ./scripts/sync-crd"
    );
    assert_eq!(
        shortener_operator::crd::crd_yaml(),
        committed,
        "{CRD_FILE} differs from `operator crd`; run ./scripts/sync-crd"
    );
    // Helm sees it too: the chart's crds/ holds exactly this CRD.
    let r = helm::render(&json!({})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.crds.len(), 1, "{:?}", r.crds.keys());
    assert_eq!(r.crds.values().next().unwrap(), &committed);
}

#[test]
fn crd_names_follow_the_contract() {
    let crd = crd();
    assert_eq!(
        crd["metadata"]["name"],
        "shortenerstacks.shortener.example.io"
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "shortener.example.io");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "ShortenerStack");
    assert_eq!(spec["names"]["plural"], "shortenerstacks");
    assert_eq!(spec["names"]["shortNames"], json!(["sst"]));
    let versions = spec["versions"].as_array().unwrap();
    let v1alpha1 = versions
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("v1alpha1");
    assert_eq!(v1alpha1["served"], true);
    assert_eq!(v1alpha1["storage"], true);
    assert!(
        v1alpha1["subresources"]["status"].is_object(),
        "status subresource"
    );
}

#[test]
fn chart_stack_and_kind_dev_stack_match_the_crd_schema() {
    let v = validator();
    let stack = rendered_stack(json!({"stack": {"create": true, "name": "demo", "spec": {
        "kafka": {"bootstrapServers": "kafka:9092"},
        "database": {"urlSecretRef": {"name": "db", "key": "url"}}
    }}}));
    assert_eq!(v.errors(&stack), Vec::<String>::new());

    // deploy/kind/stack-values.yaml plus what skaffold sets (image repositories and tags).
    let mut values = yaml::single(
        &repo::read("deploy/kind/stack-values.yaml").unwrap(),
        "stack-values",
    )
    .unwrap();
    for component in ["urlApi", "analyticsRpc", "consumer"] {
        values["stack"]["spec"]["image"][component] =
            json!({"repository": "ghcr.io/shortener-stack/x", "tag": "abc123"});
    }
    let stack = rendered_stack(values);
    assert_eq!(v.errors(&stack), Vec::<String>::new());
}

/// The schema check is not vacuous: typos, wrong types and missing required fields fail.
#[test]
fn crd_schema_rejects_what_the_api_server_would() {
    let v = validator();
    let good = json!({
        "apiVersion": "shortener.example.io/v1alpha1",
        "kind": "ShortenerStack",
        "metadata": {"name": "demo"},
        "spec": {
            "kafka": {"bootstrapServers": "kafka:9092"},
            "database": {"urlSecretRef": {"name": "db", "key": "url"}}
        }
    });
    assert_eq!(v.errors(&good), Vec::<String>::new());

    let bad = |patch: &dyn Fn(&mut Value), path: &str| {
        let mut obj = good.clone();
        patch(&mut obj);
        let errors = v.errors(&obj);
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "expected an error at {path} for {obj}, got {errors:?}"
        );
    };
    bad(
        &|o| o["spec"]["kafka"]["bootstrapServer"] = json!("typo"),
        "/spec/kafka",
    );
    bad(
        &|o| o["spec"]["kafka"]["partitions"] = json!("four"),
        "/spec/kafka/partitions",
    );
    bad(
        &|o| o["spec"]["kafka"]["partitions"] = json!(0),
        "/spec/kafka/partitions",
    );
    bad(
        &|o| o["spec"]["urlApi"] = json!({"service": {"type": "Ingress"}}),
        "/spec/urlApi/service/type",
    );
    bad(
        &|o| {
            o["spec"]
                .as_object_mut()
                .unwrap()
                .remove("kafka")
                .map(drop)
                .unwrap_or(())
        },
        "/spec",
    );
}

#[test]
fn single_namespace_mode_grants_a_role_in_that_namespace_only() {
    let r = helm::render(&json!({"watchNamespace": "shop"})).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.render_error.is_none(), "{:?}", r.render_error);
    assert!(r.all("ClusterRole").is_empty(), "no cluster-wide rules");
    assert!(r.all("ClusterRoleBinding").is_empty());
    let roles = r.all("Role");
    let stacks_role = roles
        .iter()
        .find(|o| o["metadata"]["namespace"] == "shop")
        .expect("a Role in the watched namespace");
    // The reconciler's rules, Secrets included, in that namespace and nowhere else.
    assert_grants_exactly(
        stacks_role,
        &shortener_operator::rbac::required_cluster_rules(),
    );
    let binding = r
        .all("RoleBinding")
        .into_iter()
        .find(|o| o["metadata"]["namespace"] == "shop")
        .expect("its RoleBinding");
    assert_eq!(binding["roleRef"]["name"], stacks_role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    let env = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "WATCH_NAMESPACE" && e["value"] == "shop"));
}
