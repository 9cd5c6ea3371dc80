//! A worker of a non-leasing pool: serves its steps to the leasing workers over Arrow Flight and
//! heartbeats its load to the coordinator.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{WorkerError, WorkerExit, WorkerOptions, connect};
use crate::exchange::server_bind as bind;
use crate::exchange::{StepServer, serve_steps};
use crate::proto;
use crate::retry::{Backoff, retry_rpc};

/// How a worker of a non-leasing pool serves its steps.
pub struct ServeOptions {
    /// Where to listen for exchanges.
    pub listen: std::net::SocketAddr,
    /// The URL other workers reach it at (default `http://<bound address>`).
    pub advertise: Option<String>,
}

/// Serves this worker's pool's steps to the leasing workers until the job ends or `shutdown`;
/// exchanges in progress finish first.
///
/// # Errors
/// [`WorkerError`] when the coordinator's address is unusable or the listener cannot be bound.
pub async fn serve_pool(
    server: StepServer,
    options: WorkerOptions,
    serve: ServeOptions,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerError> {
    let client = connect(&options.coordinator)?;
    let (listener, bound) = bind(serve.listen).await.map_err(|e| WorkerError::Bind(serve.listen, e))?;
    let endpoint = serve.advertise.clone().unwrap_or_else(|| format!("http://{bound}"));
    let load = server.load();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(serve_steps(server, listener, stop.clone()));
    eprintln!("weir worker {}: serving {} steps on {endpoint}", options.id, options.pool);
    let register = proto::RegisterRequest {
        worker: options.id.clone(),
        pool: options.pool.clone(),
        capacity: options.capacity as u32,
        exchange_endpoint: endpoint.clone(),
    };
    let timing = retry_rpc(&shutdown, Backoff::patient(), || {
        let mut client = client.clone();
        let register = register.clone();
        async move { client.register(register).await }
    })
    .await;
    let every = timing.map_or(Duration::from_secs(1), |t| Duration::from_millis(t.heartbeat_interval_ms.max(50)));
    let mut exit = WorkerExit::Drained;
    while !shutdown.is_cancelled() {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let request = proto::HeartbeatRequest {
            worker: options.id.clone(),
            held: Vec::new(),
            pool: options.pool.clone(),
            exchange_endpoint: endpoint.clone(),
            exchanges_in_flight: load.load(std::sync::atomic::Ordering::Relaxed),
        };
        match client.clone().heartbeat(request).await.map(tonic::Response::into_inner) {
            Ok(proto::HeartbeatResponse { ended: Some(ended), .. }) => {
                exit = WorkerExit::JobEnded { succeeded: ended.succeeded, message: ended.message };
                break;
            }
            Ok(_) => {}
            Err(status) => eprintln!("weir worker {}: heartbeat failed: {}", options.id, status.message()),
        }
    }
    stop.cancel();
    if let Ok(Err(e)) = serving.await {
        eprintln!("weir worker {}: exchange server: {e}", options.id);
    }
    Ok(exit)
}
