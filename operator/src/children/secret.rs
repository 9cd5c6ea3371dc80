//! The job's Secret: the token and TLS identity its coordinator, workers and the operator share.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use weir_auth::{AuthError, JobSecret};

use super::{Owner, secret_name};

impl Owner<'_> {
    /// `<job>-weir-secret`, holding `secret` ([`JobSecret::to_data`]). It is immutable: made once
    /// per job and never written again, since running pods hold what it held when they started
    /// (and the kubelet need not watch it).
    ///
    /// The returned object carries the key material: never log or `Debug`-print it.
    pub fn job_secret(&self, secret: &JobSecret) -> Secret {
        let data = secret.to_data().into_iter().map(|(key, value)| (key, ByteString(value))).collect();
        Secret {
            metadata: self.meta(secret_name(&self.name), "job", None),
            type_: Some("Opaque".to_string()),
            immutable: Some(true),
            data: Some(data),
            ..Secret::default()
        }
    }
}

/// The job's secret as a stored Secret holds it.
///
/// # Errors
/// [`AuthError::Invalid`] naming the part that is missing or malformed (never its content).
pub fn read_job_secret(secret: &Secret) -> Result<JobSecret, AuthError> {
    let data = secret.data.iter().flatten().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    JobSecret::from_data(&data)
}
