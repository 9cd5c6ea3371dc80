//! The leasing worker: lease units from the coordinator, stream them through this worker's
//! pipeline, report each finished unit, and keep the leases alive with heartbeats.
//!
//! # Guarantees
//! - A unit is reported complete only after its part files are closed (written whole, in the
//!   output's staging folder: only the coordinator publishes them).
//! - A unit whose lease was revoked (expired and re-leased, or the job ended) stops at its next
//!   morsel (no more input read, no step started on it, no remote exchange continued) and is never
//!   reported: its staged files are deleted. Nor is a unit whose report the coordinator refused.
//! - A pipeline failure fails the unit it names and hands back the others; the worker then starts
//!   a fresh pipeline (the steps, and any model they loaded, are reused).
//! - On shutdown (SIGTERM) the worker stops leasing, finishes the units it holds within the grace
//!   period, hands back what is left, and returns `Ok`.
//! - Drained by the coordinator (a scale-down), it stops leasing, finishes every unit it holds
//!   (none is handed back, so none is redone), and returns [`WorkerExit::Drained`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::{error, info, warn};
use weir_core::unit::BoxError;
use weir_core::{
    ComputePool, ErrorHandling, ExecError, MemoryBudget, Pipeline, PipelineOptions, PipelineStats, StatsMismatch, Step,
    UnitReader, UnitSummary, WithdrawnUnits, WorkUnit,
};
use weir_io::sink::{SinkPlan, UnitListener};

use super::{Holding, Membership, Told, WorkerError, WorkerExit, WorkerOptions, connect};
use crate::CoordinatorConn;
use crate::convert::unit_from_proto;
use crate::metrics::WorkerMetrics;
use crate::proto::{self, lease_response::Result as LeaseResult};
use crate::retry::{Backoff, retry_rpc};

/// What a worker runs units with; everything is shared by its successive pipelines.
pub struct WorkerSetup {
    pub reader: Arc<dyn UnitReader>,
    pub steps: Vec<Arc<dyn Step>>,
    pub budget: MemoryBudget,
    pub compute: ComputePool,
    pub errors: ErrorHandling,
    /// Where units are written; each pipeline opens its own sink from it.
    pub sink: SinkPlan,
    /// Where the worker's counters go; see [`WorkerSetup::metrics_renderer`].
    pub metrics: Arc<WorkerMetrics>,
    /// The counters of the worker's pipelines, kept across them (set by the first).
    pub stats: Arc<Mutex<Option<Arc<PipelineStats>>>>,
}

impl WorkerSetup {
    /// Renders the worker's metrics, synced with its pipelines' counters, for `/metrics`.
    pub fn metrics_renderer(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let (metrics, stats, budget) = (self.metrics.clone(), self.stats.clone(), self.budget.clone());
        Arc::new(move || {
            if let Some(stats) = stats.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                metrics.sync(stats, &budget);
            }
            metrics.render()
        })
    }
}

/// A unit this worker holds, with the permit that counts it against its capacity.
struct Held {
    unit: WorkUnit,
    _permit: OwnedSemaphorePermit,
}

/// Runs units leased from the coordinator until the job ends or `shutdown` is cancelled.
///
/// # Errors
/// [`WorkerError`] when the coordinator's address is unusable, it refuses registration, or the
/// sink cannot be built.
///
/// # Cancellation
/// Cancelling `shutdown` drains: see the module's guarantees.
pub async fn run_worker(
    setup: WorkerSetup,
    options: WorkerOptions,
    shutdown: CancellationToken,
) -> Result<WorkerExit, WorkerError> {
    let client = connect(&options.coordinator, &options.secret)?;
    let membership = Membership::register(client.clone(), &options, String::new(), &shutdown).await?;
    let capacity = options.capacity.max(1);
    let worker = Worker {
        setup: Arc::new(setup),
        options: Arc::new(options),
        client,
        held: Arc::default(),
        capacity: Arc::new(Semaphore::new(capacity)),
        finished: Arc::default(),
        withdrawn: WithdrawnUnits::default(),
        ended: CancellationToken::new(),
        exit: Arc::default(),
    };
    // Dropping the set aborts the heartbeats, so none outlives the worker loop; they go on while
    // held units drain after `shutdown`.
    let mut heartbeats = JoinSet::new();
    heartbeats.spawn({
        let worker = worker.clone();
        async move {
            match membership.heartbeats(|| worker.holding(), |lost| worker.revoke(lost)).await {
                Told::Ended(ended) => worker.job_ended(ended),
                Told::Drained => worker.drained(),
            }
        }
    });
    while !shutdown.is_cancelled() && !worker.ended.is_cancelled() {
        worker.round(&shutdown).await?;
    }
    let exit = worker.exit.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(exit.unwrap_or(WorkerExit::Drained))
}

