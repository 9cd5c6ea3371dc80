//! The autoscaling loop of each job, and what the operator remembers of a job between reconciles:
//! its [`Autoscaler`] (the scale-down windows and the guard), when its next round is due, and the
//! drains it asked for.
//!
//! A round runs inside a reconcile of a `Running` job in `auto` or `recommend` mode once
//! `intervalSeconds` have passed since the last: it reads the job's signals from Prometheus over
//! [`WINDOW`] and decides every pool at once. A round with bad data holds every pool, and the next
//! waits 1, 2, then 4 intervals. The decisions reach the pods and the status through
//! [`crate::decide`]; nothing here writes to the cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tokio::time::Instant;
use weir_autoscale::promql::{Prometheus, read_signals};
use weir_autoscale::{Autoscaler, DataProblem, Policy, Signals};
use weir_crds::placement::leasing_pool;
use weir_crds::{AutoscalingMode, JobPhase, MultimodalJob};

use crate::decide::{Drains, ScalingRound, WorkerSeen, autoscaling_mode, pool_states};
use crate::observe::PodView;

/// The window the rates of one round are taken over (a PromQL duration).
pub const WINDOW: &str = "1m";
/// [`WINDOW`] as a duration.
const WINDOW_LENGTH: Duration = Duration::from_secs(60);
/// After rounds with bad data the next waits 1, 2, 4 intervals, never more.
pub const MAX_BACKOFF_INTERVALS: u32 = 4;

/// Where a round's signals come from; tests substitute canned ones.
pub trait SignalSource: Send + Sync {
    /// The signals of the job named `job` for `pools`, from the Prometheus at `url`.
    ///
    /// # Errors
    /// A [`DataProblem`] when the server cannot be asked or its answers cannot drive a decision;
    /// the round then holds every pool.
    fn read(&self, url: String, job: String, pools: Vec<String>) -> BoxFuture<'static, Result<Signals, DataProblem>>;
}

/// Reads the signals from a Prometheus server with PromQL.
pub struct PrometheusSignals;

impl SignalSource for PrometheusSignals {
    fn read(&self, url: String, job: String, pools: Vec<String>) -> BoxFuture<'static, Result<Signals, DataProblem>> {
        Box::pin(async move {
            let prometheus = Prometheus::new(&url)?;
            let pools: Vec<&str> = pools.iter().map(String::as_str).collect();
            read_signals(&prometheus, &job, WINDOW, &pools).await
        })
    }
}

/// What the operator remembers of each job, by uid, and where its rounds read their signals.
pub struct Scaling {
    source: Arc<dyn SignalSource>,
    /// The operator's `--prometheus-url`, for jobs that name none.
    default_url: Option<String>,
    jobs: Mutex<HashMap<String, JobMemory>>,
}

#[derive(Default)]
struct JobMemory {
    scaler: Option<Scaler>,
    drains: Drains,
}

/// One job's autoscaler and the timing of its rounds.
struct Scaler {
    autoscaler: Autoscaler,
    next_round: Instant,
    /// Rounds with bad data in a row.
    failures: u32,
}

impl Scaling {
    pub fn new(source: Arc<dyn SignalSource>, default_url: Option<String>) -> Self {
        Self { source, default_url, jobs: Mutex::new(HashMap::new()) }
    }

