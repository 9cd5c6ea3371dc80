//! The embedded runner behind `weir run`: the job's units run through one pipeline in this
//! process, each committed to the checkpoint as it finishes (so a killed run resumes), then the
//! profile, the manifest and the success marker.

use std::time::Instant;

use object_store::{PutOptions, PutPayload};
use tokio_util::sync::CancellationToken;
use weir_cluster::coordinator::embedded::{Committed, LocalCoordinator};
use weir_cluster::coordinator::{CoordinatorError, success_exists};
use weir_core::{ComputePool, ExecError, Pipeline, PipelineOptions, RunSummary, StepStatsSnapshot};
use weir_crds::MultimodalJob;
use weir_io::sink::ERRORS_DIR;
use weir_io::{StoreError, StoreRegistry};

use crate::plan::{JobPlan, PlanError};
use crate::profile::{ReportHeader, render_markdown};
use crate::progress::ProgressDisplay;

/// How to run a job in this process.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Memory budget for morsels in flight; default a quarter of the cgroup (or RAM) limit, at
    /// most 2 GiB.
    pub memory_limit: Option<u64>,
    /// Compute threads; 0 = one per core.
    pub threads: usize,
    pub progress: bool,
    /// Where to write the Markdown profile; default `<checkpoint uri>/profile.md`.
    pub profile_uri: Option<String>,
    pub cancel: CancellationToken,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub summary: RunSummary,
    pub stages: Vec<StepStatsSnapshot>,
    pub output_uri: String,
    /// Set when rows failed: where they are recorded.
    pub errors_uri: Option<String>,
    pub profile_uri: String,
    pub memory_limit: u64,
    /// The output was already complete; nothing ran.
    pub already_complete: bool,
    /// What earlier, interrupted runs of the job had committed (this run did the rest).
    pub resumed: Committed,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Exec(#[from] ExecError),
    #[error("writing `{uri}`: {source}")]
    Write { uri: String, source: object_store::Error },
    #[error("starting compute threads: {0}")]
    Threads(String),
    #[error(transparent)]
    Checkpoint(#[from] CoordinatorError),
}

/// Runs `job` to completion in this process.
///
/// # Errors
/// [`RunError`] for an unusable plan or source, a failed step, the error policy, or cancellation.
///
/// # Cancellation
/// Cancelling `options.cancel` stops the run; no success marker is written, and the units already
/// committed are not run again by the next run of the job.
pub async fn run_job(job: &MultimodalJob, options: RunOptions) -> Result<RunReport, RunError> {
    let plan = JobPlan::new(job, options.memory_limit);
    let spec = &plan.spec;
    let stores = &plan.stores;
    let output_uri = spec.sink.parquet.uri.clone();
    let limit = plan.memory_limit();
    let profile_uri =
        options.profile_uri.clone().unwrap_or_else(|| format!("{}profile.md", with_slash(&spec.checkpoint_uri())));
    if success_exists(spec, stores).await? {
        return Ok(RunReport {
            summary: RunSummary::default(),
            stages: Vec::new(),
            output_uri,
            errors_uri: None,
            profile_uri,
            memory_limit: limit,
            already_complete: true,
            resumed: Committed::default(),
        });
    }

    let steps = plan.steps().await?;
    let mut coordinator = LocalCoordinator::open(spec, stores.clone()).await?;
    let units = coordinator.take_pending();
    let resumed = coordinator.committed_before();
    let sink = plan.sink.open(coordinator.committer())?;
    let compute = ComputePool::new(options.threads).map_err(|e| RunError::Threads(e.to_string()))?;
    let pipeline_options =
        PipelineOptions { errors: plan.errors, cancel: options.cancel.clone(), ..Default::default() };
    let pipeline = Pipeline::new(plan.reader.clone(), steps, plan.budget.clone(), compute, pipeline_options);
    let stats = pipeline.stats();
    let started = Instant::now();
    let display = options.progress.then(|| ProgressDisplay::start(stats.clone()));
    let result = pipeline.run(units, sink).await;
    if let Some(display) = display {
        display.finish(started.elapsed());
    }
    let summary = result?;
    let stages = stats.snapshot();
    let errors_uri = (summary.rows_failed > 0).then(|| format!("{}{ERRORS_DIR}/", with_slash(&output_uri)));
    let header = ReportHeader {
        job: &plan.name,
        wall: summary.elapsed,
        rows_in: summary.rows_in,
        rows_out: summary.rows_out,
        rows_failed: summary.rows_failed,
        memory_limit: limit,
        memory_peak: summary.peak_reserved,
        output: &output_uri,
    };
    put(stores, &profile_uri, render_markdown(&header, &stages)).await?;
    coordinator.finalize().await?;
    Ok(RunReport {
        summary,
        stages,
        output_uri,
        errors_uri,
        profile_uri,
        memory_limit: limit,
        already_complete: false,
        resumed,
    })
}

fn with_slash(uri: &str) -> String {
    if uri.ends_with('/') { uri.to_string() } else { format!("{uri}/") }
}

async fn put(stores: &StoreRegistry, uri: &str, body: String) -> Result<(), RunError> {
    let location = stores.resolve(uri)?;
    location
        .store
        .put_opts(&location.path, PutPayload::from(body), PutOptions::default())
        .await
        .map_err(|source| RunError::Write { uri: uri.to_string(), source })?;
    Ok(())
}
