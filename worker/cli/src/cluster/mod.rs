//! The distributed roles of the `weir` binary: `weir coordinator`, `weir worker`, the local
//! supervisor behind `weir run --workers`, and `weir status`.

mod autoscale;
pub mod status;
pub mod supervise;
mod topology;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weir_auth::JobSecret;
use weir_cluster::coordinator::{Coordinator, CoordinatorError, CoordinatorOptions, JobOutcome, bind};
use weir_cluster::exchange::{CoordinatorLeases, RemoteStep, Router, StepServer};
use weir_cluster::metrics::{WorkerMetrics, serve_metrics};
use weir_cluster::placement::{leasing_pool, pools_in_use, step_pools};
use weir_cluster::worker::{
    ServeOptions, WorkerError, WorkerExit, WorkerOptions, WorkerSetup, connect, run_worker, serve_pool,
};
use weir_core::step::CoveredStep;
use weir_core::{ComputePool, Step, StepContext};
use weir_crds::{MultimodalJob, MultimodalJobSpec, PoolName};

use crate::plan::{JobPlan, PlanError, job_name, stores_for};

/// Exit status of `weir coordinator` when the job failed (as opposed to the process failing):
/// a supervisor does not restart it.
pub const EXIT_JOB_FAILED: u8 = 3;

/// Runs the coordinator of `job` on `listen` until the job ends or `shutdown`.
///
/// # Errors
/// [`CoordinatorError::Failed`] when the job failed; other variants when the coordinator could
/// not run.
pub async fn coordinator(
    job: &MultimodalJob,
    secret: &JobSecret,
    secret_dir: &std::path::Path,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    options: CoordinatorOptions,
    shutdown: CancellationToken,
) -> Result<JobOutcome, CoordinatorError> {
    let stores = stores_for(&job.spec);
    let name = job_name(job);
    let coordinator = Coordinator::start(&name, &job.spec, stores, options).await?;
    let (listener, addr) =
        bind(listen).await.map_err(|e| CoordinatorError::Failed(format!("binding {listen}: {e}")))?;
    let _metrics = match metrics {
        Some(at) => {
            let server = MetricsServer::start(at, coordinator.metrics_renderer())
                .await
                .map_err(|e| CoordinatorError::Failed(format!("binding {at}: {e}")))?;
            tracing::info!(job = %name, "metrics on {}", server.url);
            Some(server)
        }
        None => None,
    };
    let secret_dir = std::fs::canonicalize(secret_dir).unwrap_or_else(|_| secret_dir.to_path_buf());
    coordinator.advertise(&format!("https://{addr}"), secret_dir.to_str()).await?;
    tracing::info!(job = %name, "serving {name} on {addr} (TLS, job token required)");
    coordinator.serve(listener, secret.clone(), shutdown).await
}

/// The `/metrics` endpoint of this process; stops when dropped.
pub(crate) struct MetricsServer {
    /// Where it listens, e.g. `http://127.0.0.1:9090/metrics`.
    pub(crate) url: String,
    _stop: tokio_util::sync::DropGuard,
    /// The server's task, aborted on drop (with its connections) should it be mid-response.
    _task: JoinSet<()>,
}

impl MetricsServer {
    /// Binds `at` and serves `render`'s text there.
    pub(crate) async fn start(
        at: SocketAddr,
        render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(at).await?;
        let url = format!("http://{}/metrics", listener.local_addr()?);
        let stop = CancellationToken::new();
        let mut task = JoinSet::new();
        task.spawn(serve_metrics(listener, render, stop.clone()));
        Ok(Self { url, _stop: stop.drop_guard(), _task: task })
    }
}

/// Resources of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerResources {
    /// Compute threads; 0 = one per core.
    pub threads: usize,
    /// Memory budget; default a quarter of the memory limit, at most 2 GiB.
    pub memory_limit: Option<u64>,
    /// Where to serve `/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Where a worker of a non-leasing pool serves its steps over Arrow Flight.
    pub exchange_listen: SocketAddr,
    /// The address other workers reach it at (default: the bound address; always TLS).
    pub exchange_advertise: Option<String>,
    /// Morsels a leasing worker keeps in flight to each other pool (default: two per worker that
    /// pool may grow to, its `replicas.max`, so a grown pool has work for every worker).
    pub exchange_in_flight: Option<usize>,
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
    /// The worker was started for a pool no step of the job runs on.
    #[error("--pool: no step of this job runs on pool `{pool}`; its pools: {}", list(pools))]
    NotInJob { pool: PoolName, pools: Vec<PoolName> },
}

