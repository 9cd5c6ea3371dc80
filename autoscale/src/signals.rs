//! What one round knows about a job: rates and sizes per pool and step, the job's units, and why a
//! round may know nothing usable.

use std::collections::BTreeMap;

/// One step of one pool, summed over the pool's workers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepSignals {
    pub step: String,
    /// Rows into the step per second.
    pub rows_per_second: f64,
    /// Busy seconds per second, summed over the pool's workers and the step's slots.
    pub busy: f64,
    /// Seconds per second spent waiting on the output (downstream full), summed.
    pub blocked_output: f64,
    /// The step's concurrency, summed over the pool's workers.
    pub slots: f64,
}

impl StepSignals {
    /// Share of the step's slots kept busy, `busy / slots`; 0 when there are no slots.
    pub fn utilization(&self) -> f64 {
        per_slot(self.busy, self.slots)
    }

    /// Share of the step's slots waiting on a full output, `blocked_output / slots`; 0 when there
    /// are no slots.
    pub fn backpressure(&self) -> f64 {
        per_slot(self.blocked_output, self.slots)
    }
}

fn per_slot(seconds_per_second: f64, slots: f64) -> f64 {
    if slots > 0.0 { seconds_per_second / slots } else { 0.0 }
}

/// One pool: its steps and how many of its workers report readiness.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolSignals {
    pub steps: Vec<StepSignals>,
    /// Workers exporting `weir_worker_ready_seconds`, that is, ready ones.
    pub workers_reporting: u32,
    /// The longest start-to-ready time seen among the pool's workers, if any is ready.
    pub ready_seconds: Option<f64>,
}

impl PoolSignals {
    /// The utilisation of the pool's busiest step (its bottleneck); 0 without steps.
    pub fn utilization(&self) -> f64 {
        self.steps.iter().map(StepSignals::utilization).fold(0.0, f64::max)
    }

    /// The backpressure of the pool's most blocked step; 0 without steps.
    pub fn backpressure(&self) -> f64 {
        self.steps.iter().map(StepSignals::backpressure).fold(0.0, f64::max)
    }

    /// Rows per second into the pool's busiest step (the first step on ties); 0 without steps.
    pub fn throughput(&self) -> f64 {
        let mut busiest: Option<&StepSignals> = None;
        for step in &self.steps {
            if busiest.is_none_or(|b| step.utilization() > b.utilization()) {
                busiest = Some(step);
            }
        }
        busiest.map_or(0.0, |s| s.rows_per_second)
    }
}

/// The job's progress, as its coordinator reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSignals {
    pub units_total: f64,
    pub units_committed: f64,
    pub units_leased: f64,
    /// Units committed per second.
    pub commit_rate: f64,
}

/// Everything one round knows about a job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signals {
    pub pools: BTreeMap<String, PoolSignals>,
    pub job: JobSignals,
}

/// Why a round has no usable data; a hold, never a decision.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum DataProblem {
    /// The whole sentence, e.g. `Prometheus at http://prom:9090 unreachable: connection refused`.
    #[error("{0}")]
    Unreachable(String),
    #[error("PromQL query `{query}` failed: {message}")]
    Query { query: String, message: String },
    /// Names the metric and the pool (or process) that has none, e.g.
    /// `weir_step_busy_seconds_total of pool gpu`.
    #[error("no samples yet for {0}")]
    NoSamples(String),
    /// Names the series and its value.
    #[error("not a finite, non-negative number: {0}")]
    NotANumber(String),
    /// Names the process and the counter; rates resume from the next pair of scrapes.
    #[error("counter reset (process restarted?): {0}")]
    CounterReset(String),
    /// The metrics text could not be parsed; names the line.
    #[error("malformed metrics text: {0}")]
    Malformed(String),
    #[error("no job figures from the coordinator (weir_job_units missing or its total is 0)")]
    CoordinatorSilent,
}

