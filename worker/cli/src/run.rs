//! The embedded runner behind `weir run`: plan, run the pipeline in this process, write the
//! success marker and the profile.

use std::time::Instant;

use object_store::{ObjectStoreExt, PutOptions, PutPayload};
use tokio_util::sync::CancellationToken;
use weir_core::budget::detect_memory_limit;
use weir_core::{
    ComputePool, ErrorHandling, ExecError, MemoryBudget, Pipeline, PipelineOptions, RunSummary, StepStatsSnapshot,
};
use weir_crds::{MultimodalJob, RowErrorAction};
use weir_io::sink::{ERRORS_DIR, ParquetSink};
use weir_io::source::{self, SourceError};
use weir_io::{StoreError, StoreRegistry};

use crate::plan::{PlanError, build_steps, stores_for};
use crate::profile::{ReportHeader, render_markdown};
use crate::progress::ProgressDisplay;

/// Most of the detected memory the budget takes by default, and its cap.
const DEFAULT_BUDGET_FRACTION: u64 = 4;
const DEFAULT_BUDGET_CAP: u64 = 2 << 30;
/// The success marker written beside the output once every unit is done.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

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
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Exec(#[from] ExecError),
    #[error("writing `{uri}`: {source}")]
    Write { uri: String, source: object_store::Error },
    #[error("starting compute threads: {0}")]
    Threads(String),
}

/// Runs `job` to completion in this process.
///
/// # Errors
/// [`RunError`] for an unusable plan or source, a failed step, the error policy, or cancellation.
///
/// # Cancellation
/// Cancelling `options.cancel` stops the run; finished part files stay, and no success marker is
/// written.
pub async fn run_job(job: &MultimodalJob, options: RunOptions) -> Result<RunReport, RunError> {
    let spec = &job.spec;
    let name = job.metadata.name.clone().unwrap_or_else(|| "job".into());
    let stores = stores_for(spec);
    let output_uri = spec.sink.parquet.uri.clone();
    let limit = options.memory_limit.unwrap_or_else(|| {
        detect_memory_limit().map_or(DEFAULT_BUDGET_CAP, |m| (m / DEFAULT_BUDGET_FRACTION).min(DEFAULT_BUDGET_CAP))
    });
    let profile_uri =
        options.profile_uri.clone().unwrap_or_else(|| format!("{}profile.md", with_slash(&spec.checkpoint_uri())));
    let marker = format!("{}{SUCCESS_MARKER}", with_slash(&output_uri));
    let marker_location = stores.resolve(&marker)?;
    if marker_location.store.head(&marker_location.path).await.is_ok() {
        return Ok(RunReport {
            summary: RunSummary::default(),
            stages: Vec::new(),
            output_uri,
            errors_uri: None,
            profile_uri,
            memory_limit: limit,
            already_complete: true,
        });
    }

    let steps = build_steps(spec, &stores).await?;
    let plan = source::plan(&spec.source, stores.clone()).await?;
    let sink = ParquetSink::new(&spec.sink.parquet, &stores)?.with_row_group_bytes((limit / 8) as usize);
    let budget = MemoryBudget::new(limit);
    let compute = ComputePool::new(options.threads).map_err(|e| RunError::Threads(e.to_string()))?;
    let policy = spec.error_policy();
    let errors = ErrorHandling {
        skip_rows: policy.on_row_error == RowErrorAction::Skip,
        max_error_ratio: policy.max_error_ratio,
    };
    let pipeline_options = PipelineOptions { errors, cancel: options.cancel.clone(), ..Default::default() };
    let pipeline = Pipeline::new(plan.reader, steps, budget, compute, pipeline_options);
    let stats = pipeline.stats();
    let started = Instant::now();
    let display = options.progress.then(|| ProgressDisplay::start(stats.clone()));
    let result = pipeline.run(plan.units, sink).await;
    if let Some(display) = display {
        display.finish(started.elapsed());
    }
    let summary = result?;
    let stages = stats.snapshot();
    let errors_uri = (summary.rows_failed > 0).then(|| format!("{}{ERRORS_DIR}/", with_slash(&output_uri)));
    let header = ReportHeader {
        job: &name,
        wall: summary.elapsed,
        rows_in: summary.rows_in,
        rows_out: summary.rows_out,
        rows_failed: summary.rows_failed,
        memory_limit: limit,
        memory_peak: summary.peak_reserved,
        output: &output_uri,
    };
    put(&stores, &profile_uri, render_markdown(&header, &stages)).await?;
    put(&stores, &marker, success_json(&summary)).await?;
    Ok(RunReport { summary, stages, output_uri, errors_uri, profile_uri, memory_limit: limit, already_complete: false })
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

fn success_json(summary: &RunSummary) -> String {
    let files: Vec<&str> = summary.units.iter().flat_map(|u| u.files.iter().map(String::as_str)).collect();
    let body = serde_json::json!({
        "rowsIn": summary.rows_in,
        "rowsOut": summary.rows_out,
        "rowsFailed": summary.rows_failed,
        "units": summary.units.len(),
        "files": files,
    });
    format!("{body}\n")
}
