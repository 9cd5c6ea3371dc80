//! The streaming executor: a source stage, one stage per step, and a sink stage, linked by bounded
//! channels, with admission governed by the memory budget.
//!
//! Each stage is one task; a step stage keeps up to its concurrency of morsels in flight and
//! emits them in input order, so rows stay ordered within a unit. Dropping the run future aborts
//! every stage task (they are owned by a `JoinSet`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::stream::{BoxStream, FuturesOrdered};
use futures::{FutureExt, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{batch_bytes, row_ref, row_refs};
use crate::budget::{MemoryBudget, Reservation};
use crate::channel::{StageReceiver, StageSender, stage_channel};
use crate::compute::ComputePool;
use crate::error::{ExecError, StatsMismatch, StepError};
use crate::morsel::MorselPlanner;
use crate::stats::{PipelineStats, StepStats};
use crate::step::{FailureOrigin, MoreOutput, RowFailure, Step, StepContext, StepOutput, UnitAttempt};
use crate::unit::{ErrorRecord, UnitReader, UnitSink, UnitSummary, WorkUnit};
use crate::withdrawn::WithdrawnUnits;

/// What a failed row does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorHandling {
    /// `true`: record and go on; `false`: the first failed row fails the run.
    pub skip_rows: bool,
    /// With `skip_rows`: fail once more than this fraction of source rows failed.
    pub max_error_ratio: f64,
}

impl Default for ErrorHandling {
    fn default() -> Self {
        Self { skip_rows: false, max_error_ratio: 1.0 }
    }
}

/// Tuning of a run.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub errors: ErrorHandling,
    /// Most source rows per morsel.
    pub max_morsel_rows: usize,
    /// Bytes a morsel may reach at its largest; default budget / 16, within [256 KiB, 16 MiB].
    pub target_morsel_bytes: Option<u64>,
    pub cancel: CancellationToken,
    /// Attempts to stop working on while they run (see [`WithdrawnUnits`] for what stops).
    pub withdrawn: WithdrawnUnits,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            errors: ErrorHandling::default(),
            max_morsel_rows: 256,
            target_morsel_bytes: None,
            cancel: CancellationToken::new(),
            withdrawn: WithdrawnUnits::default(),
        }
    }
}

/// The result of a completed run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub units: Vec<UnitSummary>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    pub elapsed: Duration,
    /// The most bytes the memory budget ever had reserved.
    pub peak_reserved: u64,
}

/// A source, a chain of steps and a budget, ready to run units through a sink.
pub struct Pipeline {
    reader: Arc<dyn UnitReader>,
    steps: Vec<Arc<dyn Step>>,
    budget: MemoryBudget,
    compute: ComputePool,
    options: PipelineOptions,
    stats: Arc<PipelineStats>,
}

enum Message {
    Morsel(Morsel),
    UnitEnd(Arc<WorkUnit>),
}

struct Morsel {
    unit: Arc<WorkUnit>,
    batch: RecordBatch,
    source_rows: usize,
    reservation: Reservation,
    errors: Vec<ErrorRecord>,
}

impl Pipeline {
    /// A pipeline reading units with `reader` through `steps`.
    pub fn new(
        reader: Arc<dyn UnitReader>,
        steps: Vec<Arc<dyn Step>>,
        budget: MemoryBudget,
        compute: ComputePool,
        options: PipelineOptions,
    ) -> Self {
        let threads = compute.threads();
        let mut stages = vec![Arc::new(StepStats::new("source", 1))];
        for step in &steps {
            stages.push(Arc::new(StepStats::new(step.name(), step.concurrency().unwrap_or(threads))));
        }
        stages.push(Arc::new(StepStats::new("sink", 1)));
        let stats = Arc::new(PipelineStats::new(stages));
        Self { reader, steps, budget, compute, options, stats }
    }

    /// Counts into `stats` (from an earlier pipeline of the same steps) instead of fresh counters,
    /// so totals accumulate across a worker's successive pipelines.
    ///
    /// # Errors
    /// [`StatsMismatch`] when `stats` has another number of stages than this pipeline (source,
    /// steps, sink): counters of other steps would be mislabelled, so they are refused, not used.
    pub fn with_stats(mut self, stats: Arc<PipelineStats>) -> Result<Self, StatsMismatch> {
        let (expected, found) = (self.stats.stages.len(), stats.stages.len());
        if found != expected {
            return Err(StatsMismatch { expected, found });
        }
        self.stats = stats;
        Ok(self)
    }

