//! The Cargo workspace as `cargo metadata` describes it.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::{repo, tools, Error, Result};

/// Binary target name -> package name, over the workspace members.
pub fn binaries() -> Result<BTreeMap<String, String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let stdout = tools::run_ok(
        Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(repo::root()),
    )?;
    let meta: Value = serde_json::from_str(&stdout).map_err(|e| Error::Parse {
        what: "cargo metadata".into(),
        message: e.to_string(),
    })?;
    let mut bins = BTreeMap::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        for target in pkg["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin {
                bins.insert(
                    target["name"].as_str().unwrap_or_default().to_string(),
                    pkg["name"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(bins)
}

/// The workspace version (`[workspace.package] version`), which every crate inherits.
pub fn version() -> Result<String> {
    let manifest = repo::read("Cargo.toml")?;
    let mut in_section = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section {
            if let Some(v) = line.strip_prefix("version") {
                let v = v
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                return Ok(v.to_string());
            }
        }
    }
    Err(Error::Parse {
        what: "Cargo.toml".into(),
        message: "no [workspace.package] version".into(),
    })
}

/// The toolchain channel pinned in rust-toolchain.toml.
pub fn toolchain_channel() -> Result<String> {
    let text = repo::read("rust-toolchain.toml")?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .map(|v| {
            v.trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .next()
        .ok_or_else(|| Error::Parse {
            what: "rust-toolchain.toml".into(),
            message: "no channel".into(),
        })
}