impl Signals {
    /// Whether these signals can drive a decision for `pools`.
    ///
    /// # Errors
    /// - [`DataProblem::NotANumber`] when any figure is NaN, infinite or negative;
    /// - [`DataProblem::NoSamples`] when a listed pool has no step with slots;
    /// - [`DataProblem::CoordinatorSilent`] when the job's total units are not above 0.
    pub fn check(&self, pools: &[&str]) -> Result<(), DataProblem> {
        self.check_numbers()?;
        for pool in pools {
            let has_slots = self.pools.get(*pool).is_some_and(|p| p.steps.iter().any(|s| s.slots > 0.0));
            if !has_slots {
                return Err(DataProblem::NoSamples(format!("weir_step_slots of pool {pool}")));
            }
        }
        if self.job.units_total > 0.0 { Ok(()) } else { Err(DataProblem::CoordinatorSilent) }
    }

    fn check_numbers(&self) -> Result<(), DataProblem> {
        let job = &self.job;
        number("units total", job.units_total)?;
        number("units committed", job.units_committed)?;
        number("units leased", job.units_leased)?;
        number("commit rate", job.commit_rate)?;
        for (pool, signals) in &self.pools {
            if let Some(ready) = signals.ready_seconds {
                number(&format!("ready seconds of pool {pool}"), ready)?;
            }
            for s in &signals.steps {
                let what = |figure: &str| format!("{figure} of step {} in pool {pool}", s.step);
                number(&what("rows per second"), s.rows_per_second)?;
                number(&what("busy seconds per second"), s.busy)?;
                number(&what("blocked-on-output seconds per second"), s.blocked_output)?;
                number(&what("slots"), s.slots)?;
            }
        }
        Ok(())
    }
}

fn number(what: &str, value: f64) -> Result<(), DataProblem> {
    if value.is_finite() && value >= 0.0 { Ok(()) } else { Err(DataProblem::NotANumber(format!("{what} = {value}"))) }
}

/// `{a="b",c="d"}`, for messages.
pub(crate) fn series_name(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, busy: f64, blocked: f64, rows: f64, slots: f64) -> StepSignals {
        StepSignals { step: name.into(), rows_per_second: rows, busy, blocked_output: blocked, slots }
    }

    fn healthy() -> Signals {
        let pool = PoolSignals { steps: vec![step("decode", 1.0, 0.0, 10.0, 2.0)], ..Default::default() };
        Signals {
            pools: [("cpu".to_string(), pool)].into(),
            job: JobSignals { units_total: 10.0, ..Default::default() },
        }
    }

    #[test]
    fn a_pool_follows_its_busiest_step() {
        let pool = PoolSignals {
            steps: vec![step("decode", 1.0, 1.5, 40.0, 4.0), step("embed", 3.0, 0.0, 20.0, 4.0)],
            ..Default::default()
        };
        assert_eq!(pool.utilization(), 0.75);
        assert_eq!(pool.backpressure(), 0.375);
        assert_eq!(pool.throughput(), 20.0);
    }

    #[test]
    fn a_step_without_slots_is_neither_busy_nor_blocked() {
        let s = step("decode", 1.0, 1.0, 1.0, 0.0);
        assert_eq!((s.utilization(), s.backpressure()), (0.0, 0.0));
        assert_eq!(PoolSignals::default().throughput(), 0.0);
    }

    #[test]
    fn healthy_signals_pass_the_check() {
        assert_eq!(healthy().check(&["cpu"]), Ok(()));
    }

    #[test]
    fn a_listed_pool_without_slots_has_no_samples() {
        let problem = healthy().check(&["cpu", "gpu"]).unwrap_err();
        assert_eq!(problem, DataProblem::NoSamples("weir_step_slots of pool gpu".into()));
        assert_eq!(problem.to_string(), "no samples yet for weir_step_slots of pool gpu");
    }

    #[test]
    fn a_nan_or_negative_figure_is_not_a_number() {
        let mut signals = healthy();
        signals.pools.get_mut("cpu").unwrap().steps[0].busy = f64::NAN;
        assert!(matches!(signals.check(&["cpu"]), Err(DataProblem::NotANumber(what)) if what.contains("busy")));
        let mut signals = healthy();
        signals.job.commit_rate = -1.0;
        assert!(matches!(signals.check(&["cpu"]), Err(DataProblem::NotANumber(what)) if what.contains("commit")));
    }

    #[test]
    fn zero_total_units_means_the_coordinator_is_silent() {
        let mut signals = healthy();
        signals.job.units_total = 0.0;
        assert_eq!(signals.check(&["cpu"]), Err(DataProblem::CoordinatorSilent));
    }
}