    /// Live counters of this pipeline (shared with the running stages).
    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Runs `units` through the pipeline into `sink`, returning when every unit is finished.
    ///
    /// # Errors
    /// The first fatal failure: a step error, a failed row under the `fail` policy, too many
    /// failed rows, a source or sink error, or cancellation.
    ///
    /// # Cancellation
    /// Cancelling `options.cancel` or dropping the future stops all stages; units not finished
    /// leave only attempt-named files behind (see [`UnitSink`]).
    pub async fn run<S: UnitSink>(self, units: Vec<WorkUnit>, sink: S) -> Result<RunSummary, ExecError> {
        let rows_planned: u64 = units.iter().map(WorkUnit::rows).sum();
        self.stats.set_totals(units.len() as u64, Some(rows_planned));
        let errors = self.options.errors;
        let summary = self.run_units(futures::stream::iter(units).boxed(), sink, rows_planned).await?;
        check_error_ratio(errors, summary.rows_failed, summary.rows_in)?;
        Ok(summary)
    }

    /// Runs units as they arrive on `units` (a worker's leased units) into `sink`, returning when
    /// the stream has ended and every unit is finished. The error ratio is not checked (the
    /// coordinator judges it over the whole job); each unit's completion is seen by `sink`'s
    /// [`UnitSink::finish_unit`].
    ///
    /// # Errors
    /// As [`Pipeline::run`], less the error ratio.
    ///
    /// # Cancellation
    /// As [`Pipeline::run`].
    pub async fn run_stream<S: UnitSink>(
        self,
        units: BoxStream<'static, WorkUnit>,
        sink: S,
    ) -> Result<RunSummary, ExecError> {
        self.run_units(units, sink, 0).await
    }

    async fn run_units<S: UnitSink>(
        self,
        units: BoxStream<'static, WorkUnit>,
        sink: S,
        rows_planned: u64,
    ) -> Result<RunSummary, ExecError> {
        let started = Instant::now();
        let target = self.options.target_morsel_bytes.unwrap_or(self.budget.limit() / 16).clamp(256 << 10, 16 << 20);
        let planner = Arc::new(MorselPlanner::new(self.steps.len() + 1, target, self.options.max_morsel_rows));
        let cancel = self.options.cancel.clone();
        let mut tasks: JoinSet<Result<Option<Vec<UnitSummary>>, ExecError>> = JoinSet::new();

        let (tx, mut rx) = stage_channel();
        let source = SourceStage {
            reader: self.reader.clone(),
            budget: self.budget.clone(),
            planner: planner.clone(),
            stats: self.stats.stages[0].clone(),
            withdrawn: self.options.withdrawn.clone(),
        };
        tasks.spawn(source.run(units, tx).map(|r| r.map(|()| None)));
        for (index, step) in self.steps.iter().enumerate() {
            let (next_tx, next_rx) = stage_channel();
            let stage = StepStage {
                index,
                step: step.clone(),
                ctx: StepContext::new(self.compute.clone()),
                stats: self.stats.stages[index + 1].clone(),
                planner: planner.clone(),
                budget: self.budget.clone(),
                errors: self.options.errors,
                withdrawn: self.options.withdrawn.clone(),
            };
            tasks.spawn(stage.run(rx, next_tx).map(|r| r.map(|()| None)));
            rx = next_rx;
        }
        let sink_stage = SinkStage {
            sink,
            budget: self.budget.clone(),
            stats: self.stats.clone(),
            errors: self.options.errors,
            rows_planned,
            withdrawn: self.options.withdrawn.clone(),
        };
        tasks.spawn(sink_stage.run(rx).map(|r| r.map(Some)));

        let mut units_done = None;
        loop {
            let joined = tokio::select! {
                _ = cancel.cancelled() => return Err(ExecError::Cancelled),
                joined = tasks.join_next() => joined,
            };
            match joined {
                None => break,
                Some(Ok(Ok(Some(summaries)))) => units_done = Some(summaries),
                Some(Ok(Ok(None))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(join)) => return Err(ExecError::Internal(format!("stage task: {join}"))),
            }
        }
        let units = units_done.ok_or_else(|| ExecError::Internal("sink stage ended without a result".into()))?;
        let snapshot = self.stats.snapshot();
        let rows_in = snapshot.first().map_or(0, |s| s.rows_out);
        let rows_failed = self.stats.rows_failed();
        Ok(RunSummary {
            rows_in,
            rows_out: units.iter().map(|u| u.rows).sum(),
            rows_failed,
            units,
            elapsed: started.elapsed(),
            peak_reserved: self.budget.peak(),
        })
    }
}

