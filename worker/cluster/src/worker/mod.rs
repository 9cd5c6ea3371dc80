//! The worker roles: lease units from the coordinator and run them ([`lease`]), or serve a
//! non-leasing pool's steps to the leasing workers ([`serve`]); what both share lives here.

mod lease;
mod serve;

use std::time::Duration;

use tonic::transport::Channel;

use crate::proto::coordinator_client::CoordinatorClient;

pub use lease::{WorkerSetup, run_worker};
pub use serve::{ServeOptions, serve_pool};

/// Who this worker is and where its coordinator listens.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among the job's workers (a restarted worker may reuse its name).
    pub id: String,
    pub pool: String,
    /// `http://host:port`.
    pub coordinator: String,
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
}

/// Why the worker loop returned.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerExit {
    /// The coordinator said the job ended.
    JobEnded { succeeded: bool, message: String },
    /// Shutdown was requested; held units were finished or handed back.
    Drained,
}

/// A lazily connected client: calls fail with `Unavailable` while the coordinator is down, and
/// reconnect once it is back.
///
/// # Errors
/// When `endpoint` is not a URL.
pub fn connect(endpoint: &str) -> Result<CoordinatorClient<Channel>, WorkerError> {
    let channel = Channel::from_shared(endpoint.to_string())
        .map_err(|e| WorkerError::Unreachable { endpoint: endpoint.to_string(), message: e.to_string() })?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    Ok(CoordinatorClient::new(channel))
}
