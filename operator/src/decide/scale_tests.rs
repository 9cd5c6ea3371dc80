//! Pools kept by count, drains before deletions, and the autoscaler's decisions in pods, status
//! and Events.

use weir_crds::{JobPhase, PoolName};

use super::*;
use crate::fixtures::{JobFixture, at, decision, job, worker_seen};

const NOW: i64 = 1_000_000;
const POOLS: &str = "  pools:\n    cpu: {replicas: {min: 1, max: 6}}\n";

fn autoscaled(mode: &str) -> MultimodalJob {
    let spec = format!("{POOLS}  autoscaling: {{mode: {mode}, prometheus: {{url: \"http://prometheus:9090\"}}}}\n");
    job(&spec).in_phase(JobPhase::Running, NOW - 600)
}

fn going_on() -> CoordinatorProgress {
    CoordinatorProgress { units_total: 100, units_committed: 10, ..CoordinatorProgress::default() }
}

/// What a reconcile sees, by parts; `decide` runs on it.
struct Seen<'a> {
    pods: Vec<PodView>,
    workers: Option<Vec<WorkerSeen>>,
    drains: Drains,
    scaling: Option<ScalingRound>,
    job: &'a MultimodalJob,
}

impl<'a> Seen<'a> {
    fn of(job: &'a MultimodalJob, workers: u32) -> Self {
        let mut pods = vec![PodView::coordinator().running()];
        pods.extend((0..workers).map(|i| PodView::worker(PoolName::cpu(), i).running()));
        Self { pods, workers: None, drains: Drains::new(), scaling: None, job }
    }

    fn round(mut self, decisions: Vec<weir_autoscale::Decision>) -> Self {
        self.scaling = Some(ScalingRound::Decided { decisions, problem: None });
        self
    }

    fn workers(mut self, workers: Vec<WorkerSeen>) -> Self {
        self.workers = Some(workers);
        self
    }

    fn plan(&self) -> Plan {
        let progress = going_on();
        let seen = Observed {
            pods: &self.pods,
            progress: Some(&progress),
            workers: self.workers.as_deref(),
            drains: &self.drains,
            scaling: self.scaling.as_ref(),
            secret_problem: None,
            now: at(NOW),
        };
        decide(self.job, &seen)
    }
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let c = plan.status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn workers(pool: &str, indexes: &[u32]) -> Vec<Slot> {
    let pool = PoolName::new(pool).expect("pool");
    indexes.iter().map(|i| Slot::Worker(pool.clone(), *i)).collect()
}

#[test]
fn auto_mode_turns_an_up_decision_into_pods_status_and_a_scaled_up_event() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 2, ..PoolReplicas::default() });
    let p = Seen::of(&job, 2).round(vec![decision("cpu", 2, 5, 4)]).plan();
    assert_eq!(p.create, workers("cpu", &[2, 3]));
    assert_eq!(p.delete, Vec::<String>::new());
    let cpu = &p.status.pools["cpu"];
    assert_eq!((cpu.desired, cpu.ready, cpu.recommended), (4, 2, Some(5)));
    assert_eq!(cpu.reason.as_deref(), Some("cpu: utilisation test: 2 → 4"));
    assert_eq!(cpu.last_scale_time, Some(at(NOW)));
    assert_eq!(reasons(&p), vec!["ScaledUp"]);
    assert_eq!(p.events[0].note, "cpu: utilisation test: 2 → 4");
    assert_eq!(condition(&p, AUTOSCALER_READY).map(|c| (c.0, c.1)), Some(("True", "SignalsRead")));
    assert_eq!(p.status.pool_summary.as_deref(), Some("cpu 2/4"));
}

#[test]
fn the_desired_count_holds_between_rounds_and_stays_within_the_bounds() {
    let before = PoolReplicas {
        desired: 4,
        ready: 2,
        recommended: Some(5),
        reason: Some("up".into()),
        last_scale_time: Some(at(NOW - 30)),
    };
    let job = autoscaled("auto").with_pool("cpu", before.clone());
    let p = Seen::of(&job, 4).plan();
    assert_eq!((p.create.clone(), p.delete.clone(), p.drain.clone()), (vec![], vec![], vec![]));
    assert_eq!(p.status.pools["cpu"], PoolReplicas { ready: 4, ..before.clone() }, "no round: nothing changes");
    assert_eq!(reasons(&p), Vec::<&str>::new());

    let mut smaller = job.clone();
    if let Some(bounds) = smaller.spec.pools.as_mut().and_then(|p| p.get_mut(&PoolName::cpu())) {
        bounds.replicas = Some(weir_crds::ReplicaBounds { min: 1, max: 3 });
    }
    let p = Seen::of(&smaller, 3).plan();
    assert_eq!(p.status.pools["cpu"].desired, 3, "a max lowered in the spec caps the kept count");
}

