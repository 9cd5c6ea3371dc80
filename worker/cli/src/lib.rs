//! The `weir` command's library: plan a `MultimodalJob` into a pipeline and run it in this process.
//!
//! # Layout
//! - [`plan`]: the step registry (config to runnable step) and source/sink wiring.
//! - [`run`]: the embedded runner behind `weir run`.
//! - [`progress`]: the live per-step progress display.
//! - [`profile`]: the end-of-run per-step profile (terminal table and Markdown report).
//! - [`size`]: parsing of byte sizes such as `512MiB`.

pub mod plan;
pub mod profile;
pub mod progress;
pub mod run;
pub mod size;

pub use run::{RunOptions, RunReport, run_job};
