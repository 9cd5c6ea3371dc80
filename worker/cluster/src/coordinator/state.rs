//! The coordinator's in-memory job state: the unit table, registered workers and counters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use weir_checkpoint::UnitCommit;

use crate::leases::{FailureVerdict, LeaseDecision, UnitTable};
use crate::proto::{self, Phase};

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub pool: String,
    pub last_seen: Instant,
    /// Where it serves its pool's steps, if it does.
    pub exchange: Option<String>,
    /// Exchanges in progress at its last heartbeat, plus routes given since.
    pub load: u32,
    /// When its load was last reported (a heartbeat).
    pub reported: Instant,
    /// When a drain of it began: it gets no new units or exchanges.
    pub draining: Option<Instant>,
}

/// How finalizing ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Succeeded {
        rows_in: u64,
        rows_out: u64,
        rows_failed: u64,
    },
    Failed(String),
    /// Files of these committed units were missing or changed: their records were withdrawn, and
    /// the units must run again (with the reason for each).
    Redo(Vec<(u64, String)>),
}

/// What the coordinator does with a finished attempt a worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The attempt holds its unit's current lease: publish and commit it.
    Publish,
    /// This very attempt is already committed (a retried report): answer as before.
    AlreadyCommitted,
    /// Not believed: the reason, for the log and the caller.
    Refused(String),
}

/// A committed unit's counts, so a withdrawn record can be taken out of the totals.
#[derive(Debug, Clone, Copy)]
struct Counted {
    attempt: u32,
    rows_in: u64,
    rows_out: u64,
    rows_failed: u64,
}

#[derive(Debug)]
pub struct JobState {
    table: UnitTable,
    workers: HashMap<String, WorkerInfo>,
    phase: Phase,
    message: String,
    rows_total: u64,
    rows_in: u64,
    rows_out: u64,
    rows_failed: u64,
    attempts_failed: u64,
    epoch: u32,
    pub already_complete: bool,
    /// Workers that have been told the job ended.
    told: HashSet<String>,
    /// Units this coordinator committed (not those reloaded from the checkpoint).
    committed_here: u64,
    /// Workers drained and told to exit: a late heartbeat or lease of theirs does not make them
    /// join again (only a new Register does).
    gone: HashSet<String>,
    /// The committed attempt of each committed unit, with its counts.
    records: BTreeMap<u64, Counted>,
    /// Admitted attempts being published now: finalize waits until none is.
    publishing: usize,
}

impl JobState {
    pub fn new(
        table: UnitTable,
        committed: impl IntoIterator<Item = UnitCommit>,
        rows_total: u64,
        epoch: u32,
        already_complete: bool,
    ) -> Self {
        let mut state = Self {
            table,
            workers: HashMap::new(),
            phase: if already_complete { Phase::Succeeded } else { Phase::Running },
            message: if already_complete { "the output is already complete".into() } else { String::new() },
            rows_total,
            rows_in: 0,
            rows_out: 0,
            rows_failed: 0,
            attempts_failed: 0,
            epoch,
            already_complete,
            told: HashSet::new(),
            committed_here: 0,
            gone: HashSet::new(),
            records: BTreeMap::new(),
            publishing: 0,
        };
        for commit in committed {
            state.count(&commit);
        }
        state
    }

    fn count(&mut self, commit: &UnitCommit) {
        let counted = Counted {
            attempt: commit.attempt,
            rows_in: commit.rows_in,
            rows_out: commit.rows_out,
            rows_failed: commit.errors,
        };
        if let Some(old) = self.records.insert(commit.unit, counted) {
            self.uncount(old);
        }
        self.rows_in = self.rows_in.saturating_add(commit.rows_in);
        self.rows_out = self.rows_out.saturating_add(commit.rows_out);
        self.rows_failed = self.rows_failed.saturating_add(commit.errors);
    }

    fn uncount(&mut self, counted: Counted) {
        self.rows_in = self.rows_in.saturating_sub(counted.rows_in);
        self.rows_out = self.rows_out.saturating_sub(counted.rows_out);
        self.rows_failed = self.rows_failed.saturating_sub(counted.rows_failed);
    }

