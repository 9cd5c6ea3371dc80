//! Helpers for this crate's tests: running a step on a morsel, building input columns.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use futures::StreamExt;
use weir_core::{ComputePool, Step, StepContext, StepOutput};

/// Runs `step` on `input` with a two-thread compute pool; an output in parts is gathered into one.
pub fn run(step: Arc<dyn Step>, input: RecordBatch) -> StepOutput {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let ctx = StepContext::new(ComputePool::new(2).expect("pool"));
    runtime.block_on(async {
        let mut first = step.process(input, ctx).await.expect("the step fails no morsel");
        let Some(more) = first.more.take() else { return first };
        let parts: Vec<StepOutput> = more.map(|part| part.expect("the step fails no part")).collect().await;
        let mut batches = vec![first.batch.clone()];
        for part in parts {
            batches.push(part.batch);
            first.failures.extend(part.failures);
        }
        first.failures.sort_by_key(|f| f.row);
        first.batch =
            arrow_select::concat::concat_batches(&first.batch.schema(), &batches).expect("parts share a schema");
        first
    })
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
