//! The `MultimodalJob` custom resource: source, steps, sink, pools and the policies that govern a run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pool::{MAX_POOLS, PoolName};
use crate::status::MultimodalJobStatus;
use crate::steps::StepSpec;

/// Columns every `files` source emits, in order.
pub const FILES_SOURCE_COLUMNS: &[&str] = &["uri", "size"];

/// Most steps one job may declare (keeps the CRD's CEL cost bounded).
pub const MAX_STEPS: usize = 64;

/// A multimodal pipeline: a source, a chain of steps that each add a column, and a Parquet sink.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "MultimodalJob",
    plural = "multimodaljobs",
    shortname = "mmjob",
    namespaced,
    status = "MultimodalJobStatus",
    doc = "A multimodal AI data pipeline run by Weir.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.progress.eta"),
    printcolumn(name = "Pools", type_ = "string", json_path = ".status.poolSummary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MultimodalJobSpec {
    /// Where the rows come from.
    pub source: SourceSpec,
    /// The pipeline: each step reads columns and adds (or replaces) one.
    #[schemars(length(max = 64))]
    pub steps: Vec<StepSpec>,
    /// Where the rows go.
    pub sink: SinkSpec,
    /// Worker pools by name (Kubernetes only; `weir run --workers cpu=2,gpu-l4=1` names its own).
    /// A step runs on the pool it names; steps that name none run on the leasing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Structural schemas allow no `patternProperties`: the names are checked by the CEL rule.
    #[schemars(with = "Option<BTreeMap<String, PoolSpec>>")]
    #[schemars(extend("maxProperties" = MAX_POOLS, "x-kubernetes-validations" = [{
        "rule": "self.all(k, size(k) <= 16 && k.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))",
        "message": "pool names must be DNS labels of at most 16 characters that start with a letter"
    }]))]
    pub pools: Option<BTreeMap<PoolName, PoolSpec>>,
    /// The pool whose workers lease units, read the source, run the steps that name no pool (but
    /// model steps, which run on a declared `gpu` pool) and write the sink; default `cpu`, or the
    /// one pool every step names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leasing_pool: Option<PoolName>,
    /// Where progress is checkpointed; defaults to `<sink uri>/_weir/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
    /// What a row that fails a step does to the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_policy: Option<ErrorPolicy>,
    /// Pool autoscaling from Prometheus metrics, between each pool's `replicas.min` and `max`
    /// (the operator; `weir run --workers cpu=1..4` on one machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Object-storage credentials and endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// The ServiceAccount the job's pods run as (e.g. for cloud IAM roles); default the namespace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountSpec>,
    /// Drain and stop the workers; resuming continues from the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Delete the job's pods this long after it finished (the MultimodalJob itself stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// How many times a failed coordinator is restarted before the job fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backoff_limit: Option<i32>,
    /// Fail the job when it has run longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
}

impl MultimodalJobSpec {
    /// The error policy, with defaults filled in.
    pub fn error_policy(&self) -> ErrorPolicy {
        self.error_policy.clone().unwrap_or_default()
    }

    /// Where checkpoints and job metadata live.
    pub fn checkpoint_uri(&self) -> String {
        match self.checkpoint.as_ref().and_then(|c| c.uri.clone()) {
            Some(uri) => uri,
            None => format!("{}/_weir/", self.sink.parquet.uri.trim_end_matches('/')),
        }
    }
}

/// Exactly one of `files` or `parquet`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.files) != has(self.parquet)", "message": "source needs exactly one of files or parquet"}
]))]
pub struct SourceSpec {
    /// One row per object under a prefix: columns `uri` and `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSource>,
    /// Rows of Parquet files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetSource>,
}

/// Objects under a prefix, filtered by a glob.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesSource {
    /// A prefix on any supported store: a local path, `file://`, `s3://` (or a single object).
    #[schemars(length(min = 1))]
    pub uri: String,
    /// Glob over keys relative to `uri`, e.g. `**/*.jpg`; default all objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Files per work unit (the grain of load balancing and recovery); default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub files_per_unit: Option<u32>,
}

/// Parquet files under a prefix (or one file).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParquetSource {
    /// A Parquet file or a prefix holding Parquet files.
    #[schemars(length(min = 1))]
    pub uri: String,
    /// Glob over keys relative to `uri`; default `**/*.parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Columns to read; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// Where results are written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkSpec {
    /// Parquet part files under a prefix.
    pub parquet: ParquetSink,
}

/// Parquet output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParquetSink {
    /// Output prefix: part files `part-<unit>-<attempt>.parquet`, bad rows under `_errors/`.
    #[schemars(length(min = 1))]
    pub uri: String,
    /// Columns to write, in order; default all (internal `_weir_*` columns are never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Rows per row group at most; default 8192 (a row group is also closed at 128 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub row_group_rows: Option<u32>,
    /// Column compression; default snappy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// Parquet column compression.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Snappy,
    Uncompressed,
}

