//! `upload`: write each row of a bytes (or text) column to an object under a prefix and output the
//! object's URI; a null row writes nothing and gives a null URI.
//!
//! # Names
//! `<uri>/<hash>-<k>[.<extension>]`: `hash` is the 64-bit FNV-1a hash of the row's `_weir_ref` in
//! 16 hex digits (the same on every platform and Rust version) and `k` counts the earlier rows of
//! the morsel with the same reference (rows exploded from one source row share it, and all of them
//! are in one morsel). So a retried unit rewrites the same objects instead of adding new ones.
//! Rows without a reference (no `_weir_ref` column) are named from their index in the morsel,
//! which is deterministic only as long as the morsel boundaries are.
//!
//! Connections are bounded per step (a semaphore shared by all morsels in flight); transient
//! failures are retried with exponential backoff; a failure is a row failure naming the URI.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ByteArrayType;
use arrow_array::{Array, ArrayRef, GenericByteArray, OffsetSizeTrait, RecordBatch, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{PutOptions, PutPayload};
use weir_core::batch::{row_ref, row_refs};
use weir_core::{BuildError, Step, StepContext, StepError, StepOutput};
use weir_crds::Upload;

use crate::rowio::{Attempt, Requests, per_row};
use crate::store::{Location, StoreRegistry, is_transient};

/// The runnable `upload` step.
pub struct UploadStep {
    input: String,
    output: String,
    prefix: Location,
    /// `.ext`, or empty.
    suffix: String,
    requests: Requests,
}

/// Builds `upload` from its config, sharing `stores` with the rest of the job.
///
/// # Errors
/// When `uri` cannot be resolved to a store, or `extension` holds a path separator.
pub fn build(config: &Upload, stores: &StoreRegistry) -> Result<Arc<dyn Step>, BuildError> {
    let prefix = stores.resolve(&config.uri).map_err(|e| BuildError::new("uri", e.to_string()))?;
    let extension = config.extension.as_deref().unwrap_or("").trim_start_matches('.');
    if extension.contains(['/', '\\']) {
        return Err(BuildError::new("extension", format!("`{extension}` must not contain a path separator")));
    }
    Ok(Arc::new(UploadStep {
        input: config.input.clone(),
        output: config.output.clone(),
        prefix,
        suffix: if extension.is_empty() { String::new() } else { format!(".{extension}") },
        requests: Requests::new(config.max_connections, config.retries),
    }))
}

impl Step for UploadStep {
    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let bodies = row_bytes(&input, &self.input)?;
            let names = object_names(&input, &self.suffix);
            let rows: Vec<Option<(Path, Bytes)>> = names
                .into_iter()
                .zip(bodies)
                .map(|(name, body)| body.map(|b| (self.prefix.path.clone().join(name), b)))
                .collect();
            let (uris, failures) = per_row(rows, self.requests.limit(), |(path, body)| {
                let this = self.clone();
                async move { this.put(path, body).await }
            })
            .await;
            let array: ArrayRef = Arc::new(StringArray::from(uris));
            StepOutput::with_column(&input, &self.output, array, failures)
        })
    }
}

impl UploadStep {
    /// Writes one object, retrying transient failures; returns its URI.
    async fn put(&self, path: Path, body: Bytes) -> Result<String, String> {
        let uri = self.prefix.uri_of(&path);
        self.requests
            .retried(|| async {
                let payload = PutPayload::from(body.clone());
                match self.prefix.store.put_opts(&path, payload, PutOptions::default()).await {
                    Ok(_) => Ok(uri.clone()),
                    Err(e) if !is_transient(&e) => Err(Attempt::Fatal(format!("{uri}: {e}"))),
                    Err(e) => Err(Attempt::Transient(format!("{uri}: {e}"))),
                }
            })
            .await
    }
}

/// The object name of each row of `batch`: `<hash of ref>-<k><suffix>` (see the module docs).
pub fn object_names(batch: &RecordBatch, suffix: &str) -> Vec<String> {
    let refs = row_refs(batch);
    let mut seen: HashMap<String, u32> = HashMap::new();
    (0..batch.num_rows())
        .map(|row| {
            let key = row_ref(refs.as_ref(), row);
            let hash = fnv1a(key.as_bytes());
            let k = seen.entry(key).or_insert(0);
            let name = format!("{hash:016x}-{k}{suffix}");
            *k += 1;
            name
        })
        .collect()
}

