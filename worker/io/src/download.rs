//! `download`: fetch the object each row's URI names into a binary column.
//!
//! Connections are bounded per step (a semaphore shared by all morsels in flight); transient
//! failures are retried with exponential backoff; a missing object or an unreachable host is a
//! row failure that names the URI.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use object_store::GetOptions;
use tokio::sync::Semaphore;
use weir_core::batch::typed_column;
use weir_core::{RowFailure, Step, StepContext, StepError, StepOutput};
use weir_crds::Download;

use crate::store::{StoreRegistry, is_transient};

pub const DEFAULT_MAX_CONNECTIONS: u32 = 32;
pub const DEFAULT_RETRIES: u32 = 5;
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;
/// First retry delay; doubles each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The runnable `download` step.
pub struct DownloadStep {
    input: String,
    output: String,
    stores: Arc<StoreRegistry>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    retries: u32,
    timeout: Duration,
}

/// Builds `download` from its config, sharing `stores` with the rest of the job.
pub fn build(config: &Download, stores: Arc<StoreRegistry>) -> Arc<dyn Step> {
    let max_connections = config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1) as usize;
    Arc::new(DownloadStep {
        input: config.input.clone(),
        output: config.output.clone(),
        stores,
        connections: Arc::new(Semaphore::new(max_connections)),
        max_connections,
        retries: config.retries.unwrap_or(DEFAULT_RETRIES),
        timeout: Duration::from_secs(u64::from(config.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))),
    })
}

impl Step for DownloadStep {
    fn name(&self) -> &str {
        "download"
    }

    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let uris: &StringArray = typed_column(&input, &self.input, "a string column of URIs")?;
            let uris: Vec<Option<String>> = uris.iter().map(|u| u.map(str::to_string)).collect();
            let fetched: Vec<Option<Result<Bytes, String>>> = stream::iter(uris)
                .map(|uri| {
                    let this = self.clone();
                    async move {
                        match uri {
                            Some(uri) => Some(this.fetch(&uri).await),
                            None => None,
                        }
                    }
                })
                .buffered(self.max_connections)
                .collect()
                .await;
            let mut failures = Vec::new();
            let values: Vec<Option<Bytes>> = fetched
                .into_iter()
                .enumerate()
                .map(|(row, r)| match r {
                    Some(Ok(b)) => Some(b),
                    Some(Err(message)) => {
                        failures.push(RowFailure::new(row, message));
                        None
                    }
                    None => None,
                })
                .collect();
            let array: ArrayRef = Arc::new(BinaryArray::from_iter(values.iter().map(|v| v.as_deref())));
            debug_assert_eq!(array.len(), input.num_rows());
            StepOutput::with_column(&input, &self.output, array, failures)
        })
    }
}

impl DownloadStep {
    /// Fetches one object, retrying transient failures.
    async fn fetch(&self, uri: &str) -> Result<Bytes, String> {
        let location = self.stores.resolve(uri).map_err(|e| e.to_string())?;
        let mut attempt = 0;
        loop {
            let result = {
                let _permit =
                    self.connections.acquire().await.map_err(|_| "download step is shutting down".to_string())?;
                let get = async {
                    let got = location.store.get_opts(&location.path, GetOptions::default()).await?;
                    got.bytes().await
                };
                tokio::time::timeout(self.timeout, get).await
            };
            let error = match result {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(object_store::Error::NotFound { .. })) => {
                    return Err(format!("not found: {uri}"));
                }
                Ok(Err(e)) if !is_transient(&e) => return Err(format!("{uri}: {e}")),
                Ok(Err(e)) => format!("{uri}: {e}"),
                Err(_) => format!("{uri}: timed out after {}s", self.timeout.as_secs()),
            };
            if attempt >= self.retries {
                let tries = attempt + 1;
                return Err(format!("{error} (gave up after {tries} attempt{})", if tries == 1 { "" } else { "s" }));
            }
            tokio::time::sleep(FIRST_BACKOFF * 2u32.saturating_pow(attempt)).await;
            attempt += 1;
        }
    }
}