#[test]
fn recommend_mode_reports_without_touching_pods_and_records_only_a_changed_recommendation() {
    let job = autoscaled("recommend");
    let p = Seen::of(&job, 1).round(vec![decision("cpu", 1, 3, 3)]).plan();
    assert_eq!((p.create.clone(), p.delete.clone(), p.drain.clone()), (vec![], vec![], vec![]));
    let cpu = &p.status.pools["cpu"];
    assert_eq!((cpu.desired, cpu.recommended, cpu.last_scale_time.clone()), (1, Some(3), None));
    assert_eq!(cpu.reason.as_deref(), Some("cpu: utilisation test: 1 → 3"));
    assert_eq!(reasons(&p), vec!["Recommended"]);
    assert!(p.events[0].note.starts_with("recommended 3: cpu:"), "{}", p.events[0].note);

    let mut again = job.clone();
    again.status = Some(p.status.clone());
    let same = Seen::of(&again, 1).round(vec![decision("cpu", 1, 3, 3)]).plan();
    assert_eq!(reasons(&same), Vec::<&str>::new(), "the same recommendation is not told twice");
    let lower = Seen::of(&again, 1).round(vec![decision("cpu", 1, 2, 2)]).plan();
    assert_eq!(reasons(&lower), vec!["Recommended"]);
}

#[test]
fn a_surplus_drains_the_idlest_worker_first_and_deletes_it_only_once_drained() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 3, ..PoolReplicas::default() });
    let busy = vec![worker_seen("thumbs-cpu-0", 2), worker_seen("thumbs-cpu-1", 0), worker_seen("thumbs-cpu-2", 1)];
    let p = Seen::of(&job, 3).workers(busy.clone()).round(vec![decision("cpu", 3, 2, 2)]).plan();
    assert_eq!(p.drain, vec!["thumbs-cpu-1"], "the idlest, not the highest index");
    assert_eq!(p.delete, Vec::<String>::new(), "a busy worker is never killed");
    assert_eq!(reasons(&p), vec!["ScaledDown"]);
    assert_eq!(p.status.pools["cpu"].desired, 2);

    let job = job.with_pool("cpu", p.status.pools["cpu"].clone());
    let mut draining = Seen::of(&job, 3).workers(busy.clone());
    draining.drains.insert("thumbs-cpu-1".into(), at(NOW - 10));
    draining.workers.as_mut().expect("workers")[1].draining = true;
    draining.workers.as_mut().expect("workers")[1].units_held = 1;
    let p = draining.plan();
    assert_eq!((p.drain.clone(), p.delete.clone(), p.create.clone()), (vec![], vec![], vec![]), "it is draining");
    assert_eq!(p.status.pools["cpu"].ready, 2, "a draining worker does not count");

    draining.workers.as_mut().expect("workers")[1].drained = true;
    assert_eq!(draining.plan().delete, vec!["thumbs-cpu-1"], "drained: exactly that pod goes");
    draining.workers.as_mut().expect("workers").remove(1);
    assert_eq!(draining.plan().delete, vec!["thumbs-cpu-1"], "forgotten by the coordinator: drained");
}

#[test]
fn a_drain_past_the_timeout_deletes_the_pod_anyway() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 1, ..PoolReplicas::default() });
    let mut seen = Seen::of(&job, 2).workers(vec![worker_seen("thumbs-cpu-0", 1), worker_seen("thumbs-cpu-1", 3)]);
    seen.workers.as_mut().expect("workers")[1].draining = true;
    seen.drains.insert("thumbs-cpu-1".into(), at(NOW - DRAIN_TIMEOUT.as_secs() as i64 + 1));
    assert_eq!(seen.plan().delete, Vec::<String>::new());
    seen.drains.insert("thumbs-cpu-1".into(), at(NOW - DRAIN_TIMEOUT.as_secs() as i64));
    assert_eq!(seen.plan().delete, vec!["thumbs-cpu-1"]);
    seen.workers = None;
    assert_eq!(seen.plan().delete, vec!["thumbs-cpu-1"], "the timeout needs no worker list");
}

#[test]
fn a_drained_worker_that_exited_zero_is_deleted_and_not_replaced() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 1, ..PoolReplicas::default() });
    let mut seen = Seen::of(&job, 1).workers(vec![worker_seen("thumbs-cpu-0", 1)]);
    seen.pods.push(PodView::worker(PoolName::cpu(), 1).exited(0, ""));
    seen.drains.insert("thumbs-cpu-1".into(), at(NOW - 20));
    let p = seen.plan();
    assert_eq!(p.delete, vec!["thumbs-cpu-1"]);
    assert_eq!(p.create, vec![], "the count is met: a drained pod is not replaced");

    seen.drains.clear();
    let p = seen.plan();
    assert_eq!(p.delete, vec!["thumbs-cpu-1"], "one that exited 0 while the job goes on goes too");
    assert_eq!(p.create, vec![], "and is replaced only while the count is short");
}

