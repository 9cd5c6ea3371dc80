//! The `weir coordinator`, `weir worker`, `weir status` and `weir run --workers` commands: signal
//! handling and printing around the library's distributed roles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use weir::cluster::status::{job_status, one_line, to_json};
use weir::cluster::supervise::{SuperviseOptions, Topology, supervise};
use weir::cluster::{EXIT_JOB_FAILED, WorkerResources};
use weir_cluster::coordinator::CoordinatorError;
use weir_cluster::proto::Phase;
use weir_cluster::{CoordinatorOptions, WorkerExit, WorkerOptions};
use weir_core::budget::default_memory_limit;
use weir_core::compute::available_cores;

use crate::{LogFormat, read_job};

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
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    options: CoordinatorOptions,
) -> ExitCode {
    let result = read_job(&manifest).and_then(|job| {
        runtime()?.block_on(async {
            let shutdown = shutdown_on_signals();
            Ok(weir::cluster::coordinator(&job, listen, metrics, options, shutdown).await)
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
            eprintln!("error: {e:#}");
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
pub fn status(manifest: PathBuf, coordinator: Option<&str>, json: bool, watch: bool) -> Result<()> {
    let job = read_job(&manifest)?;
    runtime()?.block_on(async {
        loop {
            let status = job_status(&job, coordinator).await?;
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

/// `weir run --workers`.
pub fn run_supervised(
    manifest: PathBuf,
    topology: Topology,
    threads: usize,
    memory_limit: Option<u64>,
    lease_ttl: Duration,
    progress: bool,
    log_format: LogFormat,
) -> Result<()> {
    let job = read_job(&manifest)?;
    topology
        .check_against(&weir_crds::placement::pools_in_use(&job.spec))
        .map_err(|e| anyhow::anyhow!("--workers: {e}"))?;
    let workers = topology.workers();
    let options = SuperviseOptions {
        manifest: manifest.clone(),
        threads: if threads > 0 { threads } else { available_cores().div_ceil(workers).max(1) },
        memory_limit: memory_limit.unwrap_or_else(default_memory_limit) / workers as u64,
        coordinator_args: vec!["--lease-ttl".into(), format!("{}ms", lease_ttl.as_millis())],
        child_args: vec!["--log-format".into(), log_format.as_str().into()],
        max_restarts: 100,
        progress,
        topology,
    };
    let started = std::time::Instant::now();
    runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        supervise(&options, shutdown).await?;
        // The job succeeded, so this reads the manifest the coordinator wrote.
        match job_status(&job, None).await {
            Ok(s) => println!(
                "{} rows in, {} out, {} failed in {:.2}s with {workers} worker processes",
                s.rows_in,
                s.rows_out,
                s.rows_failed,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => tracing::warn!("the job finished but its status could not be read: {e}"),
        }
        println!("output:  {}", job.spec.sink.parquet.uri);
        Ok(())
    })
}