/// 64-bit FNV-1a: tiny, and fixed by its definition (unlike `std`'s `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Each row of column `name` as bytes sharing the column's buffer; `None` for nulls.
///
/// # Errors
/// [`StepError::Column`] when the column is missing or neither binary nor text.
fn row_bytes(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Bytes>>, StepError> {
    let col = weir_core::batch::column(batch, name)?;
    Ok(match col.data_type() {
        DataType::Binary => slices(col.as_binary::<i32>()),
        DataType::LargeBinary => slices(col.as_binary::<i64>()),
        DataType::Utf8 => slices(col.as_string::<i32>()),
        DataType::LargeUtf8 => slices(col.as_string::<i64>()),
        other => return Err(StepError::column(name, format!("expected bytes or text, found {other}"))),
    })
}

fn slices<T: ByteArrayType<Offset = O>, O: OffsetSizeTrait>(array: &GenericByteArray<T>) -> Vec<Option<Bytes>> {
    let offsets = array.value_offsets();
    (0..array.len())
        .map(|i| {
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            array.is_valid(i).then(|| Bytes::from_owner(array.values().slice_with_length(start, end - start)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::BinaryArray;
    use weir_core::{ComputePool, ROW_REF_COLUMN};

    fn config(uri: &str, extension: Option<&str>, retries: Option<u32>) -> Upload {
        Upload {
            input: "bytes".into(),
            output: "object".into(),
            uri: uri.into(),
            extension: extension.map(str::to_string),
            max_connections: Some(2),
            retries,
            pool: None,
            concurrency: None,
        }
    }

    fn batch(refs: Option<Vec<&str>>, bodies: Vec<Option<&[u8]>>) -> RecordBatch {
        let mut columns: Vec<(&str, ArrayRef)> = vec![("bytes", Arc::new(BinaryArray::from(bodies)))];
        if let Some(refs) = refs {
            columns.push((ROW_REF_COLUMN, Arc::new(StringArray::from(refs))));
        }
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    async fn upload(step: &Arc<dyn Step>, input: RecordBatch) -> StepOutput {
        let ctx = StepContext::new(ComputePool::new(1).expect("pool"));
        step.clone().process(input, ctx).await.expect("process")
    }

    fn uris(out: &StepOutput) -> Vec<Option<String>> {
        out.batch
            .column_by_name("object")
            .expect("object")
            .as_string::<i32>()
            .iter()
            .map(|u| u.map(str::to_string))
            .collect()
    }

    #[test]
    fn fnv1a_matches_its_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[tokio::test]
    async fn names_are_deterministic_and_exploded_rows_get_distinct_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let prefix = format!("file://{}/out/", dir.path().display());
        let step = build(&config(&prefix, Some(".bin"), None), &StoreRegistry::default()).expect("build");
        let input = || {
            batch(
                Some(vec!["s3://b/x.mp4", "s3://b/x.mp4", "s3://b/y.mp4", "s3://b/z.mp4"]),
                vec![Some(b"frame0"), Some(b"frame1"), Some(b"other"), None],
            )
        };
        let first = uris(&upload(&step, input()).await);
        let hash = format!("{:016x}", fnv1a(b"s3://b/x.mp4"));
        assert_eq!(first[0].as_deref(), Some(format!("{prefix}{hash}-0.bin").as_str()));
        assert_eq!(first[1].as_deref(), Some(format!("{prefix}{hash}-1.bin").as_str()));
        assert_eq!(first[3], None, "a null row writes nothing");
        let again = uris(&upload(&step, input()).await);
        assert_eq!(first, again, "a rerun writes the same objects");
        let written: Vec<Vec<u8>> = first
            .iter()
            .flatten()
            .map(|u| std::fs::read(u.strip_prefix("file://").expect("file uri")).expect("read"))
            .collect();
        assert_eq!(written, [b"frame0".to_vec(), b"frame1".to_vec(), b"other".to_vec()]);
        assert_eq!(std::fs::read_dir(dir.path().join("out")).expect("dir").count(), 3);
    }

    #[tokio::test]
    async fn rows_without_a_reference_are_named_by_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let prefix = format!("file://{}", dir.path().display());
        let step = build(&config(&prefix, None, None), &StoreRegistry::default()).expect("build");
        let out = upload(&step, batch(None, vec![Some(b"a"), Some(b"b")])).await;
        let expected: Vec<Option<String>> =
            (0..2).map(|i| Some(format!("{prefix}/{:016x}-0", fnv1a(format!("row {i}").as_bytes())))).collect();
        assert_eq!(uris(&out), expected);
    }

    #[tokio::test]
    async fn a_failed_write_is_a_row_failure_naming_the_uri() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("blocker"), b"a file, not a directory").expect("write");
        let prefix = format!("file://{}/blocker/", dir.path().display());
        let step = build(&config(&prefix, Some("txt"), Some(0)), &StoreRegistry::default()).expect("build");
        let out = upload(&step, batch(Some(vec!["r1"]), vec![Some(b"x")])).await;
        assert_eq!(out.batch.num_rows(), 0);
        let message = &out.failures[0].message;
        let uri = format!("{prefix}{:016x}-0.txt", fnv1a(b"r1"));
        assert!(message.starts_with(&format!("{uri}: ")), "{message}");
        assert!(message.ends_with("Not a directory (os error 20) (gave up after 1 attempt)"), "{message}");
    }

    #[test]
    fn build_checks_uri_and_extension() {
        let stores = StoreRegistry::default();
        let err = |c: Upload| build(&c, &stores).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(config("ftp://host/x/", None, None)).starts_with("uri: `ftp://host/x/`: unsupported scheme"));
        assert_eq!(err(config("/tmp/x/", Some("a/b"), None)), "extension: `a/b` must not contain a path separator");
    }
}
