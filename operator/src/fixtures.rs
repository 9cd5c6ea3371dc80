//! Test builders: jobs from YAML and pod views, chainable (`PodView::worker(Cpu, 0).running()`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use weir_autoscale::{Action, Decision, Inputs, JobSignals, PoolSignals, Signals, StepSignals};
use weir_crds::{JobPhase, MultimodalJob, MultimodalJobStatus, PoolName, PoolReplicas};

use crate::children::{coordinator_name, worker_name};
use crate::decide::WorkerSeen;
use crate::observe::{PodPhase, PodView, Role};

pub const JOB: &str = "thumbs";
pub const NAMESPACE: &str = "media";

/// A stored job: the image pipeline plus `extra` spec lines (two-space indented), with a uid,
/// namespace and generation as the API server sets them.
pub fn job(extra: &str) -> MultimodalJob {
    let text = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: {JOB}}}\nspec:\n  source:\n    files: {{uri: \"s3://in/\", glob: \"**/*.jpg\"}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n    - {{op: image.decode, input: bytes, output: image}}\n    - {{op: image.embed, input: image, output: e, model: {{arch: resnet18, uri: \"s3://m/r.safetensors\"}}}}\n  sink:\n    parquet: {{uri: \"s3://out/\"}}\n{extra}"
    );
    let mut job = weir_crds::parse_manifest(&text, "fixture").expect("fixture manifest");
    job.metadata.namespace = Some(NAMESPACE.to_string());
    job.metadata.uid = Some("0b5e7a2c-1111-4222-8333-944455556666".to_string());
    job.metadata.generation = Some(1);
    job
}

pub fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("timestamp"))
}

/// Chainable changes to a job.
pub trait JobFixture {
    fn in_phase(self, phase: JobPhase, started: i64) -> Self;
    fn finished_at(self, second: i64) -> Self;
    /// `status.pools.<pool>` as a previous reconcile wrote it.
    fn with_pool(self, pool: &str, replicas: PoolReplicas) -> Self;
}

impl JobFixture for MultimodalJob {
    fn in_phase(mut self, phase: JobPhase, started: i64) -> Self {
        let status = self.status.get_or_insert_with(MultimodalJobStatus::default);
        status.phase = Some(phase);
        status.start_time = Some(at(started));
        self
    }

    fn finished_at(mut self, second: i64) -> Self {
        self.status.get_or_insert_with(MultimodalJobStatus::default).completion_time = Some(at(second));
        self
    }

    fn with_pool(mut self, pool: &str, replicas: PoolReplicas) -> Self {
        self.status.get_or_insert_with(MultimodalJobStatus::default).pools.insert(pool.to_string(), replicas);
        self
    }
}

/// Signals of a job whose pool `pool` (one step, two slots) is `utilization` busy, with 90 of 100
/// units left and none leased.
pub fn busy_pool(pool: &str, utilization: f64) -> Signals {
    let step = StepSignals {
        step: "image.embed".into(),
        rows_per_second: 40.0,
        busy: 2.0 * utilization,
        blocked_output: 0.0,
        slots: 2.0,
    };
    Signals {
        pools: [(pool.to_string(), PoolSignals { steps: vec![step], workers_reporting: 1, ready_seconds: Some(20.0) })]
            .into(),
        job: JobSignals { units_total: 100.0, units_committed: 10.0, units_leased: 1.0, commit_rate: 0.0 },
    }
}

/// One round's decision for `pool`: from `current`, `recommended` and then `desired`.
pub fn decision(pool: &str, current: u32, recommended: u32, desired: u32) -> Decision {
    let action = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => Action::Up,
        std::cmp::Ordering::Less => Action::Down,
        std::cmp::Ordering::Equal => Action::Hold,
    };
    let reason = format!("{pool}: utilisation test: {current} → {desired}");
    Decision { pool: pool.into(), current, recommended, desired, action, reason, inputs: Inputs::default() }
}

/// What the coordinator says of a worker holding `units` units.
pub fn worker_seen(name: &str, units: u32) -> WorkerSeen {
    WorkerSeen { name: name.into(), pool: "cpu".into(), units_held: units, ..WorkerSeen::default() }
}

impl PodView {
    pub fn coordinator() -> Self {
        Self::new(coordinator_name(JOB), Role::Coordinator)
    }

    pub fn worker(pool: PoolName, index: u32) -> Self {
        Self::new(worker_name(JOB, &pool, index), Role::Worker { pool, index })
    }

    fn new(name: String, role: Role) -> Self {
        PodView {
            name,
            role,
            phase: PodPhase::Pending,
            ready: false,
            terminating: false,
            deletion_deadline: None,
            problem: None,
            exit_code: None,
            message: None,
            ip: None,
        }
    }

    pub fn running(mut self) -> Self {
        self.phase = PodPhase::Running;
        self.ready = true;
        self.ip = Some("10.0.0.7".to_string());
        self
    }

    pub fn exited(mut self, code: i32, message: &str) -> Self {
        self.phase = if code == 0 { PodPhase::Succeeded } else { PodPhase::Failed };
        self.ready = false;
        self.exit_code = Some(code);
        self.message = Some(message.to_string());
        self
    }

    /// Terminating, with its grace period ending at `deadline` (Unix seconds).
    pub fn terminating_until(mut self, deadline: i64) -> Self {
        self.terminating = true;
        self.deletion_deadline = Some(deadline);
        self
    }

    pub fn terminating(self) -> Self {
        self.terminating_until(i64::MAX / 2)
    }

    pub fn stuck(mut self, problem: &str) -> Self {
        self.problem = Some(problem.to_string());
        self
    }
}
