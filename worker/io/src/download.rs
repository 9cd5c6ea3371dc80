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
use object_store::GetOptions;
use weir_core::batch::typed_column;
use weir_core::{Step, StepContext, StepError, StepOutput};
use weir_crds::Download;

use crate::rowio::{Attempt, Requests, per_row};
use crate::store::{StoreRegistry, is_transient};

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;

/// The runnable `download` step.
pub struct DownloadStep {
    input: String,
    output: String,
    stores: Arc<StoreRegistry>,
    requests: Requests,
    timeout: Duration,
}

/// Builds `download` from its config, sharing `stores` with the rest of the job.
pub fn build(config: &Download, stores: Arc<StoreRegistry>) -> Arc<dyn Step> {
    Arc::new(DownloadStep {
        input: config.input.clone(),
        output: config.output.clone(),
        stores,
        requests: Requests::new(config.max_connections, config.retries),
        timeout: Duration::from_secs(u64::from(config.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))),
    })
}

impl Step for DownloadStep {
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
            let (values, failures) = per_row(uris, self.requests.limit(), |uri| {
                let this = self.clone();
                async move { this.fetch(&uri).await }
            })
            .await;
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
        self.requests
            .retried(|| async {
                let get = async {
                    let got = location.store.get_opts(&location.path, GetOptions::default()).await?;
                    got.bytes().await
                };
                let result = tokio::time::timeout(self.timeout, get).await;
                match result {
                    Ok(Ok(bytes)) => Ok(bytes),
                    Ok(Err(object_store::Error::NotFound { .. })) => Err(Attempt::Fatal(format!("not found: {uri}"))),
                    Ok(Err(e)) if !is_transient(&e) => Err(Attempt::Fatal(format!("{uri}: {e}"))),
                    Ok(Err(e)) => Err(Attempt::Transient(format!("{uri}: {e}"))),
                    Err(_) => Err(Attempt::Transient(format!("{uri}: timed out after {}s", self.timeout.as_secs()))),
                }
            })
            .await
    }
}
