//! The coordinator: plans a job's units once, leases them to workers, commits the first finished
//! attempt of each unit to the checkpoint store, and finalizes the output.
//!
//! # Guarantees
//! - Every unit of the plan is committed exactly once (the checkpoint store arbitrates between
//!   attempts, and between coordinators should two ever run).
//! - A restarted coordinator reloads the stored plan and the committed units, and continues; it
//!   takes a new epoch, so its attempts never reuse an earlier attempt's file names.
//! - The job succeeded when `_SUCCESS` exists beside the output: by then the manifest is written and
//!   the files of losing or abandoned attempts are deleted.

pub mod embedded;
mod finalize;
pub mod publish;
mod service;
mod state;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_auth::JobSecret;
use weir_checkpoint::{CheckpointError, CheckpointStore};
use weir_core::WorkUnit;
use weir_crds::MultimodalJobSpec;
use weir_io::source::{self, SourceError};
use weir_io::{StoreError, StoreRegistry};

pub use finalize::{SUCCESS_MARKER, success_exists};
use state::{JobState, Verdict};

use crate::convert::{unit_from_proto, unit_to_proto};
use crate::leases::UnitTable;
use crate::metrics::CoordinatorMetrics;
use crate::proto;
use crate::proto::coordinator_server::CoordinatorServer;

/// Lease timing and limits of a coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// A lease not renewed for this long expires and its unit is leased again.
    pub lease_ttl: Duration,
    /// How often workers renew their leases.
    pub heartbeat: Duration,
    /// A unit that fails this many times fails the job.
    pub max_failures: u32,
    /// After the job ends, how long to keep answering workers so they learn it ended.
    pub linger: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            max_failures: 4,
            linger: Duration::from_secs(3),
        }
    }
}

/// Why a coordinator could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the stored plan is unreadable: {0}")]
    Plan(String),
    #[error("writing `{uri}`: {source}")]
    Write { uri: String, source: object_store::Error },
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("job failed: {0}")]
    Failed(String),
    #[error("verifying committed files: {0}")]
    Verify(#[from] crate::verify::VerifyError),
}

impl CoordinatorError {
    /// Whether trying again may succeed: storage that may come back. Everything else (an
    /// unresolvable URI, a corrupt record or plan) recurs on every try.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Checkpoint(e) => e.is_transient(),
            Self::Write { .. } | Self::Verify(_) | Self::Serve(_) => true,
            Self::Store(_) | Self::Source(_) | Self::Plan(_) | Self::Failed(_) => false,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub status: proto::JobStatus,
    /// The output was complete before this coordinator started.
    pub already_complete: bool,
}

/// A job's coordinator, shared by its gRPC service and its housekeeping loop.
#[derive(Clone)]
pub struct Coordinator {
    shared: Arc<Shared>,
}

struct Shared {
    job: String,
    spec: MultimodalJobSpec,
    stores: Arc<StoreRegistry>,
    checkpoint: CheckpointStore,
    options: CoordinatorOptions,
    /// The plan, indexed by unit id.
    units: Vec<WorkUnit>,
    started: Instant,
    state: Mutex<JobState>,
    /// Cancelled when the job has ended (succeeded or failed).
    ended: CancellationToken,
    /// Signalled when every unit is committed.
    all_committed: tokio::sync::Notify,
}

impl Coordinator {
    /// Opens the job's checkpoint, takes a new epoch, plans the units (or reloads the stored plan)
    /// and loads the committed units.
    ///
    /// # Errors
    /// When the checkpoint or source cannot be read, or the source has nothing to read.
    pub async fn start(
        job: &str,
        spec: &MultimodalJobSpec,
        stores: Arc<StoreRegistry>,
        options: CoordinatorOptions,
    ) -> Result<Self, CoordinatorError> {
        let location = stores.resolve(&spec.checkpoint_uri())?;
        let checkpoint = CheckpointStore::new(location.store.clone(), location.path.clone());
        let already_complete = finalize::success_exists(spec, &stores).await?;
        let (units, epoch, committed) = if already_complete {
            (Vec::new(), 0, Default::default())
        } else {
            let epoch = checkpoint.begin_epoch().await?;
            let units = load_or_create_plan(spec, &stores, &checkpoint).await?;
            (units, epoch, checkpoint.committed().await?)
        };
        let ids: BTreeSet<u64> = committed.keys().copied().collect();
        let mut lease_order: Vec<&WorkUnit> = units.iter().collect();
        lease_order.sort_by_key(|u| u.lease_order());
        let table = UnitTable::new(lease_order.iter().map(|u| u.id), &ids, epoch, options.lease_ttl)
            .with_max_failures(options.max_failures);
        let rows_total = units.iter().map(WorkUnit::rows).sum();
        let state = JobState::new(table, committed.into_values(), rows_total, epoch, already_complete);
        let shared = Shared {
            job: job.to_string(),
            spec: spec.clone(),
            stores,
            checkpoint,
            options,
            units,
            started: Instant::now(),
            state: Mutex::new(state),
            ended: CancellationToken::new(),
            all_committed: tokio::sync::Notify::new(),
        };
        let coordinator = Self { shared: Arc::new(shared) };
        if already_complete {
            coordinator.shared.ended.cancel();
        }
        Ok(coordinator)
    }

