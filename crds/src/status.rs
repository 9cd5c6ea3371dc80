//! What the operator and coordinator report about a `MultimodalJob`; bounded in size by design.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a job. Per-item state lives in object storage and rates in metrics, so this
/// stays small however large the job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MultimodalJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// kstatus-style: Ready, Progressing, Complete, Failed, Suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Per pool of the job, by name: pods desired and ready (both 0 once the job's pods are gone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = crate::pool::MAX_POOLS))]
    pub pools: BTreeMap<String, PoolReplicas>,
    /// Ready of desired pods per pool, for `kubectl get` (`cpu 2/2, gpu-l4 1/1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Times the coordinator pod failed and was recreated (bounded by `spec.backoffLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_restarts: Option<i32>,
    /// A human-readable summary of the last transition or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a job is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    Pending,
    Running,
    Suspended,
    Succeeded,
    Failed,
}

/// How far a job has come.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub units_done: u64,
    pub units_total: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    /// e.g. `42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<String>,
    /// e.g. `3m20s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// When these figures were read from the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<Time>,
}

/// Replicas of one pool, and the autoscaler's view of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolReplicas {
    /// Worker pods the operator keeps: `replicas.min`, or the autoscaler's choice in `auto` mode.
    pub desired: i32,
    pub ready: i32,
    /// What the autoscaler's last decision called for (`auto` and `recommend` modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<i32>,
    /// The last decision's one-line reason, with the figures it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub reason: Option<String>,
    /// When `desired` last changed by an autoscaler decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
}

/// The last checkpoint commit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_time: Option<Time>,
    pub units_committed: u64,
}

impl MultimodalJobStatus {
    /// Sets `pools` and the `poolSummary` that `kubectl get` prints from them.
    pub fn set_pools(&mut self, pools: BTreeMap<String, PoolReplicas>) {
        let summary: Vec<String> = pools.iter().map(|(name, r)| format!("{name} {}/{}", r.ready, r.desired)).collect();
        self.pool_summary = (!summary.is_empty()).then(|| summary.join(", "));
        self.pools = pools;
    }
}
