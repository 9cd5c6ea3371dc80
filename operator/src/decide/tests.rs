//! Table-driven tests of the job lifecycle.

use std::time::Duration;

use weir_crds::{JobPhase, PoolName};

use super::*;
use crate::fixtures::{JobFixture, at, job};

const NOW: i64 = 1_000_000;

fn plan(job: &MultimodalJob, pods: &[PodView], progress: Option<&CoordinatorProgress>) -> Plan {
    decide(job, &Observed::new(pods, progress, at(NOW)))
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> (&'a str, &'a str) {
    let c = plan.status.conditions.iter().find(|c| c.type_ == type_).expect("condition");
    (c.status.as_str(), c.reason.as_str())
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn half_done() -> CoordinatorProgress {
    CoordinatorProgress {
        units_total: 8,
        units_committed: 4,
        rows_in: 1000,
        rows_out: 990,
        rows_failed: 10,
        eta_seconds: Some(200.0),
        finishing: false,
    }
}

#[test]
fn a_new_job_gets_its_children_a_coordinator_and_one_worker_per_pool_it_uses() {
    let cases = [
        ("", vec![Slot::Coordinator, Slot::Worker(PoolName::cpu(), 0)]),
        (
            "  pools:\n    gpu: {replicas: {min: 2, max: 4}, gpusPerPod: 1}\n",
            vec![
                Slot::Coordinator,
                Slot::Worker(PoolName::cpu(), 0),
                Slot::Worker(PoolName::gpu(), 0),
                Slot::Worker(PoolName::gpu(), 1),
            ],
        ),
        (
            "  pools:\n    cpu: {replicas: {min: 3, max: 3}}\n",
            vec![
                Slot::Coordinator,
                Slot::Worker(PoolName::cpu(), 0),
                Slot::Worker(PoolName::cpu(), 1),
                Slot::Worker(PoolName::cpu(), 2),
            ],
        ),
    ];
    for (pools, expected) in cases {
        let p = plan(&job(pools), &[], None);
        assert!(p.ensure_children);
        assert_eq!(p.create, expected, "pools: {pools}");
        assert_eq!(p.status.phase, Some(JobPhase::Pending));
        assert_eq!(p.status.start_time, Some(at(NOW)));
        assert_eq!(p.status.observed_generation, Some(1));
        assert_eq!(condition(&p, "Progressing"), ("True", "Pending"));
        assert_eq!(condition(&p, "Ready").0, "False");
        assert_eq!(reasons(&p), vec!["Created"]);
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
    }
}

#[test]
fn a_running_coordinator_makes_the_job_running_with_its_progress() {
    let job = job("").in_phase(JobPhase::Pending, NOW - 60);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()];
    let p = plan(&job, &pods, Some(&half_done()));
    assert_eq!(p.create, vec![]);
    assert_eq!(p.delete, Vec::<String>::new());
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    let progress = p.status.progress.as_ref().expect("progress");
    assert_eq!((progress.units_done, progress.units_total, progress.rows_failed), (4, 8, 10));
    assert_eq!(progress.percent.as_deref(), Some("50%"));
    assert_eq!(progress.eta.as_deref(), Some("3m20s"));
    assert_eq!(p.status.checkpoint.as_ref().map(|c| c.units_committed), Some(4));
    assert_eq!(p.status.pools["cpu"].ready, 1);
    assert_eq!(condition(&p, "Ready"), ("True", "Ready"));
    assert_eq!(reasons(&p), vec!["Running"]);
    assert_eq!(p.requeue, Some(PROGRESS_INTERVAL));
    assert_eq!(p.status.start_time, Some(at(NOW - 60)), "the start time is kept");
}

#[test]
fn the_coordinators_exit_code_decides_success_failure_or_a_restart() {
    let running = job("  backoffLimit: 1\n").in_phase(JobPhase::Running, NOW - 60);
    let worker = PodView::worker(PoolName::cpu(), 0).running();

    let done = plan(&running, &[PodView::coordinator().exited(0, ""), worker.clone()], None);
    assert_eq!(done.status.phase, Some(JobPhase::Succeeded));
    assert_eq!(done.status.completion_time, Some(at(NOW)));
    assert_eq!(done.delete, vec![worker.name.clone()], "workers still up are stopped");
    assert_eq!(condition(&done, "Complete"), ("True", "Succeeded"));
    assert_eq!(reasons(&done), vec!["Succeeded"]);

    let failed =
        plan(&running, &[PodView::coordinator().exited(3, "row 7 of a.jpg: not an image"), worker.clone()], None);
    assert_eq!(failed.status.phase, Some(JobPhase::Failed));
    assert_eq!(condition(&failed, "Failed"), ("True", "JobFailed"));
    assert!(failed.status.message.as_deref().is_some_and(|m| m.contains("a.jpg")));
    assert_eq!(failed.delete, vec![worker.name.clone()]);

    let crashed = plan(&running, &[PodView::coordinator().exited(137, "OOMKilled"), worker.clone()], None);
    assert_eq!(crashed.status.coordinator_restarts, Some(1));
    assert_eq!(crashed.delete, vec!["thumbs-coordinator".to_string()]);
    assert_eq!(reasons(&crashed), vec!["CoordinatorRestarted"]);
    assert!(crashed.events[0].warning);

    let mut again = running.clone();
    again.status.as_mut().expect("status").coordinator_restarts = Some(1);
    let exhausted = plan(&again, &[PodView::coordinator().exited(1, "panic")], None);
    assert_eq!(exhausted.status.phase, Some(JobPhase::Failed));
    assert_eq!(condition(&exhausted, "Failed"), ("True", "BackoffLimitExceeded"));
}

#[test]
fn a_deleted_coordinator_is_awaited_while_terminating_then_recreated() {
    let running = job("").in_phase(JobPhase::Running, NOW - 60);
    let waiting = plan(&running, &[PodView::coordinator().running().terminating()], None);
    assert!(!waiting.create.contains(&Slot::Coordinator));
    let gone = plan(&running, &[], None);
    assert!(gone.create.contains(&Slot::Coordinator));
}

#[test]
fn workers_that_failed_are_replaced_and_the_surplus_is_removed_highest_index_first() {
    let job = job("  pools:\n    cpu: {replicas: {min: 1, max: 4}}\n").in_phase(JobPhase::Running, NOW - 60);
    let pods = [
        PodView::coordinator().running(),
        PodView::worker(PoolName::cpu(), 0).exited(1, "Evicted"),
        PodView::worker(PoolName::cpu(), 1).running(),
        PodView::worker(PoolName::cpu(), 2).running(),
        PodView::worker(PoolName::cpu(), 3).running().terminating(),
    ];
    let p = plan(&job, &pods, None);
    assert_eq!(p.delete, vec!["thumbs-cpu-0", "thumbs-cpu-2"], "one worker is kept: the count is what matters");
    assert_eq!(p.create, vec![]);
    assert_eq!(p.status.pools["cpu"].desired, 1);
}

#[test]
fn workers_are_not_replaced_once_the_coordinator_is_finishing() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let finishing = CoordinatorProgress { units_committed: 8, units_total: 8, finishing: true, ..half_done() };
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).exited(0, "")];
    let p = plan(&job, &pods, Some(&finishing));
    assert_eq!((p.create.clone(), p.delete.clone()), (vec![], vec![]));
}

