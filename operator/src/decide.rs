//! The pure heart of reconciliation: from a job, its pods and its coordinator's progress, what to
//! create, what to delete and which status to report. No I/O; table-driven tests call it directly.
//!
//! The lifecycle: `Pending` (pods created) → `Running` (coordinator up) → `Succeeded` (coordinator
//! exited 0) or `Failed` (it exited 3, it failed more than `backoffLimit` times, or the job ran past
//! `activeDeadlineSeconds`). `suspend: true` drains the workers first (SIGTERM: they hand their
//! units back), then stops the coordinator; resuming starts both again and the coordinator reloads
//! the checkpoint. A finished job keeps its pods until `ttlSecondsAfterFinished`, then loses every
//! child but stays as the record.

mod pools;
mod scale;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weir_crds::validate::check_spec;
use weir_crds::{JobPhase, MultimodalJob, MultimodalJobStatus, PoolName, PoolReplicas, Progress};

pub use pools::DRAIN_TIMEOUT;
pub use scale::{AUTOSCALER_READY, ScalingRound, mode as autoscaling_mode, pool_states};

use crate::conditions::{bounded, human_duration, set};
use crate::observe::{PodPhase, PodView, Role};

/// The coordinator's exit code when the job failed (`weir coordinator`): final, not retried.
pub const EXIT_JOB_FAILED: i32 = 3;
/// Coordinator failures tolerated when `backoffLimit` is not set (as for a Kubernetes Job).
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// How often progress is read while the job runs.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Progress in the status changes at most this often. Every status write triggers another
/// reconcile (the job changed); that one finds fresh figures too recent to write, so a running job
/// settles at about two reconciles and one status write per [`PROGRESS_INTERVAL`].
pub const PROGRESS_MIN_AGE: i64 = 5;
/// A pod still terminating this long after its grace period ended is on a lost node: it is
/// force-deleted (its containers are presumed dead) so its fixed name can be reused.
pub const FORCE_DELETE_AFTER: i64 = 30;

/// What the coordinator's Status RPC said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoordinatorProgress {
    pub units_total: u64,
    pub units_committed: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    pub eta_seconds: Option<f64>,
    /// The coordinator is finalizing or done: workers that exit now are not replaced.
    pub finishing: bool,
}

/// What the coordinator's Workers RPC says of one worker (a pod: worker ids are pod names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSeen {
    pub name: String,
    pub pool: String,
    pub units_held: u32,
    /// Exchanges it serves, plus routes to it given since.
    pub exchanges: u32,
    /// A drain began: it gets no new units or exchanges.
    pub draining: bool,
    /// It holds and serves nothing: it can go without losing work.
    pub drained: bool,
}

/// The drains the operator asked for and has not seen end: pod name → when it asked.
pub type Drains = BTreeMap<String, Time>;

static NO_DRAINS: Drains = BTreeMap::new();

/// Everything a decision depends on besides the job.
pub struct Observed<'a> {
    pub pods: &'a [PodView],
    /// `None` when the coordinator could not be asked (not running yet, or unreachable).
    pub progress: Option<&'a CoordinatorProgress>,
    /// The workers the coordinator knows; `None` when it could not be asked. Without it no
    /// worker is drained or removed for a scale-down.
    pub workers: Option<&'a [WorkerSeen]>,
    pub drains: &'a Drains,
    /// This reconcile's autoscaling round, when one was due (or why none can run).
    pub scaling: Option<&'a ScalingRound>,
    /// Why the job's Secret cannot serve its pods (missing while they run, or unusable); the
    /// status message says so while the job runs.
    pub secret_problem: Option<&'a str>,
    pub now: Time,
}

impl<'a> Observed<'a> {
    /// Pods and progress alone: no worker list, no drain, no autoscaling round.
    pub fn new(pods: &'a [PodView], progress: Option<&'a CoordinatorProgress>, now: Time) -> Self {
        Self { pods, progress, workers: None, drains: &NO_DRAINS, scaling: None, secret_problem: None, now }
    }
}

/// A pod to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Coordinator,
    Worker(PoolName, u32),
}