    /// Decides whether to believe a finished attempt `worker` reports: only the holder of the
    /// unit's current lease, for that attempt, while the job runs. An admitted attempt counts as
    /// publishing until [`published`](Self::published).
    pub fn admit_completion(&mut self, unit: u64, attempt: u32, worker: &str) -> Admission {
        if let Some(counted) = self.records.get(&unit) {
            return if counted.attempt == attempt {
                Admission::AlreadyCommitted
            } else {
                Admission::Refused(format!("unit {unit} is already committed by attempt {}", counted.attempt))
            };
        }
        match self.lease_holder_check(unit, attempt, worker) {
            Ok(()) => {
                self.publishing += 1;
                Admission::Publish
            }
            Err(reason) => Admission::Refused(reason),
        }
    }

    /// `Ok` when `worker` holds the current lease of `unit` for `attempt` while the job runs;
    /// otherwise why not.
    pub fn lease_holder_check(&self, unit: u64, attempt: u32, worker: &str) -> Result<(), String> {
        if self.phase != Phase::Running {
            return Err(format!("the job is {}", self.phase.as_str_name().to_lowercase()));
        }
        match self.table.holder(unit) {
            Some((a, w)) if a == attempt && w == worker => Ok(()),
            Some((a, w)) => Err(format!(
                "unit {unit} attempt {attempt} is not leased to {worker} (the current lease is attempt {a}, held by {w})"
            )),
            None => {
                Err(format!("unit {unit} attempt {attempt} is not leased to {worker} (the unit is not leased now)"))
            }
        }
    }

    /// An admitted attempt has been published, committed or refused.
    pub fn published(&mut self) {
        self.publishing = self.publishing.saturating_sub(1);
    }

    /// Admitted attempts still being published.
    pub fn publishing(&self) -> usize {
        self.publishing
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Live workers per pool, sorted by pool.
    pub fn workers_by_pool(&self) -> Vec<(String, usize)> {
        let mut pools: std::collections::BTreeMap<String, usize> = Default::default();
        for info in self.workers.values() {
            *pools.entry(info.pool.clone()).or_default() += 1;
        }
        pools.into_iter().collect()
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }

    /// Notes that `worker` was told the job ended.
    pub fn tell_ended(&mut self, worker: &str) {
        self.told.insert(worker.to_string());
    }

    /// Every live worker knows the job ended, so the coordinator may exit.
    pub fn everyone_told(&self) -> bool {
        self.workers.keys().all(|w| self.told.contains(w))
    }

    pub fn all_committed(&self) -> bool {
        self.phase == Phase::Running && self.table.committed() == self.table.len()
    }

    pub fn register(&mut self, worker: &str, pool: &str, now: Instant) {
        self.gone.remove(worker);
        let info = WorkerInfo {
            pool: pool.to_string(),
            last_seen: now,
            exchange: None,
            load: 0,
            reported: now,
            draining: None,
        };
        self.workers.insert(worker.to_string(), info);
    }

    /// Records where `worker` serves its steps and how busy it is.
    pub fn exchange_report(&mut self, worker: &str, endpoint: &str, load: u32) {
        if let Some(info) = self.workers.get_mut(worker)
            && !endpoint.is_empty()
        {
            info.exchange = Some(endpoint.to_string());
            info.load = load;
            info.reported = Instant::now();
        }
    }

    /// Begins draining `worker`: no new units or exchanges go to it. `false` when it is unknown.
    pub fn drain(&mut self, worker: &str, now: Instant) -> bool {
        let Some(info) = self.workers.get_mut(worker) else { return false };
        info.draining.get_or_insert(now);
        true
    }

    /// A draining worker holds no unit and, if it serves exchanges, reported none in a heartbeat
    /// sent at least one heartbeat interval after the drain began (a route given just before the
    /// drain has connected by then).
    pub fn is_drained(&self, worker: &str, heartbeat: Duration) -> bool {
        let Some(info) = self.workers.get(worker) else { return false };
        let Some(since) = info.draining else { return false };
        let quiet = info.exchange.is_none() || (info.load == 0 && info.reported >= since + heartbeat);
        quiet && self.table.held_by(worker).is_empty()
    }

    /// Whether a drain of `worker` began.
    pub fn is_draining(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|w| w.draining.is_some())
    }

