//! The coordinator's gRPC service: each call is a short critical section on the job state, and
//! commits go to the checkpoint store outside it.

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use weir_checkpoint::{CommitOutcome, UnitCommit};
use weir_core::WorkUnit;

use super::Coordinator;
use super::publish::{Claim, publish, unpublish};
use super::state::Admission;
use crate::convert::unit_to_proto;
use crate::leases::LeaseDecision;
use crate::proto::{self, lease_response::Result as LeaseResult};

#[tonic::async_trait]
impl proto::coordinator_server::Coordinator for Coordinator {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        {
            let mut state = self.lock();
            state.register(&request.worker, &request.pool, Instant::now());
            state.exchange_report(&request.worker, &request.exchange_endpoint, 0);
        }
        tracing::info!(
            job = %self.shared.job,
            worker = %request.worker,
            pool = %request.pool,
            "worker {} joined pool {}",
            request.worker,
            request.pool
        );
        let options = &self.shared.options;
        Ok(Response::new(proto::RegisterResponse {
            lease_ttl_ms: options.lease_ttl.as_millis() as u64,
            heartbeat_interval_ms: options.heartbeat.as_millis() as u64,
        }))
    }

    async fn lease(&self, request: Request<proto::LeaseRequest>) -> Result<Response<proto::LeaseResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let result = {
            let mut state = self.lock();
            if let Some(ended) = self.tell_ended(&mut state, &request.worker) {
                LeaseResult::Ended(ended)
            } else {
                match state.lease(&request.worker, &request.pool, Instant::now()) {
                    LeaseDecision::Granted { unit, attempt } => {
                        let mut wire = self
                            .shared
                            .units
                            .get(unit as usize)
                            .map(unit_to_proto)
                            .ok_or_else(|| Status::internal(format!("unit {unit} is not in the plan")))?;
                        wire.attempt = attempt;
                        LeaseResult::Unit(wire)
                    }
                    LeaseDecision::Wait(after) => LeaseResult::WaitMs(after.as_millis() as u64),
                    LeaseDecision::AllCommitted => LeaseResult::WaitMs(200),
                    LeaseDecision::Drained => LeaseResult::Drained(proto::Drained {}),
                    LeaseDecision::Exhausted { .. } => LeaseResult::WaitMs(200),
                }
            }
        };
        Ok(Response::new(proto::LeaseResponse { result: Some(result) }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let held: Vec<(u64, u32)> = request.held.iter().map(|h| (h.unit, h.attempt)).collect();
        let mut state = self.lock();
        let revoked = state.heartbeat(&request.worker, &request.pool, &held, Instant::now());
        state.exchange_report(&request.worker, &request.exchange_endpoint, request.exchanges_in_flight);
        let ended = self.tell_ended(&mut state, &request.worker);
        let drained = ended.is_none() && {
            if state.is_drained(&request.worker, self.shared.options.heartbeat) {
                state.forget(&request.worker);
            }
            state.is_gone(&request.worker)
        };
        let pool_workers =
            state.workers_by_pool().into_iter().find(|(pool, _)| *pool == request.pool).map_or(1, |(_, n)| n);
        Ok(Response::new(proto::HeartbeatResponse {
            revoked: revoked.into_iter().map(|(unit, attempt)| proto::UnitAttempt { unit, attempt }).collect(),
            job_ended: ended.is_some(),
            ended,
            drained,
            pool_workers: u32::try_from(pool_workers).unwrap_or(u32::MAX),
        }))
    }

    async fn complete(
        &self,
        request: Request<proto::CompleteRequest>,
    ) -> Result<Response<proto::CompleteResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let (unit, attempt, worker) = (request.unit, request.attempt, request.worker.as_str());
        if !self.lock().knows_unit(unit) {
            return Err(self.refuse(worker, Status::invalid_argument(format!("unit {unit} is not in the plan"))));
        }
        let admission = self.lock().admit_completion(unit, attempt, worker);
        match admission {
            Admission::Publish => {}
            Admission::AlreadyCommitted => return Ok(Response::new(proto::CompleteResponse { committed: true })),
            Admission::Refused(reason) => return Err(self.refuse(worker, Status::failed_precondition(reason))),
        }
        let _publishing = Publishing(self);
        let claim = Claim { unit, attempt, rows_out: request.rows_out, errors: request.errors, files: &request.files };
        let files = match publish(&self.shared.stores, &self.shared.spec.sink.parquet.uri, &claim).await {
            Ok(files) => files,
            Err(e) if e.is_transient() => return Err(Status::unavailable(e.to_string())),
            Err(e) => return Err(self.refuse(worker, Status::invalid_argument(e.to_string()))),
        };
        let rows_in = self.shared.units.get(unit as usize).map_or(request.rows_in, WorkUnit::rows);
        let commit = UnitCommit { unit, attempt, rows_in, rows_out: request.rows_out, errors: request.errors, files };
        let outcome = self.shared.checkpoint.commit(&commit).await.map_err(|e| {
            if e.is_transient() { Status::unavailable(e.to_string()) } else { Status::internal(e.to_string()) }
        })?;
        let (winner, committed) = match outcome {
            CommitOutcome::Committed => (commit, true),
            CommitOutcome::AlreadyCommitted(winner) => {
                unpublish(&self.shared.stores, &commit.files).await;
                (winner, false)
            }
        };
        let max_ratio = self.max_error_ratio();
        let all_done = {
            let mut state = self.lock();
            let all_done = state.committed(&winner);
            state.check_error_ratio(max_ratio);
            if state.is_ended() {
                self.shared.ended.cancel();
            }
            all_done
        };
        if all_done {
            self.shared.all_committed.notify_one();
        }
        Ok(Response::new(proto::CompleteResponse { committed }))
    }

    async fn fail(&self, request: Request<proto::FailRequest>) -> Result<Response<proto::FailResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let (job, unit, attempt, worker) = (&self.shared.job, request.unit, request.attempt, &request.worker);
        let message = &request.message;
        if request.handed_back {
            tracing::info!(
                job = %job,
                unit,
                attempt,
                worker = %worker,
                "unit {unit} attempt {attempt} handed back by {worker}: {message}"
            );
        } else {
            tracing::warn!(
                job = %job,
                unit,
                attempt,
                worker = %worker,
                fatal = request.fatal,
                "unit {unit} attempt {attempt} failed by {worker}: {message}"
            );
        }
        let mut state = self.lock();
        state.attempt_failed(
            request.unit,
            request.attempt,
            request.handed_back,
            request.fatal,
            &request.message,
            Instant::now(),
        );
        if state.is_ended() {
            self.shared.ended.cancel();
        }
        Ok(Response::new(proto::FailResponse {}))
    }

    async fn route(&self, request: Request<proto::RouteRequest>) -> Result<Response<proto::RouteResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let endpoint = self.lock().route(&request.pool, Instant::now()).unwrap_or_default();
        Ok(Response::new(proto::RouteResponse { endpoint }))
    }

    async fn workers(
        &self,
        _request: Request<proto::WorkersRequest>,
    ) -> Result<Response<proto::WorkersResponse>, Status> {
        let workers = self.lock().worker_views(self.shared.options.heartbeat, Instant::now());
        Ok(Response::new(proto::WorkersResponse { workers }))
    }

    async fn drain(&self, request: Request<proto::DrainRequest>) -> Result<Response<proto::DrainResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let known = self.lock().drain(&request.worker, Instant::now());
        if known {
            tracing::info!(job = %self.shared.job, worker = %request.worker, "draining worker {}", request.worker);
        }
        Ok(Response::new(proto::DrainResponse { known }))
    }

    async fn check_lease(
        &self,
        request: Request<proto::CheckLeaseRequest>,
    ) -> Result<Response<proto::CheckLeaseResponse>, Status> {
        let request = request.into_inner();
        require_worker(&request.worker)?;
        let check = self.lock().lease_holder_check(request.unit, request.attempt, &request.worker);
        let reply = match check {
            Ok(()) => proto::CheckLeaseResponse { current: true, reason: String::new() },
            Err(reason) => proto::CheckLeaseResponse { current: false, reason },
        };
        Ok(Response::new(reply))
    }

    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::JobStatus>, Status> {
        Ok(Response::new(Coordinator::status(self)))
    }
}

/// Counts an admitted attempt as publishing while it lives, so finalize waits for it.
struct Publishing<'a>(&'a Coordinator);

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        self.0.lock().published();
    }
}

fn require_worker(worker: &str) -> Result<(), Status> {
    if worker.is_empty() {
        return Err(Status::invalid_argument("worker must name the calling worker"));
    }
    Ok(())
}

impl Coordinator {
    /// Logs a refused report (a stale or forged caller) and returns its status.
    fn refuse(&self, worker: &str, status: Status) -> Status {
        tracing::warn!(job = %self.shared.job, worker = %worker, "refused a completion from {worker}: {}", status.message());
        status
    }

    /// The job's verdict once it ended, noting that `worker` has been told it; `None` while it runs.
    fn tell_ended(&self, state: &mut super::state::JobState, worker: &str) -> Option<proto::JobEnded> {
        if !state.is_ended() {
            return None;
        }
        state.tell_ended(worker);
        let status = state.status(&self.shared.job, self.shared.started.elapsed());
        Some(proto::JobEnded { succeeded: status.phase == proto::Phase::Succeeded as i32, message: status.message })
    }
}
