//! What the object-store steps (`download`, `upload`) share: one request per row with a bounded
//! number in flight, and retries of transient failures with exponential backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::sync::Semaphore;
use weir_core::RowFailure;

/// Default requests in flight per step per worker.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 32;
/// Default retries of a transient failure.
pub const DEFAULT_RETRIES: u32 = 5;

/// How a step talks to object stores: at most `limit` requests in flight across all the morsels it
/// works on (one semaphore shared by them), each retried up to `retries` times.
#[derive(Debug, Clone)]
pub struct Requests {
    connections: Arc<Semaphore>,
    limit: usize,
    retries: u32,
}

impl Requests {
    /// From a step's `maxConnections` and `retries`, with the defaults above.
    pub fn new(max_connections: Option<u32>, retries: Option<u32>) -> Self {
        let limit = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1) as usize;
        Self { connections: Arc::new(Semaphore::new(limit)), limit, retries: retries.unwrap_or(DEFAULT_RETRIES) }
    }

    /// Requests in flight at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Runs `attempt` with retries (see [`with_retries`]), each try holding one of the connections.
    ///
    /// # Errors
    /// As [`with_retries`].
    pub async fn retried<T, F, Fut>(&self, attempt: F) -> Result<T, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let (connections, attempt) = (&self.connections, &attempt);
        with_retries(self.retries, || async move {
            let _permit =
                connections.acquire().await.map_err(|_| Attempt::Fatal("the step is shutting down".into()))?;
            attempt().await
        })
        .await
    }
}

/// First retry delay; doubles each retry.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Why one attempt failed.
#[derive(Debug)]
pub enum Attempt {
    /// Worth trying again (a timeout, a 5xx, a dropped connection).
    Transient(String),
    /// Trying again cannot help (not found, access denied).
    Fatal(String),
}

/// Runs `attempt` until it succeeds, fails fatally, or has failed transiently `retries + 1` times,
/// sleeping 200 ms, 400 ms, ... in between.
///
/// # Errors
/// The last failure's message; after retries it says how many attempts were made.
pub async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut tries = 0;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(Attempt::Fatal(message)) => return Err(message),
            Err(Attempt::Transient(message)) => message,
        };
        if tries >= retries {
            let n = tries + 1;
            return Err(format!("{error} (gave up after {n} attempt{})", if n == 1 { "" } else { "s" }));
        }
        tokio::time::sleep(FIRST_BACKOFF * 2u32.saturating_pow(tries)).await;
        tries += 1;
    }
}

/// Runs `request` for every non-null row, at most `in_flight` at once, keeping row order: the
/// values (`None` for null and failed rows) and the failures, each naming its row.
pub async fn per_row<I, T, F, Fut>(
    rows: Vec<Option<I>>,
    in_flight: usize,
    request: F,
) -> (Vec<Option<T>>, Vec<RowFailure>)
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let results: Vec<Option<Result<T, String>>> = stream::iter(rows)
        .map(|row| {
            let pending = row.map(&request);
            async move {
                match pending {
                    Some(fut) => Some(fut.await),
                    None => None,
                }
            }
        })
        .buffered(in_flight.max(1))
        .collect()
        .await;
    let mut failures = Vec::new();
    let values = results
        .into_iter()
        .enumerate()
        .map(|(row, r)| match r {
            Some(Ok(value)) => Some(value),
            Some(Err(message)) => {
                failures.push(RowFailure::new(row, message));
                None
            }
            None => None,
        })
        .collect();
    (values, failures)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_then_given_up() {
        let calls = AtomicU32::new(0);
        let result: Result<(), String> = with_retries(2, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(Attempt::Transient("s3://b/k: 503".into())) }
        })
        .await;
        assert_eq!(result, Err("s3://b/k: 503 (gave up after 3 attempts)".into()));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_failure_stops_at_once_and_success_after_a_retry_counts() {
        let fatal: Result<(), String> = with_retries(5, || async { Err(Attempt::Fatal("not found".into())) }).await;
        assert_eq!(fatal, Err("not found".into()));
        let calls = AtomicU32::new(0);
        let ok = with_retries(5, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { if n == 0 { Err(Attempt::Transient("reset".into())) } else { Ok(n) } }
        })
        .await;
        assert_eq!(ok, Ok(1));
    }

    #[tokio::test]
    async fn rows_keep_their_order_and_failures_name_their_row() {
        let rows = vec![Some(1), None, Some(3), Some(4)];
        let (values, failures) =
            per_row(rows, 2, |n| async move { if n == 3 { Err(format!("row {n} bad")) } else { Ok(n * 10) } }).await;
        assert_eq!(values, [Some(10), None, None, Some(40)]);
        assert_eq!(failures, [RowFailure::new(2, "row 3 bad")]);
    }
}
