//! Per-step runtime counters, kept in one place for the progress bar, the profile and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of one stage. All updates are relaxed atomics: readers see a recent, not a
/// transactionally consistent, view.
#[derive(Debug, Default)]
pub struct StepStats {
    pub name: String,
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    rows_failed: AtomicU64,
    morsels: AtomicU64,
    busy_ns: AtomicU64,
    blocked_in_ns: AtomicU64,
    blocked_out_ns: AtomicU64,
    concurrency: AtomicU64,
    queue_depth: AtomicU64,
}

/// A copy of a stage's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStatsSnapshot {
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_failed: u64,
    pub morsels: u64,
    /// Summed time spent in the step's kernel (may exceed wall time when concurrent).
    pub busy: Duration,
    /// Time the stage had nothing to do because its input was empty.
    pub blocked_in: Duration,
    /// Time the stage waited for room downstream (backpressure).
    pub blocked_out: Duration,
    pub concurrency: u64,
    /// Morsels waiting at the step's input when it last took one (a gauge, not a counter).
    pub queue_depth: u64,
}

impl StepStats {
    pub fn new(name: impl Into<String>, concurrency: usize) -> Self {
        let stats = Self { name: name.into(), ..Default::default() };
        stats.concurrency.store(concurrency as u64, Relaxed);
        stats
    }

    pub fn record_in(&self, rows: usize, bytes: u64) {
        self.rows_in.fetch_add(rows as u64, Relaxed);
        self.bytes_in.fetch_add(bytes, Relaxed);
        self.morsels.fetch_add(1, Relaxed);
    }

    pub fn record_out(&self, rows: usize, bytes: u64) {
        self.rows_out.fetch_add(rows as u64, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    pub fn record_failed(&self, rows: usize) {
        self.rows_failed.fetch_add(rows as u64, Relaxed);
    }

    pub fn add_busy(&self, d: Duration) {
        self.busy_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn add_blocked_in(&self, d: Duration) {
        self.blocked_in_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn add_blocked_out(&self, d: Duration) {
        self.blocked_out_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Records how many morsels wait at the step's input.
    pub fn set_queue_depth(&self, morsels: usize) {
        self.queue_depth.store(morsels as u64, Relaxed);
    }

    pub fn snapshot(&self) -> StepStatsSnapshot {
        StepStatsSnapshot {
            name: self.name.clone(),
            rows_in: self.rows_in.load(Relaxed),
            rows_out: self.rows_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rows_failed: self.rows_failed.load(Relaxed),
            morsels: self.morsels.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            blocked_in: Duration::from_nanos(self.blocked_in_ns.load(Relaxed)),
            blocked_out: Duration::from_nanos(self.blocked_out_ns.load(Relaxed)),
            concurrency: self.concurrency.load(Relaxed),
            queue_depth: self.queue_depth.load(Relaxed),
        }
    }
}

/// Counters of a whole pipeline: the source, each step, the sink, and unit progress.
#[derive(Debug)]
pub struct PipelineStats {
    /// `source`, then one per step, then `sink`.
    pub stages: Vec<Arc<StepStats>>,
    units_total: AtomicU64,
    units_done: AtomicU64,
    rows_total: AtomicU64,
}

impl PipelineStats {
    pub fn new(stages: Vec<Arc<StepStats>>) -> Self {
        Self { stages, units_total: AtomicU64::new(0), units_done: AtomicU64::new(0), rows_total: AtomicU64::new(0) }
    }

    pub fn set_totals(&self, units: u64, rows: Option<u64>) {
        self.units_total.store(units, Relaxed);
        self.rows_total.store(rows.unwrap_or(0), Relaxed);
    }

    pub fn unit_done(&self) {
        self.units_done.fetch_add(1, Relaxed);
    }

    pub fn units(&self) -> (u64, u64) {
        (self.units_done.load(Relaxed), self.units_total.load(Relaxed))
    }

    /// Planned source rows, when the source knows them up front (0 otherwise).
    pub fn rows_total(&self) -> u64 {
        self.rows_total.load(Relaxed)
    }

    pub fn snapshot(&self) -> Vec<StepStatsSnapshot> {
        self.stages.iter().map(|s| s.snapshot()).collect()
    }

    /// Rows that failed in any stage.
    pub fn rows_failed(&self) -> u64 {
        self.stages.iter().map(|s| s.snapshot().rows_failed).sum()
    }
}
