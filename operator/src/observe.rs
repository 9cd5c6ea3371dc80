//! What the operator sees of a job's pods, reduced to what its decisions need.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use weir_crds::PoolName;

use crate::children::{COMPONENT_LABEL, coordinator_name, parse_worker_name};

/// A pod's place in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Worker { pool: PoolName, index: u32 },
}

/// The pod phases the operator tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One of the job's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub name: String,
    pub role: Role,
    pub phase: PodPhase,
    pub ready: bool,
    /// Being deleted (terminating): neither counted nor deleted again.
    pub terminating: bool,
    /// The main container's exit code once it terminated.
    pub exit_code: Option<i32>,
    /// Why it stopped: the container's termination message, or the pod's reason (e.g. `Evicted`).
    pub message: Option<String>,
    pub ip: Option<String>,
}

impl PodView {
    /// The view of `pod`, or `None` when it is not one of `job`'s coordinator or worker pods.
    pub fn of(job: &str, pod: &Pod) -> Option<Self> {
        let name = pod.name_any();
        let role = match pod.labels().get(COMPONENT_LABEL).map(String::as_str) {
            Some("coordinator") if name == coordinator_name(job) => Role::Coordinator,
            Some("worker") => {
                let (pool, index) = parse_worker_name(job, &name)?;
                Role::Worker { pool, index }
            }
            _ => return None,
        };
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Pending,
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let terminated = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref());
        let message = terminated
            .and_then(|t| t.message.clone().or_else(|| t.reason.clone()))
            .or_else(|| status.and_then(|s| s.message.clone().or_else(|| s.reason.clone())));
        Some(Self {
            name,
            role,
            phase,
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            exit_code: terminated.map(|t| t.exit_code),
            message,
            ip: status.and_then(|s| s.pod_ip.clone()),
        })
    }
}
