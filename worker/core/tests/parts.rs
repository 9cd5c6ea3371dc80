//! Steps whose output comes in parts ([`StepOutput::more`]): the parts arrive in order, before the
//! next morsel's output, only as fast as downstream takes them, and their failed rows are
//! recorded like any other.

use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use weir_core::unit::{BoxError, FileEntry, UnitInput};
use weir_core::{
    ComputePool, ErrorHandling, ErrorRecord, MemoryBudget, Pipeline, PipelineOptions, RowFailure, Step, StepContext,
    StepError, StepOutput, UnitReader, UnitSink, UnitSummary, WorkUnit,
};

/// One row per file of a unit: `(_weir_ref, parts, id)`, where `parts` (the file's size) is how many
/// parts the row makes and `id` its position in the unit.
struct Numbers;

impl UnitReader for Numbers {
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>> {
        let UnitInput::Files(files) = &unit.input else { return stream::empty().boxed() };
        let refs: Vec<String> = files.iter().map(|f| f.uri.clone()).collect();
        let parts: Vec<u64> = files.iter().map(|f| f.size).collect();
        let ids: Vec<u64> = (0..files.len() as u64).collect();
        let batch = RecordBatch::try_from_iter([
            (weir_core::ROW_REF_COLUMN, Arc::new(StringArray::from(refs)) as ArrayRef),
            ("parts", Arc::new(UInt64Array::from(parts)) as ArrayRef),
            ("id", Arc::new(UInt64Array::from(ids)) as ArrayRef),
        ]);
        stream::once(async move { batch.map_err(|e| Box::new(e) as BoxError) }).boxed()
    }
}

/// A morsel of `refs` (a `_weir_ref` column) and `values`.
fn rows(refs: ArrayRef, values: Vec<u64>) -> Result<RecordBatch, StepError> {
    Ok(RecordBatch::try_from_iter([
        (weir_core::ROW_REF_COLUMN, refs),
        ("value", Arc::new(UInt64Array::from(values)) as ArrayRef),
    ])?)
}

/// Makes, per input row, `parts` rows `id * 1000 + k`, one part each; a row asking for 13 parts
/// fails after its 3rd. Counts parts made and not yet written.
struct Parted {
    alive: Arc<AtomicI64>,
    most_alive: Arc<AtomicI64>,
}

impl Step for Parted {
    fn name(&self) -> &str {
        "parted"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let parts = input.column_by_name("parts").expect("parts").as_primitive::<UInt64Type>().clone();
            let refs = input.column_by_name(weir_core::ROW_REF_COLUMN).expect("refs").clone();
            let empty = rows(refs.slice(0, 0), Vec::new())?;
            let ids = input.column_by_name("id").expect("id").as_primitive::<UInt64Type>().clone();
            let plan: Vec<(usize, u64, u64)> =
                parts.values().iter().zip(ids.values()).enumerate().map(|(r, (n, id))| (r, *n, *id)).collect();
            let this = self.clone();
            let more = stream::iter(plan).flat_map(move |(row, n, id)| {
                let (this, refs) = (this.clone(), refs.clone());
                stream::iter(0..n).map(move |k| {
                    if n == 13 && k == 3 {
                        return Ok(StepOutput::new(
                            rows(refs.slice(0, 0), Vec::new())?,
                            vec![RowFailure::new(row, "broke half-way")],
                        ));
                    }
                    if n == 13 && k > 3 {
                        return Ok(StepOutput::ok(rows(refs.slice(0, 0), Vec::new())?));
                    }
                    let now = this.alive.fetch_add(1, SeqCst) + 1;
                    this.most_alive.fetch_max(now, SeqCst);
                    Ok(StepOutput::ok(rows(refs.slice(row, 1), vec![id * 1000 + k])?))
                })
            });
            Ok(StepOutput { more: Some(more.boxed()), ..StepOutput::ok(empty) })
        })
    }
}

/// What the sink saw, in order.
#[derive(Default)]
struct Seen {
    values: Vec<u64>,
    errors: Vec<ErrorRecord>,
}