    /// The round of `job` (uid `uid`) with these pods, when one is due; `NoPrometheus` whenever
    /// autoscaling is on and no Prometheus is named; `None` when autoscaling is off, the job is
    /// not running, or the interval has not passed.
    ///
    /// # Cancellation
    /// Dropping the future mid-read leaves the round due: the next reconcile runs it.
    pub async fn round(&self, uid: &str, job: &MultimodalJob, pods: &[PodView]) -> Option<ScalingRound> {
        let mode = autoscaling_mode(job);
        let running = job.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Running);
        if mode == AutoscalingMode::Disabled || !running {
            self.with(uid, |m| m.scaler = None);
            return None;
        }
        let Some(url) = prometheus_url(job).or(self.default_url.clone()) else {
            return Some(ScalingRound::NoPrometheus);
        };
        if self.with(uid, |m| m.scaler.as_ref().is_some_and(|s| s.next_round > Instant::now())) {
            return None;
        }
        let pools = pool_states(job, pods);
        let names: Vec<String> = pools.keys().cloned().collect();
        let read = self.source.read(url, job.name_any(), names.clone()).await;
        let checked: Vec<&str> = names.iter().map(String::as_str).collect();
        let signals = read.and_then(|s| s.check(&checked).map(|()| s));
        let now = Instant::now();
        let policy = policy(job);
        let leasing = leasing_pool(&job.spec);
        let decisions = self.with(uid, |memory| {
            // A changed target or window starts a fresh autoscaler: its windows were measured
            // against the old ones.
            let scaler = match memory.scaler.take() {
                Some(scaler) if *scaler.autoscaler.policy() == policy => memory.scaler.insert(scaler),
                _ => memory.scaler.insert(Scaler { autoscaler: Autoscaler::new(policy), next_round: now, failures: 0 }),
            };
            let decisions = scaler.autoscaler.decide(now, signals.as_ref(), &pools, leasing.as_str());
            scaler.failures = if signals.is_ok() { 0 } else { scaler.failures + 1 };
            let backoff = 2u32.saturating_pow(scaler.failures.saturating_sub(1)).min(MAX_BACKOFF_INTERVALS);
            scaler.next_round = now + interval(job) * backoff;
            decisions
        });
        Some(ScalingRound::Decided { decisions, problem: signals.err().map(|p| p.to_string()) })
    }

    /// How long until the job's next round; `None` when it has no autoscaler running.
    pub fn next_round_in(&self, uid: &str) -> Option<Duration> {
        self.with(uid, |m| Some(m.scaler.as_ref()?.next_round.saturating_duration_since(Instant::now())))
    }

    /// The drains asked for the job's pods, after forgetting those of pods gone and adopting those
    /// the coordinator reports that this operator did not ask for (it restarted), as of `now`.
    pub fn drains(&self, uid: &str, pods: &[PodView], workers: Option<&[WorkerSeen]>, now: &Time) -> Drains {
        self.with(uid, |memory| {
            memory.drains.retain(|name, _| pods.iter().any(|p| p.name == *name));
            let adopted = workers.into_iter().flatten().filter(|w| w.draining || w.drained);
            for worker in adopted.filter(|w| pods.iter().any(|p| p.name == w.name)) {
                memory.drains.entry(worker.name.clone()).or_insert_with(|| now.clone());
            }
            memory.drains.clone()
        })
    }

    /// Records that the coordinator was asked to drain `pod` at `at`.
    pub fn drain_started(&self, uid: &str, pod: &str, at: Time) {
        self.with(uid, |m| m.drains.insert(pod.to_string(), at));
    }

    /// Forgets a job that is gone.
    pub fn forget(&self, uid: &str) {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }

    /// Runs `f` on the job's memory under the lock; a memory left empty is dropped, so jobs that
    /// neither scale nor drain cost nothing.
    fn with<R>(&self, uid: &str, f: impl FnOnce(&mut JobMemory) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let memory = jobs.entry(uid.to_string()).or_default();
        let result = f(memory);
        if memory.scaler.is_none() && memory.drains.is_empty() {
            jobs.remove(uid);
        }
        result
    }
}

fn prometheus_url(job: &MultimodalJob) -> Option<String> {
    let url = job.spec.autoscaling.as_ref()?.prometheus.as_ref()?.url.trim();
    (!url.is_empty()).then(|| url.to_string())
}

fn interval(job: &MultimodalJob) -> Duration {
    job.spec.autoscaling.clone().unwrap_or_default().interval()
}

