//! `download`: fetch the object each row's URI names into a binary column.
//!
//! Connections are bounded per step (a semaphore shared by all morsels in flight); transient
//! failures are retried with exponential backoff; a missing object or an unreachable host is a
//! row failure that names the URI. A morsel whose URIs are all local files is read in one blocking
//! task straight into the column's buffer (see [`read_local_files`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::GetOptions;
use weir_core::batch::typed_column;
use weir_core::{RowFailure, Step, StepContext, StepError, StepOutput};
use weir_crds::Download;

use crate::rowio::{Attempt, Requests, per_row};
use crate::store::{StoreRegistry, is_transient};

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;

/// The runnable `download` step.
pub struct DownloadStep {
    input: String,
    output: String,
    stores: Arc<StoreRegistry>,
    requests: Requests,
    timeout: Duration,
}

/// Builds `download` from its config, sharing `stores` with the rest of the job.
pub fn build(config: &Download, stores: Arc<StoreRegistry>) -> Arc<dyn Step> {
    Arc::new(DownloadStep {
        input: config.input.clone(),
        output: config.output.clone(),
        stores,
        requests: Requests::new(config.max_connections, config.retries),
        timeout: Duration::from_secs(u64::from(config.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))),
    })
}

impl Step for DownloadStep {
    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let uris: &StringArray = typed_column(&input, &self.input, "a string column of URIs")?;
            let uris: Vec<Option<String>> = uris.iter().map(|u| u.map(str::to_string)).collect();
            if let Some(files) = self.local_files(&uris) {
                let read = tokio::task::spawn_blocking(move || read_local_files(&uris, &files));
                let (array, failures) =
                    read.await.map_err(|e| StepError::Other(format!("reading local files: {e}")))?;
                return StepOutput::with_column(&input, &self.output, Arc::new(array), failures);
            }
            let (values, failures) = per_row(uris, self.requests.limit(), |uri| {
                let this = self.clone();
                async move { this.fetch(&uri).await }
            })
            .await;
            let array: ArrayRef = Arc::new(BinaryArray::from_iter(values.iter().map(|v| v.as_deref())));
            debug_assert_eq!(array.len(), input.num_rows());
            StepOutput::with_column(&input, &self.output, array, failures)
        })
    }
}

impl DownloadStep {
    /// The local file of each row (`None` for a null URI), when every URI names one.
    fn local_files(&self, uris: &[Option<String>]) -> Option<Vec<Option<PathBuf>>> {
        let local_file = |uri: &String| self.stores.resolve(uri).ok()?.local_file();
        uris.iter().map(|uri| uri.as_ref().map(local_file).map_or(Some(None), |file| file.map(Some))).collect()
    }

    /// Fetches one object, retrying transient failures.
    async fn fetch(&self, uri: &str) -> Result<Bytes, String> {
        let location = self.stores.resolve(uri).map_err(|e| e.to_string())?;
        self.requests
            .retried(|| async {
                let get = async {
                    let got = location.store.get_opts(&location.path, GetOptions::default()).await?;
                    got.bytes().await
                };
                let result = tokio::time::timeout(self.timeout, get).await;
                match result {
                    Ok(Ok(bytes)) => Ok(bytes),
                    Ok(Err(object_store::Error::NotFound { .. })) => Err(Attempt::Fatal(format!("not found: {uri}"))),
                    Ok(Err(e)) if !is_transient(&e) => Err(Attempt::Fatal(format!("{uri}: {e}"))),
                    Ok(Err(e)) => Err(Attempt::Transient(format!("{uri}: {e}"))),
                    Err(_) => Err(Attempt::Transient(format!("{uri}: timed out after {}s", self.timeout.as_secs()))),
                }
            })
            .await
    }
}

