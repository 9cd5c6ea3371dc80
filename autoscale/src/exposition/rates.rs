//! Signals from two scrapes of every process: counters become rates over the time between them.

use std::collections::{BTreeMap, BTreeSet};

use super::Scrape;
use crate::signals::{DataProblem, JobSignals, PoolSignals, Signals, StepSignals, series_name};

const BUSY: &str = "weir_step_busy_seconds_total";
const BLOCKED: &str = "weir_step_blocked_seconds_total";
const ROWS: &str = "weir_step_rows_total";
const SLOTS: &str = "weir_step_slots";
const READY: &str = "weir_worker_ready_seconds";
const UNITS: &str = "weir_job_units";
const COMMITTED: &str = "weir_job_units_committed_total";

/// The signals of job `job` from the scrapes of each process (keyed by a caller's process id)
/// taken `before` and `after`; only series labelled `job="<job>"` count.
///
/// Counters become rates per process, `(after - before) / elapsed`, summed by pool and step; a
/// process scraped only `after` (a new one) adds its gauges (slots, readiness) but no rates, and
/// one scraped only `before` (gone) adds nothing. The job's figures come from the process(es)
/// exporting `weir_job_units`. The result is [`Signals::check`]ed for `pools`.
///
/// # Errors
/// - [`DataProblem::CounterReset`] when a counter went down (its process restarted), naming both;
/// - [`DataProblem::NoSamples`] when a listed pool has no busy rate (no process of it scraped
///   twice);
/// - any error of [`Signals::check`].
pub fn signals_from_scrapes(
    before: &BTreeMap<String, Scrape>,
    after: &BTreeMap<String, Scrape>,
    job: &str,
    pools: &[&str],
) -> Result<Signals, DataProblem> {
    let mut sum = Sums::default();
    for (process, now) in after {
        let earlier = before.get(process);
        let elapsed = earlier.map(|e| now.at.saturating_duration_since(e.at).as_secs_f64()).filter(|s| *s > 0.0);
        let previous: BTreeMap<(&str, &BTreeMap<String, String>), f64> = earlier
            .map(|e| e.samples.iter().map(|(name, labels, value)| ((name.as_str(), labels), *value)).collect())
            .unwrap_or_default();
        for (name, labels, value) in &now.samples {
            if labels.get("job").map(String::as_str) != Some(job) {
                continue;
            }
            // Only counters have rates (and resets); a gauge going down is news, not a restart.
            let counter = matches!(name.as_str(), BUSY | BLOCKED | ROWS | COMMITTED);
            // A process scraped once (it just started) has slots but no busy rate yet: its slots
            // would read as idle capacity, so they wait for its second scrape too.
            if name == SLOTS && elapsed.is_none() {
                continue;
            }
            let rate = match (elapsed, previous.get(&(name.as_str(), labels))) {
                _ if !counter => None,
                (Some(_), Some(&was)) if was > *value => {
                    let series = format!("{name}{}", series_name(labels));
                    return Err(DataProblem::CounterReset(format!(
                        "{series} of process {process} went {was} → {value}"
                    )));
                }
                (Some(elapsed), Some(&was)) => Some((value - was) / elapsed),
                _ => None,
            };
            sum.add(name, labels, *value, rate);
        }
    }
    for pool in pools {
        if !sum.rated_pools.contains(*pool) {
            return Err(DataProblem::NoSamples(format!("{BUSY} of pool {pool} (no process of it scraped twice)")));
        }
    }
    let signals = sum.into_signals();
    signals.check(pools)?;
    Ok(signals)
}

/// The figures summed so far over processes.
#[derive(Default)]
struct Sums {
    steps: BTreeMap<(String, String), StepSignals>,
    ready: BTreeMap<String, (u32, f64)>,
    /// Pools with a busy rate from at least one process.
    rated_pools: BTreeSet<String>,
    units: BTreeMap<String, f64>,
    commit_rate: f64,
}

impl Sums {
    /// Adds one series: its gauge `value`, or its `rate` when it is a counter scraped twice.
    fn add(&mut self, name: &str, labels: &BTreeMap<String, String>, value: f64, rate: Option<f64>) {
        let label = |key: &str| labels.get(key).map(String::as_str);
        match (name, rate) {
            (UNITS, _) => {
                if let Some(state) = label("state") {
                    let figure = self.units.entry(state.into()).or_insert(value);
                    *figure = figure.max(value);
                }
            }
            (COMMITTED, Some(rate)) => self.commit_rate += rate,
            (READY, _) => {
                if let Some(pool) = label("pool") {
                    let (count, longest) = self.ready.entry(pool.into()).or_insert((0, value));
                    *count += 1;
                    *longest = longest.max(value);
                }
            }
            (SLOTS | BUSY | BLOCKED | ROWS, _) => {
                let (Some(pool), Some(step)) = (label("pool"), label("step")) else { return };
                let figures = |s: &mut StepSignals| match (name, rate) {
                    (SLOTS, _) => s.slots += value,
                    (BUSY, Some(rate)) => s.busy += rate,
                    (BLOCKED, Some(rate)) if label("on") == Some("output") => s.blocked_output += rate,
                    (ROWS, Some(rate)) if label("direction") == Some("in") => s.rows_per_second += rate,
                    _ => {}
                };
                let key = (pool.to_string(), step.to_string());
                figures(
                    self.steps.entry(key).or_insert_with(|| StepSignals { step: step.into(), ..Default::default() }),
                );
                if name == BUSY && rate.is_some() {
                    self.rated_pools.insert(pool.into());
                }
            }
            _ => {}
        }
    }

    fn into_signals(self) -> Signals {
        let mut pools: BTreeMap<String, PoolSignals> = BTreeMap::new();
        for ((pool, _), step) in self.steps {
            pools.entry(pool).or_default().steps.push(step);
        }
        for (pool, (count, longest)) in self.ready {
            let signals = pools.entry(pool).or_default();
            signals.workers_reporting = count;
            signals.ready_seconds = Some(longest);
        }
        let units = |state: &str| self.units.get(state).copied().unwrap_or(0.0);
        let job = JobSignals {
            units_total: units("total"),
            units_committed: units("committed"),
            units_leased: units("leased"),
            commit_rate: self.commit_rate,
        };
        Signals { pools, job }
    }
}
