//! Where a row's media comes from, and how it becomes a local file that FFmpeg can seek in.
//!
//! The input column is either a string column of URIs or a binary column of bytes. Local paths
//! and `file://` URIs are opened in place. Objects in other stores (`s3://`, `http(s)://`) are
//! streamed into a temporary file first, and bytes are written to one: MP4 often keeps its index
//! (`moov`) at the end, so FFmpeg seeks, sometimes many times; a temporary file gives those seeks
//! at disk speed with bounded memory, where a ranged GET per seek would cost a network round trip
//! each, and holding the object in memory would cost its whole size. Temporary files live in the
//! system temporary directory and are deleted when dropped, also when the step is cancelled.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use futures::StreamExt;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use weir_core::StepError;
use weir_core::batch::column;
use weir_io::{StoreError, StoreRegistry};

use crate::MediaError;

/// One row's media, before anything is fetched.
#[derive(Debug, Clone)]
pub enum RowSource {
    /// A local file, opened in place.
    Local { uri: String, path: PathBuf },
    /// An object in a remote store, fetched into a temporary file.
    Remote { uri: String },
    /// Row `row` of a binary column, written to a temporary file.
    Bytes { array: ArrayRef, row: usize },
}

impl RowSource {
    /// How messages name this row: its URI, or its row number and size.
    pub fn label(&self) -> String {
        match self {
            RowSource::Local { uri, .. } | RowSource::Remote { uri } => uri.clone(),
            RowSource::Bytes { array, row } => format!("row {row} ({} bytes)", binary_value(array, *row).len()),
        }
    }
}

/// The source of every row of column `name` (`None` for nulls).
///
/// # Errors
/// [`StepError::Column`] when the column is missing or neither text nor binary.
pub fn row_sources(batch: &RecordBatch, name: &str) -> Result<Vec<Option<RowSource>>, StepError> {
    let array = column(batch, name)?;
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let uris = weir_ops::text::string_rows(batch, name)?;
            Ok(uris.into_iter().map(|u| u.map(classify)).collect())
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Ok((0..array.len())
            .map(|row| array.is_valid(row).then(|| RowSource::Bytes { array: array.clone(), row }))
            .collect()),
        other => Err(StepError::column(
            name,
            format!("expected a string column of URIs or a binary column of file bytes, found {other}"),
        )),
    }
}

/// Local for `file://` URIs and paths without a scheme; remote otherwise (the store registry
/// judges the scheme).
pub fn classify(uri: &str) -> RowSource {
    match url::Url::parse(uri) {
        Ok(url) if url.scheme() == "file" => match url.to_file_path() {
            Ok(path) => RowSource::Local { uri: uri.to_string(), path },
            Err(()) => RowSource::Remote { uri: uri.to_string() },
        },
        Ok(url) if url.scheme().len() > 1 => RowSource::Remote { uri: uri.to_string() },
        _ => RowSource::Local { uri: uri.to_string(), path: PathBuf::from(uri) },
    }
}

/// Value `row` of a binary, large binary or binary view array (empty for other types).
fn binary_value(array: &ArrayRef, row: usize) -> &[u8] {
    match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(row),
        DataType::LargeBinary => array.as_binary::<i64>().value(row),
        DataType::BinaryView => array.as_binary_view().value(row),
        _ => &[],
    }
}

/// A local file ready for FFmpeg; owns its temporary file, if any, which is deleted on drop.
#[derive(Debug)]
pub enum LocalMedia {
    InPlace(PathBuf),
    Temporary(NamedTempFile),
}

impl LocalMedia {
    pub fn path(&self) -> &Path {
        match self {
            LocalMedia::InPlace(path) => path,
            LocalMedia::Temporary(file) => file.path(),
        }
    }
}

/// Streams the object at `uri` into a temporary file, never holding more than one chunk in memory.
///
/// # Errors
/// [`MediaError::NotFound`], [`MediaError::Fetch`] naming what failed (resolution, network),
/// [`MediaError::Io`] for the temporary file.
pub async fn fetch(stores: &StoreRegistry, uri: &str) -> Result<NamedTempFile, MediaError> {
    let fetch_err = |what: &str, e: &dyn std::fmt::Display| MediaError::Fetch(format!("fetching: {what}: {e}"));
    let location = stores.resolve(uri).map_err(|e| match e {
        StoreError::BadUri { message, .. } => MediaError::Fetch(message),
        StoreError::Store { source, .. } => fetch_err("no store", &source),
    })?;
    let got = match location.store.get_opts(&location.path, object_store::GetOptions::default()).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Err(MediaError::NotFound),
        Err(e) => return Err(fetch_err("request failed", &e)),
    };
    let temp = temp_file()?;
    let std_file = temp.reopen().map_err(MediaError::io("opening the temporary file"))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut chunks = got.into_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| fetch_err("reading the body", &e))?;
        file.write_all(&chunk).await.map_err(MediaError::io("writing the temporary file"))?;
    }
    file.flush().await.map_err(MediaError::io("writing the temporary file"))?;
    Ok(temp)
}

/// Writes row `row` of a binary array to a temporary file (blocking; call on a compute thread).
///
/// # Errors
/// [`MediaError::Io`] when the temporary directory is full or unwritable.
pub fn bytes_to_temp(array: &ArrayRef, row: usize) -> Result<NamedTempFile, MediaError> {
    use std::io::Write;
    let mut temp = temp_file()?;
    temp.write_all(binary_value(array, row)).map_err(MediaError::io("writing the temporary file"))?;
    temp.flush().map_err(MediaError::io("writing the temporary file"))?;
    Ok(temp)
}

fn temp_file() -> Result<NamedTempFile, MediaError> {
    tempfile::Builder::new().prefix("weir-media-").tempfile().map_err(MediaError::io("creating a temporary file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_and_plain_paths_are_local_other_schemes_remote() {
        let local = |uri: &str| match classify(uri) {
            RowSource::Local { path, .. } => Some(path),
            _ => None,
        };
        assert_eq!(local("file:///data/a%20b.mp4"), Some(PathBuf::from("/data/a b.mp4")));
        assert_eq!(local("/data/a.mp4"), Some(PathBuf::from("/data/a.mp4")));
        assert_eq!(local("clips/a.mp4"), Some(PathBuf::from("clips/a.mp4")));
        assert!(matches!(classify("s3://bucket/a.mp4"), RowSource::Remote { .. }));
        assert!(matches!(classify("https://host/a.mp4"), RowSource::Remote { .. }));
    }

    #[tokio::test]
    async fn a_remote_object_is_streamed_into_a_temporary_file_deleted_on_drop() {
        let dir = tempfile::tempdir().expect("tmp");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("clip.bin"), &body).expect("write");
        let uri = format!("file://{}", dir.path().join("clip.bin").display());
        let temp = fetch(&StoreRegistry::default(), &uri).await.expect("fetch");
        assert_eq!(std::fs::read(temp.path()).expect("read"), body);
        let path = temp.path().to_path_buf();
        drop(temp);
        assert!(!path.exists(), "the temporary file is deleted on drop");
        let missing = format!("file://{}", dir.path().join("missing.bin").display());
        assert_eq!(fetch(&StoreRegistry::default(), &missing).await.expect_err("missing").to_string(), "not found");
    }
}
