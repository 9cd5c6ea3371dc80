//! Whether an exchange serves a current lease: the serving worker asks the coordinator.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::ExchangeLease;
use crate::CoordinatorConn;
use crate::proto;
use crate::retry::{Backoff, retry_rpc};

/// How long a serving worker trusts the coordinator's "current" for a lease: exchanges of a
/// revoked lease are refused at most this long after the revocation.
pub const LEASE_CHECK_TTL: Duration = Duration::from_secs(1);

/// How long a serving worker retries asking the coordinator before it refuses the exchange as
/// unavailable.
const CHECK_PATIENCE: Duration = Duration::from_secs(10);

/// Decides whether a serving worker may run steps for the lease an exchange names.
pub trait LeaseCheck: Send + Sync + 'static {
    /// `Ok` to serve the exchange.
    ///
    /// # Errors
    /// `PermissionDenied` (with why) for a missing or non-current lease; `Unavailable` when the
    /// answer cannot be had.
    fn check<'a>(&'a self, lease: Option<&'a ExchangeLease>) -> BoxFuture<'a, Result<(), Status>>;
}

/// Asks the job's coordinator, trusting each "current" for [`LEASE_CHECK_TTL`].
pub struct CoordinatorLeases {
    coordinator: CoordinatorConn,
    /// Confirmed leases and when each was confirmed; entries older than the TTL are dropped
    /// whenever one is added, so the map holds at most the leases served within a TTL.
    confirmed: Mutex<HashMap<(String, u64, u32), Instant>>,
}

impl CoordinatorLeases {
    pub fn new(coordinator: CoordinatorConn) -> Self {
        Self { coordinator, confirmed: Mutex::default() }
    }

    fn confirmed(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64, u32), Instant>> {
        self.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, lease: &ExchangeLease) -> Result<(), Status> {
        let key = (lease.worker.clone(), lease.unit, lease.attempt);
        if self.confirmed().get(&key).is_some_and(|at| at.elapsed() < LEASE_CHECK_TTL) {
            return Ok(());
        }
        let request =
            proto::CheckLeaseRequest { worker: lease.worker.clone(), unit: lease.unit, attempt: lease.attempt };
        let reply = retry_rpc(&CancellationToken::new(), Backoff::bounded(CHECK_PATIENCE), || {
            let mut client = self.coordinator.clone();
            let request = request.clone();
            async move { client.check_lease(request).await }
        })
        .await
        .map_err(|s| Status::unavailable(format!("checking the lease with the coordinator: {}", s.message())))?;
        if !reply.current {
            return Err(Status::permission_denied(format!(
                "the lease this exchange serves is not current: {}",
                reply.reason
            )));
        }
        let mut confirmed = self.confirmed();
        confirmed.retain(|_, at| at.elapsed() < LEASE_CHECK_TTL);
        confirmed.insert(key, Instant::now());
        Ok(())
    }
}

impl LeaseCheck for CoordinatorLeases {
    fn check<'a>(&'a self, lease: Option<&'a ExchangeLease>) -> BoxFuture<'a, Result<(), Status>> {
        async move {
            match lease {
                Some(lease) => self.ask(lease).await,
                None => {
                    Err(Status::permission_denied("an exchange must name the lease it serves (worker, unit, attempt)"))
                }
            }
        }
        .boxed()
    }
}

/// Serves every exchange, naming a lease or not: for benchmarks and tests that run a serving
/// worker without a coordinator. A worker of a job never uses it.
pub struct AcceptAnyLease;

impl LeaseCheck for AcceptAnyLease {
    fn check<'a>(&'a self, _lease: Option<&'a ExchangeLease>) -> BoxFuture<'a, Result<(), Status>> {
        futures::future::ready(Ok(())).boxed()
    }
}
