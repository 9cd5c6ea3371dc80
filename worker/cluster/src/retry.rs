//! Retrying calls to the coordinator while it is unreachable or restarting.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Response, Status};

/// Exponential back-off between attempts, optionally bounded in total time.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this long; `None`: until cancelled.
    pub deadline: Option<Duration>,
}

impl Backoff {
    /// Retries until cancelled: a coordinator being restarted comes back.
    pub fn patient() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(2), deadline: None }
    }

    /// Retries for at most `total`.
    pub fn bounded(total: Duration) -> Self {
        Self { deadline: Some(total), ..Self::patient() }
    }
}

/// Whether a failed call may succeed if repeated (the coordinator is down, restarting, or its
/// storage is briefly unavailable).
pub fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Cancelled
    )
}

/// Calls `call` until it succeeds; `Err` with the last status when it fails for good, the
/// deadline passes, or `cancel` is cancelled.
///
/// # Cancellation
/// Returns promptly once `cancel` is cancelled (a call in progress is dropped).
pub async fn retry_rpc<T, F, Fut>(cancel: &CancellationToken, backoff: Backoff, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let started = Instant::now();
    let mut delay = backoff.initial;
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return Err(Status::cancelled("shutting down")),
            result = call() => result,
        };
        let status = match result {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if !is_retryable(&status) => return Err(status),
            Err(status) => status,
        };
        if backoff.deadline.is_some_and(|d| started.elapsed() + delay > d) {
            return Err(status);
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(status),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(backoff.max);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unavailable_is_retried_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let result = retry_rpc(&CancellationToken::new(), Backoff::patient(), || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 3 { Err(Status::unavailable("down")) } else { Ok(Response::new(n)) } }
        })
        .await;
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_arguments_are_not_retried_and_deadlines_hold() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_rpc(&CancellationToken::new(), Backoff::patient(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Status::invalid_argument("no")) }
        })
        .await;
        assert_eq!(result.map_err(|s| s.code()), Err(Code::InvalidArgument));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let result: Result<(), _> =
            retry_rpc(&CancellationToken::new(), Backoff::bounded(Duration::from_secs(5)), || async {
                Err(Status::unavailable("down"))
            })
            .await;
        assert_eq!(result.map_err(|s| s.code()), Err(Code::Unavailable));
    }
}
