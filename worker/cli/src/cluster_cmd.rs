//! The `weir coordinator`, `weir worker`, `weir status` and `weir run --workers` commands: signal
//! handling and printing around the library's distributed roles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use weir::cluster::status::{job_status, one_line, to_json};
use weir::cluster::supervise::{ScaleSettings, SuperviseOptions, Topology, rate_window, supervise};
use weir::cluster::{EXIT_JOB_FAILED, WorkerResources};
use weir_auth::JobSecret;
use weir_autoscale::Policy;
use weir_cluster::coordinator::CoordinatorError;
use weir_cluster::proto::Phase;
use weir_cluster::{CoordinatorOptions, WorkerExit, WorkerOptions};
use weir_core::budget::default_memory_limit;
use weir_core::compute::available_cores;
use weir_crds::MultimodalJob;

use crate::{LogFormat, read_job};
use weir::size::parse_duration;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// A token cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        cancel.cancel();
    });
    token
}

/// `weir coordinator`: exit 0 when the job succeeded, [`EXIT_JOB_FAILED`] when it failed, 1 when
/// the coordinator itself failed (a supervisor restarts it then).
pub fn coordinator(
    manifest: PathBuf,
    secret_dir: &Path,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    options: CoordinatorOptions,
) -> ExitCode {
    let result = read_job(&manifest).and_then(|job| {
        let secret = JobSecret::load(secret_dir)?;
        runtime()?.block_on(async {
            let shutdown = shutdown_on_signals();
            Ok(weir::cluster::coordinator(&job, &secret, secret_dir, listen, metrics, options, shutdown).await)
        })
    });
    match result {
        Ok(Ok(outcome)) => {
            tracing::info!(job = %outcome.status.job, "{}", one_line(&outcome.status));
            ExitCode::SUCCESS
        }
        Ok(Err(CoordinatorError::Failed(message))) => {
            eprintln!("error: job failed: {message}");
            ExitCode::from(EXIT_JOB_FAILED)
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", weir::error_text(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `weir worker`: runs until the job ends or SIGTERM has drained it.
pub fn worker(manifest: PathBuf, options: WorkerOptions, resources: WorkerResources) -> Result<()> {
    let job = read_job(&manifest)?;
    let (id, pool) = (options.id.clone(), options.pool.clone());
    runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        match weir::cluster::worker(&job, options, resources, shutdown).await? {
            WorkerExit::JobEnded { succeeded, message } => {
                let verdict = if succeeded { "succeeded" } else { "failed" };
                tracing::info!(worker = %id, pool = %pool, succeeded, "job ended ({verdict}): {message}");
            }
            WorkerExit::Drained => tracing::info!(worker = %id, pool = %pool, "drained; exiting"),
        }
        Ok(())
    })
}

/// The default worker name: host name and process id.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "worker" } else { &host }, std::process::id())
}

