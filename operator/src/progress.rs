//! Talking to a job's coordinator: its progress (Status), its workers (Workers) and drains (Drain).

use std::time::Duration;

use futures::future::BoxFuture;

use crate::decide::{CoordinatorProgress, WorkerSeen};

/// The coordinator's gRPC client (generated from `worker/cluster/proto/coordinator.proto`).
#[allow(clippy::doc_markdown, missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("weir.coordinator.v1");
}

/// How long one progress read may take before the operator goes on without it.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(3);

/// The coordinator as the operator sees it; tests substitute their own.
///
/// # Errors
/// None of these fails the reconcile: what cannot be read in [`PROGRESS_TIMEOUT`] is `None` (the
/// decisions that need it hold), and a failed drain is asked again at the next reconcile.
pub trait ProgressSource: Send + Sync {
    /// Progress of the coordinator at `endpoint` (`http://ip:port`), or `None` when it cannot be
    /// read in time.
    fn read(&self, endpoint: String) -> BoxFuture<'static, Option<CoordinatorProgress>>;
    /// The workers the coordinator knows, or `None` when it cannot be asked in time.
    fn workers(&self, endpoint: String) -> BoxFuture<'static, Option<Vec<WorkerSeen>>>;
    /// Asks the coordinator to drain `worker` (a pod name): it leases and routes it nothing more.
    /// `Ok(false)` when the coordinator does not know it (gone already, or never registered).
    /// Repeating it is harmless.
    fn drain(&self, endpoint: String, worker: String) -> BoxFuture<'static, Result<bool, String>>;
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

    fn workers(&self, endpoint: String) -> BoxFuture<'static, Option<Vec<WorkerSeen>>> {
        Box::pin(async move {
            let asked = async {
                let answer = client(endpoint.clone()).await?.workers(proto::WorkersRequest {}).await?;
                Ok::<_, BoxError>(answer.into_inner().workers.iter().map(from_view).collect())
            };
            match tokio::time::timeout(PROGRESS_TIMEOUT, asked).await {
                Ok(Ok(workers)) => Some(workers),
                Ok(Err(e)) => {
                    tracing::debug!(%endpoint, error = %e, "coordinator workers not available");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn drain(&self, endpoint: String, worker: String) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async move {
            let asked = async {
                let request = proto::DrainRequest { worker };
                Ok::<_, BoxError>(client(endpoint).await?.drain(request).await?.into_inner().known)
            };
            match tokio::time::timeout(PROGRESS_TIMEOUT, asked).await {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {PROGRESS_TIMEOUT:?}")),
            }
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Client = proto::coordinator_client::CoordinatorClient<tonic::transport::Channel>;

async fn client(endpoint: String) -> Result<Client, BoxError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect_timeout(PROGRESS_TIMEOUT)
        .timeout(PROGRESS_TIMEOUT)
        .connect()
        .await?;
    Ok(proto::coordinator_client::CoordinatorClient::new(channel))
}

async fn ask(endpoint: String) -> Result<CoordinatorProgress, BoxError> {
    let status = client(endpoint).await?.status(proto::StatusRequest {}).await?.into_inner();
    Ok(from_status(&status))
}

/// What a scale-down needs to know of one worker.
pub fn from_view(view: &proto::WorkerView) -> WorkerSeen {
    WorkerSeen {
        name: view.worker.clone(),
        pool: view.pool.clone(),
        units_held: view.units_held,
        exchanges: view.exchanges_in_flight,
        draining: view.draining,
        drained: view.drained,
    }
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

    #[test]
    fn a_worker_view_keeps_what_a_scale_down_chooses_by() {
        let view = proto::WorkerView {
            worker: "thumbs-cpu-2".into(),
            pool: "cpu".into(),
            units_held: 2,
            exchanges_in_flight: 5,
            draining: true,
            drained: false,
            silent_seconds: 1.5,
        };
        let seen = from_view(&view);
        assert_eq!((seen.name.as_str(), seen.pool.as_str()), ("thumbs-cpu-2", "cpu"));
        assert_eq!((seen.units_held, seen.exchanges, seen.draining, seen.drained), (2, 5, true, false));
    }
}
