//! GitHub workflows (actionlint, with shellcheck on their `run:` steps) and the shell scripts
//! of the packaging (shellcheck).

use std::process::Command;

use serde_json::Value;
use shortener_deploy_checks::{repo, tools, yaml};

fn workflow(name: &str) -> Value {
    let rel = format!(".github/workflows/{name}");
    yaml::single(&repo::read(&rel).unwrap(), &rel).unwrap()
}

fn steps(wf: &Value, job: &str) -> Vec<Value> {
    wf["jobs"][job]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("job {job} has steps"))
}

fn uses<'a>(steps: &'a [Value], action: &str) -> Option<&'a Value> {
    steps.iter().find(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.split('@').next() == Some(action))
    })
}

#[test]
fn actionlint_passes_on_every_workflow() {
    let actionlint = tools::from_env("ACTIONLINT_BIN").unwrap_or_else(|e| panic!("{e}"));
    let shellcheck = tools::from_env("SHELLCHECK_BIN").unwrap_or_else(|e| panic!("{e}"));
    let out = tools::run(
        Command::new(actionlint)
            .arg("-no-color")
            .arg("-shellcheck")
            .arg(shellcheck)
            .current_dir(repo::root()),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shellcheck_passes_on_the_packaging_scripts() {
    let shellcheck = tools::from_env("SHELLCHECK_BIN").unwrap_or_else(|e| panic!("{e}"));
    let scripts = [
        "scripts/e2e-kind",
        "scripts/sync-crd",
        "scripts/lib/helm.sh",
    ];
    let out = tools::run(
        Command::new(shellcheck)
            .args([
                "--external-sources",
                "--source-path=SCRIPTDIR",
                "--shell=bash",
            ])
            .args(scripts)
            .current_dir(repo::root()),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn ci_runs_the_test_script() {
    let wf = workflow("ci.yaml");
    let steps = steps(&wf, "test");
    assert!(uses(&steps, "actions/checkout").is_some());
    assert!(
        uses(&steps, "Swatinem/rust-cache").is_some(),
        "cargo is cached"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["run"].as_str().map(str::trim) == Some("./scripts/test")),
        "ci runs ./scripts/test"
    );
    assert!(wf["jobs"]["test"]["timeout-minutes"].as_u64().is_some());
}

#[test]
fn e2e_creates_the_kind_cluster_from_the_repo_config_and_runs_the_script() {
    let wf = workflow("e2e.yaml");
    let steps = steps(&wf, "kind");
    let kind = uses(&steps, "helm/kind-action").expect("helm/kind-action");
    assert_eq!(kind["with"]["config"], "kind-config.yaml");
    let config =
        yaml::single(&repo::read("kind-config.yaml").unwrap(), "kind-config.yaml").unwrap();
    assert_eq!(kind["with"]["cluster_name"], config["name"]);
    assert!(uses(&steps, "azure/setup-helm").is_some());
    let run = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("./scripts/e2e-kind"))
        })
        .expect("a step runs ./scripts/e2e-kind");
    assert_eq!(run["env"]["KIND_CLUSTER_NAME"], config["name"]);

    // The script drives exactly the files the tests check.
    let script = repo::read("scripts/e2e-kind").unwrap();
    for needed in [
        "deploy/e2e/namespace.yaml",
        "deploy/e2e/postgres.yaml",
        "deploy/e2e/kafka.yaml",
        "deploy/e2e/secrets.yaml",
        "deploy/kind/url-api-nodeport.yaml",
        "examples/shortener.yaml",
        "charts/shortener-operator",
        "kubectl -n \"$ns\" wait --for=condition=Ready \"shortenerstack/$stack\"",
        "kind load docker-image",
        "diagnostics",
    ] {
        assert!(
            script.contains(needed),
            "scripts/e2e-kind does not use {needed}"
        );
        if let Some(path) = needed.strip_suffix(".yaml").map(|_| needed) {
            if !path.starts_with("examples/") {
                assert!(repo::path(path).is_file(), "{path} exists");
            }
        }
    }
}