#[test]
fn suspending_drains_workers_before_the_coordinator_and_resuming_starts_again() {
    let suspend = job("  suspend: true\n").in_phase(JobPhase::Running, NOW - 60);
    let coordinator = PodView::coordinator().running();
    let worker = PodView::worker(PoolName::cpu(), 0).running();
    let first = plan(&suspend, &[coordinator.clone(), worker.clone()], None);
    assert_eq!(first.delete, vec![worker.name.clone()]);
    assert_eq!(first.status.phase, Some(JobPhase::Suspended));
    assert_eq!(first.status.start_time, Some(at(NOW - 60)), "a suspended job stays started (its results are frozen)");
    assert_eq!(condition(&first, "Suspended"), ("True", "Suspended"));
    assert_eq!(reasons(&first), vec!["Suspended"]);

    let mut counted = suspend.clone();
    counted.spec.suspend = None;
    counted.status = Some(plan(&counted, &[coordinator.clone(), worker.clone()], None).status);
    assert_eq!(counted.status.as_ref().and_then(|s| s.pool_summary.as_deref()), Some("cpu 1/1"));
    counted.spec.suspend = Some(true);
    let zeroed = plan(&counted, &[coordinator.clone(), worker.clone()], None);
    assert_eq!(zeroed.status.pool_summary.as_deref(), Some("cpu 0/0"), "a suspended job wants no pods");

    let draining = plan(&suspend, &[coordinator.clone(), worker.clone().terminating()], None);
    assert_eq!(draining.delete, Vec::<String>::new(), "the coordinator waits for the workers");
    let last = plan(&suspend, std::slice::from_ref(&coordinator), None);
    assert_eq!(last.delete, vec![coordinator.name.clone()]);
    let idle = plan(&suspend, &[], None);
    assert_eq!(idle.requeue, None);
    assert!(!idle.ensure_children && idle.create.is_empty());

    let resumed = job("").in_phase(JobPhase::Suspended, NOW - 60);
    let p = plan(&resumed, &[], None);
    assert_eq!(reasons(&p), vec!["Resumed"]);
    assert_eq!(p.create.first(), Some(&Slot::Coordinator));
    assert_eq!(p.status.start_time, Some(at(NOW)), "the deadline counts from the resume");
}