/// The job's policy: its target and scale-down window, the rest as [`Policy::default`].
fn policy(job: &MultimodalJob) -> Policy {
    let spec = job.spec.autoscaling.clone().unwrap_or_default();
    let defaults = Policy::default();
    Policy {
        target_utilization: spec.target_utilization.unwrap_or(defaults.target_utilization),
        scale_down_window: spec.scale_down_window(),
        // A scale-up is judged once the rate window holds no time from before it.
        guard_delay: WINDOW_LENGTH,
        ..defaults
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use weir_crds::PoolName;

    use super::*;
    use crate::fixtures::{JobFixture, at, busy_pool, job, worker_seen};

    /// Answers each read with the next of `answers` (the last one forever), and records the URLs.
    struct Script {
        answers: Mutex<Vec<Result<Signals, DataProblem>>>,
        urls: Mutex<Vec<String>>,
    }

    impl SignalSource for Script {
        fn read(
            &self,
            url: String,
            _job: String,
            _pools: Vec<String>,
        ) -> BoxFuture<'static, Result<Signals, DataProblem>> {
            self.urls.lock().expect("urls").push(url);
            let mut answers = self.answers.lock().expect("answers");
            let answer = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
            Box::pin(async move { answer })
        }
    }

    fn scaling(answers: Vec<Result<Signals, DataProblem>>, default_url: Option<&str>) -> (Scaling, Arc<Script>) {
        let script = Arc::new(Script { answers: Mutex::new(answers), urls: Mutex::new(Vec::new()) });
        (Scaling::new(script.clone(), default_url.map(String::from)), script)
    }

    fn running(autoscaling: &str) -> MultimodalJob {
        job(&format!("  pools:\n    cpu: {{replicas: {{min: 1, max: 3}}}}\n  autoscaling: {autoscaling}\n"))
            .in_phase(JobPhase::Running, 0)
    }

    fn pods() -> Vec<PodView> {
        vec![PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()]
    }

    /// The seconds from now to each of the next `rounds` rounds, stepping through paused time.
    async fn round_times(scaling: &Scaling, job: &MultimodalJob, rounds: usize) -> Vec<u64> {
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < rounds {
            if scaling.round("uid", job, &pods()).await.is_some() {
                times.push(start.elapsed().as_secs());
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_runs_once_per_interval_and_decides_every_pool() {
        let (scaling, _) = scaling(vec![Ok(busy_pool("cpu", 0.95))], Some("http://prometheus:9090"));
        let job = running("{mode: auto, intervalSeconds: 30}");
        let first = scaling.round("uid", &job, &pods()).await;
        let Some(ScalingRound::Decided { decisions, problem: None }) = first else { panic!("{first:?}") };
        assert_eq!((decisions[0].pool.as_str(), decisions[0].current, decisions[0].desired), ("cpu", 1, 3));
        assert_eq!(scaling.next_round_in("uid"), Some(Duration::from_secs(30)));
        assert_eq!(round_times(&scaling, &job, 2).await, vec![30, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_data_holds_and_backs_off_one_two_then_four_intervals_until_good_data_returns() {
        let silent = Err(DataProblem::CoordinatorSilent);
        let answers = vec![silent.clone(), silent.clone(), silent.clone(), silent, Ok(busy_pool("cpu", 0.7))];
        let (scaling, _) = scaling(answers, Some("http://prometheus:9090"));
        let job = running("{mode: recommend, intervalSeconds: 10}");
        let first = scaling.round("uid", &job, &pods()).await;
        let Some(ScalingRound::Decided { decisions, problem: Some(problem) }) = first else { panic!("{first:?}") };
        assert!(problem.contains("no job figures"), "{problem}");
        assert_eq!(decisions[0].desired, decisions[0].current, "bad data holds");
        assert_eq!(round_times(&scaling, &job, 5).await, vec![10, 30, 70, 110, 120], "1, 2, 4, 4, then 1");
    }

    #[tokio::test(start_paused = true)]
    async fn the_jobs_prometheus_wins_the_operators_serves_the_rest_and_without_either_there_is_no_round() {
        let (with_default, script) = scaling(vec![Ok(busy_pool("cpu", 0.7))], Some("http://operator-wide:9090"));
        with_default.round("a", &running("{mode: auto, prometheus: {url: \"http://own:9090\"}}"), &pods()).await;
        with_default.round("b", &running("{mode: auto}"), &pods()).await;
        assert_eq!(*script.urls.lock().expect("urls"), ["http://own:9090", "http://operator-wide:9090"]);

        let (without, script) = scaling(vec![Ok(busy_pool("cpu", 0.7))], None);
        let round = without.round("c", &running("{mode: auto}"), &pods()).await;
        assert_eq!(round, Some(ScalingRound::NoPrometheus));
        assert!(script.urls.lock().expect("urls").is_empty());
        assert_eq!(without.round("c", &running("{mode: disabled}"), &pods()).await, None);
        let pending = running("{mode: auto, prometheus: {url: \"http://own:9090\"}}").in_phase(JobPhase::Pending, 0);
        assert_eq!(without.round("c", &pending, &pods()).await, None, "no round before the job runs");
        assert_eq!(without.next_round_in("c"), None);
    }

    #[test]
    fn drains_of_pods_gone_are_forgotten_and_the_coordinators_own_are_adopted() {
        let (scaling, _) = scaling(vec![Err(DataProblem::CoordinatorSilent)], None);
        scaling.drain_started("uid", "thumbs-cpu-0", at(10));
        scaling.drain_started("uid", "thumbs-cpu-9", at(10));
        let pods = [PodView::worker(PoolName::cpu(), 0).running(), PodView::worker(PoolName::cpu(), 1).running()];
        let draining = WorkerSeen { draining: true, ..worker_seen("thumbs-cpu-1", 1) };
        let drains = scaling.drains("uid", &pods, Some(&[draining]), &at(20));
        assert_eq!(drains, Drains::from([("thumbs-cpu-0".into(), at(10)), ("thumbs-cpu-1".into(), at(20))]));
        scaling.forget("uid");
        assert_eq!(scaling.drains("uid", &pods, None, &at(30)), Drains::new());
    }
}
