//! The chart, linted and rendered by Helm (v4, embedded in the helm-python-sdk wheel) through
//! `scripts/helm-render.py`.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::{repo, tools, yaml, Error, Result};

/// Chart directory relative to the repository root.
pub const CHART_DIR: &str = "charts/shortener-operator";
/// Release name and namespace used for rendering.
pub const RELEASE: &str = "shortener-operator";
pub const NAMESPACE: &str = "shortener-system";

/// `helm lint --strict` result.
#[derive(Debug, Deserialize)]
pub struct Lint {
    pub messages: Vec<LintMessage>,
    pub errors: Vec<String>,
}

/// One lint finding; severity 1 = INFO, 2 = WARNING, 3 = ERROR (Helm's support.Severity).
#[derive(Debug, Deserialize)]
pub struct LintMessage {
    pub severity: u8,
    pub path: String,
    pub error: String,
}

/// What Helm produced for one set of values.
#[derive(Debug, Deserialize)]
pub struct Rendered {
    pub lint: Lint,
    /// Template path (`shortener-operator/templates/x.yaml`) -> rendered text.
    pub manifests: BTreeMap<String, String>,
    /// `crds/<file>` -> file content (Helm installs these verbatim before the templates).
    pub crds: BTreeMap<String, String>,
    /// Why rendering failed (schema violation, `fail` in a template), if it did.
    pub render_error: Option<String>,
}

impl Lint {
    /// Findings at WARNING or above (strict lint fails on them).
    pub fn problems(&self) -> Vec<&LintMessage> {
        self.messages.iter().filter(|m| m.severity >= 2).collect()
    }
}

impl Rendered {
    /// Every Kubernetes object of the rendered templates (NOTES.txt excluded).
    pub fn objects(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for (path, text) in &self.manifests {
            if path.ends_with("NOTES.txt") {
                continue;
            }
            out.extend(yaml::documents(text, path)?);
        }
        Ok(out)
    }

    /// The single rendered object of `kind` (panics with the list of kinds otherwise).
    pub fn one(&self, kind: &str) -> Value {
        let objects = self.objects().expect("rendered manifests are YAML");
        let mut found: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {kind}, rendered: {:?}",
            objects.iter().map(yaml::object_id).collect::<Vec<_>>()
        );
        found.remove(0)
    }

    /// Rendered objects of `kind`.
    pub fn all(&self, kind: &str) -> Vec<Value> {
        self.objects()
            .expect("rendered manifests are YAML")
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    /// The NOTES.txt text.
    pub fn notes(&self) -> &str {
        self.manifests
            .iter()
            .find(|(p, _)| p.ends_with("NOTES.txt"))
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    }
}

/// Lints and renders the chart with `values` (a JSON object merged over values.yaml).
pub fn render(values: &Value) -> Result<Rendered> {
    let python = tools::from_env("HELM_PYTHON")?;
    let mut values = values.clone();
    let obj = values.as_object_mut().ok_or_else(|| Error::Parse {
        what: "chart values".into(),
        message: "must be a JSON object".into(),
    })?;
    obj.entry("__release").or_insert(RELEASE.into());
    obj.entry("__namespace").or_insert(NAMESPACE.into());
    let stdout = tools::run_ok(
        Command::new(python)
            .arg(repo::path("scripts/helm-render.py"))
            .arg(repo::path(CHART_DIR))
            .arg(values.to_string()),
    )?;
    serde_json::from_str(&stdout).map_err(|e| Error::Parse {
        what: "helm-render.py output".into(),
        message: e.to_string(),
    })
}