fn check_error_ratio(policy: ErrorHandling, failed: u64, rows: u64) -> Result<(), ExecError> {
    if failed == 0 || rows == 0 {
        return Ok(());
    }
    let ratio = failed as f64 / rows as f64;
    if ratio > policy.max_error_ratio {
        return Err(ExecError::TooManyErrors { failed, rows, ratio, max_ratio: policy.max_error_ratio });
    }
    Ok(())
}

struct SourceStage {
    reader: Arc<dyn UnitReader>,
    budget: MemoryBudget,
    planner: Arc<MorselPlanner>,
    stats: Arc<StepStats>,
    withdrawn: WithdrawnUnits,
}

impl SourceStage {
    async fn run(self, mut units: BoxStream<'static, WorkUnit>, tx: StageSender<Message>) -> Result<(), ExecError> {
        while let Some(unit) = units.next().await {
            let unit = Arc::new(unit);
            let mut batches: BoxStream<'static, _> = self.reader.read(&unit);
            // A withdrawn unit reads no further; its end still goes down the pipeline.
            while !self.withdrawn.contains(&unit) {
                let start = Instant::now();
                let Some(next) = batches.next().await else {
                    break;
                };
                self.stats.add_busy(start.elapsed());
                let batch = next.map_err(|source| ExecError::Source { unit: unit.id, source })?;
                if !self.send_morsels(&unit, batch, &tx).await {
                    return Ok(());
                }
            }
            if !tx.send(Message::UnitEnd(unit)).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Slices `batch` into morsels sized by the planner; `false` when downstream is gone.
    async fn send_morsels(&self, unit: &Arc<WorkUnit>, batch: RecordBatch, tx: &StageSender<Message>) -> bool {
        let mut offset = 0;
        while offset < batch.num_rows() && !self.withdrawn.contains(unit) {
            let rows = self.planner.morsel_rows().min(batch.num_rows() - offset);
            let slice = batch.slice(offset, rows);
            offset += rows;
            let bytes = batch_bytes(&slice);
            self.stats.record_in(rows, bytes);
            let waited = Instant::now();
            // Until every stage was seen once, a morsel runs alone: the estimates are guesses, and
            // a guess too low (a 5000x5000 photo taken for a thumbnail) would let many in at once.
            let wanted = self.planner.remaining_peak(0, rows).max(bytes);
            let reservation = match self.planner.calibrated() {
                true => self.budget.acquire(wanted).await,
                false => self.budget.acquire_alone(wanted).await,
            };
            self.planner.observe(0, bytes, rows);
            self.stats.record_out(rows, bytes);
            let morsel =
                Morsel { unit: unit.clone(), batch: slice, source_rows: rows, reservation, errors: Vec::new() };
            let sent = tx.send(Message::Morsel(morsel)).await;
            self.stats.add_blocked_out(waited.elapsed());
            if !sent {
                return false;
            }
        }
        true
    }
}

struct StepStage {
    index: usize,
    step: Arc<dyn Step>,
    ctx: StepContext,
    stats: Arc<StepStats>,
    planner: Arc<MorselPlanner>,
    budget: MemoryBudget,
    errors: ErrorHandling,
    withdrawn: WithdrawnUnits,
}

/// The parts still to come of one morsel's output ([`StepOutput::more`]).
struct Draining {
    unit: Arc<WorkUnit>,
    /// The step's input morsel, which the parts' failures refer to.
    input: RecordBatch,
    more: MoreOutput,
}

type InFlight = futures::future::BoxFuture<'static, Processed>;

/// A morsel a step has finished with, before the error policy is applied.
struct Done {
    morsel: Morsel,
    input: RecordBatch,
    output: Result<StepOutput, StepError>,
    elapsed: Duration,
}

enum Processed {
    Morsel(Box<Done>),
    UnitEnd(Arc<WorkUnit>),
}

impl StepStage {
    async fn run(self, mut rx: StageReceiver<Message>, tx: StageSender<Message>) -> Result<(), ExecError> {
        let concurrency = self.step.concurrency().unwrap_or(self.ctx.compute.threads()).max(1);
        let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
        // Only morsels count against `concurrency`: a unit's end is no work, and counted it kept
        // a one-file unit's decode from overlapping the next (one core of two busy on videos).
        // The queue as a whole stays bounded all the same.
        let mut morsels_in_flight = 0usize;
        let queue_bound = concurrency * 4;
        let mut input_done = false;
        // While a morsel's output is still arriving in parts, the next finished morsels wait here
        // (in order, at most `concurrency` of them), so that the stage starts more: a step whose
        // work goes on after its future is done (a video decode) keeps every core busy while a
        // long file's parts go out, however unequal the files.
        let mut draining: Option<Draining> = None;
        let mut held: VecDeque<Processed> = VecDeque::new();
        let mut held_morsels = 0usize;
        loop {
            if draining.is_none()
                && let Some(done) = held.pop_front()
            {
                held_morsels -= usize::from(matches!(done, Processed::Morsel(_)));
                let (message, more) = self.finish(done)?;
                draining = more;
                if let Some(message) = message
                    && !self.send(&tx, message).await
                {
                    return Ok(());
                }
                continue;
            }
            let idle = in_flight.is_empty() && draining.is_none();
            if idle && input_done {
                return Ok(());
            }
            let wait = Instant::now();
            tokio::select! {
                biased;
                part = next_part(&mut draining), if draining.is_some() => {
                    let Some(part) = part else {
                        draining = None;
                        continue;
                    };
                    if let (Some(current), Err(StepError::Withdrawn(_))) = (&draining, &part) {
                        self.withdrawn.withdraw(current.unit.id, current.unit.attempt);
                    }
                    if draining.as_ref().is_some_and(|d| self.withdrawn.contains(&d.unit)) {
                        // Dropping the rest of the output stops the step's work on it.
                        draining = None;
                        continue;
                    }
                    let Some(current) = draining.as_ref() else { continue };
                    let message = self.finish_part(current, part)?;
                    if !self.send(&tx, message).await {
                        return Ok(());
                    }
                }
                Some(done) = in_flight.next(), if !in_flight.is_empty() && held_morsels < concurrency => {
                    if matches!(done, Processed::Morsel(_)) {
                        morsels_in_flight -= 1;
                        held_morsels += 1;
                    }
                    held.push_back(done);
                }
                message = rx.recv(), if !input_done && morsels_in_flight < concurrency && in_flight.len() < queue_bound => {
                    if idle {
                        self.stats.add_blocked_in(wait.elapsed());
                    }
                    self.stats.set_queue_depth(rx.queued());
                    match message {
                        None => input_done = true,
                        Some(message) => {
                            morsels_in_flight += usize::from(matches!(message, Message::Morsel(_)));
                            in_flight.push_back(self.start(message));
                        }
                    }
                }
            }
        }
    }

    /// Sends `message` downstream, timing the wait; `false` when downstream is gone.
    async fn send(&self, tx: &StageSender<Message>, message: Message) -> bool {
        let sending = Instant::now();
        let sent = tx.send(message).await;
        self.stats.add_blocked_out(sending.elapsed());
        sent
    }

    fn start(&self, message: Message) -> InFlight {
        let mut morsel = match message {
            Message::UnitEnd(unit) => return Box::pin(async move { Processed::UnitEnd(unit) }),
            Message::Morsel(morsel) => morsel,
        };
        if self.withdrawn.contains(&morsel.unit) {
            morsel.batch = morsel.batch.slice(0, 0);
            morsel.errors.clear();
            morsel.reservation.resize(0);
        }
        // Nothing to process (every row failed or was filtered out upstream, or the unit was
        // withdrawn): a step need not handle empty morsels, and its output column would be
        // missing, not empty.
        if morsel.batch.num_rows() == 0 {
            let input = morsel.batch.clone();
            let output = Ok(StepOutput::ok(input.clone()));
            return Box::pin(async move {
                Processed::Morsel(Box::new(Done { morsel, input, output, elapsed: Duration::ZERO }))
            });
        }
        self.stats.record_in(morsel.batch.num_rows(), batch_bytes(&morsel.batch));
        let input = morsel.batch.clone();
        let ctx = self.ctx.for_attempt(UnitAttempt { unit: morsel.unit.id, attempt: morsel.unit.attempt });
        let work = self.step.clone().process(morsel.batch.clone(), ctx);
        Box::pin(async move {
            let start = Instant::now();
            let output = work.await;
            Processed::Morsel(Box::new(Done { morsel, input, output, elapsed: start.elapsed() }))
        })
    }

    /// Turns a processed morsel into the message for the next stage, applying the error policy;
    /// also returns the rest of its output when it comes in parts.
    fn finish(&self, done: Processed) -> Result<(Option<Message>, Option<Draining>), ExecError> {
        let Done { mut morsel, input, output, elapsed } = match done {
            Processed::UnitEnd(unit) => return Ok((Some(Message::UnitEnd(unit)), None)),
            Processed::Morsel(done) => *done,
        };
        if let Err(StepError::Withdrawn(_)) = &output {
            self.withdrawn.withdraw(morsel.unit.id, morsel.unit.attempt);
        }
        if self.withdrawn.contains(&morsel.unit) {
            // Whatever the step made of it (an error included) is not wanted.
            self.stats.add_busy(elapsed);
            morsel.batch = morsel.batch.slice(0, 0);
            morsel.errors.clear();
            morsel.reservation.resize(0);
            return Ok((Some(Message::Morsel(morsel)), None));
        }
        let mut output = output.map_err(|source| self.step_error(&morsel.unit, source))?;
        self.stats.add_busy(output.busy.unwrap_or(elapsed));
        let more = output.more.take().map(|more| Draining { unit: morsel.unit.clone(), input: input.clone(), more });
        self.apply(&mut morsel, &input, output)?;
        Ok((Some(Message::Morsel(morsel)), more))
    }

    /// A later part of a morsel's output, as its own morsel: no source rows of its own, and a
    /// reservation for just its bytes (the part exists already; waiting for budget cannot help).
    fn finish_part(&self, from: &Draining, part: Result<StepOutput, StepError>) -> Result<Message, ExecError> {
        let output = part.map_err(|source| self.step_error(&from.unit, source))?;
        if output.more.is_some() {
            return Err(ExecError::Internal(format!(
                "a part of step `{}`'s output has parts of its own",
                self.step.name()
            )));
        }
        self.stats.add_busy(output.busy.unwrap_or_default());
        let mut morsel = Morsel {
            unit: from.unit.clone(),
            batch: output.batch.clone(),
            source_rows: 0,
            reservation: self.budget.force(0),
            errors: Vec::new(),
        };
        self.apply(&mut morsel, &from.input, output)?;
        Ok(Message::Morsel(morsel))
    }

    fn step_error(&self, unit: &WorkUnit, source: StepError) -> ExecError {
        ExecError::Step { index: self.index, step: self.step.name().to_string(), unit: unit.id, source }
    }

    /// Applies the error policy to `output`'s failed rows (rows of `input`), records stats, and
    /// makes `output` the morsel's batch with a reservation resized to what it still needs.
    fn apply(&self, morsel: &mut Morsel, input: &RecordBatch, output: StepOutput) -> Result<(), ExecError> {
        if !output.failures.is_empty() {
            let refs = row_refs(input);
            let origin = |f: &RowFailure| match &f.origin {
                Some(o) => o.clone(),
                None => FailureOrigin {
                    step_index: self.index,
                    step: self.step.name().to_string(),
                    row_ref: row_ref(refs.as_ref(), f.row),
                },
            };
            if !self.errors.skip_rows {
                let first = &output.failures[0];
                let at = origin(first);
                return Err(ExecError::RowFailed {
                    row_ref: at.row_ref,
                    index: at.step_index,
                    step: at.step,
                    message: first.message.clone(),
                });
            }
            self.stats.record_failed(output.failures.len());
            morsel.errors.extend(output.failures.iter().map(|f| {
                let at = origin(f);
                ErrorRecord {
                    unit: morsel.unit.id,
                    row_ref: at.row_ref,
                    step_index: at.step_index,
                    step: at.step,
                    message: f.message.clone(),
                }
            }));
        }
        let bytes = batch_bytes(&output.batch);
        self.stats.record_out(output.batch.num_rows(), bytes);
        if input.num_rows() > 0 {
            // An empty morsel passed through says nothing about the step.
            self.planner.observe(self.index + 1, bytes, morsel.source_rows);
            let working = batch_bytes(input) + output.peak_alloc.unwrap_or(bytes);
            self.planner.observe_working(self.index + 1, working, morsel.source_rows);
        }
        let still_needed = self.planner.remaining_peak(self.index + 2, morsel.source_rows).max(bytes);
        morsel.reservation.resize(still_needed);
        morsel.batch = output.batch;
        Ok(())
    }
}

/// The next part of the output being drained; `None` when it is complete (or there is none).
async fn next_part(draining: &mut Option<Draining>) -> Option<Result<StepOutput, StepError>> {
    match draining {
        Some(d) => d.more.next().await,
        None => None,
    }
}

struct SinkStage<S> {
    sink: S,
    budget: MemoryBudget,
    stats: Arc<PipelineStats>,
    errors: ErrorHandling,
    rows_planned: u64,
    withdrawn: WithdrawnUnits,
}

impl<S: UnitSink> SinkStage<S> {
    async fn run(mut self, mut rx: StageReceiver<Message>) -> Result<Vec<UnitSummary>, ExecError> {
        let stats = self.stats.stages.last().cloned().ok_or_else(|| ExecError::Internal("no sink stats".into()))?;
        // The open row group flushes only when more rows come: parked, so it never keeps the
        // morsel that would flush it from being admitted.
        let mut buffered = self.budget.park(0);
        let mut summaries = Vec::new();
        loop {
            let wait = Instant::now();
            let Some(message) = rx.recv().await else {
                break;
            };
            stats.add_blocked_in(wait.elapsed());
            stats.set_queue_depth(rx.queued());
            let start = Instant::now();
            match message {
                Message::Morsel(morsel) if self.withdrawn.contains(&morsel.unit) => drop(morsel),
                Message::Morsel(morsel) => {
                    let unit = morsel.unit.clone();
                    let sink_err = |source| ExecError::Sink { unit: unit.id, source };
                    let rows = morsel.batch.num_rows();
                    let bytes = batch_bytes(&morsel.batch);
                    stats.record_in(rows, bytes);
                    if !morsel.errors.is_empty() {
                        self.sink.write_errors(&unit, morsel.errors).await.map_err(sink_err)?;
                        self.check_early_error_ratio()?;
                    }
                    if rows > 0 {
                        self.sink.write(&unit, morsel.batch).await.map_err(sink_err)?;
                    }
                    stats.record_out(rows, bytes);
                    drop(morsel.reservation);
                }
                Message::UnitEnd(unit) => {
                    let summary = self
                        .sink
                        .finish_unit(&unit)
                        .await
                        .map_err(|source| ExecError::Sink { unit: unit.id, source })?;
                    summaries.push(summary);
                    self.stats.unit_done();
                }
            }
            buffered.resize(self.sink.buffered_bytes());
            stats.add_busy(start.elapsed());
        }
        Ok(summaries)
    }

    /// Fails as soon as the error ratio can no longer end up within the limit.
    fn check_early_error_ratio(&self) -> Result<(), ExecError> {
        if self.rows_planned == 0 || self.errors.max_error_ratio >= 1.0 {
            return Ok(());
        }
        let failed = self.stats.rows_failed();
        if failed as f64 > self.errors.max_error_ratio * self.rows_planned as f64 {
            return check_error_ratio(self.errors, failed, self.rows_planned);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoRows;

    impl UnitReader for NoRows {
        fn read(&self, _unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, crate::unit::BoxError>> {
            futures::stream::empty().boxed()
        }
    }

    fn pipeline() -> Pipeline {
        let compute = ComputePool::new(1).expect("pool");
        Pipeline::new(Arc::new(NoRows), Vec::new(), MemoryBudget::new(1 << 20), compute, PipelineOptions::default())
    }

    fn stats_of(stages: usize) -> Arc<PipelineStats> {
        Arc::new(PipelineStats::new((0..stages).map(|i| Arc::new(StepStats::new(format!("s{i}"), 1))).collect()))
    }

    #[test]
    fn with_stats_counts_into_stats_of_the_same_stages() {
        let totals = stats_of(2);
        let pipeline = pipeline().with_stats(totals.clone()).expect("source and sink: two stages");
        assert!(Arc::ptr_eq(&pipeline.stats(), &totals));
    }

    #[test]
    fn with_stats_refuses_stats_of_other_stages() {
        let err = pipeline().with_stats(stats_of(3)).err().expect("three stages for two");
        assert_eq!((err.expected, err.found), (2, 3));
    }
}
