//! Talking to a job's coordinator: its progress (Status), its workers (Workers) and drains (Drain),
//! over TLS that trusts only the job's CA, with the job's token on every call.

use std::time::Duration;

use futures::future::BoxFuture;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use weir_auth::{Bearer, JobSecret};

use crate::decide::{CoordinatorProgress, WorkerSeen};

/// The coordinator's gRPC client (generated from `worker/cluster/proto/coordinator.proto`).
#[allow(clippy::doc_markdown, missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("weir.coordinator.v1");
}

/// How long one progress read may take before the operator goes on without it.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(3);

/// A job's coordinator as the operator dials it. `Debug` shows the address only: the secret's
/// own `Debug` redacts its token and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinator {
    /// `host:port` (`ip:port` of the coordinator's pod).
    pub address: String,
    /// The job's secret: the CA its TLS is checked against and the token every call carries.
    pub secret: JobSecret,
}

/// The coordinator as the operator sees it; tests substitute their own.
///
/// # Errors
/// None of these fails the reconcile: what cannot be read in [`PROGRESS_TIMEOUT`] is `None` (the
/// decisions that need it hold), and a failed drain is asked again at the next reconcile.
pub trait ProgressSource: Send + Sync {
    /// Progress of `coordinator`, or `None` when it cannot be read in time.
    fn read(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<CoordinatorProgress>>;
    /// The workers the coordinator knows, or `None` when it cannot be asked in time.
    fn workers(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<Vec<WorkerSeen>>>;
    /// Asks the coordinator to drain `worker` (a pod name): it leases and routes it nothing more.
    /// `Ok(false)` when the coordinator does not know it (gone already, or never registered).
    /// Repeating it is harmless.
    fn drain(&self, coordinator: Coordinator, worker: String) -> BoxFuture<'static, Result<bool, String>>;
}

/// Asks the coordinator over gRPC, with TLS and the job's token.
pub struct GrpcProgress;

impl ProgressSource for GrpcProgress {
    fn read(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<CoordinatorProgress>> {
        Box::pin(async move {
            let address = coordinator.address.clone();
            match tokio::time::timeout(PROGRESS_TIMEOUT, ask(coordinator)).await {
                Ok(Ok(progress)) => Some(progress),
                Ok(Err(e)) => {
                    tracing::debug!(%address, error = %e, "coordinator status not available");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn workers(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<Vec<WorkerSeen>>> {
        Box::pin(async move {
            let address = coordinator.address.clone();
            let asked = async {
                let answer = client(coordinator).await?.workers(proto::WorkersRequest {}).await?;
                Ok::<_, BoxError>(answer.into_inner().workers.iter().map(from_view).collect())
            };
            match tokio::time::timeout(PROGRESS_TIMEOUT, asked).await {
                Ok(Ok(workers)) => Some(workers),
                Ok(Err(e)) => {
                    tracing::debug!(%address, error = %e, "coordinator workers not available");
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn drain(&self, coordinator: Coordinator, worker: String) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async move {
            let asked = async {
                let request = proto::DrainRequest { worker };
                Ok::<_, BoxError>(client(coordinator).await?.drain(request).await?.into_inner().known)
            };
            match tokio::time::timeout(PROGRESS_TIMEOUT, asked).await {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {PROGRESS_TIMEOUT:?}")),
            }
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Client = proto::coordinator_client::CoordinatorClient<InterceptedService<Channel, Bearer>>;

async fn client(coordinator: Coordinator) -> Result<Client, BoxError> {
    let channel = coordinator
        .secret
        .endpoint(&coordinator.address)?
        .connect_timeout(PROGRESS_TIMEOUT)
        .timeout(PROGRESS_TIMEOUT)
        .connect()
        .await?;
    Ok(proto::coordinator_client::CoordinatorClient::with_interceptor(channel, coordinator.secret.bearer()))
}

async fn ask(coordinator: Coordinator) -> Result<CoordinatorProgress, BoxError> {
    let status = client(coordinator).await?.status(proto::StatusRequest {}).await?.into_inner();
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
    use std::collections::BTreeMap;

    use super::*;

    /// A coordinator that answers Status, over the job's TLS, to callers with the job's token.
    struct Answers;

    #[tonic::async_trait]
    impl proto::coordinator_server::Coordinator for Answers {
        async fn status(
            &self,
            _: tonic::Request<proto::StatusRequest>,
        ) -> Result<tonic::Response<proto::JobStatus>, tonic::Status> {
            let status =
                proto::JobStatus { units_total: 8, units_committed: 2, eta_seconds: -1.0, ..Default::default() };
            Ok(tonic::Response::new(status))
        }
    }

    /// Serves [`Answers`] on a free local port with `secret`; returns its address.
    async fn coordinator(secret: &JobSecret) -> (String, tokio::task::JoinHandle<()>) {
        // tonic's server TLS takes the process's provider, and this process links two.
        crate::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let service = proto::coordinator_server::CoordinatorServer::with_interceptor(Answers, secret.authenticator());
        let server = tonic::transport::Server::builder()
            .tls_config(secret.server_tls())
            .expect("server tls")
            .serve_with_incoming(service, tonic::transport::server::TcpIncoming::from(listener));
        let task = tokio::spawn(async move { server.await.expect("serve") });
        (address, task)
    }

    /// `secret` with another token: the job's CA, a stranger's credentials.
    fn with_token_of(secret: &JobSecret, other: &JobSecret) -> JobSecret {
        let mut data: BTreeMap<String, Vec<u8>> = secret.to_data();
        data.insert(weir_auth::TOKEN_KEY.into(), other.to_data()[weir_auth::TOKEN_KEY].clone());
        JobSecret::from_data(&data).expect("secret")
    }

    #[tokio::test]
    async fn the_operator_reads_a_coordinator_that_demands_the_jobs_token_over_tls() {
        let secret = JobSecret::generate("thumbs").expect("secret");
        let (address, server) = coordinator(&secret).await;
        let progress = GrpcProgress.read(Coordinator { address, secret }).await.expect("progress over TLS");
        assert_eq!((progress.units_total, progress.units_committed), (8, 2));
        server.abort();
    }

    #[tokio::test]
    async fn a_client_without_the_jobs_ca_or_token_reads_nothing() {
        let secret = JobSecret::generate("thumbs").expect("secret");
        let other = JobSecret::generate("other").expect("other");
        let (address, server) = coordinator(&secret).await;
        let stranger = Coordinator { address: address.clone(), secret: other.clone() };
        assert_eq!(GrpcProgress.read(stranger).await, None, "another job's CA does not trust this server");
        let guesser = Coordinator { address, secret: with_token_of(&secret, &other) };
        assert_eq!(GrpcProgress.read(guesser.clone()).await, None, "the server refuses another token");
        assert!(GrpcProgress.drain(guesser, "thumbs-cpu-0".into()).await.is_err());
        server.abort();
    }

    #[test]
    fn a_coordinators_debug_output_shows_its_address_but_not_the_token() {
        let secret = JobSecret::generate("thumbs").expect("secret");
        let token = String::from_utf8(secret.to_data()[weir_auth::TOKEN_KEY].clone()).expect("token");
        let shown = format!("{:?}", Coordinator { address: "10.0.0.7:7070".into(), secret });
        assert!(shown.contains("10.0.0.7:7070") && !shown.contains(&token), "{shown}");
    }

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