/// A Kubernetes Event to record on the job.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub reason: &'static str,
    pub note: String,
    pub warning: bool,
}

/// What reconcile must do, in order: apply the shared children, create and delete pods, then
/// write the status and record the events.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Apply the plan ConfigMap, the Services, the NetworkPolicy and the ServiceAccount, and
    /// create the job's Secret if it has none.
    pub ensure_children: bool,
    pub create: Vec<Slot>,
    /// Pods to delete by name (workers get SIGTERM and hand their units back).
    pub delete: Vec<String>,
    /// Workers (pod names) the coordinator is to drain before they are deleted.
    pub drain: Vec<String>,
    /// Pods stuck terminating on a lost node, to delete with no grace period.
    pub force_delete: Vec<String>,
    /// Delete every child (the TTL after finishing has passed).
    pub delete_all: bool,
    pub status: MultimodalJobStatus,
    pub events: Vec<Transition>,
    /// Reconcile again after this long even if nothing changes.
    pub requeue: Option<Duration>,
}

/// Decides what to do about `job` given what was observed.
pub fn decide(job: &MultimodalJob, seen: &Observed) -> Plan {
    let previous = job.status.clone().unwrap_or_default();
    let mut decision = Decision {
        job,
        seen,
        plan: Plan {
            ensure_children: false,
            create: Vec::new(),
            delete: Vec::new(),
            drain: Vec::new(),
            force_delete: Vec::new(),
            delete_all: false,
            status: previous.clone(),
            events: Vec::new(),
            requeue: None,
        },
        failure: None,
        notes: Vec::new(),
    };
    match previous.phase {
        Some(JobPhase::Succeeded | JobPhase::Failed) => decision.finished(),
        _ if !decision.valid() => {}
        _ if job.spec.suspend.unwrap_or(false) => decision.suspend(),
        _ => decision.run(),
    }
    decision.force_stuck_pods();
    decision.conclude(previous.phase)
}

struct Decision<'a> {
    job: &'a MultimodalJob,
    seen: &'a Observed<'a>,
    plan: Plan,
    /// The reason a job failed during this decision (the Failed condition's reason).
    failure: Option<&'static str>,
    /// What the status message adds to the phase's (a scale-down held back).
    notes: Vec<String>,
}

