//! Reading a job's progress from its coordinator's Status RPC.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::decide::CoordinatorProgress;

/// The coordinator's gRPC client (generated from `worker/cluster/proto/coordinator.proto`).
#[allow(clippy::doc_markdown, missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("weir.coordinator.v1");
}

/// How long one progress read may take before the operator goes on without it.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Where progress comes from; tests substitute their own.
pub trait ProgressSource: Send + Sync {
    /// Progress of the coordinator at `endpoint` (`http://ip:port`), or `None` when it cannot be
    /// read in time. Never fails the reconcile: progress is informative.
    fn read(&self, endpoint: String) -> BoxFuture<'static, Option<CoordinatorProgress>>;
}

/// Asks the coordinator over gRPC.
pub struct GrpcProgress;

impl ProgressSource for GrpcProgress {
    fn read(&self, endpoint: String) -> BoxFuture<'static, Option<CoordinatorProgress>> {
        Box::pin(async move {
            match tokio::time::timeout(PROGRESS_TIMEOUT, ask(endpoint.clone())).await {
                Ok(Ok(progress)) => Some(progress),
                Ok(Err(e)) => {
                    tracing::debug!(%endpoint, error = %e, "coordinator status not available");
                    None
                }
                Err(_) => None,
            }
        })
    }
}

async fn ask(endpoint: String) -> Result<CoordinatorProgress, Box<dyn std::error::Error + Send + Sync>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect_timeout(PROGRESS_TIMEOUT)
        .timeout(PROGRESS_TIMEOUT)
        .connect()
        .await?;
    let mut client = proto::coordinator_client::CoordinatorClient::new(channel);
    let status = client.status(proto::StatusRequest {}).await?.into_inner();
    Ok(from_status(&status))
}

/// The parts of the coordinator's status the job's status shows.
pub fn from_status(status: &proto::JobStatus) -> CoordinatorProgress {
    use proto::Phase;
    let finishing = matches!(status.phase(), Phase::Finalizing | Phase::Succeeded | Phase::Failed);
    CoordinatorProgress {
        units_total: status.units_total,
        units_committed: status.units_committed,
        rows_in: status.rows_in,
        rows_out: status.rows_out,
        rows_failed: status.rows_failed,
        eta_seconds: (status.eta_seconds >= 0.0).then_some(status.eta_seconds),
        finishing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_eta_is_none_and_finalizing_counts_as_finishing() {
        let status = proto::JobStatus {
            units_total: 10,
            units_committed: 10,
            eta_seconds: -1.0,
            phase: proto::Phase::Finalizing as i32,
            ..Default::default()
        };
        let progress = from_status(&status);
        assert_eq!(progress.eta_seconds, None);
        assert!(progress.finishing);
        let running = proto::JobStatus { phase: proto::Phase::Running as i32, eta_seconds: 12.0, ..status };
        assert_eq!(from_status(&running).eta_seconds, Some(12.0));
        assert!(!from_status(&running).finishing);
    }
}
