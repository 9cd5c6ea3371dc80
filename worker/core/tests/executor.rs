//! The executor's promises, shown with synthetic async steps: order, error policy, cancellation, budget.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weir_core::unit::{BoxError, FileEntry, UnitInput};
use weir_core::{
    ComputePool, ErrorHandling, ErrorRecord, ExecError, MemoryBudget, Pipeline, PipelineOptions, RowFailure,
    RunSummary, Step, StepContext, StepError, StepOutput, UnitReader, UnitSink, UnitSummary, WithdrawnUnits, WorkUnit,
};

/// One batch per unit: row `i` of unit `u` has `_weir_ref` `u/i` and `id` `u * 1000 + i`.
struct Numbered;

impl UnitReader for Numbered {
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>> {
        let UnitInput::Files(files) = &unit.input else { return stream::empty().boxed() };
        let refs: Vec<String> = files.iter().map(|f| f.uri.clone()).collect();
        let ids: Vec<u64> = (0..files.len() as u64).map(|i| unit.id * 1000 + i).collect();
        let batch = RecordBatch::try_from_iter([
            (weir_core::ROW_REF_COLUMN, Arc::new(StringArray::from(refs)) as ArrayRef),
            ("id", Arc::new(UInt64Array::from(ids)) as ArrayRef),
        ]);
        stream::once(async move { batch.map_err(|e| Box::new(e) as BoxError) }).boxed()
    }
}

/// `count` units of `rows` rows each.
fn units(count: u64, rows: u64) -> Vec<WorkUnit> {
    (0..count)
        .map(|u| {
            let files = (0..rows).map(|i| FileEntry { uri: format!("{u}/{i}"), size: 0 }).collect();
            WorkUnit { id: u, attempt: 0, input: UnitInput::Files(files) }
        })
        .collect()
}

/// Every id of `units(count, rows)`, in input order.
fn all_ids(count: u64, rows: u64) -> Vec<u64> {
    (0..count).flat_map(|u| (0..rows).map(move |i| u * 1000 + i)).collect()
}

fn ids(batch: &RecordBatch) -> Vec<u64> {
    batch.column_by_name("id").expect("id").as_primitive::<UInt64Type>().values().to_vec()
}

/// What the sink saw, in order.
#[derive(Default)]
struct Seen {
    ids: Vec<u64>,
    errors: Vec<ErrorRecord>,
    units_finished: usize,
}

/// Remembers every row, failure and finished unit.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().expect("seen")
    }
}

impl UnitSink for Recorder {
    async fn write(&mut self, _unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        self.seen().ids.extend(ids(&batch));
        Ok(())
    }

    async fn write_errors(&mut self, _unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.seen().errors.extend(errors);
        Ok(())
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        self.seen().units_finished += 1;
        Ok(UnitSummary { unit: unit.id, attempt: unit.attempt, ..Default::default() })
    }

    fn buffered_bytes(&self) -> u64 {
        0
    }
}

/// One source row per morsel, so morsels can be told apart by their row.
fn options(errors: ErrorHandling) -> PipelineOptions {
    PipelineOptions { errors, max_morsel_rows: 1, ..PipelineOptions::default() }
}

async fn run(
    step: Arc<dyn Step>,
    units: Vec<WorkUnit>,
    budget: MemoryBudget,
    options: PipelineOptions,
    sink: Recorder,
) -> Result<RunSummary, ExecError> {
    let compute = ComputePool::new(1).expect("pool");
    Pipeline::new(Arc::new(Numbered), vec![step], budget, compute, options).run(units, sink).await
}

const BUDGET: u64 = 64 << 20;

/// Holds each morsel longer the earlier its row is in the unit, so later morsels finish first;
/// remembers the order they finished in.
#[derive(Default)]
struct Staggered {
    finished: Mutex<Vec<u64>>,
}

