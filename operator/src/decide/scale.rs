//! The autoscaler's share of a decision: each pool's desired count, what the last round said of
//! it in `status.pools`, the `AutoscalerReady` condition and the scaling Events. The job's spec
//! is never written: in `auto` mode the desired count lives in `status.pools.<pool>.desired`.

use std::collections::BTreeMap;

use weir_autoscale::{Decision as Scaled, PoolState};
use weir_crds::placement::pools_in_use;
use weir_crds::{AutoscalingMode, MultimodalJob, PoolName, PoolReplicas};

use super::{Decision, desired_replicas};
use crate::conditions::{bounded_to, set};
use crate::observe::{PodPhase, PodView, Role};

/// The condition saying whether the last round had data to decide from.
pub const AUTOSCALER_READY: &str = "AutoscalerReady";
/// `status.pools.<pool>.reason` is at most this long (the CRD's schema says so).
pub const REASON_MAX: usize = 512;

const NO_PROMETHEUS: &str = "no Prometheus to read the signals from: set spec.autoscaling.prometheus.url, or start \
    the operator with --prometheus-url (Helm value autoscaler.prometheusUrl); each pool keeps its replicas";

/// One autoscaling round's outcome, as reconcile hands it to [`super::decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum ScalingRound {
    /// Neither the job nor the operator names a Prometheus: no round can run.
    NoPrometheus,
    /// A round ran: one decision per pool. `problem` is why its data was bad, in which case every
    /// decision holds its pool.
    Decided { decisions: Vec<Scaled>, problem: Option<String> },
}

/// The job's autoscaling mode (`disabled` when it has no `autoscaling`).
pub fn mode(job: &MultimodalJob) -> AutoscalingMode {
    job.spec.autoscaling.as_ref().map_or(AutoscalingMode::Disabled, |a| a.mode())
}

/// A pool's `[min, max]`: `min` at least one, `max` at least `min`.
fn bounds(job: &MultimodalJob, pool: &PoolName) -> (i32, i32) {
    let min = desired_replicas(job, pool) as i32;
    let max = job.spec.pools.as_ref().and_then(|p| p.get(pool)?.replicas).map_or(min, |r| r.max);
    (min, max.max(min))
}

/// The pool's desired count before this round: `min`, or in `auto` mode the last one in the
/// status (within the bounds; `min` when there is none, as after a suspension).
fn kept_desired(job: &MultimodalJob, pool: &PoolName) -> i32 {
    let (min, max) = bounds(job, pool);
    if mode(job) != AutoscalingMode::Auto {
        return min;
    }
    let status = job.status.as_ref().and_then(|s| s.pools.get(pool.as_str()));
    status.map(|p| p.desired).filter(|d| *d > 0).map_or(min, |d| d.clamp(min, max))
}

/// What the autoscaler is told of each pool the job uses: bounds, desired count, and how many of
/// its workers are running and ready.
pub fn pool_states(job: &MultimodalJob, pods: &[PodView]) -> BTreeMap<String, PoolState> {
    let state = |pool: PoolName| {
        let (min, max) = bounds(job, &pool);
        let current = kept_desired(job, &pool);
        let ready = pods
            .iter()
            .filter(|p| matches!(&p.role, Role::Worker { pool: q, .. } if *q == pool))
            .filter(|p| p.ready && p.phase == PodPhase::Running && !p.terminating)
            .count()
            .min(current as usize);
        let state = PoolState { min: min as u32, max: max as u32, current: current as u32, ready: ready as u32 };
        (pool.to_string(), state)
    };
    pools_in_use(&job.spec).into_iter().map(state).collect()
}

impl Decision<'_> {
    /// Each pool's entry before its pods are counted: the desired count and what the autoscaler
    /// said (kept between rounds; replaced by this round's decision when one ran).
    pub(super) fn scaled_pools(&mut self, pools: &[PoolName]) -> BTreeMap<String, PoolReplicas> {
        let mode = mode(self.job);
        let mut entries: BTreeMap<String, PoolReplicas> =
            pools.iter().map(|pool| (pool.to_string(), self.kept_entry(pool, mode))).collect();
        match (mode, self.seen.scaling) {
            (AutoscalingMode::Disabled, _) => self.plan.status.conditions.retain(|c| c.type_ != AUTOSCALER_READY),
            (_, None) => {}
            (_, Some(ScalingRound::NoPrometheus)) => self.autoscaler_ready(false, "NoPrometheus", NO_PROMETHEUS),
            (_, Some(ScalingRound::Decided { decisions, problem: Some(problem) })) => {
                self.autoscaler_ready(false, "NoData", problem);
                // Every pool holds: only the reason changes, the last recommendation stays.
                for d in decisions {
                    if let Some(entry) = entries.get_mut(&d.pool) {
                        entry.reason = Some(bounded_to(&d.reason, REASON_MAX));
                    }
                }
            }
            (_, Some(ScalingRound::Decided { decisions, problem: None })) => {
                self.autoscaler_ready(true, "SignalsRead", "the last round read its signals from Prometheus");
                for pool in pools {
                    let decided = decisions.iter().find(|d| d.pool == pool.as_str());
                    if let (Some(d), Some(entry)) = (decided, entries.get_mut(pool.as_str())) {
                        self.take_decision(mode, pool, entry, d);
                    }
                }
            }
        }
        entries
    }

    fn kept_entry(&self, pool: &PoolName, mode: AutoscalingMode) -> PoolReplicas {
        let desired = kept_desired(self.job, pool);
        if mode == AutoscalingMode::Disabled {
            return PoolReplicas { desired, ..PoolReplicas::default() };
        }
        let old = self.plan.status.pools.get(pool.as_str()).cloned().unwrap_or_default();
        PoolReplicas { desired, ready: 0, ..old }
    }

    /// One pool's decision: `auto` runs its desired count, `recommend` only reports it.
    fn take_decision(&mut self, mode: AutoscalingMode, pool: &PoolName, entry: &mut PoolReplicas, d: &Scaled) {
        let recommended = Some(d.recommended as i32);
        let reason = bounded_to(&d.reason, REASON_MAX);
        if mode == AutoscalingMode::Auto {
            let (min, max) = bounds(self.job, pool);
            let desired = (d.desired as i32).clamp(min, max);
            if desired != entry.desired {
                let event = if desired > entry.desired { "ScaledUp" } else { "ScaledDown" };
                self.event(event, reason.clone(), false);
                entry.desired = desired;
                entry.last_scale_time = Some(self.seen.now.clone());
            }
        } else if entry.recommended != recommended {
            self.event("Recommended", format!("recommended {}: {reason}", d.recommended), false);
        }
        entry.recommended = recommended;
        entry.reason = Some(reason);
    }

    fn autoscaler_ready(&mut self, on: bool, reason: &str, message: &str) {
        let generation = self.job.metadata.generation;
        let now = self.seen.now.clone();
        set(&mut self.plan.status.conditions, AUTOSCALER_READY, on, reason, message, generation, &now);
    }
}
