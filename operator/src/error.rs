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

impl Error {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingNamespace => "missing_namespace",
            Error::MissingSecretKey { .. } => "missing_secret_key",
            Error::SecretNotOptedIn { .. } => "secret_not_opted_in",
            Error::TopicCleanup(_) => "topic_cleanup",
        }
    }
}
