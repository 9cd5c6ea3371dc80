//! `weir status`: a job's progress, from its running coordinator, or from its checkpoint when no
//! coordinator answers.

use std::time::Duration;

use weir_auth::JobSecret;
use weir_checkpoint::CheckpointStore;
use weir_cluster::coordinator::{ENDPOINT_NOTE, success_exists};
use weir_cluster::proto::coordinator_client::CoordinatorClient;
use weir_cluster::proto::{JobStatus, Phase, StatusRequest};
use weir_crds::MultimodalJob;

use crate::plan::stores_for;

/// Why no status could be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("coordinator `{endpoint}`: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error(transparent)]
    Store(#[from] weir_io::StoreError),
    #[error(transparent)]
    Checkpoint(#[from] weir_checkpoint::CheckpointError),
    #[error(transparent)]
    Output(#[from] weir_cluster::CoordinatorError),
}

/// The status served by the coordinator at `endpoint`.
///
/// # Errors
/// [`StatusError::Unreachable`] when it does not answer within a few seconds.
pub async fn query(endpoint: &str, secret: &JobSecret) -> Result<JobStatus, StatusError> {
    let unreachable = |message: String| StatusError::Unreachable { endpoint: endpoint.to_string(), message };
    let channel = secret
        .endpoint(endpoint)
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let reply = CoordinatorClient::with_interceptor(channel, secret.bearer())
        .status(StatusRequest {})
        .await
        .map_err(|s| unreachable(s.message().into()))?;
    Ok(reply.into_inner())
}

/// Where the job stands: the coordinator's answer when one runs (at `endpoint`, or at the address
/// it recorded in the checkpoint) and `secret` lets us ask it, else what the checkpoint records.
///
/// # Errors
/// When neither the coordinator nor the checkpoint can be read.
pub async fn job_status(
    job: &MultimodalJob,
    endpoint: Option<&str>,
    secret: Option<&JobSecret>,
) -> Result<JobStatus, StatusError> {
    let stores = stores_for(&job.spec);
    let location = stores.resolve(&job.spec.checkpoint_uri())?;
    let checkpoint = CheckpointStore::new(location.store.clone(), location.path.clone());
    let note = checkpoint.note(ENDPOINT_NOTE).await?.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let noted = |key: &str| note.as_ref().and_then(|v| v.get(key)).and_then(|e| e.as_str()).map(String::from);
    let recorded = endpoint.map(String::from).or_else(|| noted("endpoint"));
    // Without a secret given, the folder the coordinator read its own from, where this user may
    // read it too (a local `weir run --workers`).
    let found = match secret {
        Some(_) => None,
        None => noted("secretDir").and_then(|dir| JobSecret::load(std::path::Path::new(&dir)).ok()),
    };
    let secret = secret.or(found.as_ref());
    let succeeded = success_exists(&job.spec, &stores).await?;
    if !succeeded
        && let Some(at) = &recorded
        && let Some(secret) = secret
    {
        match query(at, secret).await {
            Ok(status) => return Ok(status),
            // Asked for this coordinator by name: say it does not answer.
            Err(e) if endpoint.is_some() => return Err(e),
            // The recorded coordinator is gone: the checkpoint tells what it committed.
            Err(_) => {}
        }
    }
    from_checkpoint(job, &checkpoint, succeeded).await
}

async fn from_checkpoint(
    job: &MultimodalJob,
    checkpoint: &CheckpointStore,
    succeeded: bool,
) -> Result<JobStatus, StatusError> {
    let mut status = JobStatus { job: super::job_name(job), eta_seconds: -1.0, ..Default::default() };
    if let Some(manifest) = checkpoint.manifest().await? {
        status.units_total = manifest.units_total;
        status.units_committed = manifest.units.len() as u64;
        (status.rows_in, status.rows_out, status.rows_failed) =
            (manifest.rows_in, manifest.rows_out, manifest.rows_failed);
    } else {
        let committed = checkpoint.committed().await?;
        status.units_committed = committed.len() as u64;
        for unit in committed.values() {
            status.rows_in += unit.rows_in;
            status.rows_out += unit.rows_out;
            status.rows_failed += unit.errors;
        }
    }
    status.phase = if succeeded { Phase::Succeeded } else { Phase::Unspecified } as i32;
    status.message = if succeeded {
        "finished".into()
    } else if status.units_committed > 0 {
        "no coordinator is running; the next run continues from the committed units".into()
    } else {
        "not started".into()
    };
    Ok(status)
}

/// The phase's name as users see it.
pub fn phase_name(phase: i32) -> &'static str {
    match Phase::try_from(phase).unwrap_or(Phase::Unspecified) {
        Phase::Unspecified => "NotRunning",
        Phase::Planning => "Planning",
        Phase::Running => "Running",
        Phase::Finalizing => "Finalizing",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
    }
}

/// `Running: units 12/40 (30%), rows 300 in, 297 out, 3 failed, 3 workers, ETA 14s`.
pub fn one_line(s: &JobStatus) -> String {
    let percent = if s.units_total > 0 { 100.0 * s.units_committed as f64 / s.units_total as f64 } else { 0.0 };
    let mut line = format!(
        "{}: units {}/{} ({percent:.0}%), rows {} in, {} out, {} failed",
        phase_name(s.phase),
        s.units_committed,
        s.units_total,
        s.rows_in,
        s.rows_out,
        s.rows_failed
    );
    if s.phase == Phase::Running as i32 {
        line.push_str(&format!(", {} leased, {} workers", s.units_leased, s.workers));
        if s.eta_seconds >= 0.0 {
            line.push_str(&format!(", ETA {:.0}s", s.eta_seconds));
        }
    }
    if !s.message.is_empty() {
        line.push_str(&format!(" — {}", s.message));
    }
    line
}

/// The status as JSON (for scripts and the operator).
pub fn to_json(s: &JobStatus) -> serde_json::Value {
    serde_json::json!({
        "job": s.job,
        "phase": phase_name(s.phase),
        "unitsTotal": s.units_total,
        "unitsCommitted": s.units_committed,
        "unitsLeased": s.units_leased,
        "rowsTotal": s.rows_total,
        "rowsIn": s.rows_in,
        "rowsOut": s.rows_out,
        "rowsFailed": s.rows_failed,
        "workers": s.workers,
        "attemptsFailed": s.attempts_failed,
        "epoch": s.epoch,
        "elapsedSeconds": s.elapsed_seconds,
        "etaSeconds": (s.eta_seconds >= 0.0).then_some(s.eta_seconds),
        "message": s.message,
    })
}
