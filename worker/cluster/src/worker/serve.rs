//! A worker of a non-leasing pool: serves its steps to the leasing workers over Arrow Flight and
//! heartbeats its load to the coordinator.

use std::sync::atomic::Ordering;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Holding, Membership, Told, WorkerError, WorkerExit, WorkerOptions, connect};
use crate::exchange::server_bind as bind;
use crate::exchange::{StepServer, serve_steps};

/// How a worker of a non-leasing pool serves its steps.
pub struct ServeOptions {
    /// Where to listen for exchanges.
    pub listen: std::net::SocketAddr,
    /// The address other workers reach it at (default the bound address; always dialled over TLS).
    pub advertise: Option<String>,
}

/// Serves this worker's pool's steps to the leasing workers until the job ends or `shutdown`;
/// exchanges in progress finish first.
///
/// # Errors
/// [`WorkerError`] when the coordinator's address is unusable, the listener cannot be bound, or
/// the coordinator refuses registration (or `shutdown` comes before it answers).
pub async fn serve_pool(
    server: StepServer,
    options: WorkerOptions,
    serve: ServeOptions,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerError> {
    let client = connect(&options.coordinator, &options.secret)?;
    let (listener, bound) = bind(serve.listen).await.map_err(|e| WorkerError::Bind(serve.listen, e))?;
    let endpoint = serve.advertise.clone().unwrap_or_else(|| format!("http://{bound}"));
    let load = server.load();
    let stop = CancellationToken::new();
    // Owned: dropping this future aborts the server; on the way out it is stopped and awaited.
    let mut serving = JoinSet::new();
    serving.spawn(serve_steps(server, listener, options.secret.clone(), stop.clone()));
    tracing::info!(worker = %options.id, pool = %options.pool, "serving {} steps on {endpoint}", options.pool);
    let exit = async {
        let membership = Membership::register(client, &options, endpoint, &shutdown).await?;
        let holding = || Holding { exchanges_in_flight: load.load(Ordering::Relaxed), ..Holding::default() };
        Ok(tokio::select! {
            () = shutdown.cancelled() => WorkerExit::Drained,
            told = membership.heartbeats(holding, |_| {}) => match told {
                Told::Ended(ended) => WorkerExit::JobEnded { succeeded: ended.succeeded, message: ended.message },
                Told::Drained => {
                    tracing::info!(worker = %options.id, pool = %options.pool, "drained; exiting");
                    WorkerExit::Drained
                }
            },
        })
    }
    .await;
    stop.cancel();
    if let Some(Ok(Err(e))) = serving.join_next().await {
        tracing::error!(worker = %options.id, pool = %options.pool, "exchange server: {e}");
    }
    exit
}
