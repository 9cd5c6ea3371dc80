//! The decision: from one round's signals and the pools' sizes, the replicas each pool should run,
//! with the rule that acted in one line.
//!
//! # Rules
//! 1. Bad data holds every pool where it is; missing data never moves a pool toward its min.
//! 2. Each pool is sized for the target utilisation (see `sizing`); a saturated bottleneck goes to
//!    its max and sizes the other pools for the throughput that brings.
//! 3. One scale-up adds at most `max(2, current)` replicas.
//! 4. A pool blocked on its output beyond the limit is not grown: its downstream is the bottleneck.
//! 5. A pool whose last scale-up is not all ready is not grown again.
//! 6. No scale-up when the work ends before a new worker would be ready; once nothing is left to
//!    lease, the leasing pool shrinks at once to the workers still holding leases.
//! 7. Scale-downs wait until every recommendation of a whole window was lower, and remove at most a
//!    fraction of the pool at a time.
//! 8. A scale-up that did not raise throughput enough freezes further scale-ups for a while.

mod memory;
mod sizing;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::signals::{DataProblem, JobSignals, PoolSignals, Signals};
use memory::PoolMemory;
use sizing::Recommendation;

/// The start-to-ready time assumed for a pool none of whose workers reported one.
pub const DEFAULT_READY_SECONDS: f64 = 30.0;

/// How eagerly pools follow their signals.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The utilisation pools are sized for (rule 2).
    pub target_utilization: f64,
    /// Half-width of the band around the target inside which a pool holds.
    pub band: f64,
    /// How long every recommendation must stay below current before a scale-down (rule 7).
    pub scale_down_window: Duration,
    /// The largest share of current one scale-down removes (at least one replica).
    pub max_scale_down_fraction: f64,
    /// The backpressure above which a pool is not grown (rule 4).
    pub backpressure_limit: f64,
    /// The least relative throughput gain a scale-up must bring (rule 8).
    pub guard_min_gain: f64,
    /// How long after a scale-up's workers are all ready its throughput is compared: at least the
    /// rate window of the signals, so the figure holds no time from before the scale-up.
    pub guard_delay: Duration,
    /// How long scale-ups stay frozen after one that did not pay.
    pub guard_freeze: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            target_utilization: 0.7,
            band: 0.2,
            scale_down_window: Duration::from_secs(300),
            max_scale_down_fraction: 0.5,
            backpressure_limit: 0.3,
            guard_min_gain: 0.10,
            guard_delay: Duration::ZERO,
            guard_freeze: Duration::from_secs(300),
        }
    }
}

/// A pool's bounds and size as the caller sees them this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub min: u32,
    pub max: u32,
    /// Replicas wanted now.
    pub current: u32,
    /// Of those, the ready ones.
    pub ready: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Up,
    Down,
    Hold,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::Hold => "hold",
        })
    }
}

/// What one round decided for one pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub pool: String,
    pub current: u32,
    /// What the signals call for now, clamped to the pool's bounds (rule 2 alone).
    pub recommended: u32,
    /// What to run after this round's gates and windows.
    pub desired: u32,
    pub action: Action,
    /// One line: the rule that acted and its figures.
    pub reason: String,
    pub inputs: Inputs,
}

/// The figures a decision was made from; zeros when the data was bad.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Inputs {
    pub utilization: f64,
    pub backpressure: f64,
    /// Rows per second into the pool's busiest step.
    pub throughput: f64,
    /// Units not committed yet.
    pub units_left: f64,
    /// Units committed per second.
    pub commit_rate: f64,
}

/// The decision function with the memory its windows and guard need between rounds.
#[derive(Debug)]
pub struct Autoscaler {
    policy: Policy,
    memory: BTreeMap<String, PoolMemory>,
}