#[test]
fn a_worker_that_failed_is_replaced_at_the_lowest_free_index() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 3, ..PoolReplicas::default() });
    let mut seen = Seen::of(&job, 0);
    seen.pods.extend([
        PodView::worker(PoolName::cpu(), 0).exited(1, "Evicted"),
        PodView::worker(PoolName::cpu(), 1).running().terminating(),
        PodView::worker(PoolName::cpu(), 3).running(),
    ]);
    let p = seen.plan();
    assert_eq!(p.delete, vec!["thumbs-cpu-0"]);
    assert_eq!(p.create, workers("cpu", &[2, 4]), "names still in use are not free");
}

#[test]
fn without_the_coordinators_worker_list_nothing_is_drained_but_a_pod_that_never_started_goes() {
    let job = autoscaled("auto").with_pool("cpu", PoolReplicas { desired: 3, ..PoolReplicas::default() });
    let mut seen = Seen::of(&job, 3).round(vec![decision("cpu", 3, 1, 1)]);
    let p = seen.plan();
    assert_eq!((p.drain.clone(), p.delete.clone()), (vec![], vec![]));
    let message = p.status.message.clone().unwrap_or_default();
    assert!(message.contains("pool cpu: 2 surplus worker(s) kept until the coordinator lists"), "{message}");

    seen.pods[3] = PodView::worker(PoolName::cpu(), 2);
    let p = seen.plan();
    assert_eq!(p.delete, vec!["thumbs-cpu-2"], "a pending pod holds nothing: deleted without a drain");
    assert_eq!(p.drain, Vec::<String>::new());
}

#[test]
fn bad_data_holds_every_pool_with_autoscaler_ready_false_and_the_problem() {
    let job = autoscaled("auto")
        .with_pool("cpu", PoolReplicas { desired: 2, recommended: Some(2), ..PoolReplicas::default() });
    let mut seen = Seen::of(&job, 2);
    let problem = "no samples yet for weir_step_busy_seconds_total of pool cpu".to_string();
    let held = weir_autoscale::Decision { reason: format!("cpu: holding at 2: {problem}"), ..decision("cpu", 2, 2, 2) };
    seen.scaling = Some(ScalingRound::Decided { decisions: vec![held], problem: Some(problem.clone()) });
    let p = seen.plan();
    assert_eq!((p.create.clone(), p.delete.clone(), p.drain.clone()), (vec![], vec![], vec![]));
    assert_eq!(condition(&p, AUTOSCALER_READY), Some(("False", "NoData", problem.as_str())));
    let cpu = &p.status.pools["cpu"];
    assert_eq!((cpu.desired, cpu.recommended), (2, Some(2)));
    assert!(cpu.reason.as_deref().is_some_and(|r| r.contains("holding at 2")));
    assert_eq!(reasons(&p), Vec::<&str>::new());
}

#[test]
fn no_prometheus_names_the_flag_and_the_helm_value() {
    let job = job(&format!("{POOLS}  autoscaling: {{mode: auto}}\n")).in_phase(JobPhase::Running, NOW - 60);
    let mut seen = Seen::of(&job, 1);
    seen.scaling = Some(ScalingRound::NoPrometheus);
    let p = seen.plan();
    let (status, reason, message) = condition(&p, AUTOSCALER_READY).expect("condition");
    assert_eq!((status, reason), ("False", "NoPrometheus"));
    assert!(message.contains("--prometheus-url") && message.contains("autoscaler.prometheusUrl"), "{message}");
    assert_eq!(p.status.pools["cpu"].desired, 1);
}

#[test]
fn with_autoscaling_disabled_a_pool_runs_its_min_and_loses_the_autoscalers_condition() {
    let mut job = autoscaled("auto");
    job.status = Some(Seen::of(&job, 2).round(vec![decision("cpu", 1, 2, 2)]).plan().status);
    job.spec.autoscaling = None;
    let mut seen = Seen::of(&job, 2).workers(vec![worker_seen("thumbs-cpu-0", 0), worker_seen("thumbs-cpu-1", 3)]);
    seen.scaling = Some(ScalingRound::Decided { decisions: vec![decision("cpu", 1, 2, 2)], problem: None });
    let p = seen.plan();
    assert_eq!(p.delete, vec!["thumbs-cpu-1"], "today's behaviour: the highest index, no drain");
    assert_eq!(p.drain, Vec::<String>::new());
    assert_eq!(p.status.pools["cpu"], PoolReplicas { desired: 1, ready: 1, ..PoolReplicas::default() });
    assert_eq!(condition(&p, AUTOSCALER_READY), None);
    assert_eq!(reasons(&p), Vec::<&str>::new());
}
