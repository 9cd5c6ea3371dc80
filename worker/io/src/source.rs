//! Plans work units from a job's source and reads them: object listings become `uri`/`size` rows,
//! Parquet files are split by row groups.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use globset::{Glob, GlobMatcher};
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use weir_core::batch::with_column;
use weir_core::unit::{BoxError, FileEntry, UnitInput};
use weir_core::{ROW_REF_COLUMN, UnitReader, WorkUnit};
use weir_crds::{FilesSource, ParquetSource, SourceSpec};

use crate::parquet_io::ObjectReader;
use crate::store::{Location, StoreError, StoreRegistry};

/// Files per unit when the manifest does not say.
pub const DEFAULT_FILES_PER_UNIT: usize = 256;
/// A Parquet unit grows by whole row groups until it has at least this many rows.
pub const PARQUET_UNIT_ROWS: u64 = 65_536;

/// Why a source could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("source.{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("listing `{uri}`: {source}")]
    List { uri: String, source: object_store::Error },
    #[error("reading Parquet `{uri}`: {source}")]
    Parquet { uri: String, source: parquet::errors::ParquetError },
}

/// The units of a source and the reader that reads them.
pub struct SourcePlan {
    pub units: Vec<WorkUnit>,
    pub reader: Arc<dyn UnitReader>,
}

/// Lists the source and splits it into units, in a deterministic order.
///
/// # Errors
/// When the URI is unusable, the listing fails, nothing matches, or a Parquet file is unreadable
/// or lacks a requested column.
pub async fn plan(source: &SourceSpec, stores: Arc<StoreRegistry>) -> Result<SourcePlan, SourceError> {
    match (&source.files, &source.parquet) {
        (Some(files), None) => plan_files(files, &stores).await,
        (None, Some(parquet)) => plan_parquet(parquet, stores).await,
        _ => Err(SourceError::Invalid { field: "files", message: "set exactly one of files or parquet".into() }),
    }
}

/// The reader for units planned from `source`, without listing it again (a worker reads the units
/// a coordinator planned).
pub fn reader(source: &SourceSpec, stores: Arc<StoreRegistry>) -> Arc<dyn UnitReader> {
    match &source.parquet {
        Some(parquet) => Arc::new(ParquetReader { stores, columns: parquet.columns.clone() }),
        None => Arc::new(FilesReader),
    }
}

fn matcher(field: &'static str, glob: &str) -> Result<GlobMatcher, SourceError> {
    let glob = Glob::new(glob).map_err(|e| SourceError::Invalid { field, message: e.to_string() })?;
    Ok(glob.compile_matcher())
}

/// Objects under `uri` whose key (relative to `uri`) matches `glob`, sorted by key; a URI naming
/// one object yields that object.
async fn list_matching(
    uri: &str,
    glob: &GlobMatcher,
    stores: &StoreRegistry,
) -> Result<(Location, Vec<ObjectMeta>), SourceError> {
    let location = stores.resolve(uri)?;
    let listed: Vec<ObjectMeta> = location
        .store
        .list(Some(&location.path))
        .try_collect()
        .await
        .map_err(|source| SourceError::List { uri: uri.to_string(), source })?;
    let prefix = location.path.as_ref().trim_end_matches('/').to_string();
    let mut matched: Vec<ObjectMeta> = listed
        .into_iter()
        .filter(|m| {
            let key = m.location.as_ref();
            let relative = key.strip_prefix(&prefix).map(|k| k.trim_start_matches('/')).unwrap_or(key);
            relative.is_empty() || glob.is_match(relative)
        })
        .collect();
    if matched.is_empty()
        && let Ok(meta) = location.store.head(&location.path).await
    {
        matched.push(meta);
    }
    matched.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((location, matched))
}

async fn plan_files(files: &FilesSource, stores: &StoreRegistry) -> Result<SourcePlan, SourceError> {
    let pattern = files.glob.as_deref().unwrap_or("**/*");
    let glob = matcher("files.glob", pattern)?;
    let (location, objects) = list_matching(&files.uri, &glob, stores).await?;
    if objects.is_empty() {
        return Err(SourceError::Invalid {
            field: "files.uri",
            message: format!("no objects under `{}` match glob `{pattern}`", files.uri),
        });
    }
    let per_unit = files.files_per_unit.map_or(DEFAULT_FILES_PER_UNIT, |n| n as usize).max(1);
    let entries: Vec<FileEntry> =
        objects.iter().map(|m| FileEntry { uri: location.uri_of(&m.location), size: m.size }).collect();
    let units = entries
        .chunks(per_unit)
        .enumerate()
        .map(|(i, chunk)| WorkUnit { id: i as u64, attempt: 0, input: UnitInput::Files(chunk.to_vec()) })
        .collect();
    Ok(SourcePlan { units, reader: Arc::new(FilesReader) })
}

