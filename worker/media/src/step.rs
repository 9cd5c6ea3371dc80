//! [`MediaStep`]: the async shell shared by the steps that read media files. Per row it fetches
//! what is remote (on the async runtime), then runs the step's [`MediaKernel`] on the compute pool.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use weir_core::{ComputePool, RowFailure, Step, StepContext, StepError, StepOutput};
use weir_io::StoreRegistry;

use crate::MediaError;
use crate::source::{LocalMedia, RowSource, bytes_to_temp, fetch, row_sources};

/// Rows of one morsel fetched or decoded at once. Decodes themselves are bounded by the compute
/// pool; this bounds the temporary files (and fetches) waiting for it.
pub const ROWS_IN_FLIGHT: usize = 4;

/// The synchronous part of a media step: reads one local file, then assembles the morsel.
pub trait MediaKernel: Send + Sync + 'static {
    /// What one file yields (metadata, frames, samples).
    type Value: Send + 'static;

    /// The `op` name.
    fn name(&self) -> &'static str;

    /// The input column (URIs or bytes).
    fn input(&self) -> &str;

    /// Reads one file; runs on a compute thread.
    ///
    /// # Errors
    /// Anything wrong with the file: it becomes this row's failure.
    fn read(&self, path: &Path) -> Result<Self::Value, MediaError>;

    /// The output morsel from one value per input row (`None` for null or failed rows).
    ///
    /// # Errors
    /// Only on an Arrow invariant violation.
    fn assemble(
        &self,
        input: &RecordBatch,
        values: Vec<Option<Self::Value>>,
        failures: Vec<RowFailure>,
    ) -> Result<StepOutput, StepError>;
}

/// A [`Step`] that reads media files with a [`MediaKernel`].
///
/// # Cancellation
/// Dropping the future stops fetching and deletes temporary files; a decode already running on
/// the compute pool finishes first, then deletes its own.
pub struct MediaStep<K> {
    kernel: Arc<K>,
    stores: Arc<StoreRegistry>,
}

impl<K: MediaKernel> MediaStep<K> {
    pub fn new(kernel: K, stores: Arc<StoreRegistry>) -> Self {
        Self { kernel: Arc::new(kernel), stores }
    }
}

/// One row's outcome: its value and the time spent decoding it, or its failure message.
type RowResult<V> = Option<Result<(V, Duration), String>>;

impl<K: MediaKernel> Step for MediaStep<K> {
    fn name(&self) -> &str {
        self.kernel.name()
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let sources = row_sources(&input, self.kernel.input())?;
            let results: Vec<RowResult<K::Value>> = stream::iter(sources)
                .map(|source| self.clone().row(source, ctx.compute.clone()))
                .buffered(ROWS_IN_FLIGHT)
                .collect()
                .await;
            let mut failures = Vec::new();
            let mut busy = Duration::ZERO;
            let values = results
                .into_iter()
                .enumerate()
                .map(|(row, result)| match result? {
                    Ok((value, took)) => {
                        busy += took;
                        Some(value)
                    }
                    Err(message) => {
                        failures.push(RowFailure::new(row, message));
                        None
                    }
                })
                .collect();
            let mut output = self.kernel.assemble(&input, values, failures)?;
            output.busy = Some(busy);
            Ok(output)
        })
    }
}

impl<K: MediaKernel> MediaStep<K> {
    /// Fetches (if remote) and reads one row; `None` for a null row.
    async fn row(self: Arc<Self>, source: Option<RowSource>, compute: ComputePool) -> RowResult<K::Value> {
        let source = source?;
        let label = source.label();
        let staged = match source {
            RowSource::Remote { uri } => match fetch(&self.stores, &uri).await {
                Ok(temp) => Staged::Ready(LocalMedia::Temporary(temp)),
                Err(e) => return Some(Err(format!("{label}: {e}"))),
            },
            RowSource::Local { path, .. } => Staged::Ready(LocalMedia::InPlace(path)),
            RowSource::Bytes { array, row } => Staged::Bytes(array, row),
        };
        let kernel = self.kernel.clone();
        let result = compute.run(move || read_row(kernel.as_ref(), staged)).await;
        Some(match result {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(format!("{label}: {e}")),
            None => Err(format!("{label}: the decoder stopped unexpectedly")),
        })
    }
}

/// A row's media once fetched; bytes are written out on the compute thread.
enum Staged {
    Ready(LocalMedia),
    Bytes(arrow_array::ArrayRef, usize),
}

/// Reads one staged row on a compute thread, turning a panic in FFmpeg bindings into an error.
fn read_row<K: MediaKernel>(kernel: &K, staged: Staged) -> Result<(K::Value, Duration), MediaError> {
    let start = Instant::now();
    let media = match staged {
        Staged::Ready(media) => media,
        Staged::Bytes(array, row) => LocalMedia::Temporary(bytes_to_temp(&array, row)?),
    };
    let value = catch_unwind(AssertUnwindSafe(|| kernel.read(media.path()))).map_err(|_| MediaError::Panicked)??;
    Ok((value, start.elapsed()))
}