#[test]
fn workers_of_a_pool_the_job_no_longer_uses_are_removed() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let pods = [
        PodView::coordinator().running(),
        PodView::worker(PoolName::cpu(), 0).running(),
        PodView::worker(PoolName::gpu(), 0).running(),
    ];
    let p = plan(&job, &pods, None);
    assert_eq!(p.delete, vec!["thumbs-gpu-0"]);
    assert!(!p.status.pools.contains_key("gpu"));
}

#[test]
fn a_worker_that_exited_zero_is_replaced_only_when_the_coordinator_says_the_job_goes_on() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).exited(0, "")];
    assert_eq!(plan(&job, &pods, None).delete, Vec::<String>::new(), "progress unknown: leave it");
    assert_eq!(plan(&job, &pods, Some(&half_done())).delete, vec!["thumbs-cpu-0"]);
}

#[test]
fn a_pod_stuck_terminating_past_its_grace_is_force_deleted() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let lost = PodView::coordinator().running().terminating_until(NOW - FORCE_DELETE_AFTER);
    let leaving = PodView::worker(PoolName::cpu(), 0).running().terminating_until(NOW - 5);
    let p = plan(&job, &[lost, leaving], None);
    assert_eq!(p.force_delete, vec!["thumbs-coordinator"]);
    assert!(!p.create.contains(&Slot::Coordinator), "the slot is refilled once the pod is gone");
}

#[test]
fn a_pod_that_cannot_start_is_named_in_the_status_message() {
    let job = job("").in_phase(JobPhase::Pending, NOW - 60);
    let pods = [PodView::coordinator().stuck("ImagePullBackOff: pull access denied for weir")];
    let p = plan(&job, &pods, None);
    let message = p.status.message.as_deref().unwrap_or_default();
    assert!(message.contains("thumbs-coordinator: ImagePullBackOff"), "{message}");
    assert_eq!(condition(&p, "Ready").0, "False");
}

#[test]
fn a_job_past_its_deadline_fails_and_its_pods_are_stopped() {
    let job = job("  activeDeadlineSeconds: 600\n").in_phase(JobPhase::Running, NOW - 601);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()];
    let p = plan(&job, &pods, None);
    assert_eq!(p.status.phase, Some(JobPhase::Failed));
    assert_eq!(condition(&p, "Failed"), ("True", "DeadlineExceeded"));
    assert_eq!(p.delete.len(), 2);
}

#[test]
fn a_finished_job_keeps_its_pods_until_the_ttl_then_loses_every_child_but_stays() {
    let ended = job("  ttlSecondsAfterFinished: 300\n").in_phase(JobPhase::Succeeded, NOW - 900).finished_at(NOW - 100);
    let pods = [PodView::coordinator().exited(0, "")];
    let before = plan(&ended, &pods, None);
    assert!(!before.delete_all);
    assert_eq!(before.requeue, Some(Duration::from_secs(200)));
    assert_eq!(before.status.phase, Some(JobPhase::Succeeded));
    assert!(before.create.is_empty() && before.delete.is_empty());

    let expired =
        job("  ttlSecondsAfterFinished: 60\n").in_phase(JobPhase::Succeeded, NOW - 900).finished_at(NOW - 100);
    let after = plan(&expired, &pods, None);
    assert!(after.delete_all);
    assert_eq!(reasons(&after), vec!["TTLExpired"]);
    assert_eq!(after.status.phase, Some(JobPhase::Succeeded));
    assert_eq!(plan(&expired, &[], None).events, vec![], "no event once the children are gone");

    let no_ttl = job("").in_phase(JobPhase::Failed, NOW - 900).finished_at(NOW - 100);
    let kept = plan(&no_ttl, &pods, None);
    assert!(!kept.delete_all && kept.requeue.is_none());
}

#[test]
fn conditions_carry_the_generation_and_the_failure_reason_survives_later_reconciles() {
    let mut job = job("  activeDeadlineSeconds: 10\n").in_phase(JobPhase::Running, NOW - 60);
    job.metadata.generation = Some(4);
    let failed = plan(&job, &[], None);
    assert!(failed.status.conditions.iter().all(|c| c.observed_generation == Some(4)));
    job.status = Some(failed.status);
    let later = plan(&job, &[], None);
    assert_eq!(condition(&later, "Failed"), ("True", "DeadlineExceeded"));
}

