//! Weir's distributed runtime: a coordinator that plans and leases work units and commits their
//! results to the checkpoint store, and workers that run them.
//!
//! # Layout
//! - [`proto`]: the coordinator's gRPC API (generated from `proto/coordinator.proto`).
//! - [`leases`]: the pure table of units and leases the coordinator drives.
//! - [`coordinator`]: the coordinator service, its housekeeping and the job's finalization.
//! - [`verify`]: checking a finished job's output against its checkpoint (`weir verify`).
//! - [`worker`]: the worker loop: lease, run, report, heartbeat, drain; or serve a pool's steps.
//! - [`exchange`]: Arrow Flight between pools: the step server and the remote step.
//! - [`placement`]: re-exported from `weir-crds` (which pool runs each step).
//! - [`metrics`]: Prometheus metrics of coordinators and workers, and the `/metrics` endpoint.
//! - [`retry`]: retrying coordinator calls while it is down or restarting.
//! - [`convert`]: work units to and from their wire form.
//!
//! Every connection between a job's processes is TLS with the job's own CA and carries the job's
//! token ([`weir_auth`]); a call without it is refused with `Unauthenticated`.

pub mod convert;
pub mod coordinator;
pub mod exchange;
pub mod leases;
pub mod metrics;
pub use weir_crds::placement;
pub mod retry;
pub mod verify;
pub mod worker;

/// The coordinator's gRPC messages, client and server.
#[allow(clippy::doc_markdown, missing_docs)]
pub mod proto {
    tonic::include_proto!("weir.coordinator.v1");
}

pub use coordinator::{Coordinator, CoordinatorError, CoordinatorOptions, JobOutcome};
pub use weir_auth::JobSecret;

/// A client of the coordinator that presents the job's token over TLS.
pub type CoordinatorConn = proto::coordinator_client::CoordinatorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, weir_auth::Bearer>,
>;
pub use worker::{ServeOptions, WorkerExit, WorkerOptions, WorkerSetup, run_worker, serve_pool};