/// Reads a files unit: one row per object, no I/O (the listing is in the unit).
#[derive(Debug, Clone, Copy)]
pub struct FilesReader;

impl UnitReader for FilesReader {
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>> {
        let result = match &unit.input {
            UnitInput::Files(files) => files_batch(files),
            other => Err(format!("a files reader cannot read {other:?}").into()),
        };
        stream::once(async move { result }).boxed()
    }
}

fn files_batch(files: &[FileEntry]) -> Result<RecordBatch, BoxError> {
    let uris: ArrayRef = Arc::new(StringArray::from_iter_values(files.iter().map(|f| f.uri.as_str())));
    let sizes: ArrayRef = Arc::new(UInt64Array::from_iter_values(files.iter().map(|f| f.size)));
    Ok(RecordBatch::try_from_iter([("uri", uris.clone()), ("size", sizes), (ROW_REF_COLUMN, uris)])?)
}

async fn plan_parquet(source: &ParquetSource, stores: Arc<StoreRegistry>) -> Result<SourcePlan, SourceError> {
    let pattern = source.glob.as_deref().unwrap_or("**/*.parquet");
    let glob = matcher("parquet.glob", pattern)?;
    let (location, objects) = list_matching(&source.uri, &glob, &stores).await?;
    if objects.is_empty() {
        return Err(SourceError::Invalid {
            field: "parquet.uri",
            message: format!("no Parquet files under `{}` match glob `{pattern}`", source.uri),
        });
    }
    let mut units = Vec::new();
    for meta in &objects {
        let uri = location.uri_of(&meta.location);
        let reader = ObjectReader::new(location.store.clone(), meta.location.clone());
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|source| SourceError::Parquet { uri: uri.clone(), source })?;
        if let Some(columns) = &source.columns {
            let schema = builder.schema();
            if let Some(missing) = columns.iter().find(|c| schema.field_with_name(c).is_err()) {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SourceError::Invalid {
                    field: "parquet.columns",
                    message: format!("`{uri}` has no column `{missing}` (it has: {})", have.join(", ")),
                });
            }
        }
        let mut group: Vec<usize> = Vec::new();
        let mut rows = 0u64;
        let row_groups = builder.metadata().row_groups();
        for (i, rg) in row_groups.iter().enumerate() {
            group.push(i);
            rows += rg.num_rows().max(0) as u64;
            if rows >= PARQUET_UNIT_ROWS || i + 1 == row_groups.len() {
                let input =
                    UnitInput::ParquetRowGroups { uri: uri.clone(), row_groups: std::mem::take(&mut group), rows };
                units.push(WorkUnit { id: units.len() as u64, attempt: 0, input });
                rows = 0;
            }
        }
    }
    let reader = ParquetReader { stores, columns: source.columns.clone() };
    Ok(SourcePlan { units, reader: Arc::new(reader) })
}

/// Reads the row groups of a Parquet unit; each row's reference is `<uri>#row=<n>`.
pub struct ParquetReader {
    stores: Arc<StoreRegistry>,
    columns: Option<Vec<String>>,
}

impl UnitReader for ParquetReader {
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>> {
        let UnitInput::ParquetRowGroups { uri, row_groups, .. } = unit.input.clone() else {
            return stream::once(async {
                Err::<RecordBatch, BoxError>("a Parquet reader needs a row-group unit".into())
            })
            .boxed();
        };
        let stores = self.stores.clone();
        let columns = self.columns.clone();
        let opened = async move {
            let location = stores.resolve(&uri)?;
            let reader = ObjectReader::new(location.store.clone(), location.path.clone());
            let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
            let first_row: i64 = builder
                .metadata()
                .row_groups()
                .get(..row_groups.first().copied().unwrap_or(0))
                .unwrap_or_default()
                .iter()
                .map(|rg| rg.num_rows())
                .sum();
            let mut builder = builder.with_row_groups(row_groups).with_batch_size(1024);
            if let Some(columns) = &columns {
                let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().map(String::as_str));
                builder = builder.with_projection(mask);
            }
            let batches = builder.build()?;
            Ok::<_, BoxError>((batches, first_row as u64, uri))
        };
        stream::once(opened)
            .map(|opened| -> BoxStream<'static, Result<RecordBatch, BoxError>> {
                match opened {
                    Err(e) => stream::once(async { Err(e) }).boxed(),
                    Ok((batches, first_row, uri)) => {
                        let mut next_row = first_row;
                        batches
                            .map(move |batch| {
                                let batch = batch?;
                                let refs: Vec<String> = (0..batch.num_rows() as u64)
                                    .map(|i| format!("{uri}#row={}", next_row + i))
                                    .collect();
                                next_row += batch.num_rows() as u64;
                                Ok(with_column(&batch, ROW_REF_COLUMN, Arc::new(StringArray::from(refs)))?)
                            })
                            .boxed()
                    }
                }
            })
            .flatten()
            .boxed()
    }
}