impl Decision<'_> {
    fn live_pods(&self) -> impl Iterator<Item = &PodView> {
        self.seen.pods.iter().filter(|p| !p.terminating)
    }

    fn coordinator(&self) -> Option<&PodView> {
        self.live_pods().find(|p| p.role == Role::Coordinator)
    }

    /// Runs the checks across steps that the API server leaves to us ([`check_spec`], the same
    /// as `weir validate`'s), with condition `Valid` saying what they found. A job that never
    /// started fails before any pod exists. A started job whose spec an edit made invalid (a pool
    /// a step names removed from `pools`; its results-deciding fields are frozen) keeps running
    /// with `Valid=False`: failing it would throw its committed work away.
    fn valid(&mut self) -> bool {
        let problems = check_spec(&self.job.spec);
        let generation = self.job.metadata.generation;
        let now = self.seen.now.clone();
        let started = self.plan.status.start_time.is_some();
        let conditions = &mut self.plan.status.conditions;
        if problems.is_empty() {
            set(conditions, "Valid", true, "Valid", "the spec passed weir validate's checks", generation, &now);
            return true;
        }
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let message = format!("invalid spec: {}", list.join("; "));
        set(conditions, "Valid", false, "Invalid", &bounded(&message), generation, &now);
        if started {
            return true;
        }
        self.fail("Invalid", message);
        false
    }

    fn run(&mut self) {
        let now = self.seen.now.clone();
        let resumed = self.plan.status.phase == Some(JobPhase::Suspended);
        let status = &mut self.plan.status;
        if resumed {
            // As for a Kubernetes Job: the deadline counts from the last resume.
            status.start_time = Some(now.clone());
        }
        let start = status.start_time.get_or_insert_with(|| now.clone()).clone();
        if let Some(limit) = self.job.spec.active_deadline_seconds {
            let ran = now.0.as_second() - start.0.as_second();
            if ran >= limit {
                let message = format!("the job ran {ran}s, past activeDeadlineSeconds ({limit}s)");
                return self.fail("DeadlineExceeded", message);
            }
        }
        self.plan.ensure_children = true;
        let coordinator = self.coordinator().cloned();
        match &coordinator {
            Some(c) if c.phase == PodPhase::Succeeded => return self.succeed(),
            Some(c) if c.phase == PodPhase::Failed => {
                if self.coordinator_failed(c) {
                    return;
                }
            }
            Some(_) => {}
            None if self.seen.pods.iter().any(|p| p.role == Role::Coordinator) => {}
            None => self.plan.create.push(Slot::Coordinator),
        }
        self.workers();
        self.read_progress(false);
        let running = coordinator.is_some_and(|c| c.phase == PodPhase::Running);
        let phase = if running { JobPhase::Running } else { JobPhase::Pending };
        self.plan.status.phase = Some(phase);
        let mut message = match self.live_pods().find_map(|p| Some((p.name.clone(), p.problem.clone()?))) {
            Some((pod, problem)) => format!("{}; pod {pod}: {problem}", self.running_message(phase)),
            None => self.running_message(phase),
        };
        for note in self.seen.secret_problem.iter().copied().chain(self.notes.iter().map(String::as_str)) {
            message.push_str("; ");
            message.push_str(note);
        }
        self.plan.status.message = Some(bounded(&message));
        self.plan.requeue = Some(if running { PROGRESS_INTERVAL } else { Duration::from_secs(5) });
    }

    /// A coordinator that exited non-zero: the job failed (exit 3), or it crashed and is recreated
    /// within `backoffLimit`. Returns whether the job has failed.
    fn coordinator_failed(&mut self, pod: &PodView) -> bool {
        let why = pod.message.clone().unwrap_or_else(|| "no message".to_string());
        if pod.exit_code == Some(EXIT_JOB_FAILED) {
            self.fail("JobFailed", format!("the job failed: {why}"));
            return true;
        }
        let restarts = self.plan.status.coordinator_restarts.unwrap_or(0) + 1;
        let limit = self.job.spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
        if restarts > limit {
            let message = format!("the coordinator failed {restarts} times (backoffLimit {limit}); last: {why}");
            self.fail("BackoffLimitExceeded", message);
            return true;
        }
        self.plan.status.coordinator_restarts = Some(restarts);
        self.plan.delete.push(pod.name.clone());
        let code = pod.exit_code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
        self.event(
            "CoordinatorRestarted",
            format!("coordinator failed ({code}: {why}); restart {restarts} of {limit}"),
            true,
        );
        false
    }

    /// The job needs no pods any more (finished or suspended): every pool reads 0 of 0.
    fn no_pods_wanted(&mut self) {
        let pools = std::mem::take(&mut self.plan.status.pools);
        let zero = pools.into_keys().map(|name| (name, PoolReplicas::default())).collect();
        self.plan.status.set_pools(zero);
    }

    /// Takes the coordinator's figures unless the status holds figures younger than
    /// [`PROGRESS_MIN_AGE`] (`always` for the final figures).
    fn read_progress(&mut self, always: bool) {
        let Some(p) = self.seen.progress else { return };
        let now = self.seen.now.0.as_second();
        let updated = self.plan.status.progress.as_ref().and_then(|p| p.updated_time.as_ref()).map(|t| t.0.as_second());
        if !always && updated.is_some_and(|at| now - at < PROGRESS_MIN_AGE) {
            return;
        }
        let percent = (p.units_committed * 100).checked_div(p.units_total).unwrap_or(0);
        self.plan.status.progress = Some(Progress {
            units_done: p.units_committed,
            units_total: p.units_total,
            rows_in: p.rows_in,
            rows_out: p.rows_out,
            rows_failed: p.rows_failed,
            percent: Some(format!("{percent}%")),
            eta: p.eta_seconds.map(human_duration),
            updated_time: Some(self.seen.now.clone()),
        });
        let checkpoint = self.plan.status.checkpoint.get_or_insert_with(Default::default);
        if checkpoint.units_committed != p.units_committed {
            checkpoint.units_committed = p.units_committed;
            checkpoint.last_commit_time = Some(self.seen.now.clone());
        }
    }

    fn running_message(&self, phase: JobPhase) -> String {
        match (phase, &self.plan.status.progress) {
            (JobPhase::Running, Some(p)) => format!("{} of {} units committed", p.units_done, p.units_total),
            (JobPhase::Running, None) => "running; progress not read yet".to_string(),
            _ => "waiting for the coordinator pod".to_string(),
        }
    }

    fn succeed(&mut self) {
        self.read_progress(true);
        let status = &mut self.plan.status;
        status.phase = Some(JobPhase::Succeeded);
        status.completion_time = Some(self.seen.now.clone());
        if let Some(p) = status.progress.as_mut() {
            p.units_done = p.units_total;
            p.percent = Some("100%".to_string());
            p.eta = None;
        }
        let note = match &status.progress {
            Some(p) => format!("{} rows written, {} failed", p.rows_out, p.rows_failed),
            None => "the coordinator finished".to_string(),
        };
        status.message = Some(format!("succeeded: {note}"));
        self.event("Succeeded", note, false);
        self.no_pods_wanted();
        self.stop_live_pods(|p| p.role != Role::Coordinator);
        self.plan.requeue = self.ttl_wait();
    }

    fn fail(&mut self, reason: &'static str, message: String) {
        let status = &mut self.plan.status;
        status.phase = Some(JobPhase::Failed);
        status.completion_time = Some(self.seen.now.clone());
        status.message = Some(bounded(&message));
        self.failure = Some(reason);
        self.event(reason, message, true);
        self.no_pods_wanted();
        self.stop_live_pods(|_| true);
        self.plan.requeue = self.ttl_wait();
    }

    /// Deletes running or pending pods matching `which`; finished ones stay for their logs.
    fn stop_live_pods(&mut self, which: impl Fn(&PodView) -> bool) {
        let names: Vec<String> = self
            .live_pods()
            .filter(|p| matches!(p.phase, PodPhase::Running | PodPhase::Pending) && which(p))
            .map(|p| p.name.clone())
            .collect();
        self.plan.delete.extend(names);
    }

    fn finished(&mut self) {
        self.stop_live_pods(|_| true);
        self.no_pods_wanted();
        let Some(wait) = self.ttl_wait() else { return };
        if wait.is_zero() {
            if self.live_pods().next().is_some() {
                let ttl = self.job.spec.ttl_seconds_after_finished.unwrap_or(0);
                self.event(
                    "TTLExpired",
                    format!("deleting the job's pods and services {ttl}s after it finished"),
                    false,
                );
            }
            self.plan.delete_all = true;
            self.plan.delete.clear();
        } else {
            self.plan.requeue = Some(wait);
        }
    }

    /// Time left until the TTL after finishing expires; `None` without a TTL.
    fn ttl_wait(&self) -> Option<Duration> {
        let ttl = self.job.spec.ttl_seconds_after_finished?;
        let finished = self.plan.status.completion_time.as_ref().unwrap_or(&self.seen.now);
        let left = finished.0.as_second() + ttl - self.seen.now.0.as_second();
        Some(Duration::from_secs(left.max(0) as u64))
    }

    /// Workers go first, so they can hand their units back to a live coordinator.
    fn suspend(&mut self) {
        let workers_left = self.seen.pods.iter().any(|p| matches!(p.role, Role::Worker { .. }));
        let victims: Vec<String> = self
            .live_pods()
            .filter(|p| !workers_left || matches!(p.role, Role::Worker { .. }))
            .map(|p| p.name.clone())
            .collect();
        self.plan.delete = victims;
        let status = &mut self.plan.status;
        // The start time stays (it marks the job as started, which freezes its results-defining
        // fields); resuming resets it, so the deadline counts from the last resume.
        status.phase = Some(JobPhase::Suspended);
        self.no_pods_wanted();
        let status = &mut self.plan.status;
        status.message = Some(if self.seen.pods.is_empty() {
            "suspended; set spec.suspend to false to resume from the checkpoint".to_string()
        } else {
            format!("suspending: {} pods draining", self.seen.pods.len())
        });
        if !self.seen.pods.is_empty() {
            self.plan.requeue = Some(Duration::from_secs(5));
        }
    }

    /// Pods terminating long past their grace period (a lost node never confirms the kill).
    fn force_stuck_pods(&mut self) {
        let now = self.seen.now.0.as_second();
        self.plan.force_delete = self
            .seen
            .pods
            .iter()
            .filter(|p| p.deletion_deadline.is_some_and(|deadline| now >= deadline + FORCE_DELETE_AFTER))
            .map(|p| p.name.clone())
            .collect();
    }

    fn event(&mut self, reason: &'static str, note: String, warning: bool) {
        self.plan.events.push(Transition { reason, note: bounded(&note), warning });
    }

    /// Phase-change events and the conditions, from the phase decided.
    fn conclude(mut self, before: Option<JobPhase>) -> Plan {
        let phase = self.plan.status.phase.unwrap_or(JobPhase::Pending);
        if Some(phase) != before {
            let (reason, note) = match (before, phase) {
                (Some(JobPhase::Suspended), JobPhase::Pending | JobPhase::Running) => {
                    ("Resumed", "resumed from the checkpoint")
                }
                (None, JobPhase::Pending) => ("Created", "created the coordinator and worker pods"),
                (None | Some(JobPhase::Pending), JobPhase::Running) => ("Running", "the coordinator is running"),
                (_, JobPhase::Suspended) => ("Suspended", "draining workers, then stopping the coordinator"),
                _ => ("", ""),
            };
            if !reason.is_empty() {
                self.event(reason, note.to_string(), false);
            }
        }
        let generation = self.job.metadata.generation;
        let status = &mut self.plan.status;
        status.observed_generation = generation;
        let message = status.message.clone().unwrap_or_default();
        let now = &self.seen.now;
        let ready = match phase {
            JobPhase::Running => pods_ready(self.seen.pods, &status.pools),
            JobPhase::Succeeded => true,
            _ => false,
        };
        let conditions = &mut status.conditions;
        let progressing = matches!(phase, JobPhase::Pending | JobPhase::Running);
        set(conditions, "Ready", ready, if ready { "Ready" } else { "NotReady" }, &message, generation, now);
        set(conditions, "Progressing", progressing, phase_name(phase), &message, generation, now);
        set(conditions, "Complete", phase == JobPhase::Succeeded, phase_name(phase), &message, generation, now);
        let failed_reason = self.failure.unwrap_or(phase_name(phase));
        let failed_reason = match conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
            Some(old) if self.failure.is_none() => old.reason.clone(),
            _ => failed_reason.to_string(),
        };
        set(conditions, "Failed", phase == JobPhase::Failed, &failed_reason, &message, generation, now);
        set(conditions, "Suspended", phase == JobPhase::Suspended, phase_name(phase), &message, generation, now);
        self.plan
    }
}

fn phase_name(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Pending => "Pending",
        JobPhase::Running => "Running",
        JobPhase::Suspended => "Suspended",
        JobPhase::Succeeded => "Succeeded",
        JobPhase::Failed => "Failed",
    }
}

/// Ready: the coordinator and at least one worker of every pool pass their readiness probes.
fn pods_ready(pods: &[PodView], replicas: &BTreeMap<String, PoolReplicas>) -> bool {
    let coordinator = pods.iter().any(|p| p.role == Role::Coordinator && p.ready && !p.terminating);
    coordinator && replicas.values().all(|r| r.ready > 0)
}

/// Replicas of a pool without the autoscaler (and in `recommend` mode): its `replicas.min`, at
/// least one (a pool the job uses cannot be empty). In `auto` mode the autoscaler moves the
/// desired count between this and `max` ([`scale`]).
pub fn desired_replicas(job: &MultimodalJob, pool: &PoolName) -> u32 {
    let spec = job.spec.pools.as_ref().and_then(|p| p.get(pool));
    let min = spec.and_then(|s| s.replicas).map_or(1, |r| r.min);
    min.max(1) as u32
}

#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
