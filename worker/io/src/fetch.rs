//! Reads a whole object (a local path or URI) into memory: a tokenizer file, model weights, or
//! anything else a step needs before its first row.

use bytes::Bytes;
use object_store::GetOptions;

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