impl Step for Staggered {
    fn name(&self) -> &str {
        "staggered"
    }

    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let first = ids(&input)[0];
            tokio::time::sleep(Duration::from_millis(10 * (20 - first % 1000))).await;
            self.finished.lock().expect("finished").push(first);
            Ok(StepOutput::ok(input))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn rows_keep_input_order_when_morsels_finish_out_of_order() {
    let step = Arc::new(Staggered::default());
    let sink = Recorder::default();

    run(step.clone(), units(2, 12), MemoryBudget::new(BUDGET), options(ErrorHandling::default()), sink.clone())
        .await
        .expect("run");

    let finished = step.finished.lock().expect("finished").clone();
    assert!(finished.windows(2).any(|w| w[0] > w[1]), "morsels finished out of order: {finished:?}");
    assert_eq!(sink.seen().ids, all_ids(2, 12));
}

/// Fails the rows whose id `fails` picks; passes the others through.
struct Failing {
    fails: fn(u64) -> bool,
}

impl Step for Failing {
    fn name(&self) -> &str {
        "failing"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let failed: Vec<usize> =
                ids(&input).into_iter().enumerate().filter(|(_, id)| (self.fails)(*id)).map(|(r, _)| r).collect();
            let batch = weir_core::batch::drop_rows(&input, &failed)?;
            Ok(StepOutput::new(batch, failed.into_iter().map(|r| RowFailure::new(r, "bad row")).collect()))
        })
    }
}

/// Every third row of a unit, from its first.
fn every_third(id: u64) -> bool {
    (id % 1000).is_multiple_of(3)
}

