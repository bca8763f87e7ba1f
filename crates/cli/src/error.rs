//! What can go wrong, and the exit code each failure gives.

use std::path::PathBuf;

/// Exit codes: 0 success, 1 the API refused or failed the request, 2 bad usage or
/// configuration (also clap's code for bad arguments), 3 the API could not be reached.
pub const EXIT_API: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments the CLI can tell are wrong before asking the API.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The API answered with an error.
    #[error("{}", api_message(.status, .code, .message, .retry_after))]
    Api {
        status: u16,
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// Some items of a multi-item command failed (each reported as it happened).
    #[error("{0}")]
    Partial(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(_) => EXIT_USAGE,
            Self::Api { .. } | Self::Partial(_) | Self::Io { .. } => EXIT_API,
            Self::Unreachable { .. } => EXIT_UNREACHABLE,
        }
    }

    /// stdout closed by its reader (`shortener links list | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

fn api_message(status: &u16, code: &str, message: &str, retry_after: &Option<u64>) -> String {
    let mut text = format!("{message} ({code}, HTTP {status})");
    // Unless the API's message already says when.
    if let Some(secs) = retry_after.filter(|_| !message.to_lowercase().contains("retry")) {
        text.push_str(&format!("; retry in {secs} s"));
    }
    if *status == 401 {
        text.push_str("; check SHORTENER_API_KEY or run `shortener login`");
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no API URL: set SHORTENER_URL, pass --server, or run `shortener login URL`")]
    MissingUrl,
    #[error("no API key: set SHORTENER_API_KEY or run `shortener login`")]
    MissingKey,
    #[error("invalid API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("no config directory: set XDG_CONFIG_HOME or HOME, or pass --config")]
    NoConfigDir,
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown config key {0:?} (known: url, api_key)")]
    UnknownKey(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_message_code_and_status_with_hints() {
        let e = CliError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no such link".into(),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "no such link (not_found, HTTP 404)");
        assert_eq!(e.exit_code(), EXIT_API);
        let e = CliError::Api {
            status: 429,
            code: "rate_limited".into(),
            message: "too many requests".into(),
            retry_after: Some(3),
        };
        assert_eq!(
            e.to_string(),
            "too many requests (rate_limited, HTTP 429); retry in 3 s"
        );
        let e = CliError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "missing or invalid API key".into(),
            retry_after: None,
        };
        assert!(e.to_string().ends_with("run `shortener login`"), "{e}");
        let e = CliError::Api {
            status: 429,
            code: "rate_limited".into(),
            message: "too many requests, retry in 1s".into(),
            retry_after: Some(1),
        };
        assert_eq!(
            e.to_string(),
            "too many requests, retry in 1s (rate_limited, HTTP 429)",
            "said once"
        );
    }

    #[test]
    fn exit_codes_tell_usage_from_refusal_from_outage() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(
            CliError::from(ConfigError::MissingKey).exit_code(),
            EXIT_USAGE
        );
        let down = CliError::Unreachable {
            url: "http://127.0.0.1:1/".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(down.exit_code(), EXIT_UNREACHABLE);
    }
}