    /// Serves the gRPC API on `listener`, over TLS with the job's identity and only to callers
    /// presenting the job's token (others get `Unauthenticated`), and runs the job until it ends, then keeps answering for
    /// [`CoordinatorOptions::linger`] so workers learn that it ended.
    ///
    /// # Errors
    /// [`CoordinatorError::Failed`] when the job failed; errors of the server.
    ///
    /// # Cancellation
    /// Cancelling `shutdown` stops serving at once; committed units stay committed and a restarted
    /// coordinator continues from them.
    pub async fn serve(
        self,
        listener: TcpListener,
        secret: JobSecret,
        shutdown: CancellationToken,
    ) -> Result<JobOutcome, CoordinatorError> {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let stop = CancellationToken::new();
        let service = CoordinatorServer::with_interceptor(self.clone(), secret.authenticator());
        let server = tonic::transport::Server::builder()
            .tls_config(secret.server_tls())?
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        let server = tokio::spawn(server);
        let _stop_server = stop.clone().drop_guard();
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.drive() => {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(self.shared.options.linger) => {}
                    () = self.workers_told() => {}
                }
            }
        }
        stop.cancel();
        // Shutting down gracefully waits for open calls; a frozen client (a SIGSTOPped worker
        // mid-call) would hold it forever, so it gets a bound. Nothing is left to decide by then.
        let mut server = server;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(joined) => joined.map_err(|e| CoordinatorError::Failed(format!("server task: {e}")))??,
            Err(_) => {
                tracing::warn!(job = %self.shared.job, "calls still open {SHUTDOWN_GRACE:?} after the end; closing them");
                server.abort();
            }
        }
        let status = self.status();
        if status.phase == proto::Phase::Failed as i32 {
            return Err(CoordinatorError::Failed(status.message));
        }
        let already_complete = self.lock().already_complete;
        Ok(JobOutcome { status, already_complete })
    }

    /// Expires leases and finalizes when every unit is committed; returns when the job ended.
    async fn drive(&self) {
        let tick = (self.shared.options.lease_ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            if self.shared.ended.is_cancelled() {
                return;
            }
            if self.lock().all_committed() {
                self.finalize().await;
                continue;
            }
            tokio::select! {
                () = self.shared.ended.cancelled() => return,
                () = self.shared.all_committed.notified() => {}
                () = tokio::time::sleep(tick) => self.expire_leases(),
            }
        }
    }

    /// Returns once every live worker has been told that the job ended.
    async fn workers_told(&self) {
        while !self.lock().everyone_told() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn expire_leases(&self) {
        let expired = self.lock().expire(Instant::now());
        for (unit, attempt, worker) in expired {
            tracing::warn!(
                job = %self.shared.job,
                unit,
                attempt,
                worker = %worker,
                "lease of unit {unit} attempt {attempt} on {worker} expired; leasing it again"
            );
        }
    }

    /// Verifies the committed files, writes the manifest, deletes orphan files and writes the
    /// success marker, retrying transient storage errors; ends the job, or reopens the units whose
    /// files were missing or changed. A permanent error fails the job with its message.
    async fn finalize(&self) {
        self.lock().set_finalizing();
        // No attempt is admitted once finalizing; wait for those admitted before to finish
        // publishing (or lose), so nothing lands in the output after the marker.
        while self.lock().publishing() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut delay = Duration::from_millis(200);
        loop {
            match finalize::finalize(
                &self.shared.spec,
                &self.shared.stores,
                &self.shared.checkpoint,
                self.shared.units.len() as u64,
            )
            .await
            {
                Ok(verdict) => {
                    let redo = matches!(verdict, Verdict::Redo(_));
                    self.lock().end(verdict);
                    if !redo {
                        self.shared.ended.cancel();
                    }
                    return;
                }
                Err(e) if !e.is_transient() => {
                    self.lock().end(Verdict::Failed(format!("finalizing: {e}")));
                    self.shared.ended.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %self.shared.job, "finalizing: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The job's progress now.
    pub fn status(&self) -> proto::JobStatus {
        let elapsed = self.shared.started.elapsed();
        self.lock().status(&self.shared.job, elapsed)
    }

    /// Renders the coordinator's metrics as of now, for `/metrics`.
    pub fn metrics_renderer(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let coordinator = self.clone();
        let metrics = Arc::new(CoordinatorMetrics::new(&self.shared.job));
        Arc::new(move || {
            let status = coordinator.status();
            let pools = coordinator.lock().workers_by_pool();
            metrics.sync(&status, &pools);
            metrics.render()
        })
    }

    /// Cancelled once the job has ended.
    pub fn ended(&self) -> CancellationToken {
        self.shared.ended.clone()
    }

    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn max_error_ratio(&self) -> Option<f64> {
        self.shared.spec.error_policy().error_ratio_limit()
    }

    /// Records where this coordinator listens, for `weir status`, and the folder its secret was read
    /// from (a path, never the secret: a `weir status` of the same user on the same machine reads
    /// it there; anyone else cannot).
    ///
    /// # Errors
    /// When the checkpoint store cannot be written.
    pub async fn advertise(&self, endpoint: &str, secret_dir: Option<&str>) -> Result<(), CoordinatorError> {
        let body = serde_json::json!({
            "endpoint": endpoint,
            "pid": std::process::id(),
            "epoch": self.lock().epoch(),
            "secretDir": secret_dir,
        });
        self.shared.checkpoint.put_note(ENDPOINT_NOTE, Bytes::from(format!("{body}\n"))).await?;
        Ok(())
    }
}

/// How long the server waits for open calls once the coordinator stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The checkpoint note naming the running coordinator's endpoint.
pub const ENDPOINT_NOTE: &str = "coordinator.json";

/// Binds the coordinator's listener on `addr` (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The stored plan, or a new plan of the source stored as the plan (whichever coordinator stores
/// first wins, so concurrent coordinators agree).
///
/// # Errors
/// [`CoordinatorError::Plan`] when the stored plan is cut short, altered, or not 0..n.
async fn load_or_create_plan(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
    checkpoint: &CheckpointStore,
) -> Result<Vec<WorkUnit>, CoordinatorError> {
    let planned = source::plan(&spec.source, stores.clone()).await?;
    let plan = sealed_plan(planned.units.iter().map(unit_to_proto).collect());
    let stored = checkpoint.create_plan(Bytes::from(plan.encode_to_vec())).await?;
    let plan = open_plan(&stored)?;
    let mut units: Vec<WorkUnit> =
        plan.units.into_iter().map(unit_from_proto).collect::<Result<_, _>>().map_err(CoordinatorError::Plan)?;
    units.sort_by_key(|u| u.id);
    if units.iter().enumerate().any(|(i, u)| u.id != i as u64) {
        return Err(CoordinatorError::Plan("unit ids are not 0..n".into()));
    }
    Ok(units)
}

/// A plan of `units` with its unit count and checksum. The checksum fields come after the units
/// on the wire, so a plan cut short anywhere loses them (or fails to decode).
fn sealed_plan(units: Vec<proto::Unit>) -> proto::Plan {
    let checksum = plan_checksum(&units);
    proto::Plan { unit_count: units.len() as u64, units, checksum }
}

fn plan_checksum(units: &[proto::Unit]) -> Vec<u8> {
    use sha2::Digest;
    let bare = proto::Plan { units: units.to_vec(), unit_count: 0, checksum: Vec::new() };
    sha2::Sha256::digest(bare.encode_to_vec()).to_vec()
}

/// The stored plan, checked against its unit count and checksum.
fn open_plan(stored: &[u8]) -> Result<proto::Plan, CoordinatorError> {
    let plan = proto::Plan::decode(stored).map_err(|e| CoordinatorError::Plan(e.to_string()))?;
    if plan.checksum.is_empty() {
        return Err(CoordinatorError::Plan(format!(
            "it has no checksum ({} bytes, {} units read): it was cut short, or written by an older weir",
            stored.len(),
            plan.units.len()
        )));
    }
    if plan.unit_count != plan.units.len() as u64 {
        return Err(CoordinatorError::Plan(format!(
            "it holds {} units but says {}: it was cut short or altered",
            plan.units.len(),
            plan.unit_count
        )));
    }
    if plan.checksum != plan_checksum(&plan.units) {
        return Err(CoordinatorError::Plan("its checksum does not match its units: it was altered".into()));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: u64) -> proto::Plan {
        let units = (0..n)
            .map(|id| proto::Unit {
                id,
                attempt: 0,
                input: Some(proto::unit::Input::Files(proto::Files {
                    entries: vec![proto::FileEntry { uri: format!("file:///in/{id}.jpg"), size: 10 }],
                })),
            })
            .collect();
        sealed_plan(units)
    }

    #[test]
    fn a_sealed_plan_opens() {
        let bytes = plan(5).encode_to_vec();
        assert_eq!(open_plan(&bytes).expect("open").units.len(), 5);
    }

    #[test]
    fn a_plan_cut_at_any_unit_boundary_or_byte_is_refused() {
        let whole = plan(5);
        let bytes = whole.encode_to_vec();
        let one_unit = proto::Plan { units: whole.units[..1].to_vec(), ..Default::default() }.encoded_len();
        for cut in [one_unit, 2 * one_unit, bytes.len() - 1, bytes.len() / 2] {
            let error = open_plan(&bytes[..cut]).expect_err("cut plan refused");
            assert!(matches!(error, CoordinatorError::Plan(_)), "{error}");
        }
    }

    #[test]
    fn an_altered_plan_is_refused() {
        let mut altered = plan(3);
        if let Some(proto::unit::Input::Files(files)) = altered.units[1].input.as_mut() {
            files.entries[0].uri = "file:///etc/passwd".into();
        }
        let error = open_plan(&altered.encode_to_vec()).expect_err("altered plan refused");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
