//! The [`Step`] trait: a morsel in, a morsel out, with row-level failures kept apart from fatal ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::batch;
use crate::compute::ComputePool;
use crate::error::StepError;

/// One input row that a step could not process; the rest of the morsel goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    /// Index of the row in the step's input morsel.
    pub row: usize,
    pub message: String,
    /// Set when the row failed in a later step than the one reporting it (a step that runs a
    /// segment of the job's steps elsewhere); `row` is then not used.
    pub origin: Option<FailureOrigin>,
}

/// Where a row failed, for a failure reported on behalf of a later step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureOrigin {
    /// Position of the step in `spec.steps`.
    pub step_index: usize,
    pub step: String,
    /// The failed row's reference ([`ROW_REF_COLUMN`](crate::ROW_REF_COLUMN)).
    pub row_ref: String,
}

impl RowFailure {
    pub fn new(row: usize, message: impl Into<String>) -> Self {
        Self { row, message: message.into(), origin: None }
    }

    /// A row that failed in the step and at the row `origin` names.
    pub fn at(origin: FailureOrigin, message: impl Into<String>) -> Self {
        Self { row: 0, message: message.into(), origin: Some(origin) }
    }
}

/// The rest of a step's output for one input morsel (see [`StepOutput::more`]).
pub type MoreOutput = BoxStream<'static, Result<StepOutput, StepError>>;

/// What a step made of a morsel.
pub struct StepOutput {
    /// The output rows; failed rows are not in it.
    pub batch: RecordBatch,
    /// Rows of the input that failed, in input order.
    pub failures: Vec<RowFailure>,
    /// Time spent working, when the step measured it (otherwise the executor times the call).
    pub busy: Option<Duration>,
    /// The most bytes the step held at once while making this output, beyond its input (the
    /// output, a decoder's planes and scratch buffers), when measured ([`crate::alloc`]); the
    /// budget then reserves it for later morsels. `None`: the output's size stands for it. A
    /// kernel run by [`ComputeStep`] sets only what it handed to other threads
    /// ([`crate::alloc::OffThreadPeaks`]); its own thread is measured around it.
    pub peak_alloc: Option<u64>,
    /// More output for the same input morsel, for steps whose output can dwarf their input (the
    /// frames of a long video). The executor sends `batch` on, then each part of `more` in order,
    /// before the next morsel's output, and polls `more` only as fast as downstream takes parts,
    /// so memory holds a few parts, not the whole output. Failures in parts name rows of the same
    /// input morsel; a part has no `more` of its own (a step flattens them). Dropping the stream
    /// must stop the work behind it.
    pub more: Option<MoreOutput>,
}

impl std::fmt::Debug for StepOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepOutput")
            .field("batch", &self.batch)
            .field("failures", &self.failures)
            .field("busy", &self.busy)
            .field("peak_alloc", &self.peak_alloc)
            .field("more", &self.more.as_ref().map(|_| "..."))
            .finish()
    }
}

impl StepOutput {
    /// Output with no failed rows.
    pub fn ok(batch: RecordBatch) -> Self {
        Self::new(batch, Vec::new())
    }

    /// Output with failed rows (not in `batch`).
    pub fn new(batch: RecordBatch, failures: Vec<RowFailure>) -> Self {
        Self { batch, failures, busy: None, peak_alloc: None, more: None }
    }

    /// Adds (or replaces) column `name` with `values` (one per input row, failed rows null) and
    /// drops the failed rows.
    ///
    /// # Errors
    /// When `values` does not have one entry per input row.
    pub fn with_column(
        input: &RecordBatch,
        name: &str,
        values: ArrayRef,
        failures: Vec<RowFailure>,
    ) -> Result<Self, StepError> {
        let added = batch::with_column(input, name, values)?;
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        let batch = batch::drop_rows(&added, &failed)?;
        Ok(Self::new(batch, failures))
    }
}

/// What a step may use while it runs.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub compute: ComputePool,
    /// The unit attempt the morsel belongs to, when the step runs inside a pipeline (a step that
    /// asks a peer to work on the morsel names the attempt the work serves).
    pub attempt: Option<UnitAttempt>,
}

impl StepContext {
    /// A context outside any unit (tools, tests, a served segment before it knows its attempt).
    pub fn new(compute: ComputePool) -> Self {
        Self { compute, attempt: None }
    }

    /// The same context, for a morsel of `attempt`.
    pub fn for_attempt(&self, attempt: UnitAttempt) -> Self {
        Self { compute: self.compute.clone(), attempt: Some(attempt) }
    }
}

/// One attempt of a work unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitAttempt {
    pub unit: u64,
    pub attempt: u32,
}

