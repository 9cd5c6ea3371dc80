//! Weir's distributed runtime: a coordinator that plans and leases work units and commits their
//! results to the checkpoint store, and workers that run them.
//!
//! # Layout
//! - [`proto`]: the coordinator's gRPC API (generated from `proto/coordinator.proto`).
//! - [`leases`]: the pure table of units and leases the coordinator drives.
//! - [`coordinator`]: the coordinator service, its housekeeping and the job's finalization.
//! - [`worker`]: the worker loop: lease, run, report, heartbeat, drain; or serve a pool's steps.
//! - [`exchange`]: Arrow Flight between pools: the step server and the remote step.
//! - [`placement`]: re-exported from `weir-crds` (which pool runs each step).
//! - [`metrics`]: Prometheus metrics of coordinators and workers, and the `/metrics` endpoint.
//! - [`retry`]: retrying coordinator calls while it is down or restarting.
//! - [`convert`]: work units to and from their wire form.

pub mod convert;
pub mod coordinator;
pub mod exchange;
pub mod leases;
pub mod metrics;
pub use weir_crds::placement;
pub mod retry;
pub mod worker;

/// The coordinator's gRPC messages, client and server.
#[allow(clippy::doc_markdown, missing_docs)]
pub mod proto {
    tonic::include_proto!("weir.coordinator.v1");
}

pub use coordinator::{Coordinator, CoordinatorError, CoordinatorOptions, JobOutcome};
pub use worker::{ServeOptions, WorkerExit, WorkerOptions, WorkerSetup, run_worker, serve_pool};
