//! Finishing a job: every committed file checked against its record (a unit whose file is
//! missing or changed runs again), the manifest from the records, orphan and staged files deleted,
//! and the success marker written last, so a marker always means a complete, verified, clean output.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use weir_checkpoint::{CheckpointStore, JobManifest, UnitCommit, sweep_orphans};
use weir_crds::MultimodalJobSpec;
use weir_io::sink::STAGING_DIR;
use weir_io::{Location, StoreRegistry};

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
/// Call it only once no attempt can publish any more (every unit committed, no admitted attempt
/// still publishing): then no file appears in the output after the marker.
///
/// # Errors
/// Storage errors ([`CoordinatorError::is_transient`] says whether to retry).
pub(super) async fn finalize(
    spec: &MultimodalJobSpec,
    stores: &Arc<StoreRegistry>,
    checkpoint: &CheckpointStore,
    units_total: u64,
) -> Result<Verdict, CoordinatorError> {
    let committed = checkpoint.committed().await?;
    let units: Vec<_> = committed.into_values().collect();
    let redo = withdraw_broken(stores, checkpoint, &units).await?;
    if !redo.is_empty() {
        return Ok(Verdict::Redo(redo));
    }
    let rows_verified = units.iter().flat_map(|u| &u.files).filter(|f| !is_errors_file(&f.uri)).map(|f| f.rows).sum();
    let manifest = JobManifest::from_units(units_total, units);
    if let Some(message) = error_ratio_exceeded(spec, &manifest) {
        return Ok(Verdict::Failed(message));
    }
    checkpoint.write_manifest(&manifest).await?;
    let output = stores.resolve(&spec.sink.parquet.uri)?;
    let mut keep = HashSet::new();
    for file in manifest.units.iter().flat_map(|u| u.uris()) {
        keep.insert(stores.resolve(file)?.path);
    }
    let deleted = sweep_orphans(&output.store, &output.path, &keep).await?;
    if !deleted.is_empty() {
        tracing::info!(deleted = deleted.len(), "deleted {} part files of abandoned or losing attempts", deleted.len());
    }
    clear_staging(&output).await?;
    let marker = stores.resolve(&marker_uri(spec))?;
    marker
        .store
        .put(&marker.path, PutPayload::from(Bytes::from(success_json(&manifest, rows_verified))))
        .await
        .map_err(|source| CoordinatorError::Write { uri: marker_uri(spec), source })?;
    Ok(Verdict::Succeeded { rows_in: manifest.rows_in, rows_out: manifest.rows_out, rows_failed: manifest.rows_failed })
}

/// Checks every file the records name; withdraws the record of each unit with a missing or
/// changed file, and returns those units with the first problem found in each.
///
/// # Errors
/// Storage errors while checking or withdrawing.
pub(super) async fn withdraw_broken(
    stores: &StoreRegistry,
    checkpoint: &CheckpointStore,
    units: &[UnitCommit],
) -> Result<Vec<(u64, String)>, CoordinatorError> {
    let findings = crate::verify::check_files(stores, units).await?;
    let mut redo: BTreeMap<u64, String> = BTreeMap::new();
    for finding in findings {
        if let Some(unit) = finding.unit {
            redo.entry(unit).or_insert_with(|| finding.to_string());
        }
    }
    for (&unit, reason) in &redo {
        tracing::warn!(unit, "withdrawing the commit of unit {unit}: {reason}");
        checkpoint.withdraw(unit).await?;
    }
    Ok(redo.into_iter().collect())
}

fn is_errors_file(uri: &str) -> bool {
    uri.contains(&format!("/{}/", weir_io::sink::ERRORS_DIR))
}

/// Deletes whatever attempts left in the staging folder (abandoned or losing attempts).
async fn clear_staging(output: &Location) -> Result<(), CoordinatorError> {
    let staging = STAGING_DIR.split('/').fold(output.path.clone(), |path, part| path.join(part));
    let write = |source| CoordinatorError::Write { uri: output.uri_of(&staging), source };
    let staged: Vec<_> =
        output.store.list(Some(&staging)).map_ok(|meta| meta.location).try_collect().await.map_err(write)?;
    futures::stream::iter(staged)
        .map(|path| {
            let store = output.store.clone();
            async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
        .map_err(write)
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

/// The marker's body; `rowsVerified` counts the rows found in the output files' footers.
fn success_json(manifest: &JobManifest, rows_verified: u64) -> String {
    let files: Vec<&str> = manifest.units.iter().flat_map(|u| u.uris()).collect();
    let body = serde_json::json!({
        "rowsIn": manifest.rows_in,
        "rowsOut": manifest.rows_out,
        "rowsVerified": rows_verified,
        "rowsFailed": manifest.rows_failed,
        "units": manifest.units.len(),
        "files": files,
    });
    format!("{body}\n")
}
