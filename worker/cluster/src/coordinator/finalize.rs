//! Finishing a job: the manifest from the committed units, orphan files deleted, and the success
//! marker written last, so a marker always means a complete, clean output.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use weir_checkpoint::{CheckpointStore, JobManifest, sweep_orphans};
use weir_crds::MultimodalJobSpec;
use weir_io::StoreRegistry;

use super::CoordinatorError;
use super::state::Verdict;

/// The success marker written beside the output once every unit is done.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

fn marker_uri(spec: &MultimodalJobSpec) -> String {
    format!("{}/{SUCCESS_MARKER}", spec.sink.parquet.uri.trim_end_matches('/'))
}

/// Whether the job's output is already complete.
///
/// # Errors
/// When the sink URI cannot be resolved.
pub async fn success_exists(spec: &MultimodalJobSpec, stores: &StoreRegistry) -> Result<bool, CoordinatorError> {
    let location = stores.resolve(&marker_uri(spec))?;
    Ok(location.store.head(&location.path).await.is_ok())
}

/// Finalizes a job whose units are all committed. Idempotent: a coordinator killed half-way
/// finalizes again on restart.
///
/// # Errors
/// Storage errors (the caller retries them).
pub(super) async fn finalize(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
    checkpoint: &CheckpointStore,
    units_total: u64,
) -> Result<Verdict, CoordinatorError> {
    let committed = checkpoint.committed().await?;
    let units: Vec<_> = committed.into_values().collect();
    let manifest = JobManifest {
        units_total,
        rows_in: units.iter().map(|u| u.rows_in).sum(),
        rows_out: units.iter().map(|u| u.rows_out).sum(),
        rows_failed: units.iter().map(|u| u.errors).sum(),
        units,
    };
    if let Some(message) = error_ratio_exceeded(spec, &manifest) {
        return Ok(Verdict::Failed(message));
    }
    checkpoint.write_manifest(&manifest).await?;
    let output = stores.resolve(&spec.sink.parquet.uri)?;
    let mut keep = HashSet::new();
    for file in manifest.units.iter().flat_map(|u| &u.files) {
        keep.insert(stores.resolve(file)?.path);
    }
    let deleted = sweep_orphans(&output.store, &output.path, &keep).await?;
    if !deleted.is_empty() {
        tracing::info!(deleted = deleted.len(), "deleted {} part files of abandoned or losing attempts", deleted.len());
    }
    let marker = stores.resolve(&marker_uri(spec))?;
    marker
        .store
        .put(&marker.path, PutPayload::from(Bytes::from(success_json(&manifest))))
        .await
        .map_err(|source| CoordinatorError::Write { uri: marker_uri(spec), source })?;
    Ok(Verdict::Succeeded { rows_in: manifest.rows_in, rows_out: manifest.rows_out, rows_failed: manifest.rows_failed })
}

fn error_ratio_exceeded(spec: &MultimodalJobSpec, manifest: &JobManifest) -> Option<String> {
    let policy = spec.error_policy();
    if !policy.skips_rows() || manifest.rows_in == 0 || manifest.rows_failed == 0 {
        return None;
    }
    let ratio = manifest.rows_failed as f64 / manifest.rows_in as f64;
    (ratio > policy.max_error_ratio).then(|| {
        format!(
            "{} of {} rows failed ({:.2}%), more than errorPolicy.maxErrorRatio {}",
            manifest.rows_failed,
            manifest.rows_in,
            ratio * 100.0,
            policy.max_error_ratio
        )
    })
}

/// The marker's body: the same fields as the embedded runner's marker.
fn success_json(manifest: &JobManifest) -> String {
    let files: Vec<&str> = manifest.units.iter().flat_map(|u| u.files.iter().map(String::as_str)).collect();
    let body = serde_json::json!({
        "rowsIn": manifest.rows_in,
        "rowsOut": manifest.rows_out,
        "rowsFailed": manifest.rows_failed,
        "units": manifest.units.len(),
        "files": files,
    });
    format!("{body}\n")
}
