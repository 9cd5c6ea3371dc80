//! The Weir operator: reconciles each `MultimodalJob` into a coordinator pod, worker pods per pool,
//! their Services and the plan ConfigMap, and reports progress in the job's status.
//!
//! # Layout
//! - [`children`]: pure builders of every owned object (`Owner::worker_pod(pool, index)`).
//! - [`observe`]: the job's pods, reduced to what decisions need.
//! - [`decide`]: the pure lifecycle: what to create, delete and report (table-tested).
//! - [`conditions`]: kstatus-style conditions and bounded messages.
//! - [`progress`]: the coordinator's gRPC: progress (Status), workers (Workers) and Drain.
//! - [`scaling`]: the autoscaling round of each job (signals from Prometheus, the
//!   `weir-autoscale` decision) and what the operator remembers of a job between reconciles.
//! - [`controller`]: the kube-rs controller that observes, decides and applies.
//! - [`leader`]: leader election with a `coordination.k8s.io` Lease.
//! - [`metrics`]: `weir_operator_*` metrics and the `/metrics` endpoint.
//! - [`error`]: the reconcile error and its metric label.

pub mod children;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod progress;
pub mod scaling;

#[cfg(test)]
mod fixtures;
