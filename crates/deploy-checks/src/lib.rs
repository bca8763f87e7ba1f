//! Helpers for the deployment checks in `tests/`: locating the repository and the lint tools,
//! rendering the Helm chart through Helm itself, parsing YAML and Dockerfiles, and validating
//! custom resources against a CRD's OpenAPI schema.
//!
//! The tools (Helm via the helm-python-sdk venv, hadolint, actionlint, shellcheck) are installed
//! by `scripts/lib/helm.sh`, which `./scripts/test` sources; their paths arrive in env vars.

pub mod crd_schema;
pub mod dockerfile;
pub mod helm;
pub mod repo;
pub mod tools;
pub mod workspace;
pub mod yaml;

/// Errors of these helpers; test code unwraps them with context in the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    MissingTool(String),
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}):\n{stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {what}: {message}")]
    Parse { what: String, message: String },
    #[error("invalid schema: {0}")]
    Schema(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