/// Builds the steps of this worker's pool once (loading their models) and either runs units
/// leased from the coordinator (the leasing pool: other pools' steps become remote steps) or serves
/// its steps to the leasing workers over Arrow Flight.
///
/// # Errors
/// [`WorkerProcessError`] when a step cannot be built or the coordinator cannot be used.
pub async fn worker(
    job: &MultimodalJob,
    options: WorkerOptions,
    resources: WorkerResources,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerProcessError> {
    let started = std::time::Instant::now();
    let plan = JobPlan::new(job, resources.memory_limit);
    let spec = &plan.spec;
    let pools = step_pools(spec);
    let mine = options.pool.clone();
    let in_use = pools_in_use(spec);
    if !in_use.contains(&mine) {
        return Err(WorkerProcessError::NotInJob { pool: mine, pools: in_use });
    }
    let built = plan.steps_where(|i| pools.get(i) == Some(&mine)).await?;
    let compute = ComputePool::new(resources.threads).map_err(|e| WorkerProcessError::Threads(e.to_string()))?;
    let metrics = WorkerMetrics::new(&plan.name, options.pool.as_str(), &options.id);
    // Ready: the steps are built and their models loaded (registration follows at once).
    metrics.ready(started.elapsed().as_secs_f64());
    if mine != leasing_pool(spec) {
        let steps: HashMap<usize, Arc<dyn Step>> =
            built.into_iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s))).collect();
        let leases = CoordinatorLeases::new(connect(&options.coordinator, &options.secret)?);
        let server = StepServer::new(steps, StepContext::new(compute), Arc::new(leases));
        let (metrics, stats, budget) = (Arc::new(metrics), server.stats(), plan.budget.clone());
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
            metrics.sync(&stats, &budget);
            metrics.render()
        });
        let _metrics = serve_metrics_at(resources.metrics, render, &job_name(job), &options).await?;
        let serve = ServeOptions { listen: resources.exchange_listen, advertise: resources.exchange_advertise };
        return Ok(serve_pool(server, options, serve, shutdown).await?);
    }
    let coordinator = connect(&options.coordinator, &options.secret)?;
    let local: Vec<bool> = built.iter().map(Option::is_some).collect();
    let in_flight = |pool: &PoolName| resources.exchange_in_flight.unwrap_or_else(|| exchange_in_flight(spec, pool));
    let steps = with_remote_segments(spec, built, &pools, |pool| {
        let router = Router::new(coordinator.clone(), &options.id, pool.as_str(), options.secret.clone());
        (Arc::new(router), in_flight(pool))
    });
    let setup = WorkerSetup {
        reader: plan.reader.clone(),
        steps,
        budget: plan.budget.clone(),
        compute,
        errors: plan.errors,
        sink: plan.sink.clone(),
        metrics: Arc::new(metrics.with_local_steps(local)),
        stats: Arc::default(),
    };
    let _metrics = serve_metrics_at(resources.metrics, setup.metrics_renderer(), &job_name(job), &options).await?;
    Ok(run_worker(setup, options, shutdown).await?)
}

/// Serves a worker's `/metrics` at `at`, if given, until the returned server is dropped.
async fn serve_metrics_at(
    at: Option<SocketAddr>,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    job: &str,
    options: &WorkerOptions,
) -> Result<Option<MetricsServer>, WorkerProcessError> {
    let Some(at) = at else { return Ok(None) };
    let server = MetricsServer::start(at, render).await.map_err(WorkerProcessError::Metrics)?;
    let (worker, pool) = (&options.id, &options.pool);
    tracing::info!(job = %job, worker = %worker, pool = %pool, "metrics on {}", server.url);
    Ok(Some(server))
}

/// Morsels in flight to `pool` by default: [`REMOTE_MORSELS_IN_FLIGHT`] per worker it may grow to.
fn exchange_in_flight(spec: &MultimodalJobSpec, pool: &PoolName) -> usize {
    let max = spec.pools.as_ref().and_then(|p| p.get(pool)).and_then(|p| p.replicas).map_or(1, |r| r.max.max(1));
    REMOTE_MORSELS_IN_FLIGHT * max as usize
}

/// The leasing worker's steps: its own, and each run of consecutive steps of another pool as one
/// [`RemoteStep`] (one exchange per morsel for the whole run) followed by [`CoveredStep`]s that keep
/// the run's later steps in their places.
fn with_remote_segments(
    spec: &MultimodalJobSpec,
    built: Vec<Option<Arc<dyn Step>>>,
    pools: &[PoolName],
    router: impl Fn(&PoolName) -> (Arc<Router>, usize),
) -> Vec<Arc<dyn Step>> {
    let mut steps: Vec<Arc<dyn Step>> = Vec::with_capacity(built.len());
    let mut built = built.into_iter().enumerate().peekable();
    while let Some((first, step)) = built.next() {
        if let Some(step) = step {
            steps.push(step);
            continue;
        }
        let pool = pools.get(first).cloned().unwrap_or_else(|| leasing_pool(spec));
        let mut last = first;
        while let Some((i, None)) = built.peek()
            && pools.get(*i) == Some(&pool)
        {
            last = *i;
            built.next();
        }
        let (router, in_flight) = router(&pool);
        let remote = RemoteStep::new(first..=last, spec.steps[first].op(), router, in_flight);
        steps.push(Arc::new(remote));
        steps.extend((first + 1..=last).map(|i| Arc::new(CoveredStep::new(spec.steps[i].op())) as Arc<dyn Step>));
    }
    steps
}

/// Morsels a remote step keeps in flight per worker of the remote pool: one being processed by the
/// peer while the next travels.
const REMOTE_MORSELS_IN_FLIGHT: usize = 2;

fn list(pools: &[PoolName]) -> String {
    pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ")
}
