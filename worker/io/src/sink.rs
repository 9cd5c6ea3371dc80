//! The Parquet sink: each unit attempt stages `part-<unit>-<attempt>.parquet`, and its failed rows
//! `_errors/part-<unit>-<attempt>.parquet`, under the output's staging folder
//! ([`STAGING_DIR`]); the committer publishes the winning attempt's files into the output.
//!
//! Files are written through the object store's multipart (or temp-file-and-rename) upload, so a
//! part file appears whole or not at all; and no attempt ever writes where readers of the output
//! look, so a slow, frozen or losing attempt cannot add rows to it.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression as ParquetCompression;
use parquet::file::properties::WriterProperties;
use weir_core::unit::BoxError;
use weir_core::{ErrorRecord, INTERNAL_PREFIX, UnitSink, UnitSummary, WorkUnit};
use weir_crds::{Compression, ParquetSink as ParquetSinkSpec};

use crate::parquet_io::object_writer;
use crate::store::{Location, StoreError, StoreRegistry};

/// Rows per row group when the manifest does not say.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 8192;
/// A row group is closed once its encoded size reaches this, however few rows it has.
pub const MAX_ROW_GROUP_BYTES: usize = 128 << 20;
/// Folder of failed-row files under the output prefix.
pub const ERRORS_DIR: &str = "_errors";

/// The folder, under the output, where attempts stage their part files until they are published.
/// Readers of the output (Spark, Daft, DuckDB, pyarrow) skip `_`-prefixed folders.
pub const STAGING_DIR: &str = "_weir/staging";

/// Which of an attempt's two part files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// The output rows: `part-<unit>-<attempt>.parquet`.
    Output,
    /// The failed rows: `_errors/part-<unit>-<attempt>.parquet`.
    Errors,
}

impl PartKind {
    pub const ALL: [PartKind; 2] = [PartKind::Output, PartKind::Errors];

    /// The part file's path relative to the output (or to the staging folder).
    pub fn relative(self, unit: u64, attempt: u32) -> String {
        let name = format!("part-{unit:06}-{attempt}.parquet");
        match self {
            PartKind::Output => name,
            PartKind::Errors => format!("{ERRORS_DIR}/{name}"),
        }
    }

    /// Where an attempt stages this file, under the output prefix `output`.
    pub fn staged(self, output: &Path, unit: u64, attempt: u32) -> Path {
        join_relative(output, &format!("{STAGING_DIR}/{}", self.relative(unit, attempt)))
    }

    /// Where the file is published, under the output prefix `output`.
    pub fn published(self, output: &Path, unit: u64, attempt: u32) -> Path {
        join_relative(output, &self.relative(unit, attempt))
    }
}

fn join_relative(base: &Path, relative: &str) -> Path {
    relative.split('/').fold(base.clone(), |path, part| path.join(part))
}

/// Writes units as Parquet part files.
pub struct ParquetSink {
    location: Location,
    columns: Option<Vec<String>>,
    properties: WriterProperties,
    row_group_bytes: usize,
    writer: Option<(AsyncArrowWriter<BufWriter>, String, u64)>,
    errors: Vec<ErrorRecord>,
}

impl ParquetSink {
    /// A sink writing under `spec.uri`.
    ///
    /// # Errors
    /// When the URI cannot be resolved.
    pub fn new(spec: &ParquetSinkSpec, stores: &StoreRegistry) -> Result<Self, StoreError> {
        let compression = match spec.compression.unwrap_or_default() {
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Uncompressed => ParquetCompression::UNCOMPRESSED,
        };
        let rows = spec.row_group_rows.map_or(DEFAULT_ROW_GROUP_ROWS, |r| r as usize);
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(rows))
            .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
            .build();
        Ok(Self {
            location: stores.resolve(&spec.uri)?,
            columns: spec.columns.clone(),
            properties,
            row_group_bytes: MAX_ROW_GROUP_BYTES,
            writer: None,
            errors: Vec::new(),
        })
    }

    /// Closes row groups at `bytes` instead of [`MAX_ROW_GROUP_BYTES`] (to keep within a small budget).
    pub fn with_row_group_bytes(mut self, bytes: usize) -> Self {
        self.row_group_bytes = bytes.max(1 << 20);
        self
    }

    fn path(&self, kind: PartKind, unit: &WorkUnit) -> Path {
        kind.staged(&self.location.path, unit.id, unit.attempt)
    }

    /// The output columns of `batch`: the sink's selection, never internal columns.
    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, BoxError> {
        let schema = batch.schema();
        let indices: Vec<usize> = match &self.columns {
            Some(columns) => columns
                .iter()
                .map(|c| schema.index_of(c).map_err(|_| format!("sink column `{c}` does not exist")))
                .collect::<Result<_, _>>()?,
            None => {
                (0..schema.fields().len()).filter(|&i| !schema.field(i).name().starts_with(INTERNAL_PREFIX)).collect()
            }
        };
        Ok(batch.project(&indices)?)
    }
}