#[test]
fn progress_younger_than_the_minimum_age_is_not_rewritten() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()];
    let first = plan(&job, &pods, Some(&half_done()));
    let mut written = job.clone();
    written.status = Some(first.status.clone());
    let later = CoordinatorProgress { units_committed: 5, ..half_done() };
    let soon = decide(&written, &Observed::new(&pods, Some(&later), at(NOW + PROGRESS_MIN_AGE - 1)));
    assert_eq!(soon.status, first.status, "a reconcile right after a status write changes nothing");
    let due = decide(&written, &Observed::new(&pods, Some(&later), at(NOW + PROGRESS_MIN_AGE)));
    assert_eq!(due.status.progress.map(|p| p.units_done), Some(5));
}

#[test]
fn a_job_that_fails_the_checks_across_steps_fails_before_any_pod_with_valid_false() {
    let mut bad = job("  pools:\n    cpu: {}\n    gpu-l4: {}\n");
    // The embed step names a pool the job does not declare, and the decode step reads a column
    // no step makes: the API server's CEL lets both through (no rule iterates over steps).
    let text = serde_json::to_string(&bad.spec.steps).expect("steps");
    let text = text
        .replace("\"input\":\"bytes\"", "\"input\":\"raw\"")
        .replace("\"op\":\"image.embed\"", "\"op\":\"image.embed\",\"pool\":\"gpu-h100\"");
    bad.spec.steps = serde_json::from_str(&text).expect("steps");
    let p = plan(&bad, &[], None);
    assert_eq!(p.create, vec![]);
    assert!(!p.ensure_children, "no child is made for an invalid job");
    assert_eq!(p.status.phase, Some(JobPhase::Failed));
    assert_eq!(condition(&p, "Valid"), ("False", "Invalid"));
    assert_eq!(condition(&p, "Failed"), ("True", "Invalid"));
    let message = p.status.message.as_deref().unwrap_or_default();
    assert!(message.contains("spec.steps[1]: image.decode reads column `raw`, which does not exist"), "{message}");
    assert!(message.contains("spec.steps[2].pool: pool `gpu-h100` is not declared"), "{message}");
    assert_eq!(reasons(&p), vec!["Invalid"]);

    let good = plan(&job(""), &[], None);
    assert_eq!(condition(&good, "Valid"), ("True", "Valid"));

    // Started, then edited invalid (a pool its step names removed): it goes on, flagged.
    let started = bad.in_phase(JobPhase::Running, NOW - 60);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()];
    let p = plan(&started, &pods, Some(&half_done()));
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    assert_eq!(condition(&p, "Valid"), ("False", "Invalid"));
    assert!(p.delete.is_empty(), "{:?}", p.delete);
}

#[test]
fn a_finished_job_reports_no_pods_wanted_in_every_pool() {
    let running = job("  pools:\n    gpu: {gpusPerPod: 1}\n").in_phase(JobPhase::Running, NOW - 60);
    let pods = [
        PodView::coordinator().running(),
        PodView::worker(PoolName::cpu(), 0).running(),
        PodView::worker(PoolName::gpu(), 0).running(),
    ];
    let during = plan(&running, &pods, Some(&half_done()));
    assert_eq!(during.status.pool_summary.as_deref(), Some("cpu 1/1, gpu 1/1"));
    let mut after = running.clone();
    after.status = Some(during.status.clone());
    let pods = [PodView::coordinator().exited(0, ""), pods[1].clone(), pods[2].clone()];
    let done = plan(&after, &pods, None);
    assert_eq!(done.status.phase, Some(JobPhase::Succeeded));
    assert_eq!(done.status.pool_summary.as_deref(), Some("cpu 0/0, gpu 0/0"));
    assert!(done.status.pools.values().all(|r| r.desired == 0 && r.ready == 0));
}

#[test]
fn a_running_job_whose_secret_is_unusable_says_so_in_its_message_and_conditions() {
    let job = job("").in_phase(JobPhase::Running, NOW - 60);
    let pods = [PodView::coordinator().running(), PodView::worker(PoolName::cpu(), 0).running()];
    let problem = "the job's Secret `thumbs-weir-secret` is unusable: the job secret's `token` is missing";
    let seen = Observed { secret_problem: Some(problem), ..Observed::new(&pods, None, at(NOW)) };
    let p = decide(&job, &seen);
    assert_eq!(p.status.phase, Some(JobPhase::Running));
    let message = p.status.message.as_deref().unwrap_or_default();
    assert!(message.contains(problem), "{message}");
    let ready = p.status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(ready.message.contains(problem), "{}", ready.message);
}
