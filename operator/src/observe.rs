//! What the operator sees of a job's pods, reduced to what its decisions need.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use weir_crds::PoolName;

use crate::children::{COMPONENT_LABEL, coordinator_name, parse_worker_name};

/// A pod's place in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// When a terminating pod's grace period ends (Unix seconds); past it (plus a margin) its node
    /// is presumed lost and the pod is force-deleted so its slot can be filled again.
    pub deletion_deadline: Option<i64>,
    /// Why a pod is not coming up: a container waiting in `CrashLoopBackOff` or `ImagePullBackOff`,
    /// or an unschedulable pod, with the kubelet's or scheduler's message.
    pub problem: Option<String>,
    /// The main container's exit code once it terminated.
    pub exit_code: Option<i32>,
    /// Why it stopped: the container's termination message, or the pod's reason (e.g. `Evicted`).
    pub message: Option<String>,
    pub ip: Option<String>,
}

impl PodView {
    /// The view of `pod`, or `None` when it is not one of the coordinator or worker pods of the
    /// job named `job` with uid `uid` (a pod left by a deleted job of the same name is not adopted).
    pub fn of(job: &str, uid: &str, pod: &Pod) -> Option<Self> {
        let controller = pod.owner_references().iter().find(|o| o.controller == Some(true))?;
        if controller.uid != uid {
            return None;
        }
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
        let deletion = pod.metadata.deletion_timestamp.as_ref();
        Some(Self {
            name,
            role,
            phase,
            ready,
            terminating: deletion.is_some(),
            deletion_deadline: deletion.map(|t| t.0.as_second()),
            problem: problem(pod),
            exit_code: terminated.map(|t| t.exit_code),
            message,
            ip: status.and_then(|s| s.pod_ip.clone()),
        })
    }
}

/// Container waiting reasons that mean a pod will not come up without a change.
const STUCK_REASONS: &[&str] =
    &["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"];

fn problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| w.reason.as_deref().is_some_and(|r| STUCK_REASONS.contains(&r)));
    if let Some(w) = waiting {
        let reason = w.reason.clone().unwrap_or_default();
        return Some(match &w.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason,
        });
    }
    let unschedulable =
        status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })?;
    Some(format!("Unschedulable: {}", unschedulable.message.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus};
    use weir_crds::PoolName;

    use super::*;
    use crate::children::{Owner, Settings};
    use crate::fixtures::{JOB, job};

    fn worker() -> (Pod, String) {
        let job = job("");
        let settings = Settings::default();
        let pod = Owner::new(&job, &settings).expect("owner").worker_pod(&PoolName::cpu(), 3);
        (pod, job.metadata.uid.clone().expect("uid"))
    }

    #[test]
    fn a_pod_is_adopted_only_by_the_job_whose_uid_owns_it() {
        let (pod, uid) = worker();
        let view = PodView::of(JOB, &uid, &pod).expect("our pod");
        assert_eq!(view.role, Role::Worker { pool: PoolName::cpu(), index: 3 });
        assert_eq!(PodView::of(JOB, "another-uid", &pod), None, "a pod of a deleted job of the same name");
    }

    #[test]
    fn a_crash_looping_container_is_reported_as_the_pods_problem() {
        let (mut pod, uid) = worker();
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "worker".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some("back-off 5m0s".into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        let view = PodView::of(JOB, &uid, &pod).expect("view");
        assert_eq!(view.problem.as_deref(), Some("CrashLoopBackOff: back-off 5m0s"));
    }
}
