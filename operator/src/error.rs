//! The operator's errors; each has a short kind used as a metric label.

/// Why a reconcile failed. Every variant is retried with back-off by the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the MultimodalJob has no {0}")]
    MissingObjectKey(&'static str),
    #[error("cannot encode an object: {0}")]
    Json(#[from] serde_json::Error),
    /// The job's secret could not be made. The message names the failing step, never the secret.
    #[error("cannot make the job's secret: {0}")]
    Secret(#[from] weir_auth::AuthError),
}

impl Error {
    /// A bounded label for `weir_operator_reconcile_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::MissingObjectKey(_) => "missing_key",
            Error::Json(_) => "serialize",
            Error::Secret(_) => "secret",
        }
    }
}
