//! Reads a whole object (a local path or URI) into memory: a tokenizer file, model weights, or
//! anything else a step needs before its first row.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::{GetOptions, ObjectMeta, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::store::{StoreError, StoreRegistry};

/// An object that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Uri(#[from] StoreError),
    #[error("`{uri}`: not found")]
    NotFound { uri: String },
    #[error("reading `{uri}`: {source}")]
    Read { uri: String, source: object_store::Error },
    #[error("caching `{uri}` in `{dir}`: {source}")]
    Cache { uri: String, dir: String, source: std::io::Error },
}

/// The whole object at `uri`.
///
/// Transient failures are retried by the store's own client (see [`StoreRegistry`]); what is
/// left after that is an error.
///
/// # Errors
/// [`FetchError`] naming `uri`: unusable, missing or unreadable.
pub async fn fetch(stores: &StoreRegistry, uri: &str) -> Result<Bytes, FetchError> {
    let location = stores.resolve(uri)?;
    let read = async {
        let got = location.store.get_opts(&location.path, GetOptions::default()).await?;
        got.bytes().await
    };
    read.await.map_err(|source| match source {
        object_store::Error::NotFound { .. } => FetchError::NotFound { uri: uri.to_string() },
        source => FetchError::Read { uri: uri.to_string(), source },
    })
}

/// The whole object at `uri`, with remote objects (`s3://`, `http(s)://`) kept in `cache_dir`
/// so a restarted worker does not download them again. A cached copy is used while the object's
/// size and ETag (or modification time) are unchanged; local files are read in place.
///
/// Writes go to a uniquely named temporary file, synced and renamed into place, so a worker killed
/// mid-download leaves no half-written copy and workers sharing a volume never write one file.
///
/// # Errors
/// As [`fetch`], and [`FetchError::Cache`] when the cache folder cannot be written.
pub async fn fetch_cached(stores: &StoreRegistry, uri: &str, cache_dir: &Path) -> Result<Bytes, FetchError> {
    let location = stores.resolve(uri)?;
    if location.base == "file://" {
        return fetch(stores, uri).await;
    }
    let read_error = |source| match source {
        object_store::Error::NotFound { .. } => FetchError::NotFound { uri: uri.to_string() },
        source => FetchError::Read { uri: uri.to_string(), source },
    };
    let meta = location.store.head(&location.path).await.map_err(read_error)?;
    if let Ok(bytes) = tokio::fs::read(cache_path(cache_dir, uri, &meta)).await
        && bytes.len() as u64 == meta.size
    {
        return Ok(bytes.into());
    }
    // The key comes from the response itself, so bytes are never filed under another version.
    let got = location.store.get_opts(&location.path, GetOptions::default()).await.map_err(read_error)?;
    let cached = cache_path(cache_dir, uri, &got.meta);
    let bytes = got.bytes().await.map_err(read_error)?;
    let cache_error = |source| FetchError::Cache { uri: uri.to_string(), dir: cache_dir.display().to_string(), source };
    tokio::fs::create_dir_all(cache_dir).await.map_err(cache_error)?;
    let partial = cached.with_extension(format!("partial-{}", unique_suffix()));
    let mut file = tokio::fs::File::create(&partial).await.map_err(cache_error)?;
    file.write_all(&bytes).await.map_err(cache_error)?;
    // On disk before it is renamed into place: a crash must not leave a full-length file of junk.
    file.sync_all().await.map_err(cache_error)?;
    tokio::fs::rename(&partial, &cached).await.map_err(cache_error)?;
    Ok(bytes)
}

/// A name no other writer uses at the same time, even workers in other containers sharing the
/// volume with the same process id.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{count}", std::process::id())
}

/// Where one version of `uri` is cached: a hash of URI, ETag (or modification time) and size,
/// then the object's name, shortened.
fn cache_path(dir: &Path, uri: &str, meta: &ObjectMeta) -> PathBuf {
    let version = meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339());
    let key = crate::upload::fnv1a(format!("{uri}\n{version}\n{}", meta.size).as_bytes());
    let name: String = meta.location.filename().unwrap_or("object").chars().take(100).collect();
    dir.join(format!("{key:016x}-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_local_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, b"{\"model\": 1}").expect("write");
        let stores = StoreRegistry::default();
        let bytes = fetch(&stores, path.to_str().expect("utf-8")).await.expect("fetch");
        assert_eq!(&bytes[..], b"{\"model\": 1}");
        let missing = format!("file://{}/nope.json", dir.path().display());
        let err = fetch(&stores, &missing).await.expect_err("missing");
        assert_eq!(err.to_string(), format!("`{missing}`: not found"));
    }
}