impl UnitSink for ParquetSink {
    async fn write(&mut self, unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        let batch = self.project(&batch)?;
        if self.writer.is_none() {
            let path = self.path(PartKind::Output, unit);
            let object = object_writer(self.location.store.clone(), path.clone());
            let writer = AsyncArrowWriter::try_new(object, batch.schema(), Some(self.properties.clone()))?;
            self.writer = Some((writer, self.location.uri_of(&path), 0));
        }
        let Some((writer, _, rows)) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.write(&batch).await?;
        *rows += batch.num_rows() as u64;
        if writer.in_progress_size() >= self.row_group_bytes {
            writer.flush().await?;
        }
        Ok(())
    }

    async fn write_errors(&mut self, _unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.errors.extend(errors);
        Ok(())
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        let mut summary = UnitSummary { unit: unit.id, attempt: unit.attempt, ..Default::default() };
        if let Some((writer, uri, rows)) = self.writer.take() {
            writer.close().await?;
            summary.rows = rows;
            summary.files.push(uri);
        }
        let errors = std::mem::take(&mut self.errors);
        if !errors.is_empty() {
            summary.errors = errors.len() as u64;
            let path = self.path(PartKind::Errors, unit);
            let writer = object_writer(self.location.store.clone(), path.clone());
            write_errors_file(writer, &errors, self.properties.clone()).await?;
            summary.files.push(self.location.uri_of(&path));
        }
        Ok(summary)
    }

    fn buffered_bytes(&self) -> u64 {
        let writer = self.writer.as_ref().map_or(0, |(w, _, _)| w.in_progress_size());
        let errors: usize = self.errors.iter().map(|e| e.row_ref.len() + e.message.len() + 64).sum();
        (writer + errors) as u64
    }
}

async fn write_errors_file(
    writer: BufWriter,
    errors: &[ErrorRecord],
    properties: WriterProperties,
) -> Result<(), BoxError> {
    let batch = errors_batch(errors)?;
    let mut w = AsyncArrowWriter::try_new(writer, batch.schema(), Some(properties))?;
    w.write(&batch).await?;
    w.close().await?;
    Ok(())
}

/// The schema of the errors files.
pub fn errors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("unit", DataType::UInt64, false),
        Field::new("row_ref", DataType::Utf8, false),
        Field::new("step_index", DataType::UInt32, false),
        Field::new("step", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]))
}

fn errors_batch(errors: &[ErrorRecord]) -> Result<RecordBatch, BoxError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(errors.iter().map(|e| e.unit))),
        Arc::new(StringArray::from_iter_values(errors.iter().map(|e| e.row_ref.as_str()))),
        Arc::new(UInt32Array::from_iter_values(errors.iter().map(|e| e.step_index as u32))),
        Arc::new(StringArray::from_iter_values(errors.iter().map(|e| e.step.as_str()))),
        Arc::new(StringArray::from_iter_values(errors.iter().map(|e| e.message.as_str()))),
    ];
    Ok(RecordBatch::try_new(errors_schema(), columns)?)
}

/// Told when a unit's files are closed (staged), before the sink reports the unit finished: the
/// embedded runner publishes and commits the unit, a distributed worker reports it to the
/// coordinator, which does.
pub trait UnitListener: Send + 'static {
    /// Called once per finished unit attempt, with what its files hold.
    ///
    /// # Errors
    /// An error fails the unit (its files are then an abandoned attempt's).
    fn unit_closed(
        &mut self,
        unit: &WorkUnit,
        summary: &UnitSummary,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Where and how a job's units are written: the sink's spec, its stores and its row group size.
/// Each pipeline opens its own sink from it ([`SinkPlan::open`]).
#[derive(Clone)]
pub struct SinkPlan {
    spec: ParquetSinkSpec,
    stores: Arc<StoreRegistry>,
    row_group_bytes: usize,
}

impl SinkPlan {
    /// Units written as `spec` says, row groups closed at `row_group_bytes`.
    pub fn new(spec: &ParquetSinkSpec, stores: Arc<StoreRegistry>, row_group_bytes: usize) -> Self {
        Self { spec: spec.clone(), stores, row_group_bytes }
    }

    /// The stores the sink writes to.
    pub fn stores(&self) -> &StoreRegistry {
        &self.stores
    }

    /// A sink that tells `listener` about each unit whose files it closed.
    ///
    /// # Errors
    /// When the sink's URI cannot be resolved.
    pub fn open<L: UnitListener>(&self, listener: L) -> Result<ListeningSink<L>, StoreError> {
        let parquet = ParquetSink::new(&self.spec, &self.stores)?.with_row_group_bytes(self.row_group_bytes);
        Ok(ListeningSink { inner: parquet, listener })
    }
}

/// The Parquet sink, telling a [`UnitListener`] about each unit whose files it has closed.
pub struct ListeningSink<L> {
    inner: ParquetSink,
    listener: L,
}

impl<L: UnitListener> UnitSink for ListeningSink<L> {
    async fn write(&mut self, unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        self.inner.write(unit, batch).await
    }

    async fn write_errors(&mut self, unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.inner.write_errors(unit, errors).await
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        let summary = self.inner.finish_unit(unit).await?;
        self.listener.unit_closed(unit, &summary).await?;
        Ok(summary)
    }

    fn buffered_bytes(&self) -> u64 {
        self.inner.buffered_bytes()
    }
}
