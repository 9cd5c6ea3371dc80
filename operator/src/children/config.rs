//! The plan ConfigMap (the job's manifest, as every pod reads it) and the optional ServiceAccount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::Resource;
use weir_crds::MultimodalJob;

use super::{Owner, plan_name, service_account_name};

impl Owner<'_> {
    /// `<job>-plan` with `job.yaml`: the manifest the coordinator and workers run, so every pod
    /// sees the same spec whatever happens to the custom resource while they run. It is written
    /// as JSON (which is YAML): every string quoted, so the pods' YAML 1.1 reader cannot take a
    /// column named `y` or a filter value `"no"` for a boolean.
    ///
    /// # Errors
    /// Only if the spec cannot be serialized, which a stored job always can.
    pub fn plan_config_map(&self) -> Result<ConfigMap, serde_json::Error> {
        let manifest = serde_json::to_string_pretty(&self.manifest())?;
        Ok(ConfigMap {
            metadata: self.meta(plan_name(&self.name), "job", None),
            data: Some(BTreeMap::from([("job.yaml".to_string(), manifest)])),
            ..ConfigMap::default()
        })
    }

    /// The ServiceAccount to create, when the job asks for one.
    pub fn service_account(&self) -> Option<ServiceAccount> {
        let spec = self.job.spec.service_account.as_ref().filter(|s| s.create.unwrap_or(false))?;
        let mut metadata = self.meta(service_account_name(self.job)?, "job", None);
        metadata.annotations = spec.annotations.clone();
        Some(ServiceAccount { metadata, automount_service_account_token: Some(false), ..ServiceAccount::default() })
    }

    /// The job as a manifest: name, namespace and spec; no status, no server-set metadata.
    fn manifest(&self) -> MultimodalJob {
        let mut job = MultimodalJob::new(&self.name, self.job.spec.clone());
        job.meta_mut().namespace = Some(self.namespace.clone());
        job
    }
}