#[tokio::test]
async fn a_failed_row_fails_the_run_when_rows_are_not_skipped() {
    let step = Arc::new(Failing { fails: every_third });
    let policy = ErrorHandling { skip_rows: false, max_error_ratio: 1.0 };

    let err = run(step, units(2, 5), MemoryBudget::new(BUDGET), options(policy), Recorder::default())
        .await
        .expect_err("a row failed");

    match err {
        ExecError::RowFailed { row_ref, index, step, message } => {
            assert_eq!((row_ref.as_str(), index, step.as_str(), message.as_str()), ("0/0", 0, "failing", "bad row"));
        }
        other => panic!("expected RowFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn skipped_rows_are_recorded_and_every_other_row_arrives_once() {
    let step = Arc::new(Failing { fails: every_third });
    let policy = ErrorHandling { skip_rows: true, max_error_ratio: 1.0 };
    let sink = Recorder::default();

    let summary = run(step, units(2, 5), MemoryBudget::new(BUDGET), options(policy), sink.clone()).await.expect("run");

    let seen = sink.seen();
    let (failed, kept): (Vec<u64>, Vec<u64>) = all_ids(2, 5).into_iter().partition(|id| every_third(*id));
    assert_eq!(seen.ids, kept);
    let refs: Vec<&str> = seen.errors.iter().map(|e| e.row_ref.as_str()).collect();
    assert_eq!(refs, ["0/0", "0/3", "1/0", "1/3"]);
    assert!(seen.errors.iter().all(|e| e.step == "failing" && e.message == "bad row"));
    assert_eq!((summary.rows_in, summary.rows_failed), (10, failed.len() as u64));
}

#[tokio::test]
async fn a_run_stops_early_once_the_error_ratio_cannot_be_met() {
    let step = Arc::new(Failing { fails: |_| true });
    let policy = ErrorHandling { skip_rows: true, max_error_ratio: 0.5 };
    let sink = Recorder::default();

    let err = run(step, units(20, 5), MemoryBudget::new(BUDGET), options(policy), sink.clone())
        .await
        .expect_err("every row failed");

    assert!(matches!(err, ExecError::TooManyErrors { rows: 100, .. }), "{err:?}");
    let seen = sink.seen();
    assert!(seen.units_finished < 20, "stopped after {} of 20 units", seen.units_finished);
    assert!(seen.errors.len() < 100, "{} failures recorded", seen.errors.len());
}

#[tokio::test]
async fn a_run_under_the_error_ratio_completes() {
    // Two rows of every five fail: 40%, under the 50% allowed.
    let step = Arc::new(Failing { fails: |id| id % 5 < 2 });
    let policy = ErrorHandling { skip_rows: true, max_error_ratio: 0.5 };
    let sink = Recorder::default();

    let summary = run(step, units(20, 5), MemoryBudget::new(BUDGET), options(policy), sink.clone()).await.expect("run");

    assert_eq!((summary.units.len(), summary.rows_in, summary.rows_failed), (20, 100, 40));
    assert_eq!(sink.seen().ids.len(), 60);
}

/// Counts step futures alive; a guard inside each future decrements it when the future is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Never finishes a morsel; says when it has started one.
#[derive(Default)]
struct Forever {
    live: Arc<AtomicUsize>,
    started: Notify,
}

impl Step for Forever {
    fn name(&self) -> &str {
        "forever"
    }

    fn concurrency(&self) -> Option<usize> {
        Some(2)
    }

    fn process(
        self: Arc<Self>,
        _input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        self.live.fetch_add(1, SeqCst);
        let guard = Live(self.live.clone());
        self.started.notify_one();
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    }
}

/// Waits (in paused time, so quickly) until no step future of `step` is alive.
async fn all_dropped(step: &Forever) -> bool {
    let wait = async {
        while step.live.load(SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_a_run_whose_step_never_finishes() {
    let step = Arc::new(Forever::default());
    let options = options(ErrorHandling::default());
    let cancel = options.cancel.clone();
    let running = run(step.clone(), units(1, 5), MemoryBudget::new(BUDGET), options, Recorder::default());

    let (result, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(10), running), async {
        step.started.notified().await;
        cancel.cancel();
    });

    assert!(matches!(result, Ok(Err(ExecError::Cancelled))), "{result:?}");
    assert!(all_dropped(&step).await, "{} step futures still alive", step.live.load(SeqCst));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_drops_in_flight_step_futures() {
    let step = Arc::new(Forever::default());
    let running = run(
        step.clone(),
        units(1, 5),
        MemoryBudget::new(BUDGET),
        options(ErrorHandling::default()),
        Recorder::default(),
    );

    let timed_out = tokio::time::timeout(Duration::from_secs(10), running).await;

    assert!(timed_out.is_err(), "the run cannot finish");
    assert!(step.live.load(SeqCst) > 0, "a step future was in flight");
    assert!(all_dropped(&step).await, "{} step futures still alive", step.live.load(SeqCst));
}

/// Holds every morsel until `released`; counts the morsels it has been given.
struct Gated {
    released: CancellationToken,
    received: AtomicUsize,
    /// Morsels that pass at once, before the gate holds the rest.
    free: usize,
}

impl Step for Gated {
    fn name(&self) -> &str {
        "gated"
    }

    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        let free = self.received.fetch_add(1, SeqCst) < self.free;
        Box::pin(async move {
            if !free {
                self.released.cancelled().await;
            }
            Ok(StepOutput::ok(input))
        })
    }
}

/// Runs 10 rows through a [`Gated`] step under `budget`, the first `free` morsels passing at
/// once; returns how many morsels the step had been given while it held the others, and the
/// completed run's summary and rows.
async fn received_while_blocked(budget: MemoryBudget, free: usize) -> (usize, RunSummary, Vec<u64>) {
    let step = Arc::new(Gated { released: CancellationToken::new(), received: AtomicUsize::new(0), free });
    let sink = Recorder::default();
    let running = run(step.clone(), units(1, 10), budget, options(ErrorHandling::default()), sink.clone());

    let (summary, received) = tokio::join!(tokio::time::timeout(Duration::from_secs(10), running), async {
        // Paused time moves on only once every stage is waiting: on the gate, the budget or a channel.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let received = step.received.load(SeqCst);
        step.released.cancel();
        received
    });

    let ids = sink.seen().ids.clone();
    (received, summary.expect("the run ends once the step is released").expect("run"), ids)
}

#[tokio::test(start_paused = true)]
async fn the_source_admits_no_more_morsels_than_the_budget_allows_while_a_step_is_blocked() {
    // A budget smaller than any morsel admits one morsel at a time (an oversized reservation is
    // granted only when nothing else is reserved).
    // The first morsel passes (it calibrates the planner), the second waits at the gate.
    let (received, _, ids) = received_while_blocked(MemoryBudget::new(1), 1).await;
    assert_eq!(received, 2);
    assert_eq!(ids, all_ids(1, 10), "the run completes once the step is released");

    // With room in the budget, once calibrated, the step's concurrency is the limit.
    let (received, summary, ids) = received_while_blocked(MemoryBudget::new(BUDGET), 1).await;
    assert_eq!(received, 1 + 4);
    assert_eq!(ids, all_ids(1, 10));
    assert!(summary.peak_reserved <= BUDGET, "{} bytes reserved at most", summary.peak_reserved);
}

#[tokio::test(start_paused = true)]
async fn until_every_step_has_seen_a_morsel_the_source_admits_one_at_a_time() {
    // Sizes are guesses before the first morsel has passed every step (a photo of unknown size
    // may decode to 75 MB), so however large the budget, the second morsel waits for the first.
    let (received, summary, ids) = received_while_blocked(MemoryBudget::new(BUDGET), 0).await;
    assert_eq!(received, 1);
    assert_eq!(ids, all_ids(1, 10));
    assert!(summary.peak_reserved <= BUDGET);
}

/// Counts the morsels it is given per unit; on the third of unit 0 it withdraws that unit (as a
/// revoked lease would) and fails that morsel with a step error.
struct WithdrawsUnitZero {
    withdrawn: WithdrawnUnits,
    calls: Mutex<Vec<u64>>,
}

impl Step for WithdrawsUnitZero {
    fn name(&self) -> &str {
        "withdraws"
    }

    fn concurrency(&self) -> Option<usize> {
        Some(1)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let unit = ids(&input)[0] / 1000;
            let calls = {
                let mut calls = self.calls.lock().expect("calls");
                calls.push(unit);
                calls.iter().filter(|u| **u == unit).count()
            };
            if unit == 0 && calls == 3 {
                self.withdrawn.withdraw(0, 0);
                return Err(StepError::Other("the peer refused: lease revoked".into()));
            }
            Ok(StepOutput::ok(input))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_unit_stops_at_the_next_morsel_and_the_others_run_whole() {
    let withdrawn = WithdrawnUnits::default();
    let step = Arc::new(WithdrawsUnitZero { withdrawn: withdrawn.clone(), calls: Mutex::default() });
    let sink = Recorder::default();
    let options = PipelineOptions { withdrawn: withdrawn.clone(), ..options(ErrorHandling::default()) };

    let summary = run(step.clone(), units(2, 10), MemoryBudget::new(BUDGET), options, sink.clone())
        .await
        .expect("the step error of a withdrawn unit fails nothing");

    let calls = step.calls.lock().expect("calls").clone();
    assert_eq!(calls.iter().filter(|u| **u == 0).count(), 3, "no step ran on unit 0 once withdrawn: {calls:?}");
    assert_eq!(calls.iter().filter(|u| **u == 1).count(), 10, "unit 1 ran whole: {calls:?}");
    let seen = sink.seen();
    let unit_zero: Vec<u64> = seen.ids.iter().copied().filter(|id| *id < 1000).collect();
    assert!(unit_zero.len() <= 2, "rows of unit 0 written after it was withdrawn: {unit_zero:?}");
    assert_eq!(seen.ids.iter().copied().filter(|id| *id >= 1000).collect::<Vec<_>>(), all_ids(2, 10)[10..]);
    assert_eq!(seen.units_finished, 2, "the withdrawn unit still reaches finish_unit, for its files to be discarded");
    assert_eq!(summary.units.len(), 2);
}

/// Adds a 4 KiB column to every row: one row is larger than the budget of the test below.
struct Inflate;

impl Step for Inflate {
    fn name(&self) -> &str {
        "inflate"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let blob: ArrayRef =
                Arc::new(arrow_array::BinaryArray::from_iter_values((0..input.num_rows()).map(|_| vec![7u8; 4096])));
            Ok(StepOutput::ok(weir_core::batch::with_column(&input, "blob", blob)?))
        })
    }
}

/// Holds every row of a unit until the unit ends, as an open row group does.
#[derive(Clone, Default)]
struct Buffering {
    seen: Recorder,
    buffered: u64,
}

impl UnitSink for Buffering {
    async fn write(&mut self, unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        self.buffered += weir_core::batch::batch_bytes(&batch);
        self.seen.write(unit, batch).await
    }

    async fn write_errors(&mut self, unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.seen.write_errors(unit, errors).await
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        self.buffered = 0;
        self.seen.finish_unit(unit).await
    }

    fn buffered_bytes(&self) -> u64 {
        self.buffered
    }
}

#[tokio::test]
async fn a_budget_smaller_than_one_row_still_finishes_while_the_sink_buffers() {
    let sink = Buffering::default();
    let compute = ComputePool::new(1).expect("pool");
    let pipeline = Pipeline::new(
        Arc::new(Numbered),
        vec![Arc::new(Inflate) as Arc<dyn Step>],
        MemoryBudget::new(1024),
        compute,
        options(ErrorHandling::default()),
    );

    let run = pipeline.run(units(3, 5), sink.clone());
    let summary = tokio::time::timeout(Duration::from_secs(20), run).await.expect("no deadlock").expect("run");

    assert_eq!(summary.rows_in, 15);
    assert_eq!(sink.seen.seen().ids, all_ids(3, 5), "every row, once, in order");
}

/// Takes 100 ms a morsel, two at a time; remembers the most it had at once.
#[derive(Default)]
struct Overlapping {
    alive: AtomicUsize,
    most: AtomicUsize,
}

impl Step for Overlapping {
    fn concurrency(&self) -> Option<usize> {
        Some(2)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let now = self.alive.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.alive.fetch_sub(1, SeqCst);
            Ok(StepOutput::ok(input))
        })
    }
}

/// A unit's end is no work: counted against a step's concurrency, it kept a one-file unit (a
/// video) from overlapping the next one's.
#[tokio::test(start_paused = true)]
async fn units_of_one_morsel_each_run_as_many_at_once_as_the_step_allows() {
    let step = Arc::new(Overlapping::default());
    let sink = Recorder::default();

    run(step.clone(), units(6, 1), MemoryBudget::new(BUDGET), options(ErrorHandling::default()), sink.clone())
        .await
        .expect("run");

    assert_eq!(step.most.load(SeqCst), 2);
    assert_eq!(sink.seen().ids, all_ids(6, 1));
    assert_eq!(sink.seen().units_finished, 6);
}

/// Starts each morsel's work when called, as a video decode does, and hands its output in a
/// second part: unit 0's after a second, the others' at once. Remembers how many morsels had
/// started when unit 0's part came.
#[derive(Default)]
struct OneLongFile {
    started: AtomicUsize,
    started_when_the_long_one_ended: AtomicUsize,
}

impl Step for OneLongFile {
    fn concurrency(&self) -> Option<usize> {
        Some(2)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        self.started.fetch_add(1, SeqCst);
        let long = ids(&input)[0] == 0;
        let first = StepOutput::ok(input.slice(0, 0));
        let rest = input.clone();
        let part = stream::once(async move {
            if long {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.started_when_the_long_one_ended.store(self.started.load(SeqCst), SeqCst);
            }
            Ok(StepOutput::ok(rest))
        });
        Box::pin(async move { Ok(StepOutput { more: Some(part.boxed()), ..first }) })
    }
}

/// While one long file's parts go out in order, the stage keeps starting the next files: one
/// draining, `concurrency` finished and held, `concurrency` in flight; no more.
#[tokio::test(start_paused = true)]
async fn a_long_file_does_not_hold_back_the_next_files_work_but_the_lookahead_is_bounded() {
    let step = Arc::new(OneLongFile::default());
    let sink = Recorder::default();

    run(step.clone(), units(8, 1), MemoryBudget::new(BUDGET), options(ErrorHandling::default()), sink.clone())
        .await
        .expect("run");

    assert_eq!(step.started_when_the_long_one_ended.load(SeqCst), 5);
    assert_eq!(sink.seen().ids, all_ids(8, 1));
    assert_eq!(sink.seen().units_finished, 8);
}