/// A pipeline step. Implementations are built once per worker and shared by concurrent calls.
///
/// # Errors
/// A row the step cannot handle (a corrupt image, a missing file) is a [`RowFailure`] in the
/// output, never an `Err`: `Err` means the whole morsel is unusable and fails the job.
///
/// # Cancellation
/// The returned future may be dropped at any point; it must not leave shared state inconsistent.
pub trait Step: Send + Sync + 'static {
    /// The name in stats and messages. A job's steps are named by their `op` when planned
    /// ([`Planned`]), so a step need not name itself; the default is its Rust type's name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Morsels this step works on at once; `None` means one per compute thread.
    fn concurrency(&self) -> Option<usize> {
        None
    }

    /// Processes one morsel.
    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>>;
}

/// A step as the job plans it: named by its `op`, run with the concurrency its manifest sets
/// (else the step's own default), and, when the plan knows which columns later steps and the sink
/// read, told so and pruned to them.
///
/// # Guarantees
/// With `needed_after` set, the step's input carries the list ([`batch::mark_needed_after`], so a
/// row-multiplying step does not repeat a column nobody reads again), and every part of its output
/// keeps only those columns and the internal `_weir_*` ones: memory, exchanges and the sink stop
/// carrying a column once it is dead.
pub struct Planned {
    name: &'static str,
    concurrency: Option<usize>,
    needed_after: Option<Arc<[String]>>,
    step: Arc<dyn Step>,
}

impl Planned {
    pub fn wrap(name: &'static str, concurrency: Option<usize>, step: Arc<dyn Step>) -> Arc<dyn Step> {
        Self::wrap_pruned(name, concurrency, None, step)
    }

    /// As [`Planned::wrap`], keeping only the columns in `needed_after` (and internal ones) after
    /// the step; `None` keeps every column.
    pub fn wrap_pruned(
        name: &'static str,
        concurrency: Option<usize>,
        needed_after: Option<Vec<String>>,
        step: Arc<dyn Step>,
    ) -> Arc<dyn Step> {
        let needed_after = needed_after.map(Arc::from);
        Arc::new(Self { name, concurrency: concurrency.map(|n| n.max(1)), needed_after, step })
    }
}

/// `output` (and its later parts) with only the `needed` columns.
fn prune_output(mut output: StepOutput, needed: Arc<[String]>) -> Result<StepOutput, StepError> {
    output.batch = batch::keep_needed(&output.batch, &needed)?;
    if let Some(more) = output.more.take() {
        let pruned = more.map(move |part| part.and_then(|part| prune_output(part, needed.clone())));
        output.more = Some(Box::pin(pruned));
    }
    Ok(output)
}

impl Step for Planned {
    fn name(&self) -> &str {
        self.name
    }

    fn concurrency(&self) -> Option<usize> {
        self.concurrency.or_else(|| self.step.concurrency())
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        let Some(needed) = self.needed_after.clone() else {
            return self.step.clone().process(input, ctx);
        };
        // The step is called now, not when the future is first polled: a step that starts work
        // as it is called (a video decode) must not wait for the stage to poll it, which it does
        // not while it sends an earlier morsel's parts.
        let output = match batch::mark_needed_after(&input, &needed) {
            Ok(input) => self.step.clone().process(input, ctx),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        Box::pin(async move { prune_output(output.await?, needed) })
    }
}

/// A step of the job whose work an earlier step already does (a remote segment run by another
/// pool, or a chain of image steps run as one pass): morsels pass through unchanged. It keeps the
/// step's place (and index) in the pipeline, so error records, per-step counters, pools and
/// exchanged segments keep the manifest's positions; the busy time is counted on the first step.
pub struct CoveredStep {
    name: &'static str,
}

impl CoveredStep {
    /// The step `name` (its `op`), whose work a step at an earlier position does.
    pub fn new(name: &'static str) -> Self {
        Self { name }
    }
}

impl Step for CoveredStep {
    fn name(&self) -> &str {
        self.name
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        let output = StepOutput { busy: Some(Duration::ZERO), ..StepOutput::ok(input) };
        Box::pin(std::future::ready(Ok(output)))
    }
}

/// A synchronous, CPU-bound step body; [`ComputeStep`] runs it on the compute pool.
pub trait Kernel: Send + Sync + 'static {
    /// As [`Step::name`].
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Processes one morsel on a compute thread.
    ///
    /// # Errors
    /// As [`Step`]: only for failures of the whole morsel.
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError>;

    fn concurrency(&self) -> Option<usize> {
        None
    }
}

/// Adapts a [`Kernel`] into a [`Step`] that runs off the async runtime and times itself.
pub struct ComputeStep<K>(pub K);

impl<K: Kernel> Step for ComputeStep<K> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn concurrency(&self) -> Option<usize> {
        self.0.concurrency()
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        let run = ctx.compute.run(move || {
            let start = Instant::now();
            let (out, peak) = crate::alloc::measure_peak(|| self.0.apply(&input));
            let mut out = out?;
            out.busy = Some(start.elapsed());
            // A kernel's own figure is what it handed to other threads (`OffThreadPeaks`).
            out.peak_alloc = peak.map(|own| own + out.peak_alloc.unwrap_or(0));
            Ok(out)
        });
        Box::pin(async move { run.await.unwrap_or_else(|| Err(StepError::Other("step kernel panicked".into()))) })
    }
}
