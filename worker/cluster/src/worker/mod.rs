//! The worker roles: lease units from the coordinator and run them ([`lease`]), or serve a
//! non-leasing pool's steps to the leasing workers ([`serve`]); what both share lives here: the
//! options, the errors, the client, and registering and heartbeating ([`Membership`]).

mod lease;
mod serve;

use std::time::Duration;
use weir_core::StatsMismatch;
use weir_crds::PoolName;

use tokio_util::sync::CancellationToken;
use weir_auth::JobSecret;

use crate::CoordinatorConn;
use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{self, JobEnded, UnitAttempt};
use crate::retry::{Backoff, retry_rpc};

pub use lease::{WorkerSetup, run_worker};
pub use serve::{ServeOptions, serve_pool};

/// Who this worker is and where its coordinator listens.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among the job's workers (a restarted worker may reuse its name).
    pub id: String,
    pub pool: PoolName,
    /// `host:port` (an `http://` or `https://` prefix is accepted; the connection is always TLS).
    pub coordinator: String,
    /// The job's secret: the token every call carries and the CA its servers are checked against.
    pub secret: JobSecret,
    /// Units held at once: one running, the next one already leased.
    pub capacity: usize,
    /// After SIGTERM, how long held units may take to finish before they are handed back.
    pub grace: Duration,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("coordinator `{endpoint}` unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("building the sink: {0}")]
    Sink(#[from] weir_io::StoreError),
    #[error("binding {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Stats(#[from] StatsMismatch),
}

/// Why the worker loop returned.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerExit {
    /// The coordinator said the job ended.
    JobEnded { succeeded: bool, message: String },
    /// Shutdown was requested, or the coordinator drained the worker (a scale-down); held units
    /// were finished or handed back.
    Drained,
}

/// A lazily connected client: calls fail with `Unavailable` while the coordinator is down, and
/// reconnect once it is back.
///
/// # Errors
/// When `endpoint` is not a URL.
pub fn connect(endpoint: &str, secret: &JobSecret) -> Result<CoordinatorConn, WorkerError> {
    let channel = secret
        .endpoint(endpoint)
        .map_err(|e| WorkerError::Unreachable { endpoint: endpoint.to_string(), message: e.to_string() })?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    Ok(CoordinatorClient::with_interceptor(channel, secret.bearer()))
}

/// A worker registered with its coordinator, heartbeating at the interval the coordinator gave.
struct Membership {
    client: CoordinatorConn,
    worker: String,
    pool: String,
    /// Where the worker serves its pool's steps; empty for a leasing worker.
    exchange_endpoint: String,
    every: Duration,
    /// Where each heartbeat's count of the pool's live workers goes (the process's share of the
    /// job's rate limits).
    share: std::sync::Arc<weir_core::share::Share>,
}

/// What the coordinator told a heartbeating worker that ends its membership.
#[derive(Debug)]
enum Told {
    /// The job ended, with this verdict.
    Ended(JobEnded),
    /// The worker was drained (a scale-down): it should exit.
    Drained,
}

/// What a worker reports at each heartbeat.
#[derive(Debug, Default)]
struct Holding {
    /// The units it holds: the heartbeat renews their leases.
    units: Vec<UnitAttempt>,
    /// Exchanges it is serving now (the coordinator routes to the least loaded).
    exchanges_in_flight: u32,
}

