//! The `MultimodalJob` custom resource: source, steps, sink, pools and the policies that govern a run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pool::{MAX_POOLS, PoolName};
use crate::status::MultimodalJobStatus;
use crate::steps::{ColumnType, StepSpec};

/// Columns every `files` source emits, in order.
pub const FILES_SOURCE_COLUMNS: &[&str] = &["uri", "size"];

/// The types of [`FILES_SOURCE_COLUMNS`], in the same order (weir-io's listing: the object's URI
/// and its size in bytes).
pub const FILES_SOURCE_TYPES: [ColumnType; 2] = [ColumnType::Utf8, ColumnType::UInt64];

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

impl SourceSpec {
    /// The source's URI and the field path that sets it (`spec.source.files.uri`).
    pub fn uri(&self) -> Option<(&'static str, &str)> {
        match (&self.files, &self.parquet) {
            (Some(files), _) => Some(("spec.source.files.uri", files.uri.as_str())),
            (None, Some(parquet)) => Some(("spec.source.parquet.uri", parquet.uri.as_str())),
            (None, None) => None,
        }
    }
}

/// Whether `inner` names the place `outer` names, or one under it, as the worker resolves URIs
/// (weir-io's store registry): a local path and a `file://` URL name the same place, `s3a://` is
/// `s3://`, and `.`, `..`, repeated and trailing slashes make no difference. A relative path is
/// compared only with another relative path: the directory it is resolved from is not known here.
pub fn uri_is_within(inner: &str, outer: &str) -> bool {
    let (inner, outer) = (Place::of(inner), Place::of(outer));
    inner.store == outer.store && inner.rooted == outer.rooted && inner.segments.starts_with(&outer.segments)
}

/// A URI normalised for comparison: its store (`file`, `s3://bucket`), whether its path is
/// absolute, and the path's segments.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    store: String,
    rooted: bool,
    segments: Vec<String>,
}

impl Place {
    fn of(uri: &str) -> Place {
        let Some((scheme, rest)) = uri.split_once("://").filter(|(scheme, _)| is_scheme(scheme)) else {
            let rooted = uri.starts_with('/');
            return Place { store: "file".into(), rooted, segments: segments(uri, rooted) };
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let store = match scheme.to_ascii_lowercase().as_str() {
            // The worker keeps a file URL's path only (`file://localhost/x` is `/x`).
            "file" => "file".to_string(),
            "s3a" => format!("s3://{authority}"),
            other => format!("{other}://{authority}"),
        };
        Place { store, rooted: true, segments: segments(&percent_decoded(path), true) }
    }
}

/// A URL scheme, as `url` parses one (a drive letter, `C:`, is a path).
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() > 1
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The segments of a path without `.`, empty segments and the `..` that can be resolved.
fn segments(path: &str, rooted: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        match part {
            ".." if out.last().is_some_and(|last| last != "..") => {
                out.pop();
            }
            // Above the root is the root; above a relative start stays a step up.
            ".." if rooted => {}
            other => out.push(other.to_string()),
        }
    }
    out
}

/// `text` with `%XX` escapes decoded, as a URL's path is read (invalid escapes stay as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_is_within_itself_and_its_parents_whatever_the_spelling() {
        for (inner, outer) in [
            ("data/out", "data/"),
            ("data/", "data"),
            ("./data//out/", "data"),
            ("data/x/../out", "data"),
            ("/srv/data/out", "file:///srv/data/"),
            ("file:///srv/data", "/srv/data/"),
            ("file://localhost/srv/a%20b/out", "/srv/a b"),
            ("s3a://bucket/in/out/", "s3://bucket/in"),
            ("S3://bucket/in", "s3://bucket/"),
            ("s3://bucket/x", "s3://bucket"),
        ] {
            assert!(uri_is_within(inner, outer), "{inner} within {outer}");
        }
    }

    #[test]
    fn a_uri_beside_or_above_another_is_not_within_it() {
        for (inner, outer) in [
            ("data-out/", "data/"),
            ("data", "data/in"),
            ("out/", "data/"),
            ("s3://other/in/out", "s3://bucket/in"),
            ("s3://bucket/in/out", "file:///in"),
            ("/work/data/out", "data"),
            ("../data/out", "data"),
        ] {
            assert!(!uri_is_within(inner, outer), "{inner} not within {outer}");
        }
    }
}