impl Autoscaler {
    pub fn new(policy: Policy) -> Self {
        Self { policy, memory: BTreeMap::new() }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One round at `now`: one decision per pool of `pools`, in its order. `signals` is `Err` on
    /// bad data; signals failing [`Signals::check`] for `pools` count as bad data too, and bad
    /// data holds every pool at `current`. `leasing_pool` names the pool whose workers lease units
    /// from the coordinator (rule 6).
    pub fn decide(
        &mut self,
        now: Instant,
        signals: Result<&Signals, &DataProblem>,
        pools: &BTreeMap<String, PoolState>,
        leasing_pool: &str,
    ) -> Vec<Decision> {
        let names: Vec<&str> = pools.keys().map(String::as_str).collect();
        let signals = match signals.map_err(Clone::clone).and_then(|s| s.check(&names).map(|()| s)) {
            Ok(signals) => signals,
            Err(problem) => return pools.iter().map(|(name, state)| held(name, state, &problem)).collect(),
        };
        self.memory.retain(|name, _| pools.contains_key(name));
        let recommendations = sizing::recommend(&self.policy, signals, pools);
        pools
            .iter()
            .zip(recommendations)
            .map(|((name, state), rec)| self.decide_pool(now, name, state, signals, rec, name == leasing_pool))
            .collect()
    }

    /// One pool's decision; `signals` passed [`Signals::check`] for every pool.
    fn decide_pool(
        &mut self,
        now: Instant,
        name: &str,
        state: &PoolState,
        signals: &Signals,
        rec: Recommendation,
        leasing: bool,
    ) -> Decision {
        let empty = PoolSignals::default();
        let pool = signals.pools.get(name).unwrap_or(&empty);
        let job = &signals.job;
        let policy = &self.policy;
        let memory = self.memory.entry(name.to_string()).or_default();
        let units_left = job.units_total - job.units_committed;
        let inputs = Inputs {
            utilization: pool.utilization(),
            backpressure: pool.backpressure(),
            throughput: pool.throughput(),
            units_left,
            commit_rate: job.commit_rate,
        };
        let froze = memory.guard.settle(now, state.ready, inputs.throughput, policy);
        let current = state.current;
        let (desired, mut reason) = if leasing && units_left - job.units_leased <= 0.0 {
            memory.window.reset();
            let desired = state.min.max(current.min(job.units_leased.ceil() as u32));
            let leased = job.units_leased;
            let released = if desired < current { ", idle leasing workers released" } else { "" };
            (
                desired,
                format!("{name}: nothing left to lease ({leased} units leased): {}{released}", moved(current, desired)),
            )
        } else {
            match rec.replicas.cmp(&current) {
                Ordering::Greater => {
                    memory.window.reset();
                    if let Some(why) = up_blocked(policy, memory, now, state, pool, job) {
                        (current, format!("{name}: {why}: not grown (recommended {})", rec.replicas))
                    } else {
                        let desired = rec.replicas.min(current + current.max(2));
                        memory.guard.scaled_up(current, desired, inputs.throughput);
                        let limited = if desired < rec.replicas { " (step limit)" } else { "" };
                        (desired, format!("{name}: {}: {current} → {desired}{limited}", rec.why))
                    }
                }
                Ordering::Equal => {
                    memory.window.reset();
                    (current, format!("{name}: {}: holding at {current}", rec.why))
                }
                Ordering::Less => scale_down(policy, memory, now, name, current, &rec),
            }
        };
        if let Some(note) = froze.filter(|note| !reason.contains(note.as_str())) {
            reason.push_str("; ");
            reason.push_str(&note);
        }
        let action = match desired.cmp(&current) {
            Ordering::Greater => Action::Up,
            Ordering::Less => Action::Down,
            Ordering::Equal => Action::Hold,
        };
        Decision { pool: name.into(), current, recommended: rec.replicas, desired, action, reason, inputs }
    }
}

/// Why this pool may not grow this round (rules 4, 5, 6 and 8), if it may not.
fn up_blocked(
    policy: &Policy,
    memory: &PoolMemory,
    now: Instant,
    state: &PoolState,
    pool: &PoolSignals,
    job: &JobSignals,
) -> Option<String> {
    let needs = pool.ready_seconds.unwrap_or(DEFAULT_READY_SECONDS);
    let units_left = job.units_total - job.units_committed;
    if job.commit_rate > 0.0 && units_left / job.commit_rate < needs {
        let ends = units_left / job.commit_rate;
        return Some(format!("work ends in {ends:.0} s, a new worker needs {needs:.0} s"));
    }
    if let Some(why) = memory.guard.frozen(now) {
        return Some(why);
    }
    let backpressure = pool.backpressure();
    if backpressure > policy.backpressure_limit {
        let percent = backpressure * 100.0;
        return Some(format!("blocked on output {percent:.0}% (downstream is the bottleneck)"));
    }
    if state.ready < state.current {
        return Some(format!("{} of {} ready (the last scale-up is still starting)", state.ready, state.current));
    }
    if memory.guard.judging() {
        let delay = policy.guard_delay.as_secs();
        return Some(format!("the last scale-up is measured for {delay}s before the next"));
    }
    None
}

/// Rule 7: a recommendation below current, acted on once the window is full.
fn scale_down(
    policy: &Policy,
    memory: &mut PoolMemory,
    now: Instant,
    name: &str,
    current: u32,
    rec: &Recommendation,
) -> (u32, String) {
    let window = policy.scale_down_window;
    match memory.window.observe(now, current, rec.replicas, window) {
        Ok(highest) => {
            let step = ((f64::from(current) * policy.max_scale_down_fraction).floor() as u32).max(1);
            let desired = highest.max(current.saturating_sub(step));
            memory.window.reset();
            memory.guard.forget_scale_up();
            let limited = if desired > highest { " (at most the scale-down fraction)" } else { "" };
            let held = window.as_secs();
            (desired, format!("{name}: {} for {held}s: {current} → {desired}{limited}", rec.why))
        }
        Err(so_far) => {
            let (so_far, window) = (so_far.as_secs(), window.as_secs());
            let why = &rec.why;
            let recommended = rec.replicas;
            (
                current,
                format!("{name}: {why}: {recommended} after {window}s below ({so_far}s so far), holding at {current}"),
            )
        }
    }
}

fn moved(current: u32, desired: u32) -> String {
    if desired == current { format!("holding at {current}") } else { format!("{current} → {desired}") }
}

/// Rule 1: bad data holds the pool where it is.
fn held(name: &str, state: &PoolState, problem: &DataProblem) -> Decision {
    let current = state.current;
    Decision {
        pool: name.into(),
        current,
        recommended: current,
        desired: current,
        action: Action::Hold,
        reason: format!("{name}: holding at {current}: {problem}"),
        inputs: Inputs::default(),
    }
}

/// One printable line per decision: action, sizes, reason.
pub fn summary(decisions: &[Decision]) -> String {
    let lines: Vec<String> =
        decisions.iter().map(|d| format!("{:<4} {} → {}  {}", d.action, d.current, d.desired, d.reason)).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests;
