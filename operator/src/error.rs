//! Reconcile errors. Each one makes the controller retry the stack with backoff.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("ShortenerStack has no namespace")]
    MissingNamespace,
    #[error("Secret {secret} has no key {key}")]
    MissingSecretKey { secret: String, key: String },
    #[error("deleting Kafka topic: {0}")]
    TopicCleanup(#[from] crate::topic::TopicError),
}

impl Error {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::MissingNamespace => "missing_namespace",
            Error::MissingSecretKey { .. } => "missing_secret_key",
            Error::TopicCleanup(_) => "topic_cleanup",
        }
    }
}
