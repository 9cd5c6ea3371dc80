//! Work units, and the traits a source reader and a sink implement.

use std::error::Error as StdError;

use arrow_array::RecordBatch;
use futures::stream::BoxStream;

/// Boxed error of a reader or sink implementation.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A slice of the input that is scheduled, retried and committed as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkUnit {
    /// Stable across attempts and restarts (it names the unit's output files).
    pub id: u64,
    /// Incremented each time the unit is handed out again.
    pub attempt: u32,
    pub input: UnitInput,
}

/// What a unit reads.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitInput {
    /// Objects, one row each.
    Files(Vec<FileEntry>),
    /// Row groups of one Parquet file.
    ParquetRowGroups { uri: String, row_groups: Vec<usize>, rows: u64 },
}

/// An object listed by a files source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub uri: String,
    pub size: u64,
}

impl WorkUnit {
    /// Source rows the unit will produce, when known up front.
    pub fn rows(&self) -> u64 {
        match &self.input {
            UnitInput::Files(files) => files.len() as u64,
            UnitInput::ParquetRowGroups { rows, .. } => *rows,
        }
    }

    /// The order units are handed out in: largest first (bytes of its files, or rows of its row
    /// groups), then by id. A large unit started last would run alone at the end of the job, its
    /// worker busy while the others have nothing left (the longest-first rule of scheduling).
    pub fn lease_order(&self) -> (std::cmp::Reverse<u64>, u64) {
        let size = match &self.input {
            UnitInput::Files(files) => files.iter().map(|f| f.size).sum(),
            UnitInput::ParquetRowGroups { rows, .. } => *rows,
        };
        (std::cmp::Reverse(size), self.id)
    }
}

/// Reads the rows of a unit.
pub trait UnitReader: Send + Sync + 'static {
    /// Streams the unit's rows in a stable order, each batch carrying the
    /// [`ROW_REF_COLUMN`](crate::ROW_REF_COLUMN).
    ///
    /// # Errors
    /// An item of the stream is `Err` when the unit cannot be read (the job fails; a single
    /// unreadable object is a row failure of the step that reads it, not of the source).
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>>;
}

/// A row that failed, as recorded in the errors output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    pub unit: u64,
    /// The input row ([`ROW_REF_COLUMN`](crate::ROW_REF_COLUMN)).
    pub row_ref: String,
    /// Position of the step in `spec.steps`.
    pub step_index: usize,
    pub step: String,
    pub message: String,
}

/// What a finished unit left behind.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitSummary {
    pub unit: u64,
    pub attempt: u32,
    pub rows: u64,
    pub errors: u64,
    /// Output files written for this unit (data and errors).
    pub files: Vec<String>,
}

/// Receives a unit's rows and failures, in order, and makes them durable at `finish_unit`.
///
/// # Guarantees expected of implementations
/// Nothing a unit wrote is visible as committed output before `finish_unit` returns `Ok`; a unit
/// whose attempt is abandoned (error or cancellation) leaves at most files named after that
/// attempt, which the commit protocol ignores.
pub trait UnitSink: Send + 'static {
    /// Appends rows of `unit`.
    fn write(&mut self, unit: &WorkUnit, batch: RecordBatch) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Records failed rows of `unit`.
    fn write_errors(
        &mut self,
        unit: &WorkUnit,
        errors: Vec<ErrorRecord>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Flushes and closes everything of `unit`.
    fn finish_unit(&mut self, unit: &WorkUnit) -> impl Future<Output = Result<UnitSummary, BoxError>> + Send;

    /// Bytes buffered in memory and not yet written out (counted against the memory budget).
    fn buffered_bytes(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(id: u64, sizes: &[u64]) -> WorkUnit {
        let files = sizes.iter().map(|&size| FileEntry { uri: format!("f{id}-{size}"), size }).collect();
        WorkUnit { id, attempt: 0, input: UnitInput::Files(files) }
    }

    #[test]
    fn the_largest_unit_is_leased_first_and_equal_ones_by_id() {
        let mut units = [files(0, &[10, 10]), files(1, &[5]), files(2, &[30]), files(3, &[20]), files(4, &[])];
        units.sort_by_key(WorkUnit::lease_order);
        assert_eq!(units.iter().map(|u| u.id).collect::<Vec<_>>(), [2, 0, 3, 1, 4]);
        let groups = |id, rows| WorkUnit {
            id,
            attempt: 0,
            input: UnitInput::ParquetRowGroups { uri: "t.parquet".into(), row_groups: vec![0], rows },
        };
        let mut units = [groups(0, 100), groups(1, 900), groups(2, 100)];
        units.sort_by_key(WorkUnit::lease_order);
        assert_eq!(units.iter().map(|u| u.id).collect::<Vec<_>>(), [1, 0, 2]);
    }
}
