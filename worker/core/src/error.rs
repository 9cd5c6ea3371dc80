//! Error types of the executor: unbuildable step configs, fatal step errors and whole-pipeline failures.

use arrow_schema::ArrowError;

use crate::unit::BoxError;

/// A step could not process a morsel at all (as opposed to a single bad row).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The morsel does not have the shape the step needs (a planning bug or a source surprise).
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A failure that may succeed if retried later (network, throttling).
    #[error("transient: {0}")]
    Transient(String),
    /// The morsel's unit attempt is no longer wanted (a peer found its lease revoked): the
    /// executor withdraws the attempt (see [`WithdrawnUnits`](crate::WithdrawnUnits)) instead of
    /// failing anything.
    #[error("withdrawn: {0}")]
    Withdrawn(String),
    #[error("{0}")]
    Other(String),
}

impl StepError {
    pub fn column(column: &str, message: impl Into<String>) -> Self {
        StepError::Column { column: column.to_string(), message: message.into() }
    }
}

/// A step config that cannot be turned into a runnable step (checked when the job is planned,
/// before any row runs).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    /// The config field at fault, e.g. `width`.
    pub field: String,
    pub message: String,
}

impl BuildError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_string(), message: message.into() }
    }
}

/// Stats handed to [`Pipeline::with_stats`](crate::Pipeline::with_stats) that count other stages
/// than the pipeline has (they came from a pipeline of other steps).
#[derive(Debug, thiserror::Error)]
#[error("stats of {found} stages given to a pipeline of {expected} stages")]
pub struct StatsMismatch {
    /// Stages of the pipeline: the source, each step, the sink.
    pub expected: usize,
    pub found: usize,
}

/// Why a pipeline run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("step #{index} `{step}` failed on unit {unit}: {source}")]
    Step { index: usize, step: String, unit: u64, source: StepError },
    /// `errorPolicy.onRowError: fail` and a row failed.
    #[error("row {row_ref} failed in step #{index} `{step}`: {message}")]
    RowFailed { row_ref: String, index: usize, step: String, message: String },
    #[error("{failed} of {rows} input rows failed (ratio {ratio:.4}), more than errorPolicy.maxErrorRatio {max_ratio}")]
    TooManyErrors { failed: u64, rows: u64, ratio: f64, max_ratio: f64 },
    /// The reader failed; `source` is the reader's own error.
    #[error("reading unit {unit}: {source}")]
    Source { unit: u64, source: BoxError },
    /// The sink failed; `source` is the sink's own error.
    #[error("writing unit {unit}: {source}")]
    Sink { unit: u64, source: BoxError },
    #[error("cancelled")]
    Cancelled,
    #[error("internal: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_sink_error_keeps_its_cause_as_the_source() {
        let cause = std::io::Error::other("disk full");
        let err = ExecError::Sink { unit: 7, source: Box::new(cause) };
        assert_eq!(err.to_string(), "writing unit 7: disk full");
        let source = err.source().expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some(), "the io::Error itself, not a copy of its message");
    }
}
