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

    /// The input column (URIs or bytes).
    fn input(&self) -> &str;

    /// Reads one file; runs on a compute thread.
    ///
    /// # Errors
    /// Anything wrong with the file: it becomes this row's failure.
    fn read(&self, path: &Path) -> Result<Self::Value, MediaError>;

    /// Whether [`MediaKernel::read_parts`] hands out a file's value in several parts, so the
    /// step's output for a morsel comes in parts ([`StepOutput::more`]) and a long video is
    /// never held whole.
    fn in_parts(&self) -> bool {
        false
    }

    /// Reads one file, handing its value to `emit` in parts as they are ready; stops early when
    /// `emit` returns `false` (nobody wants more). `threads` is how many cores the decode may
    /// use (the compute pool's): one file's parts go out in order, so a costly file is a decode
    /// the step waits on, and a decoder that can use several threads should. The default hands
    /// out one part, [`read`].
    ///
    /// # Errors
    /// As [`MediaKernel::read`]; parts already emitted stay emitted.
    ///
    /// [`read`]: MediaKernel::read
    fn read_parts(
        &self,
        path: &Path,
        threads: usize,
        emit: &mut dyn FnMut(Self::Value) -> bool,
    ) -> Result<(), MediaError> {
        let _one_part_needs_no_threads = threads;
        emit(self.read(path)?);
        Ok(())
    }

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
    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        if self.kernel.in_parts() {
            // Started now, not when first polled: the stage holds finished morsels back while it
            // sends an earlier one's parts, and the decodes should run meanwhile.
            let output = self.in_parts(input, ctx.compute.threads());
            return Box::pin(async move { output });
        }
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
        let staged = match self.stage(source).await {
            Ok(staged) => staged,
            Err(e) => return Some(Err(format!("{label}: {e}"))),
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

/// Parts handed from a decoding thread to the step's output stream: few, so a decode runs at most
/// this far ahead of what downstream has taken.
const PARTS_AHEAD: usize = 1;

/// What a decoding thread hands on.
enum Part<V> {
    Value(usize, V),
    Failed(usize, String),
}

impl<K: MediaKernel> MediaStep<K> {
    /// The output as an empty first part and then one part per value a file's decode hands out.
    /// Rows are read one after another by a task this output owns (dropping the output aborts it;
    /// a decode in progress stops at its next part); decodes run on blocking threads, not the
    /// compute pool, because they wait for downstream between parts.
    fn in_parts(self: Arc<Self>, input: RecordBatch, threads: usize) -> Result<StepOutput, StepError> {
        let sources = row_sources(&input, self.kernel.input())?;
        let rows = input.num_rows();
        let (tx, rx) = tokio::sync::mpsc::channel::<Part<K::Value>>(PARTS_AHEAD);
        let producer = AbortOnDrop(tokio::spawn(self.clone().produce(sources, threads, tx)));
        let kernel = self.kernel.clone();
        let first = kernel.assemble(&input, (0..rows).map(|_| None).collect(), Vec::new())?;
        let more = futures::stream::unfold((rx, producer), move |(mut rx, producer)| {
            let (kernel, input) = (kernel.clone(), input.clone());
            async move {
                let part = rx.recv().await?;
                let started = Instant::now();
                let mut values: Vec<Option<K::Value>> = (0..input.num_rows()).map(|_| None).collect();
                let mut failures = Vec::new();
                match part {
                    Part::Value(row, value) => values[row] = Some(value),
                    Part::Failed(row, message) => failures.push(RowFailure::new(row, message)),
                }
                let output = kernel.assemble(&input, values, failures).map(|mut out| {
                    out.busy = Some(started.elapsed());
                    out
                });
                Some((output, (rx, producer)))
            }
        });
        // A part may come in parts itself (its repeated columns cut to stay under Arrow's
        // offsets): they are flattened, as the executor reads one level.
        let more = more.flat_map(|part| match part {
            Ok(mut output) => {
                let rest = output.more.take();
                let head = futures::stream::once(std::future::ready(Ok(output)));
                match rest {
                    Some(rest) => head.chain(rest).boxed(),
                    None => head.boxed(),
                }
            }
            Err(e) => futures::stream::once(std::future::ready(Err(e))).boxed(),
        });
        Ok(StepOutput { more: Some(Box::pin(more)), ..first })
    }

    /// Reads the rows in order, sending each file's parts (or its failure) to `tx`.
    async fn produce(
        self: Arc<Self>,
        sources: Vec<Option<RowSource>>,
        threads: usize,
        tx: tokio::sync::mpsc::Sender<Part<K::Value>>,
    ) {
        for (row, source) in sources.into_iter().enumerate() {
            let Some(source) = source else { continue };
            let label = source.label();
            let staged = match self.stage(source).await {
                Ok(staged) => staged,
                Err(e) => {
                    if tx.send(Part::Failed(row, format!("{label}: {e}"))).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let (kernel, parts) = (self.kernel.clone(), tx.clone());
            let decoded = tokio::task::spawn_blocking(move || {
                read_row_parts(kernel.as_ref(), staged, threads, &mut |value| {
                    parts.blocking_send(Part::Value(row, value)).is_ok()
                })
            })
            .await;
            let failure = match decoded {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("{label}: {e}"),
                Err(_) => format!("{label}: the decoder stopped unexpectedly"),
            };
            if tx.send(Part::Failed(row, failure)).await.is_err() {
                return;
            }
        }
    }
}

/// Aborts the task when dropped, so a dropped output stops its producer.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`read_row`] for kernels that hand out parts.
fn read_row_parts<K: MediaKernel>(
    kernel: &K,
    staged: Staged,
    threads: usize,
    emit: &mut dyn FnMut(K::Value) -> bool,
) -> Result<(), MediaError> {
    let media = match staged {
        Staged::Ready(media) => media,
        Staged::Bytes(array, row) => LocalMedia::Temporary(bytes_to_temp(&array, row)?),
    };
    catch_unwind(AssertUnwindSafe(|| kernel.read_parts(media.path(), threads, emit)))
        .map_err(|_| MediaError::Panicked)?
}

impl<K: MediaKernel> MediaStep<K> {
    /// Makes a row's media local: remote objects are fetched into a temporary file; bytes are
    /// left to be written out on the decoding thread.
    async fn stage(&self, source: RowSource) -> Result<Staged, MediaError> {
        Ok(match source {
            RowSource::Remote { uri } => Staged::Ready(LocalMedia::Temporary(fetch(&self.stores, &uri).await?)),
            RowSource::Local { path, .. } => Staged::Ready(LocalMedia::InPlace(path)),
            RowSource::Bytes { array, row } => Staged::Bytes(array, row),
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
