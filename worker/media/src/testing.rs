//! Helpers for this crate's tests: running a step on a morsel, building input columns.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use weir_core::{ComputePool, Step, StepContext, StepOutput};

/// Runs `step` on `input` with a two-thread compute pool.
pub fn run(step: Arc<dyn Step>, input: RecordBatch) -> StepOutput {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ctx = StepContext { compute: ComputePool::new(2).expect("pool") };
    runtime.block_on(step.process(input, ctx)).expect("the step fails no morsel")
}

/// A morsel with a `uri` column (`file://` URIs of `paths`, `None` as null) and a `doc` column.
pub fn uri_batch(paths: &[Option<&Path>]) -> RecordBatch {
    let uris: ArrayRef = Arc::new(StringArray::from(
        paths.iter().map(|p| p.map(|p| format!("file://{}", p.display()))).collect::<Vec<_>>(),
    ));
    let docs: ArrayRef = Arc::new(StringArray::from_iter_values((0..paths.len()).map(|i| format!("doc{i}"))));
    RecordBatch::try_from_iter([("doc", docs), ("uri", uris)]).expect("batch")
}

/// A morsel with a `bytes` column holding the contents of `paths`.
pub fn bytes_batch(paths: &[Option<&Path>]) -> RecordBatch {
    let bytes: Vec<Option<Vec<u8>>> = paths.iter().map(|p| p.map(|p| std::fs::read(p).expect("read"))).collect();
    let array: ArrayRef = Arc::new(BinaryArray::from_iter(bytes.iter().map(|b| b.as_deref())));
    RecordBatch::try_from_iter([("bytes", array)]).expect("batch")
}

/// Root mean square of `samples`.
pub fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}