/// Writes slowly, remembering every value and error in order.
struct Slow {
    alive: Arc<AtomicI64>,
    seen: Arc<Mutex<Seen>>,
}

impl UnitSink for Slow {
    async fn write(&mut self, _unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let values = batch.column_by_name("value").expect("value").as_primitive::<UInt64Type>();
        self.seen.lock().expect("seen").values.extend(values.values().iter());
        self.alive.fetch_sub(batch.num_rows() as i64, SeqCst);
        Ok(())
    }

    async fn write_errors(&mut self, _unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.seen.lock().expect("seen").errors.extend(errors);
        Ok(())
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        let rows = self.seen.lock().expect("seen").values.len() as u64;
        Ok(UnitSummary { unit: unit.id, attempt: unit.attempt, rows, ..Default::default() })
    }

    fn buffered_bytes(&self) -> u64 {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_arrive_in_order_bounded_and_with_their_failures() {
    let (alive, most_alive) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let step = Arc::new(Parted { alive: alive.clone(), most_alive: most_alive.clone() });
    let files = [("a", 200u64), ("b", 1), ("c", 13), ("d", 0), ("e", 50)];
    let entries = files.iter().map(|(uri, size)| FileEntry { uri: uri.to_string(), size: *size }).collect();
    let unit = WorkUnit { id: 0, attempt: 0, input: UnitInput::Files(entries) };
    let options = PipelineOptions {
        errors: ErrorHandling { skip_rows: true, max_error_ratio: 1.0 },
        max_morsel_rows: 2,
        ..PipelineOptions::default()
    };
    let compute = ComputePool::new(2).expect("pool");
    let pipeline = Pipeline::new(Arc::new(Numbers), vec![step], MemoryBudget::new(64 << 20), compute, options);
    let seen = Arc::new(Mutex::new(Seen::default()));

    let summary = pipeline.run(vec![unit], Slow { alive, seen: seen.clone() }).await.expect("run");

    let seen = seen.lock().expect("seen");
    let mut expected: Vec<u64> = Vec::new();
    for (row, (_, parts)) in files.iter().enumerate() {
        let made = if *parts == 13 { 3 } else { *parts };
        expected.extend((0..made).map(|k| row as u64 * 1000 + k));
    }
    assert_eq!(seen.values, expected, "every part, in input order");
    assert_eq!(seen.errors.len(), 1);
    assert_eq!((seen.errors[0].row_ref.as_str(), seen.errors[0].message.as_str()), ("c", "broke half-way"));
    assert_eq!((summary.rows_in, summary.rows_failed), (5, 1));
    // Parts are made only as fast as the slow sink takes them: a few channel slots' worth, not 264.
    let most = most_alive.load(SeqCst);
    assert!(most <= 8, "{most} parts were alive at once");
}

/// Counts its calls as they happen, before its future is polled.
struct CountsCalls(Arc<AtomicI64>);

impl Step for CountsCalls {
    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        self.0.fetch_add(1, SeqCst);
        Box::pin(async move { Ok(StepOutput::ok(input)) })
    }
}

/// A step that starts its work as it is called (a video decode) must not wait for the stage to
/// poll it: the stage does not poll later morsels while it sends an earlier one's parts, and
/// a planned step pruning its output had deferred the call until then (one decode at a time).
#[test]
fn a_pruned_step_is_called_when_the_stage_starts_it_not_when_it_is_polled() {
    let calls = Arc::new(AtomicI64::new(0));
    let inner: Arc<dyn Step> = Arc::new(CountsCalls(calls.clone()));
    let planned = weir_core::step::Planned::wrap_pruned("counts", None, Some(vec!["value".into()]), inner);
    let refs: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
    let morsel = rows(refs, vec![7]).expect("a morsel");
    let ctx = StepContext::new(ComputePool::new(1).expect("pool"));
    let output = planned.process(morsel, ctx);
    assert_eq!(calls.load(SeqCst), 1, "called before the first poll");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let output = runtime.block_on(output).expect("output");
    assert_eq!(output.batch.column_by_name("value").expect("kept").len(), 1);
}
