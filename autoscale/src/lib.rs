//! Scales each worker pool of a Weir job from the backpressure metrics its processes export.
//!
//! # Layout
//! - [`signals`]: what one round knows about a job (per pool, per step, per job), and
//!   [`DataProblem`], why a round knows nothing usable.
//! - [`promql`]: the operator's path: the signals read from a Prometheus server.
//! - [`exposition`]: the local supervisor's path: the signals computed from two scrapes of each
//!   process's `/metrics` text.
//! - [`decide`]: the pure decision: from signals and the pools' sizes, how many replicas each
//!   pool should run, with the reason in one line.
//!
//! The crate knows no Kubernetes and nothing else of Weir: the metric names it reads are its
//! whole contract with the processes.

pub mod decide;
pub mod exposition;
pub mod promql;
pub mod signals;

pub use decide::{Action, Autoscaler, Decision, Inputs, Policy, PoolState, summary};
pub use signals::{DataProblem, JobSignals, PoolSignals, Signals, StepSignals};
