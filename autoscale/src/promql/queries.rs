//! The PromQL of each signal, and the signals built from their answers.

use std::collections::BTreeMap;

use super::client::{Prometheus, Sample};
use crate::signals::{DataProblem, JobSignals, PoolSignals, Signals, StepSignals};

/// The PromQL text of each signal of one job; public so dashboards and tests can reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// Busy seconds per second, by pool and step.
    pub busy: String,
    /// Seconds per second blocked on a full output, by pool and step.
    pub blocked_output: String,
    /// Rows in per second, by pool and step.
    pub rows_in: String,
    /// Concurrency, by pool and step.
    pub slots: String,
    /// Ready workers, by pool.
    pub workers_ready: String,
    /// The longest start-to-ready time, by pool.
    pub ready_seconds: String,
    /// Total, committed and leased units, by state.
    pub units: String,
    /// Units committed per second.
    pub commit_rate: String,
}

/// The answers to each of [`Queries`], in the same fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuerySamples {
    pub busy: Vec<Sample>,
    pub blocked_output: Vec<Sample>,
    pub rows_in: Vec<Sample>,
    pub slots: Vec<Sample>,
    pub workers_ready: Vec<Sample>,
    pub ready_seconds: Vec<Sample>,
    pub units: Vec<Sample>,
    pub commit_rate: Vec<Sample>,
}

/// The queries of job `job`, rates taken over `window` (a PromQL duration such as `1m`, inserted
/// as given).
pub fn queries(job: &str, window: &str) -> Queries {
    let job = format!("job=\"{}\"", escape(job));
    let rate = |metric: &str, more: &str| format!("sum by (pool, step) (rate({metric}{{{job}{more}}}[{window}]))");
    Queries {
        busy: rate("weir_step_busy_seconds_total", ""),
        blocked_output: rate("weir_step_blocked_seconds_total", ",on=\"output\""),
        rows_in: rate("weir_step_rows_total", ",direction=\"in\""),
        // Only the slots of workers with a busy rate yet: a worker that just started would read as
        // idle capacity until its first rate exists.
        slots: format!(
            "sum by (pool, step) (weir_step_slots{{{job}}} and on (worker, step) \
             rate(weir_step_busy_seconds_total{{{job}}}[{window}]))"
        ),
        workers_ready: format!("count by (pool) (weir_worker_ready_seconds{{{job}}})"),
        ready_seconds: format!("max by (pool) (weir_worker_ready_seconds{{{job}}})"),
        units: format!("max by (state) (weir_job_units{{{job}}})"),
        commit_rate: format!("sum(rate(weir_job_units_committed_total{{{job}}}[{window}]))"),
    }
}

/// `text` as the inside of a double-quoted PromQL string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Reads the signals of job `job` for `pools` from `prom`, the queries run concurrently.
///
/// # Errors
/// The first [`DataProblem`] among the queries' answers, then those of [`signals_from_samples`].
pub async fn read_signals(prom: &Prometheus, job: &str, window: &str, pools: &[&str]) -> Result<Signals, DataProblem> {
    let q = queries(job, window);
    let (busy, blocked_output, rows_in, slots, workers_ready, ready_seconds, units, commit_rate) = tokio::join!(
        prom.query(&q.busy),
        prom.query(&q.blocked_output),
        prom.query(&q.rows_in),
        prom.query(&q.slots),
        prom.query(&q.workers_ready),
        prom.query(&q.ready_seconds),
        prom.query(&q.units),
        prom.query(&q.commit_rate),
    );
    let samples = QuerySamples {
        busy: busy?,
        blocked_output: blocked_output?,
        rows_in: rows_in?,
        slots: slots?,
        workers_ready: workers_ready?,
        ready_seconds: ready_seconds?,
        units: units?,
        commit_rate: commit_rate?,
    };
    signals_from_samples(&samples, pools)
}

/// The signals in the answers to [`queries`]: series summed by their `pool` and `step` labels
/// (series without them are ignored), then [`Signals::check`]ed for `pools`.
///
/// # Errors
/// [`DataProblem::NoSamples`] when a listed pool has no busy rate yet (a rate needs two scrapes in
/// its window), and any error of [`Signals::check`].
pub fn signals_from_samples(samples: &QuerySamples, pools: &[&str]) -> Result<Signals, DataProblem> {
    let mut steps: BTreeMap<(&str, &str), StepSignals> = BTreeMap::new();
    let figures: [(&[Sample], AddFigure); 4] = [
        (&samples.busy, |s, v| s.busy += v),
        (&samples.blocked_output, |s, v| s.blocked_output += v),
        (&samples.rows_in, |s, v| s.rows_per_second += v),
        (&samples.slots, |s, v| s.slots += v),
    ];
    for (series, add) in figures {
        for sample in series {
            if let (Some(pool), Some(step)) = (label(sample, "pool"), label(sample, "step")) {
                let entry = steps
                    .entry((pool, step))
                    .or_insert_with(|| StepSignals { step: step.into(), ..Default::default() });
                add(entry, sample.value);
            }
        }
    }
    for pool in pools {
        if !samples.busy.iter().any(|s| label(s, "pool") == Some(*pool)) {
            return Err(DataProblem::NoSamples(format!("weir_step_busy_seconds_total of pool {pool}")));
        }
    }
    let mut by_pool: BTreeMap<String, PoolSignals> = BTreeMap::new();
    for ((pool, _), step) in steps {
        by_pool.entry(pool.into()).or_default().steps.push(step);
    }
    for sample in &samples.workers_ready {
        if let Some(pool) = label(sample, "pool") {
            by_pool.entry(pool.into()).or_default().workers_reporting = sample.value.round() as u32;
        }
    }
    for sample in &samples.ready_seconds {
        if let Some(pool) = label(sample, "pool") {
            by_pool.entry(pool.into()).or_default().ready_seconds = Some(sample.value);
        }
    }
    let units =
        |state: &str| samples.units.iter().filter(|s| label(s, "state") == Some(state)).map(|s| s.value).sum::<f64>();
    let job = JobSignals {
        units_total: units("total"),
        units_committed: units("committed"),
        units_leased: units("leased"),
        commit_rate: samples.commit_rate.iter().map(|s| s.value).sum(),
    };
    let signals = Signals { pools: by_pool, job };
    signals.check(pools)?;
    Ok(signals)
}

/// Adds one answer's value to the figure it is of.
type AddFigure = fn(&mut StepSignals, f64);

fn label<'a>(sample: &'a Sample, name: &str) -> Option<&'a str> {
    sample.labels.get(name).map(String::as_str)
}