    /// Whether `worker` was drained and told to exit.
    pub fn is_gone(&self, worker: &str) -> bool {
        self.gone.contains(worker)
    }

    /// Forgets a drained worker: it was told to exit.
    pub fn forget(&mut self, worker: &str) {
        self.gone.insert(worker.to_string());
        let pool = self.workers.remove(worker).map(|w| w.pool).unwrap_or_default();
        tracing::info!(worker = %worker, pool = %pool, "worker {worker} (pool {pool}) drained; told to exit");
    }

    /// Every known worker, as the Workers RPC reports them.
    pub fn worker_views(&self, heartbeat: Duration, now: Instant) -> Vec<proto::WorkerView> {
        let mut views: Vec<proto::WorkerView> = self
            .workers
            .iter()
            .map(|(name, info)| proto::WorkerView {
                worker: name.clone(),
                pool: info.pool.clone(),
                units_held: self.table.held_by(name).len() as u32,
                exchanges_in_flight: info.load,
                draining: info.draining.is_some(),
                drained: self.is_drained(name, heartbeat),
                silent_seconds: now.saturating_duration_since(info.last_seen).as_secs_f64(),
            })
            .collect();
        views.sort_by(|a, b| a.worker.cmp(&b.worker));
        views
    }

    /// The endpoint of the least-loaded worker of `pool` heard from within a lease lifetime; the
    /// pick counts as load until its next heartbeat, so picks spread between heartbeats.
    pub fn route(&mut self, pool: &str, now: Instant) -> Option<String> {
        let ttl = self.table.ttl();
        let (_, info) = self
            .workers
            .iter_mut()
            .filter(|(_, w)| {
                w.pool == pool
                    && w.exchange.is_some()
                    && w.draining.is_none()
                    && now.saturating_duration_since(w.last_seen) < ttl
            })
            .min_by_key(|(name, w)| (w.load, name.to_string()))?;
        info.load += 1;
        info.exchange.clone()
    }

    /// Notes that `worker` is alive; a worker unknown to this coordinator (it restarted) joins.
    pub fn seen(&mut self, worker: &str, pool: &str, now: Instant) {
        match self.workers.get_mut(worker) {
            Some(info) => info.last_seen = now,
            None if self.gone.contains(worker) => {}
            None => self.register(worker, pool, now),
        }
    }

    pub fn lease(&mut self, worker: &str, pool: &str, now: Instant) -> LeaseDecision {
        self.seen(worker, pool, now);
        if self.phase != Phase::Running {
            return LeaseDecision::Wait(Duration::from_millis(200));
        }
        if self.is_gone(worker) {
            return LeaseDecision::Drained;
        }
        if self.is_draining(worker) {
            if self.table.held_by(worker).is_empty() {
                self.forget(worker);
            }
            return LeaseDecision::Drained;
        }
        let ttl = self.table.ttl();
        let peers = self
            .workers
            .values()
            .filter(|w| w.pool == pool && w.draining.is_none() && now.saturating_duration_since(w.last_seen) < ttl)
            .count();
        match self.table.lease(worker, peers, now) {
            LeaseDecision::Exhausted { unit } => {
                self.fail_job(format!(
                    "unit {unit} was leased {} times by this coordinator; another lease would repeat an attempt number",
                    crate::leases::ATTEMPTS_PER_EPOCH
                ));
                LeaseDecision::Wait(Duration::from_millis(200))
            }
            decision => decision,
        }
    }

    pub fn heartbeat(&mut self, worker: &str, pool: &str, held: &[(u64, u32)], now: Instant) -> Vec<(u64, u32)> {
        self.seen(worker, pool, now);
        self.table.heartbeat(worker, held, now)
    }

