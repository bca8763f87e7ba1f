//! Reconcile errors. Each one makes the controller retry the stack with backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("ShortenerStack has no namespace")]
    MissingNamespace,
    #[error("Secret {secret} has no key {key}")]
    MissingSecretKey { secret: String, key: String },
    #[error(
        "Secret {namespace}/{secret} is not opted in to Kafka credential use by the operator; \
         label it: kubectl -n {namespace} label secret {secret} {label}=true",
        label = crate::kafka_credentials::KAFKA_CREDENTIALS_LABEL
    )]
    SecretNotOptedIn { namespace: String, secret: String },
    #[error("deleting Kafka topic: {0}")]
    TopicCleanup(#[from] crate::topic::TopicError),
}

/// What kind of error failed a reconcile: the `kind` label of
/// `shortener_operator_reconcile_errors`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    Kube,
    MissingNamespace,
    MissingSecretKey,
    SecretNotOptedIn,
    TopicCleanup,
}

impl ErrorKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Kube => "kube",
            ErrorKind::MissingNamespace => "missing_namespace",
            ErrorKind::MissingSecretKey => "missing_secret_key",
            ErrorKind::SecretNotOptedIn => "secret_not_opted_in",
            ErrorKind::TopicCleanup => "topic_cleanup",
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for ErrorKind {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

impl Error {
    /// Its label for metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube(_) => ErrorKind::Kube,
            Error::MissingNamespace => ErrorKind::MissingNamespace,
            Error::MissingSecretKey { .. } => ErrorKind::MissingSecretKey,
            Error::SecretNotOptedIn { .. } => ErrorKind::SecretNotOptedIn,
            Error::TopicCleanup(_) => ErrorKind::TopicCleanup,
        }
    }
}
