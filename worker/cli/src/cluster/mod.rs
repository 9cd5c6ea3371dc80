//! The distributed roles of the `weir` binary: `weir coordinator`, `weir worker`, the local
//! supervisor behind `weir run --workers`, and `weir status`.

pub mod status;
pub mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_cluster::coordinator::{Coordinator, CoordinatorError, CoordinatorOptions, JobOutcome, bind};
use weir_cluster::metrics::{WorkerMetrics, serve_metrics};
use weir_cluster::worker::{WorkerError, WorkerExit, WorkerOptions, WorkerSetup, run_worker};
use weir_core::budget::detect_memory_limit;
use weir_core::{ComputePool, ErrorHandling, MemoryBudget};
use weir_crds::{MultimodalJob, RowErrorAction};
use weir_io::source;

use crate::plan::{PlanError, build_steps, stores_for};

/// Exit status of `weir coordinator` when the job failed (as opposed to the process failing):
/// a supervisor does not restart it.
pub const EXIT_JOB_FAILED: u8 = 3;

/// The job's name (`metadata.name`), or `job`.
pub fn job_name(job: &MultimodalJob) -> String {
    job.metadata.name.clone().unwrap_or_else(|| "job".into())
}

/// Runs the coordinator of `job` on `listen` until the job ends or `shutdown`.
///
/// # Errors
/// [`CoordinatorError::Failed`] when the job failed; other variants when the coordinator could
/// not run.
pub async fn coordinator(
    job: &MultimodalJob,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    options: CoordinatorOptions,
    shutdown: CancellationToken,
) -> Result<JobOutcome, CoordinatorError> {
    let stores = stores_for(&job.spec);
    let coordinator = Coordinator::start(&job_name(job), &job.spec, stores, options).await?;
    let (listener, addr) =
        bind(listen).await.map_err(|e| CoordinatorError::Failed(format!("binding {listen}: {e}")))?;
    let _metrics = match metrics {
        Some(at) => Some(
            MetricsServer::start(at, coordinator.metrics_renderer(), "coordinator")
                .await
                .map_err(|e| CoordinatorError::Failed(format!("binding {at}: {e}")))?,
        ),
        None => None,
    };
    coordinator.advertise(&format!("http://{addr}")).await?;
    eprintln!("weir coordinator: serving {} on {addr}", job_name(job));
    coordinator.serve(listener, shutdown).await
}

/// The `/metrics` endpoint of this process; stops when dropped.
struct MetricsServer {
    _stop: tokio_util::sync::DropGuard,
}

impl MetricsServer {
    async fn start(
        at: SocketAddr,
        render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
        who: &str,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(at).await?;
        eprintln!("weir {who}: metrics on http://{}/metrics", listener.local_addr()?);
        let stop = CancellationToken::new();
        tokio::spawn(serve_metrics(listener, render, stop.clone()));
        Ok(Self { _stop: stop.drop_guard() })
    }
}

/// Resources of one worker process.
#[derive(Debug, Clone, Default)]
pub struct WorkerResources {
    /// Compute threads; 0 = one per core.
    pub threads: usize,
    /// Memory budget; default a quarter of the memory limit, at most 2 GiB.
    pub memory_limit: Option<u64>,
    /// Where to serve `/metrics`.
    pub metrics: Option<SocketAddr>,
}

/// Why a worker process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerProcessError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("starting compute threads: {0}")]
    Threads(String),
    #[error("serving metrics: {0}")]
    Metrics(std::io::Error),
}

/// Builds `job`'s steps once (loading its models) and runs units leased from the coordinator.
///
/// # Errors
/// [`WorkerProcessError`] when a step cannot be built or the coordinator cannot be used.
pub async fn worker(
    job: &MultimodalJob,
    options: WorkerOptions,
    resources: WorkerResources,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerProcessError> {
    let spec = &job.spec;
    let stores = stores_for(spec);
    let steps = build_steps(spec, &stores).await?;
    let limit = resources.memory_limit.unwrap_or_else(default_memory_limit);
    let policy = spec.error_policy();
    let setup = WorkerSetup {
        reader: source::reader(&spec.source, stores.clone()),
        steps,
        budget: MemoryBudget::new(limit),
        compute: ComputePool::new(resources.threads).map_err(|e| WorkerProcessError::Threads(e.to_string()))?,
        errors: ErrorHandling {
            skip_rows: policy.on_row_error == RowErrorAction::Skip,
            max_error_ratio: policy.max_error_ratio,
        },
        sink: spec.sink.parquet.clone(),
        stores,
        metrics: Arc::new(WorkerMetrics::new(&job_name(job), &options.pool, &options.id)),
        stats: Arc::default(),
    };
    let _metrics = match resources.metrics {
        Some(at) => Some(
            MetricsServer::start(at, setup.metrics_renderer(), &format!("worker {}", options.id))
                .await
                .map_err(WorkerProcessError::Metrics)?,
        ),
        None => None,
    };
    Ok(run_worker(setup, options, shutdown).await?)
}

/// A quarter of the detected memory limit, at most 2 GiB (as `weir run`).
pub fn default_memory_limit() -> u64 {
    const CAP: u64 = 2 << 30;
    detect_memory_limit().map_or(CAP, |m| (m / 4).min(CAP))
}