/// One pool of worker pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolSpec {
    /// Replica bounds for the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaBounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// GPUs each pod asks for (`nvidia.com/gpu`); default 1 for pools named `gpu` or `gpu-*`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub gpus_per_pod: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Worker image; default the operator's (its GPU image for pools named `gpu` or `gpu-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
}

/// `min <= max` replicas.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.min <= self.max", "message": "replicas.min must not exceed replicas.max"}
]))]
pub struct ReplicaBounds {
    /// At most 1000: worker pods are `<job>-<pool>-<index>`, and the name must stay a DNS label.
    #[schemars(range(min = 0, max = 1000))]
    pub min: i32,
    #[schemars(range(min = 0, max = 1000))]
    pub max: i32,
}

/// Where checkpoints live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// How row errors are handled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorPolicy {
    /// `fail` (default): the first bad row stops the job. `skip`: bad rows go to the errors file.
    #[serde(default)]
    pub on_row_error: RowErrorAction,
    /// With `skip`: fail the job when more than this fraction of input rows failed; default 1.0.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_ratio: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self { on_row_error: RowErrorAction::Fail, max_error_ratio: 1.0 }
    }
}

impl ErrorPolicy {
    /// Whether a failed row is recorded and skipped (otherwise it fails the job).
    pub fn skips_rows(&self) -> bool {
        self.on_row_error == RowErrorAction::Skip
    }

    /// The fraction of failed input rows above which the job fails, where one applies: with
    /// `skip` and a ratio below 1.
    pub fn error_ratio_limit(&self) -> Option<f64> {
        (self.skips_rows() && self.max_error_ratio < 1.0).then_some(self.max_error_ratio)
    }
}

/// What a row error does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum RowErrorAction {
    /// Record the row in the errors file and go on.
    Skip,
    /// Stop the job with a message naming the row and step.
    #[default]
    Fail,
}

/// Autoscaling of pools from Prometheus: every `intervalSeconds` each pool's replicas are decided
/// from its steps' utilisation (busy time over slots) and backpressure; the decision goes to
/// `status.pools`, never to this spec. See docs/autoscaling.md.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingSpec {
    /// Default `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AutoscalingMode>,
    /// Default: the operator's `--prometheus-url` (Helm value `autoscaler.prometheusUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// Target busy fraction of a pool's busiest step; default 0.7, held within ±0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub target_utilization: Option<f64>,
    /// Seconds between decisions; default 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 600))]
    pub interval_seconds: Option<i32>,
    /// A pool shrinks only after every recommendation for this long was lower; default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_window_seconds: Option<i32>,
}

/// `autoscaling.intervalSeconds` when the job does not say.
pub const DEFAULT_AUTOSCALING_INTERVAL_SECONDS: i32 = 15;
/// `autoscaling.scaleDownWindowSeconds` when the job does not say.
pub const DEFAULT_SCALE_DOWN_WINDOW_SECONDS: i32 = 300;

impl AutoscalingSpec {
    /// The mode, `disabled` when not set.
    pub fn mode(&self) -> AutoscalingMode {
        self.mode.unwrap_or_default()
    }

    /// Time between decisions: `intervalSeconds`, default 15 s (at least 1 s).
    pub fn interval(&self) -> std::time::Duration {
        let seconds = self.interval_seconds.unwrap_or(DEFAULT_AUTOSCALING_INTERVAL_SECONDS);
        std::time::Duration::from_secs(seconds.max(1) as u64)
    }

    /// How long recommendations must stay lower before a pool shrinks: `scaleDownWindowSeconds`,
    /// default 300 s.
    pub fn scale_down_window(&self) -> std::time::Duration {
        let seconds = self.scale_down_window_seconds.unwrap_or(DEFAULT_SCALE_DOWN_WINDOW_SECONDS);
        std::time::Duration::from_secs(seconds.max(0) as u64)
    }
}

/// `auto` scales pools (the desired replicas live in status), `recommend` only reports (status
/// and Events), `disabled` keeps `replicas.min`. (Not `off`: YAML 1.1, as kubectl reads
/// manifests, takes an unquoted `off` for a boolean.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingMode {
    Auto,
    Recommend,
    #[default]
    Disabled,
}

/// A Prometheus server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSpec {
    pub url: String,
}

/// Object-storage access.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// A Secret whose keys become the pods' environment (e.g. `AWS_ACCESS_KEY_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// S3-compatible endpoint URL (MinIO, Ceph, ...); default AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The pods' ServiceAccount: an existing one by name, or one the operator creates for the job
/// (named `<job>-weir`, owned and deleted with the job). Never both: a created account must not
/// take over an existing one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.create) && self.create) != has(self.name)", "message": "serviceAccount takes either name (an existing ServiceAccount) or create: true (one named <job>-weir, owned by the job), not both"}
]))]
pub struct ServiceAccountSpec {
    /// An existing ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Create `<job>-weir` with the job (and delete it with the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<bool>,
    /// Annotations of a created ServiceAccount, e.g. `eks.amazonaws.com/role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A Secret in the job's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
}