/// `weir status`.
pub fn status(
    manifest: PathBuf,
    coordinator: Option<&str>,
    secret_dir: Option<&Path>,
    json: bool,
    watch: bool,
) -> Result<()> {
    let job = read_job(&manifest)?;
    let secret = secret_dir.map(JobSecret::load).transpose()?;
    if coordinator.is_some() && secret.is_none() {
        anyhow::bail!("--coordinator needs the job's secret: --secret-dir or WEIR_JOB_SECRET_DIR");
    }
    runtime()?.block_on(async {
        loop {
            let status = job_status(&job, coordinator, secret.as_ref()).await?;
            if json {
                println!("{}", to_json(&status));
            } else {
                println!("{}: {}", status.job, one_line(&status));
            }
            let running =
                matches!(Phase::try_from(status.phase), Ok(Phase::Running | Phase::Planning | Phase::Finalizing));
            if !watch || !running {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// The local autoscaler's options of `weir run --workers POOL=MIN..MAX`.
#[derive(Debug, Clone, clap::Args)]
pub struct AutoscaleArgs {
    /// With --workers ranges: time between autoscaler decisions (default: the manifest's
    /// spec.autoscaling.intervalSeconds, else 15s).
    #[arg(long, value_parser = parse_duration)]
    autoscale_interval: Option<Duration>,
    /// With --workers ranges: a pool shrinks only after every recommendation for this long was
    /// lower (default: spec.autoscaling.scaleDownWindowSeconds, else 5m).
    #[arg(long, value_parser = parse_duration)]
    scale_down_window: Option<Duration>,
    /// With --workers ranges: read the signals from this Prometheus (it must scrape the run: see
    /// --prometheus-targets) instead of scraping the processes.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// With --workers ranges: serve the autoscaler's metrics (weir_autoscaler_*) here.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// With --workers: keep a Prometheus file_sd target list of every process of the run here.
    #[arg(long, value_name = "FILE")]
    prometheus_targets: Option<PathBuf>,
}

/// How `weir run --workers` runs its processes.
pub struct SuperviseArgs {
    pub threads: usize,
    pub memory_limit: Option<u64>,
    pub lease_ttl: Duration,
    pub progress: bool,
    pub autoscale: AutoscaleArgs,
}

/// The local autoscaler's settings, when a pool has a range or a target list was asked for.
fn scale_settings(job: &MultimodalJob, topology: &Topology, args: &AutoscaleArgs) -> Option<ScaleSettings> {
    if !topology.scales() && args.prometheus_targets.is_none() {
        return None;
    }
    let spec = job.spec.autoscaling.clone().unwrap_or_default();
    let window = args.scale_down_window.unwrap_or_else(|| spec.scale_down_window());
    let interval = args.autoscale_interval.unwrap_or_else(|| spec.interval());
    let defaults = Policy::default();
    let policy = Policy {
        target_utilization: spec.target_utilization.unwrap_or(defaults.target_utilization),
        scale_down_window: window,
        guard_freeze: window.max(interval * 10),
        // A scale-up is judged once the rates hold no time from before it: one round between
        // scrapes, the rate window with a Prometheus.
        guard_delay: if args.prometheus.is_some() { rate_window(interval) } else { interval },
        ..defaults
    };
    Some(ScaleSettings {
        job: weir::plan::job_name(job),
        leasing_pool: weir_crds::placement::leasing_pool(&job.spec),
        interval,
        policy,
        prometheus: args.prometheus.clone(),
        metrics_listen: args.metrics_listen,
        targets_file: args.prometheus_targets.clone(),
    })
}

/// `weir run --workers`.
pub fn run_supervised(manifest: PathBuf, topology: Topology, args: SuperviseArgs, log_format: LogFormat) -> Result<()> {
    let job = read_job(&manifest)?;
    let leasing = weir_crds::placement::leasing_pool(&job.spec);
    topology
        .check_against(&weir_crds::placement::pools_in_use(&job.spec))
        .map_err(|e| anyhow::anyhow!("--workers: {e}"))?;
    // Threads and memory are divided by the most workers that may run at once.
    let most = topology.most_workers();
    let scaling = scale_settings(&job, &topology, &args.autoscale);
    // Two morsels in flight per worker a remote pool may grow to, so a grown pool gets work.
    let remote_max = topology.0.iter().filter(|p| p.pool != leasing).map(|p| p.max).max().unwrap_or(1);
    let options = SuperviseOptions {
        manifest: manifest.clone(),
        threads: if args.threads > 0 { args.threads } else { available_cores().div_ceil(most).max(1) },
        memory_limit: args.memory_limit.unwrap_or_else(default_memory_limit) / most as u64,
        coordinator_args: vec!["--lease-ttl".into(), format!("{}ms", args.lease_ttl.as_millis())],
        worker_args: vec!["--exchange-in-flight".into(), (2 * remote_max.max(1)).to_string()],
        child_args: vec!["--log-format".into(), log_format.as_str().into()],
        max_restarts: 100,
        progress: args.progress,
        scaling,
        drain_timeout: args.lease_ttl * 2,
        topology,
    };
    let started = std::time::Instant::now();
    runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        let ended = supervise(&options, shutdown).await?;
        let seconds = started.elapsed().as_secs_f64();
        // The job succeeded, so this reads the manifest the coordinator wrote.
        match job_status(&job, None, None).await {
            Ok(s) => println!(
                "{} rows in, {} out, {} failed in {seconds:.2}s with {} worker processes",
                s.rows_in,
                s.rows_out,
                s.rows_failed,
                options.topology.workers(),
            ),
            Err(e) => tracing::warn!("the job finished but its status could not be read: {e}"),
        }
        let per_pool: Vec<String> = ended.worker_seconds.iter().map(|(pool, s)| format!("{pool} {s:.1}")).collect();
        let total: f64 = ended.worker_seconds.values().sum();
        println!("worker-seconds: {total:.1} ({})", per_pool.join(", "));
        println!("output:  {}", job.spec.sink.parquet.uri);
        Ok(())
    })
}