/// Reads `files` (row `i` from `files[i]`, a null row where it is `None`) into one binary column,
/// each file appended to the column's buffer as it is read: no zeroed buffer per file and no
/// copy into the column afterwards (the object store's local reads did both: `memset` was 37% of
/// the runtime threads' samples on pipeline B, `perf record --call-graph dwarf` of `weir run`
/// read with `perf report --comm tokio-rt-worker`). A file that cannot be read is that row's
/// failure, naming its URI, as in the object store path: `not found: <uri>` or `<uri>: <error>`.
///
/// One column holds at most 2 GiB (32-bit offsets); a file that would take it past that is its
/// row's failure instead of a panic.
fn read_local_files(uris: &[Option<String>], files: &[Option<PathBuf>]) -> (BinaryArray, Vec<RowFailure>) {
    let mut values = Vec::new();
    let mut offsets = Vec::with_capacity(files.len() + 1);
    offsets.push(0_i32);
    let mut valid = BooleanBufferBuilder::new(files.len());
    let mut failures = Vec::new();
    for (row, (uri, file)) in uris.iter().zip(files).enumerate() {
        let start = values.len();
        let read = file.as_deref().map(|file| append_file(file, &mut values));
        let end = i32::try_from(values.len());
        match (read, end) {
            (None, _) => valid.append(false),
            (Some(Ok(())), Ok(_)) => valid.append(true),
            (Some(result), _) => {
                let uri = uri.as_deref().unwrap_or_default();
                let message = match result {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("not found: {uri}"),
                    Err(e) => format!("{uri}: {e}"),
                    Ok(()) => format!("{uri}: {COLUMN_LIMIT}"),
                };
                failures.push(RowFailure::new(row, message));
                values.truncate(start);
                valid.append(false);
            }
        }
        // `values` never stays past `i32::MAX`: a file that took it there was cut off above.
        offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
    }
    let array = BinaryArray::new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(values),
        Some(NullBuffer::new(valid.finish())),
    );
    (array, failures)
}

const COLUMN_LIMIT: &str = "this file would take the morsel's binary column past 2 GiB, the most one column holds";

/// Appends the regular file at `path` to `values`, reading into its spare capacity.
fn append_file(path: &Path, values: &mut Vec<u8>) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let room = usize::try_from(i32::MAX).unwrap_or(usize::MAX).saturating_sub(values.len());
    let size = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
    if size > room {
        return Err(std::io::Error::other(COLUMN_LIMIT));
    }
    values.reserve(size);
    file.read_to_end(values).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::ComputePool;

    fn step() -> Arc<dyn Step> {
        let config = Download {
            input: "uri".into(),
            output: "bytes".into(),
            max_connections: None,
            retries: None,
            timeout_seconds: None,
            pool: None,
            concurrency: None,
        };
        build(&config, Arc::new(StoreRegistry::default()))
    }

    fn uris(uris: Vec<Option<String>>) -> RecordBatch {
        RecordBatch::try_from_iter([("uri", Arc::new(StringArray::from(uris)) as ArrayRef)]).expect("a batch")
    }

    #[tokio::test]
    async fn local_files_are_read_into_their_rows_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        std::fs::write(&a, b"first").expect("write");
        std::fs::write(&b, vec![7_u8; 70_000]).expect("write");
        std::fs::write(dir.path().join("empty.bin"), b"").expect("write");
        let missing = dir.path().join("missing.bin");
        let path = |p: &std::path::Path| p.display().to_string();
        let input = uris(vec![
            Some(path(&a)),
            Some(format!("file://{}", path(&missing))),
            None,
            Some(path(dir.path())),
            Some(format!("file://{}", path(&b))),
            Some(path(&dir.path().join("empty.bin"))),
        ]);
        let output = step()
            .process(input, StepContext::new(ComputePool::new(1).expect("a compute pool")))
            .await
            .expect("the morsel");
        let rows: Vec<_> = output.failures.iter().map(|f| (f.row, f.message.clone())).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0], (1, format!("not found: file://{}", path(&missing))));
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].1.starts_with(&path(dir.path())) && rows[1].1.contains("not a regular file"), "{rows:?}");
        let bytes: &BinaryArray = typed_column(&output.batch, "bytes", "binary").expect("the bytes column");
        let got: Vec<Option<&[u8]>> = bytes.iter().collect();
        assert_eq!(got, [Some(&b"first"[..]), None, Some(&[7_u8; 70_000][..]), Some(&b""[..])]);
    }

    #[test]
    fn a_file_past_the_columns_two_gibibytes_fails_its_row_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (small, large) = (dir.path().join("small"), dir.path().join("large"));
        std::fs::write(&small, b"kept").expect("write");
        // Sparse: 2 GiB by its size, no blocks on disk; refused before anything is read.
        File::create(&large).and_then(|f| f.set_len(1 << 31)).expect("a sparse file");
        let uris = [Some("small".to_string()), Some("large".to_string()), Some("small".to_string())];
        let files = [Some(small.clone()), Some(large), Some(small)];
        let (array, failures) = read_local_files(&uris, &files);
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].row, failures[0].message.as_str()), (1, &*format!("large: {COLUMN_LIMIT}")));
        let got: Vec<Option<&[u8]>> = array.iter().collect();
        assert_eq!(got, [Some(&b"kept"[..]), None, Some(&b"kept"[..])]);
    }
}