impl Membership {
    /// Registers with the coordinator, retrying while it is unreachable or restarting.
    ///
    /// # Errors
    /// [`WorkerError::Unreachable`] when the coordinator refuses the registration, or `shutdown`
    /// comes before it answers.
    async fn register(
        client: CoordinatorConn,
        options: &WorkerOptions,
        exchange_endpoint: String,
        shutdown: &CancellationToken,
    ) -> Result<Self, WorkerError> {
        let request = proto::RegisterRequest {
            worker: options.id.clone(),
            pool: options.pool.to_string(),
            capacity: options.capacity as u32,
            exchange_endpoint: exchange_endpoint.clone(),
        };
        let timing = retry_rpc(shutdown, Backoff::patient(), || {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.register(request).await }
        })
        .await
        .map_err(|status| WorkerError::Unreachable {
            endpoint: options.coordinator.clone(),
            message: status.message().to_string(),
        })?;
        Ok(Self {
            client,
            worker: options.id.clone(),
            pool: options.pool.to_string(),
            exchange_endpoint,
            every: Duration::from_millis(timing.heartbeat_interval_ms.max(50)),
            share: weir_core::share::pool_share().clone(),
        })
    }

    /// Heartbeats, reporting what `holding` says each time, until the coordinator answers that the
    /// job ended (its verdict) or that this worker was drained. Each revoked lease is logged and
    /// handed to `revoked`; a failed heartbeat is logged; the heartbeats go on.
    ///
    /// # Cancellation
    /// Never returns otherwise: drop the future (or abort its task) to stop. A heartbeat dropped in
    /// flight is harmless; the next one repeats it.
    async fn heartbeats(&self, holding: impl Fn() -> Holding, revoked: impl Fn(UnitAttempt)) -> Told {
        loop {
            tokio::time::sleep(self.every).await;
            let Holding { units, exchanges_in_flight } = holding();
            let request = proto::HeartbeatRequest {
                worker: self.worker.clone(),
                held: units,
                pool: self.pool.clone(),
                exchange_endpoint: self.exchange_endpoint.clone(),
                exchanges_in_flight,
            };
            match self.client.clone().heartbeat(request).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    if let Some(ended) = reply.ended {
                        // The coordinator counts this worker as told and may exit now.
                        return Told::Ended(ended);
                    }
                    if reply.drained {
                        // The coordinator has forgotten this worker: it holds and serves nothing.
                        return Told::Drained;
                    }
                    self.share.set_workers(reply.pool_workers);
                    for lost in reply.revoked {
                        let (unit, attempt) = (lost.unit, lost.attempt);
                        tracing::warn!(
                            worker = %self.worker,
                            unit,
                            attempt,
                            "lease of unit {unit} attempt {attempt} was revoked; its result will be discarded"
                        );
                        revoked(lost);
                    }
                }
                Err(status) => tracing::warn!(
                    worker = %self.worker,
                    pool = %self.pool,
                    "heartbeat failed: {}",
                    status.message()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;
    use weir_auth::JobSecret;
    use weir_io::StoreRegistry;

    use super::*;
    use crate::coordinator::{Coordinator, CoordinatorOptions, bind};

    #[tokio::test]
    async fn each_heartbeat_tells_the_worker_how_many_of_its_pool_share_the_rate_limits() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("in")).expect("mkdir");
        std::fs::write(dir.path().join("in/a.txt"), b"x").expect("write");
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source: {{files: {{uri: \"{0}/in/\"}}}}\n  steps: [{{op: download, input: uri, output: bytes}}]\n  sink: {{parquet: {{uri: \"{0}/out/\"}}}}\n",
            dir.path().display()
        );
        let job = weir_crds::parse_manifest(&text, "test").expect("manifest");
        let options = CoordinatorOptions { heartbeat: Duration::from_millis(50), ..CoordinatorOptions::default() };
        let coordinator =
            Coordinator::start("t", &job.spec, Arc::new(StoreRegistry::default()), options).await.expect("start");
        let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let (stop, secret) = (CancellationToken::new(), JobSecret::generate("t").expect("secret"));
        let served = tokio::spawn(coordinator.serve(listener, secret.clone(), stop.clone()));

        let mut members = Vec::new();
        for id in ["cpu-0", "cpu-1", "cpu-2"] {
            let worker = WorkerOptions {
                id: id.into(),
                pool: weir_crds::PoolName::cpu(),
                coordinator: addr.to_string(),
                secret: secret.clone(),
                capacity: 1,
                grace: Duration::from_secs(1),
            };
            let client = connect(&addr.to_string(), &secret).expect("connect");
            let mut member = Membership::register(client, &worker, String::new(), &stop).await.expect("register");
            member.share = weir_core::share::Share::new();
            members.push(member);
        }
        let share = members[0].share.clone();
        assert_eq!(share.workers(), 1, "alone until a heartbeat says otherwise");
        // Heartbeats go on until dropped: one interval and a margin is enough for a reply.
        let beats = members[0].heartbeats(Holding::default, |_| {});
        let _ = tokio::time::timeout(Duration::from_millis(400), beats).await;
        assert_eq!(share.workers(), 3, "three live cpu workers take a third each");
        stop.cancel();
        let _ = served.await;
    }
}
