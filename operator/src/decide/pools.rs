//! Worker pools kept by count: each pool keeps `desired` live workers. Missing ones are created at
//! the lowest free index; failed ones, and ones that exited 0 while the job goes on, are deleted
//! (and so replaced while the count is short). The surplus is drained first when autoscaling is on
//! (the idlest workers, deleted once the coordinator says they hold nothing) and deleted from the
//! highest index when it is off (SIGTERM makes a worker hand its units back).

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::time::Duration;

use weir_crds::placement::pools_in_use;
use weir_crds::{AutoscalingMode, PoolName};

use super::{Decision, WorkerSeen, scale};
use crate::observe::{PodPhase, PodView, Role};

/// A drain not finished after this long deletes the pod anyway: SIGTERM makes the worker hand
/// back what it holds, those units are leased again, and the checkpoint keeps the output
/// exactly-once.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// One pool's worker pods, sorted out.
#[derive(Default)]
struct Census<'p> {
    /// Running or starting, not draining: the workers that count.
    serving: Vec<&'p PodView>,
    /// Exited 0 while the job may be ending: left in place, and counted, so none is replaced.
    exited: usize,
    /// Every index in use, terminating pods included (their names are not free yet).
    taken: BTreeSet<u32>,
}

impl<'a> Decision<'a> {
    /// Keeps each pool the job uses at its desired count, and removes the workers of pools it no
    /// longer uses.
    pub(super) fn workers(&mut self) {
        let pools = pools_in_use(&self.job.spec);
        let unused: Vec<String> = self
            .live_pods()
            .filter(|p| matches!(&p.role, Role::Worker { pool, .. } if !pools.contains(pool)))
            .map(|p| p.name.clone())
            .collect();
        self.plan.delete.extend(unused);
        let mut replicas = self.scaled_pools(&pools);
        for pool in &pools {
            let entry = replicas.entry(pool.to_string()).or_default();
            entry.ready = self.keep_pool(pool, entry.desired.max(0) as usize);
        }
        self.plan.status.set_pools(replicas);
    }

    /// Creates, deletes and drains workers of `pool` toward `desired`; returns how many of those
    /// kept are ready.
    fn keep_pool(&mut self, pool: &PoolName, desired: usize) -> i32 {
        let census = self.census(pool);
        let present = census.serving.len() + census.exited;
        let finishing = self.seen.progress.is_some_and(|p| p.finishing);
        if present < desired && !finishing {
            let free = (0..).filter(|i| !census.taken.contains(i));
            let slots = free.take(desired - present).map(|i| super::Slot::Worker(pool.clone(), i));
            self.plan.create.extend(slots);
        }
        // Pods that exited only hold a place: they never make a serving worker surplus.
        let surplus = census.serving.len().saturating_sub(desired);
        let removed = if surplus == 0 {
            Vec::new()
        } else if scale::mode(self.job) == AutoscalingMode::Disabled {
            let mut by_index = census.serving.clone();
            by_index.sort_by_key(|p| Reverse(index(p)));
            by_index.truncate(surplus);
            self.plan.delete.extend(by_index.iter().map(|p| p.name.clone()));
            by_index
        } else {
            self.shrink(pool, &census.serving, surplus)
        };
        let kept = census.serving.iter().filter(|p| !removed.iter().any(|r| r.name == p.name));
        kept.filter(|p| p.ready).count() as i32
    }

    /// Sorts the pool's pods out, deleting those that are done: failed, drained, exited 0 while
    /// the job goes on, or draining past [`DRAIN_TIMEOUT`].
    fn census(&mut self, pool: &PoolName) -> Census<'a> {
        let seen: &'a super::Observed<'a> = self.seen;
        // A worker that exited 0 is replaced only when the coordinator says the job goes on: it
        // exits 0 when told the job ended, and an unread progress must not read as "go on".
        let going_on = seen.progress.is_some_and(|p| !p.finishing);
        let pods: Vec<&'a PodView> =
            seen.pods.iter().filter(|p| matches!(&p.role, Role::Worker { pool: q, .. } if q == pool)).collect();
        let mut census = Census { taken: pods.iter().map(|p| index(p)).collect(), ..Census::default() };
        for pod in pods.into_iter().filter(|p| !p.terminating) {
            let done = matches!(pod.phase, PodPhase::Failed | PodPhase::Succeeded);
            if self.draining(pod) {
                if done || self.drain_over(pod) {
                    self.plan.delete.push(pod.name.clone());
                }
            } else if pod.phase == PodPhase::Failed || (pod.phase == PodPhase::Succeeded && going_on) {
                self.plan.delete.push(pod.name.clone());
            } else if pod.phase == PodPhase::Succeeded {
                census.exited += 1;
            } else {
                census.serving.push(pod);
            }
        }
        census
    }

    /// Removes `count` of `serving` for a scale-down: pods that never started are deleted, the
    /// idlest of the others drained. Returns the pods removed or being drained.
    fn shrink<'p>(&mut self, pool: &PoolName, serving: &[&'p PodView], count: usize) -> Vec<&'p PodView> {
        let (mut pending, mut running): (Vec<&PodView>, Vec<&PodView>) =
            serving.iter().partition(|p| p.phase == PodPhase::Pending);
        pending.sort_by_key(|p| Reverse(index(p)));
        pending.truncate(count);
        self.plan.delete.extend(pending.iter().map(|p| p.name.clone()));
        let left = count - pending.len();
        if left == 0 {
            return pending;
        }
        let Some(workers) = self.seen.workers else {
            self.notes.push(format!(
                "pool {pool}: {left} surplus worker(s) kept until the coordinator lists what its workers hold"
            ));
            return pending;
        };
        let load = |p: &PodView| workers.iter().find(|w| w.name == p.name).map_or(0, |w| w.units_held + w.exchanges);
        running.sort_by_key(|p| (load(p), Reverse(index(p))));
        running.truncate(left);
        self.plan.drain.extend(running.iter().map(|p| p.name.clone()));
        pending.extend(running);
        pending
    }

    fn listed(&self, pod: &PodView) -> Option<&WorkerSeen> {
        self.seen.workers?.iter().find(|w| w.name == pod.name)
    }

    /// The operator asked for its drain, or the coordinator says one began.
    fn draining(&self, pod: &PodView) -> bool {
        self.seen.drains.contains_key(&pod.name) || self.listed(pod).is_some_and(|w| w.draining || w.drained)
    }

    /// A draining pod may go: the coordinator says it is drained (or has forgotten it, which it
    /// does once a drained worker is told to exit), or the drain ran past [`DRAIN_TIMEOUT`].
    fn drain_over(&self, pod: &PodView) -> bool {
        let drained = self.seen.workers.is_some() && self.listed(pod).is_none_or(|w| w.drained);
        let now = self.seen.now.0.as_second();
        let timeout = DRAIN_TIMEOUT.as_secs() as i64;
        let timed_out = self.seen.drains.get(&pod.name).is_some_and(|at| now - at.0.as_second() >= timeout);
        drained || timed_out
    }
}

fn index(pod: &PodView) -> u32 {
    match pod.role {
        Role::Worker { index, .. } => index,
        Role::Coordinator => 0,
    }
}
