//! Paths inside the repository.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The repository root (two levels above this crate's manifest).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// A path relative to the repository root.
pub fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

/// Reads a file relative to the repository root.
pub fn read(rel: &str) -> Result<String> {
    let p = path(rel);
    std::fs::read_to_string(&p).map_err(|source| Error::Read {
        path: p.display().to_string(),
        source,
    })
}

/// Directories that hold build output, caches or vendored trees, never project YAML.
const SKIPPED_DIRS: &[&str] = &["target", ".cache", ".dev", ".git", "node_modules"];

/// Every `*.yaml`/`*.yml` file of the project, relative to the root, sorted; Helm templates
/// are excluded because they are Go templates, not YAML, until rendered.
pub fn yaml_files() -> Vec<String> {
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if SKIPPED_DIRS.contains(&name.as_str()) || (name == "templates" && is_chart_dir(dir)) {
                continue;
            }
            walk(root, &p, out);
        } else if kind.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            let rel = p.strip_prefix(root).expect("walked under root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

fn is_chart_dir(dir: &Path) -> bool {
    dir.join("Chart.yaml").is_file()
}
