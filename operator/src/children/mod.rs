//! The objects a `MultimodalJob` owns, built by pure functions from the job and the operator's settings.
//!
//! Names are deterministic (`<job>-coordinator`, `<job>-<pool>-<index>`, `<job>-workers`,
//! `<job>-plan`, `<job>-weir-secret`, `<job>-weir-ingress`), so an operator that restarts finds and
//! adopts what it made before instead of creating duplicates.

mod config;
mod network;
mod pods;
mod secret;
mod services;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use weir_crds::{MultimodalJob, PoolName};

use crate::error::Error;

pub use network::{DEFAULT_METRICS_NAMESPACE, OperatorPods, Peers};
pub use secret::read_job_secret;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "weir-operator";
/// Label naming the job a child belongs to.
pub const JOB_LABEL: &str = "weir.dev/job";
/// Label naming a worker's pool.
pub const POOL_LABEL: &str = "weir.dev/pool";
/// `coordinator` or `worker`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Where pods find the job's manifest (the plan ConfigMap's `job.yaml`).
pub const MANIFEST_PATH: &str = "/etc/weir/job.yaml";
/// The coordinator's gRPC port.
pub const COORDINATOR_PORT: i32 = 7070;
/// A worker's Arrow Flight port.
pub const EXCHANGE_PORT: i32 = 7071;
/// Every pod's Prometheus `/metrics` port.
pub const METRICS_PORT: i32 = 9090;
/// Where pods find the job's secret (the job's Secret, mounted read-only); they are told so by
/// [`weir_auth::SECRET_DIR_ENV`].
pub const SECRET_MOUNT_PATH: &str = "/var/run/weir/secret";

/// What the operator was told about images and defaults at start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The image of the coordinator and of workers whose pool names none.
    pub image: String,
    /// The image of gpu workers whose pool names none (the CUDA build); default [`Self::image`].
    pub gpu_image: Option<String>,
    pub image_pull_policy: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/weir-dev/weir:{}", env!("CARGO_PKG_VERSION")),
            gpu_image: None,
            image_pull_policy: None,
        }
    }
}

/// A job whose children can be built: it has a name, a namespace and a uid to own them by.
pub struct Owner<'a> {
    pub job: &'a MultimodalJob,
    pub name: String,
    pub namespace: String,
    owner_ref: OwnerReference,
    settings: &'a Settings,
}

impl<'a> Owner<'a> {
    /// # Errors
    /// [`Error::MissingObjectKey`] when the job has no namespace or uid (it was never stored).
    pub fn new(job: &'a MultimodalJob, settings: &'a Settings) -> Result<Self, Error> {
        let namespace = job.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
        let mut owner_ref = job.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("uid"))?;
        // Foreground deletion of the job waits for its children (the chart's RBAC grants the
        // `multimodaljobs/finalizers` update this needs).
        owner_ref.block_owner_deletion = Some(true);
        Ok(Self { job, name: job.name_any(), namespace, owner_ref, settings })
    }

    /// Labels every child carries; `component` is `coordinator`, `worker` or `job`.
    pub fn labels(&self, component: &str, pool: Option<&PoolName>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "weir".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
            ("app.kubernetes.io/part-of".to_string(), "weir".to_string()),
            ("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string()),
            (COMPONENT_LABEL.to_string(), component.to_string()),
            (JOB_LABEL.to_string(), self.name.clone()),
        ]);
        if let Some(pool) = pool {
            labels.insert(POOL_LABEL.to_string(), pool.to_string());
        }
        labels
    }

    fn meta(&self, name: String, component: &str, pool: Option<&PoolName>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component, pool)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The label selector of all of a job's children.
pub fn job_selector(job: &str) -> String {
    format!("{JOB_LABEL}={job}")
}

pub fn coordinator_name(job: &str) -> String {
    format!("{job}-coordinator")
}

pub fn worker_name(job: &str, pool: &PoolName, index: u32) -> String {
    format!("{job}-{pool}-{index}")
}

/// The headless Service that gives each worker a DNS name for Arrow Flight.
pub fn exchange_service_name(job: &str) -> String {
    format!("{job}-workers")
}

pub fn plan_name(job: &str) -> String {
    format!("{job}-plan")
}

/// The job's Secret: its token and TLS identity ([`weir_auth::JobSecret`]).
pub fn secret_name(job: &str) -> String {
    format!("{job}-weir-secret")
}

/// The NetworkPolicy that says who may connect to the job's pods.
pub fn network_policy_name(job: &str) -> String {
    format!("{job}-weir-ingress")
}

/// The pods' ServiceAccount, when the job names or creates one.
pub fn service_account_name(job: &MultimodalJob) -> Option<String> {
    let spec = job.spec.service_account.as_ref()?;
    match (&spec.name, spec.create.unwrap_or(false)) {
        (Some(name), _) => Some(name.clone()),
        (None, true) => Some(format!("{}-weir", job.name_any())),
        (None, false) => None,
    }
}

/// Which slot a worker pod name fills: `<job>-<pool>-<index>` (a pool name may hold `-`; the
/// index is what follows the last one).
pub fn parse_worker_name(job: &str, name: &str) -> Option<(PoolName, u32)> {
    let rest = name.strip_prefix(job)?.strip_prefix('-')?;
    let (pool, index) = rest.rsplit_once('-')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((PoolName::new(pool).ok()?, index.parse().ok()?))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn worker_names_round_trip_and_foreign_names_are_ignored() {
        let name = worker_name("embed", &PoolName::gpu(), 12);
        assert_eq!(name, "embed-gpu-12");
        assert_eq!(parse_worker_name("embed", &name), Some((PoolName::gpu(), 12)));
        let l4 = PoolName::new("gpu-l4").expect("pool name");
        assert_eq!(parse_worker_name("embed", &worker_name("embed", &l4, 0)), Some((l4, 0)));
        assert_eq!(parse_worker_name("embed", "embed-coordinator"), None);
        assert_eq!(parse_worker_name("embed", "embedder-cpu-0"), None);
        assert_eq!(parse_worker_name("embed", "embed-cpu-x"), None);
    }
}
