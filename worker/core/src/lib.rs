//! Weir's streaming executor: Arrow morsels through bounded stages, under a byte memory budget.
//!
//! # Layout
//! - [`step`]: the [`Step`] trait every pipeline step implements, and row-level failures.
//! - [`unit`]: work units (the grain of scheduling and recovery) and the source/sink traits.
//! - [`budget`]: the byte-denominated [`MemoryBudget`] every morsel in flight holds a share of.
//! - [`compute`]: the CPU pool kernels run on, off the async runtime.
//! - [`stats`]: per-step counters (rows, bytes, busy and blocked time) read by progress and metrics.
//! - [`channel`]: the bounded channel between stages.
//! - [`pipeline`]: the executor that wires a source, steps and a sink together.
//! - `morsel` (private): sizes morsels and their reservations from bytes per row seen at each stage.
//! - [`withdrawn`]: attempts withdrawn mid-run (a revoked lease), which the executor stops working on.
//! - [`batch`]: small Arrow helpers shared by steps (replace a column, drop failed rows).
//!
//! The core knows nothing of Kubernetes, object storage, models or RPC: those live in crates that
//! implement its traits.

pub mod alloc;
pub mod batch;
pub mod budget;
pub mod channel;
pub mod compute;
pub mod error;
mod morsel;
pub mod pipeline;
pub mod repeat;
pub mod share;
pub mod stats;
pub mod step;
pub mod unit;
pub mod withdrawn;

pub use budget::{MemoryBudget, Reservation};
pub use compute::ComputePool;
pub use error::{BuildError, ExecError, StatsMismatch, StepError};
pub use pipeline::{ErrorHandling, Pipeline, PipelineOptions, RunSummary};
pub use stats::{PipelineStats, StepStats, StepStatsSnapshot};
pub use step::{FailureOrigin, MoreOutput, RowFailure, Step, StepContext, StepOutput, UnitAttempt};
pub use unit::{ErrorRecord, UnitReader, UnitSink, UnitSummary, WorkUnit};
pub use withdrawn::WithdrawnUnits;

/// Name of the column every source adds: a stable reference to the input row (URI, or file and row).
pub const ROW_REF_COLUMN: &str = "_weir_ref";

/// Columns whose name starts with this are internal: carried through every step, never written.
pub const INTERNAL_PREFIX: &str = "_weir_";
