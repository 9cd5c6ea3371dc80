//! The Weir operator: reconciles each `MultimodalJob` into a coordinator pod, worker pods per pool,
//! their Services, the plan ConfigMap, the job's Secret (its token and TLS identity) and a
//! NetworkPolicy, and reports progress in the job's status.
//!
//! # Layout
//! - [`children`]: pure builders of every owned object (`Owner::worker_pod(pool, index)`).
//! - [`observe`]: the job's pods, reduced to what decisions need.
//! - [`decide`]: the pure lifecycle: what to create, delete and report (table-tested).
//! - [`conditions`]: kstatus-style conditions and bounded messages.
//! - [`progress`]: the coordinator's gRPC (TLS and the job's token): progress (Status), workers
//!   (Workers) and Drain.
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

/// Makes aws-lc-rs (the Kubernetes client's) the process's TLS crypto provider. The operator
/// links two (aws-lc-rs through kube, ring through `weir-auth`'s gRPC TLS), and with two rustls
/// chooses none by itself: the Kubernetes client would panic when it builds its TLS. Call it
/// before the first [`kube::Client`] is made; calling it again does nothing.
pub fn install_crypto_provider() {
    // Err only when a provider is already installed, which is what is wanted.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_kubernetes_client_builds_its_tls_once_a_provider_is_chosen() {
        super::install_crypto_provider();
        let config = kube::Config::new("https://127.0.0.1:6443".parse().expect("uri"));
        assert!(kube::Client::try_from(config).is_ok());
    }
}