    /// Expires leases and forgets workers silent for three lease lifetimes.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, u32, String)> {
        let forget_after = self.table.ttl() * 3;
        self.workers.retain(|name, w| {
            let alive = now.saturating_duration_since(w.last_seen) < forget_after;
            if !alive {
                let pool = &w.pool;
                tracing::warn!(worker = %name, pool = %pool, "worker {name} (pool {pool}) is silent; forgetting it");
            }
            alive
        });
        self.table.expire(now)
    }

    pub fn knows_unit(&self, unit: u64) -> bool {
        self.table.contains(unit)
    }

    /// Records the committed attempt of a unit (ours or the one that won); `true` when every unit is
    /// now committed.
    pub fn committed(&mut self, commit: &UnitCommit) -> bool {
        if !self.table.is_committed(commit.unit) {
            self.table.mark_committed(commit.unit);
            self.count(commit);
            self.committed_here += 1;
        }
        self.all_committed()
    }

    /// Fails the job when more rows failed than the error policy allows, even if every remaining
    /// row succeeded.
    pub fn check_error_ratio(&mut self, max_ratio: Option<f64>) {
        let Some(max) = max_ratio else { return };
        if self.rows_total > 0 && self.rows_failed as f64 > max * self.rows_total as f64 {
            let message = format!(
                "{} of {} rows failed, more than errorPolicy.maxErrorRatio {max}",
                self.rows_failed, self.rows_total
            );
            self.fail_job(message);
        }
    }

    pub fn attempt_failed(
        &mut self,
        unit: u64,
        attempt: u32,
        handed_back: bool,
        fatal: bool,
        message: &str,
        now: Instant,
    ) {
        if !handed_back {
            self.attempts_failed += 1;
        }
        if fatal {
            self.fail_job(message.to_string());
            return;
        }
        if let FailureVerdict::GiveUp { failures } = self.table.fail(unit, attempt, handed_back, now) {
            self.fail_job(format!("unit {unit} failed {failures} times; last error: {message}"));
        }
    }

    pub fn fail_job(&mut self, message: String) {
        if !self.is_ended() {
            tracing::error!("job failed: {message}");
            self.phase = Phase::Failed;
            self.message = message;
        }
    }

    pub fn set_finalizing(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Finalizing;
        }
    }

    pub fn end(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Succeeded { rows_in, rows_out, rows_failed } => {
                (self.rows_in, self.rows_out, self.rows_failed) = (rows_in, rows_out, rows_failed);
                self.phase = Phase::Succeeded;
                self.message = format!("{rows_out} rows written, {rows_failed} failed");
            }
            Verdict::Failed(message) => self.fail_job(message),
            Verdict::Redo(units) => {
                for (unit, reason) in units {
                    tracing::warn!(unit, "unit {unit} runs again: {reason}");
                    if let Some(counted) = self.records.remove(&unit) {
                        self.uncount(counted);
                    }
                    self.table.reopen(unit);
                }
                if self.phase == Phase::Finalizing {
                    self.phase = Phase::Running;
                }
            }
        }
    }

    pub fn status(&self, job: &str, elapsed: Duration) -> proto::JobStatus {
        let done = self.table.committed() as u64;
        let total = self.table.len() as u64;
        let eta = if done == 0 || done >= total {
            if done >= total { 0.0 } else { -1.0 }
        } else {
            elapsed.as_secs_f64() / done as f64 * (total - done) as f64
        };
        proto::JobStatus {
            job: job.to_string(),
            phase: self.phase as i32,
            units_total: total,
            units_committed: done,
            units_leased: self.table.leased() as u64,
            rows_total: self.rows_total,
            rows_in: self.rows_in,
            rows_out: self.rows_out,
            rows_failed: self.rows_failed,
            workers: self.workers.len() as u32,
            message: self.message.clone(),
            elapsed_seconds: elapsed.as_secs_f64(),
            eta_seconds: eta,
            attempts_failed: self.attempts_failed,
            epoch: self.epoch,
            units_committed_here: self.committed_here,
        }
    }
}