/// The worker's shared handles; cloning is cheap.
#[derive(Clone)]
struct Worker {
    setup: Arc<WorkerSetup>,
    options: Arc<WorkerOptions>,
    client: CoordinatorConn,
    held: Arc<Mutex<HashMap<u64, Held>>>,
    capacity: Arc<Semaphore>,
    /// Woken when a held unit is reported, so a worker told to wait asks again at once.
    finished: Arc<Notify>,
    /// Attempts whose lease was revoked, which the pipelines stop working on.
    withdrawn: WithdrawnUnits,
    /// Cancelled when the coordinator says the job ended.
    ended: CancellationToken,
    exit: Arc<Mutex<Option<WorkerExit>>>,
}

impl Worker {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pipeline's life: lease units into it until the job ends, shutdown, or a failure;
    /// then hand back whatever it did not finish.
    async fn round(&self, shutdown: &CancellationToken) -> Result<(), WorkerError> {
        let setup = &self.setup;
        let cancel = CancellationToken::new();
        let round_over = shutdown.child_token();
        let (unit_tx, mut unit_rx) = mpsc::channel::<WorkUnit>(1);
        let (done_tx, done_rx) = mpsc::channel::<UnitSummary>(self.options.capacity.max(1));
        let sink = setup.sink.open(Reporter(done_tx))?;
        let options = PipelineOptions {
            errors: setup.errors,
            cancel: cancel.clone(),
            withdrawn: self.withdrawn.clone(),
            ..Default::default()
        };
        let pipeline = self.pipeline(options)?;
        let units = futures::stream::poll_fn(move |cx| unit_rx.poll_recv(cx)).boxed();
        let grace = self.options.grace;
        let run = async {
            let result = tokio::select! {
                result = pipeline.run_stream(units, sink) => result,
                () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                    cancel.cancel();
                    Err(ExecError::Cancelled)
                }
            };
            round_over.cancel();
            result
        };
        let (result, (), ()) = tokio::join!(run, self.lease_into(unit_tx, &round_over), self.report(done_rx));
        let error = result.err();
        if let Some(e) = &error {
            warn!(worker = %self.options.id, pool = %self.options.pool, "pipeline stopped: {e}");
        }
        self.abandon(error.as_ref()).await;
        Ok(())
    }

    /// A pipeline of the worker's steps, counting into the worker's running totals.
    fn pipeline(&self, options: PipelineOptions) -> Result<Pipeline, StatsMismatch> {
        let setup = &self.setup;
        let pipeline = Pipeline::new(
            setup.reader.clone(),
            setup.steps.clone(),
            setup.budget.clone(),
            setup.compute.clone(),
            options,
        );
        let mut stats = setup.stats.lock().unwrap_or_else(|p| p.into_inner());
        match stats.as_ref() {
            Some(totals) => pipeline.with_stats(totals.clone()),
            None => {
                *stats = Some(pipeline.stats());
                Ok(pipeline)
            }
        }
    }

    /// Leases units while there is capacity, until `stop`, the job's end, or the pipeline is gone.
    async fn lease_into(&self, units: mpsc::Sender<WorkUnit>, stop: &CancellationToken) {
        loop {
            let permit = tokio::select! {
                () = stop.cancelled() => return,
                () = self.ended.cancelled() => return,
                permit = self.capacity.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let request = proto::LeaseRequest { worker: self.options.id.clone(), pool: self.options.pool.to_string() };
            let reply = retry_rpc(stop, Backoff::patient(), || {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.lease(request).await }
            })
            .await;
            let wait = match reply.map(|r| r.result) {
                Ok(Some(LeaseResult::Unit(unit))) => match unit_from_proto(unit) {
                    Ok(unit) => {
                        self.held().insert(unit.id, Held { unit: unit.clone(), _permit: permit });
                        self.setup.metrics.unit("leased");
                        if units.send(unit).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(message) => {
                        error!(worker = %self.options.id, pool = %self.options.pool, "{message}");
                        Duration::from_secs(1)
                    }
                },
                Ok(Some(LeaseResult::WaitMs(ms))) => Duration::from_millis(ms),
                Ok(Some(LeaseResult::Ended(ended))) => {
                    self.job_ended(ended);
                    return;
                }
                Ok(Some(LeaseResult::Drained(_))) => {
                    drop(permit);
                    if self.held().is_empty() {
                        self.drained();
                        return;
                    }
                    // Finish what is held (nothing is handed back), then ask again: the
                    // coordinator forgets this worker once it holds nothing.
                    DRAINED_ASK_AGAIN
                }
                Ok(None) => Duration::from_secs(1),
                Err(status) if stop.is_cancelled() => {
                    let _ = status;
                    return;
                }
                Err(status) => {
                    warn!(worker = %self.options.id, pool = %self.options.pool, "lease refused: {status}");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.ended.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.finished.notified() => {}
            }
        }
    }

    /// Reports each finished unit to the coordinator, in the order they finish.
    async fn report(&self, mut done: mpsc::Receiver<UnitSummary>) {
        while let Some(summary) = done.recv().await {
            let (unit, attempt) = (summary.unit, summary.attempt);
            let worker = &self.options.id;
            let rows_in = self.held().get(&unit).map(|h| h.unit.rows());
            let withdrawn = self.withdrawn.contains_attempt(unit, attempt);
            let Some(rows_in) = rows_in.filter(|_| !withdrawn) else {
                let written = summary.rows;
                warn!(worker = %worker, unit, attempt, "unit {unit} attempt {attempt} lost its lease; stopped with {written} rows written, discarding them");
                self.setup.metrics.unit("discarded");
                self.setup.sink.stores().delete_quietly(&summary.files).await;
                self.held().remove(&unit);
                self.withdrawn.forget(unit, attempt);
                self.finished.notify_one();
                continue;
            };
            let request = proto::CompleteRequest {
                worker: self.options.id.clone(),
                unit: summary.unit,
                attempt: summary.attempt,
                rows_in,
                rows_out: summary.rows,
                errors: summary.errors,
                files: summary.files.clone(),
            };
            let reply = retry_rpc(&CancellationToken::new(), Backoff::bounded(REPORT_PATIENCE), || {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.complete(request).await }
            })
            .await;
            match reply {
                Ok(reply) if !reply.committed => {
                    info!(worker = %worker, unit, attempt, "unit {unit} attempt {attempt} lost to an earlier attempt");
                    // Best effort: the coordinator sweeps leftovers.
                    self.setup.sink.stores().delete_quietly(&summary.files).await;
                }
                Ok(_) => self.setup.metrics.unit("completed"),
                Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::InvalidArgument) => {
                    warn!(worker = %worker, unit, attempt, "unit {unit} attempt {attempt} refused: {}; discarding it", status.message());
                    self.setup.metrics.unit("discarded");
                    self.setup.sink.stores().delete_quietly(&summary.files).await;
                }
                Err(status) => warn!(
                    worker = %self.options.id,
                    unit = summary.unit,
                    attempt = summary.attempt,
                    "could not report unit {} ({status}); its lease will expire and it will run again",
                    summary.unit
                ),
            }
            self.held().remove(&summary.unit);
            self.withdrawn.forget(summary.unit, summary.attempt);
            self.finished.notify_one();
        }
    }

    /// Fails the unit `error` names and hands back every other unit still held.
    async fn abandon(&self, error: Option<&ExecError>) {
        let units: Vec<WorkUnit> = self.held().drain().map(|(_, h)| h.unit).collect();
        for unit in &units {
            self.withdrawn.forget(unit.id, unit.attempt);
        }
        let blamed = match error {
            Some(ExecError::Step { unit, .. } | ExecError::Source { unit, .. } | ExecError::Sink { unit, .. }) => {
                Some(*unit)
            }
            _ => None,
        };
        let fatal = matches!(error, Some(ExecError::RowFailed { .. } | ExecError::TooManyErrors { .. }));
        for unit in units {
            let failed = fatal || blamed == Some(unit.id);
            self.setup.metrics.unit(if failed { "failed" } else { "handed_back" });
            let message = match error {
                Some(e) if failed => e.to_string(),
                _ => "handed back unfinished".to_string(),
            };
            let request = proto::FailRequest {
                worker: self.options.id.clone(),
                unit: unit.id,
                attempt: unit.attempt,
                message,
                fatal,
                handed_back: !failed,
            };
            let reply = retry_rpc(&CancellationToken::new(), Backoff::bounded(REPORT_PATIENCE), || {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.fail(request).await }
            })
            .await;
            if let Err(status) = reply {
                warn!(
                    worker = %self.options.id,
                    unit = unit.id,
                    attempt = unit.attempt,
                    "could not hand back unit {}: {status}",
                    unit.id
                );
            }
        }
    }

    /// The coordinator drained this worker and it holds nothing: stop, as after the job's end.
    fn drained(&self) {
        info!(worker = %self.options.id, pool = %self.options.pool, "drained; exiting");
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(WorkerExit::Drained);
        self.ended.cancel();
    }

    /// Records the job's verdict and stops leasing.
    fn job_ended(&self, ended: proto::JobEnded) {
        let (worker, pool) = (&self.options.id, &self.options.pool);
        info!(worker = %worker, pool = %pool, succeeded = ended.succeeded, "job ended: {}", ended.message);
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(WorkerExit::JobEnded { succeeded: ended.succeeded, message: ended.message });
        // Whatever is still held is no longer needed: discard it when it finishes.
        for held in self.held().values() {
            self.withdrawn.withdraw(held.unit.id, held.unit.attempt);
        }
        self.ended.cancel();
    }

    /// Marks a held unit's attempt as revoked: its pipeline stops working on it, and what it
    /// staged is discarded.
    fn revoke(&self, lost: proto::UnitAttempt) {
        if self.held().get(&lost.unit).is_some_and(|held| held.unit.attempt == lost.attempt) {
            self.withdrawn.withdraw(lost.unit, lost.attempt);
        }
    }

    /// The held units, whose leases the next heartbeat renews.
    fn holding(&self) -> Holding {
        let units = self
            .held()
            .values()
            .filter(|h| !self.withdrawn.contains(&h.unit))
            .map(|h| proto::UnitAttempt { unit: h.unit.id, attempt: h.unit.attempt })
            .collect();
        Holding { units, ..Holding::default() }
    }
}

/// How soon a draining worker that still holds units asks again (it also asks as soon as one is
/// reported).
const DRAINED_ASK_AGAIN: Duration = Duration::from_millis(500);

/// How long a finished unit's report is retried while the coordinator is unreachable.
const REPORT_PATIENCE: Duration = Duration::from_secs(120);

/// Tells the worker loop about each unit whose files the sink closed, for it to report.
struct Reporter(mpsc::Sender<UnitSummary>);

impl UnitListener for Reporter {
    async fn unit_closed(&mut self, _unit: &WorkUnit, summary: &UnitSummary) -> Result<(), BoxError> {
        self.0.send(summary.clone()).await.map_err(|_| "the worker stopped reporting")?;
        Ok(())
    }
}
