//! [`sweep_orphans`]: deletes the part files of attempts that lost, once a job's units are committed.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::CheckpointError;

/// How many deletes run at once.
const DELETE_CONCURRENCY: usize = 16;

/// The folder beside the output's part files that holds the part files of failed rows.
const ERRORS_DIR: &str = "_errors";

/// Deletes the part files under `prefix` whose path is not in `keep`; returns the deleted paths,
/// sorted.
///
/// A part file is an object named `part-*.parquet` directly under `prefix` or directly under
/// `prefix/_errors/`. Call it after every unit is committed and every worker has stopped, with
/// `keep` holding the files of every committed record: an attempt still writing could otherwise
/// leave a new orphan behind (harmless, since the manifest names the output, but untidy).
///
/// # Guarantees
/// - Never touches anything else: other names, deeper folders, the `_weir/` checkpoint folder,
///   `_SUCCESS`.
/// - Idempotent, and safe to run concurrently with itself: an orphan already gone is skipped
///   (and not reported).
///
/// # Errors
/// [`CheckpointError::Store`] when listing or a delete fails; some orphans may be deleted by then,
/// so retry the whole sweep.
pub async fn sweep_orphans(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    keep: &HashSet<Path>,
) -> Result<Vec<Path>, CheckpointError> {
    let mut orphans = orphans_in(store, prefix, keep).await?;
    orphans.extend(orphans_in(store, &prefix.clone().join(ERRORS_DIR), keep).await?);
    let mut deleted: Vec<Path> = futures::stream::iter(orphans)
        .map(|path| delete_if_present(store, path))
        .buffer_unordered(DELETE_CONCURRENCY)
        .try_filter_map(|deleted| std::future::ready(Ok(deleted)))
        .try_collect()
        .await?;
    deleted.sort();
    Ok(deleted)
}

/// The part files directly under `dir` that are not in `keep`.
async fn orphans_in(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    keep: &HashSet<Path>,
) -> Result<Vec<Path>, CheckpointError> {
    let listing = store.list_with_delimiter(Some(dir)).await.map_err(|e| CheckpointError::store(dir, e))?;
    Ok(listing
        .objects
        .into_iter()
        .map(|meta| meta.location)
        .filter(|path| path.filename().is_some_and(is_part_file) && !keep.contains(path))
        .collect())
}

/// Deletes `path`: `Some(path)` if this call deleted it, `None` if it was already gone.
async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: Path) -> Result<Option<Path>, CheckpointError> {
    match store.delete(&path).await {
        Ok(()) => Ok(Some(path)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(CheckpointError::store(&path, e)),
    }
}

/// `part-*.parquet`, the names the Parquet sink gives its part files.
fn is_part_file(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parquet_parts_are_part_files() {
        assert!(is_part_file("part-000001-0.parquet"));
        for name in ["_SUCCESS", "other.txt", "part-000001-0.parquet.tmp", "xpart-1.parquet", "unit-1.json"] {
            assert!(!is_part_file(name), "{name}");
        }
    }
}
