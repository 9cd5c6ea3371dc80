//! The Flight service of a worker that serves its pool's steps to workers of other pools: each
//! exchange runs a segment of consecutive steps on every morsel it is sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use weir_auth::JobSecret;
use weir_core::batch::{batch_bytes, row_ref, row_refs};
use weir_core::{FailureOrigin, PipelineStats, RowFailure, Step, StepContext, StepError, StepStats, UnitAttempt};

use super::{LeaseCheck, MAX_MESSAGE_BYTES, parse_segment_command, part_metadata};

/// Runs the steps of this worker's pool for other workers.
/// A served step and its counters.
type Counted = (Arc<dyn Step>, Arc<StepStats>);

pub struct StepServer {
    /// By index in `spec.steps`, with the step's counters.
    steps: HashMap<usize, Counted>,
    /// Whether an exchange's lease is current.
    leases: Arc<dyn LeaseCheck>,
    ctx: StepContext,
    in_flight: Arc<AtomicU32>,
    /// The served steps' counters, in step order (for `/metrics`).
    stats: Arc<PipelineStats>,
}

impl StepServer {
    /// Serves `steps` for exchanges whose lease `leases` accepts; each step's slots are its
    /// concurrency, or the compute threads by default.
    pub fn new(steps: HashMap<usize, Arc<dyn Step>>, ctx: StepContext, leases: Arc<dyn LeaseCheck>) -> Self {
        let threads = ctx.compute.threads();
        let mut indexed: Vec<(usize, Counted)> = steps
            .into_iter()
            .map(|(i, step)| {
                let stats = Arc::new(StepStats::new(step.name(), step.concurrency().unwrap_or(threads)));
                (i, (step, stats))
            })
            .collect();
        indexed.sort_by_key(|(i, _)| *i);
        let stats = Arc::new(PipelineStats::new(indexed.iter().map(|(_, (_, s))| s.clone()).collect()));
        Self { steps: indexed.into_iter().collect(), leases, ctx, in_flight: Arc::default(), stats }
    }

    /// The served steps' counters: rows, busy time and failures of every exchange.
    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    /// Exchanges in progress (the load the coordinator balances on).
    pub fn load(&self) -> Arc<AtomicU32> {
        self.in_flight.clone()
    }
}

/// Serves `server` on `listener`, over TLS with the job's identity, to callers presenting the job's
/// token (others get `Unauthenticated`), until `shutdown`; exchanges in progress finish first.
///
/// # Errors
/// When the server fails.
pub async fn serve_steps(
    server: StepServer,
    listener: TcpListener,
    secret: JobSecret,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(server)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = tonic::service::interceptor::InterceptedService::new(service, secret.authenticator());
    tonic::transport::Server::builder()
        .tls_config(secret.server_tls())?
        .add_service(service)
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await
}

/// The address a listener bound to `addr` (port 0 picks one).
///
/// # Errors
/// When it cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!("{what}: a weir worker only answers DoExchange")))
}

/// Counts an exchange in flight while alive.
struct InFlight(Arc<AtomicU32>);

impl InFlight {
    fn new(counter: Arc<AtomicU32>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A step error as a status the caller maps back (`Unavailable` for transient ones).
fn step_status(e: StepError) -> Status {
    match e {
        StepError::Transient(message) => Status::unavailable(message),
        other => Status::internal(other.to_string()),
    }
}

/// Encodes one output part: the batch, with its failures and busy time in the batch message's
/// metadata. An empty batch is still sent as a batch message (the Flight encoder would send only
/// its schema), so the failures of a morsel whose every row failed come back with it.
async fn encode_part(batch: RecordBatch, carried: Carried) -> Result<Vec<FlightData>, Status> {
    let metadata = part_metadata(&carried.failures, Some(carried.busy));
    let encoding_failed = |e: &dyn std::fmt::Display| Status::internal(format!("encoding the output: {e}"));
    let mut messages: Vec<FlightData> = if batch.num_rows() == 0 {
        arrow_flight::utils::batches_to_flight_data(&batch.schema(), [&batch]).map_err(|e| encoding_failed(&e))?
    } else {
        FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(MAX_MESSAGE_BYTES)
            .build(futures::stream::once(async move { Ok(batch) }))
            .try_collect()
            .await
            .map_err(|e| encoding_failed(&e))?
    };
    if let Some(last) = messages.last_mut() {
        last.app_metadata = metadata;
    }
    Ok(messages)
}

/// The steps of one exchange, by index in `spec.steps`, in order, with their counters.
type Segment = Vec<(usize, Arc<dyn Step>, Arc<StepStats>)>;

/// Failures and busy time not sent yet: they go with the next part sent.
#[derive(Default)]
struct Carried {
    failures: Vec<RowFailure>,
    busy: std::time::Duration,
}

/// Runs `segment` on every batch of `input`, sending each output part to `out`.
async fn run_exchange(
    segment: Arc<Segment>,
    ctx: StepContext,
    mut input: FlightRecordBatchStream,
    out: mpsc::Sender<Result<FlightData, Status>>,
) -> Result<(), Status> {
    while let Some(batch) = input.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("reading the morsel: {e}")))?;
        let mut carried = Carried::default();
        run_chain(&segment, 0, &ctx, batch, &mut carried, &out).await?;
    }
    Ok(())
}

/// Runs `segment[at..]` on `batch`, part by part, as the executor would: each part of a step's
/// output goes through the rest before the next part is asked for, and an empty part skips the
/// rest. Failures of the first step name rows of the exchange's morsel; later steps' failures are
/// resolved to their step and row reference here, where their input is known.
fn run_chain<'a>(
    segment: &'a Segment,
    at: usize,
    ctx: &'a StepContext,
    batch: RecordBatch,
    carried: &'a mut Carried,
    out: &'a mpsc::Sender<Result<FlightData, Status>>,
) -> BoxFuture<'a, Result<(), Status>> {
    async move {
        let Some((index, step, stats)) = segment.get(at).filter(|_| batch.num_rows() > 0) else {
            return send_all(out, encode_part(batch, std::mem::take(carried)).await?).await;
        };
        stats.record_in(batch.num_rows(), batch_bytes(&batch));
        let started = Instant::now();
        let mut output = step.clone().process(batch.clone(), ctx.clone()).await.map_err(step_status)?;
        // Later parts count only the busy time they report, as in the executor.
        output.busy = Some(output.busy.unwrap_or_else(|| started.elapsed()));
        let mut more = output.more.take();
        let mut next = Some(Ok(output));
        while let Some(part) = next {
            let part = part.map_err(step_status)?;
            let busy = part.busy.unwrap_or_default();
            carried.busy += busy;
            stats.add_busy(busy);
            stats.record_out(part.batch.num_rows(), batch_bytes(&part.batch));
            stats.record_failed(part.failures.len());
            if at == 0 {
                carried.failures.extend(part.failures);
            } else {
                carried.failures.extend(resolve(*index, step.name(), &batch, part.failures));
            }
            run_chain(segment, at + 1, ctx, part.batch, carried, out).await?;
            next = match more.as_mut() {
                Some(m) => m.next().await,
                None => None,
            };
        }
        Ok(())
    }
    .boxed()
}

/// `failures` of step `index` on `input`, naming their step and row reference.
fn resolve(index: usize, step: &str, input: &RecordBatch, failures: Vec<RowFailure>) -> Vec<RowFailure> {
    let refs = row_refs(input);
    failures
        .into_iter()
        .map(|f| match f.origin {
            Some(_) => f,
            None => {
                let origin =
                    FailureOrigin { step_index: index, step: step.to_string(), row_ref: row_ref(refs.as_ref(), f.row) };
                RowFailure::at(origin, f.message)
            }
        })
        .collect()
}

async fn send_all(out: &mpsc::Sender<Result<FlightData, Status>>, messages: Vec<FlightData>) -> Result<(), Status> {
    for message in messages {
        out.send(Ok(message)).await.map_err(|_| Status::cancelled("the caller went away"))?;
    }
    Ok(())
}

#[tonic::async_trait]
impl FlightService for StepServer {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| Status::invalid_argument("empty exchange"))?;
        let request =
            first.flight_descriptor.as_ref().and_then(|d| parse_segment_command(&d.cmd)).ok_or_else(|| {
                Status::invalid_argument(
                    "the first message must name the steps and the lease: \
                     {\"step\": N, \"last\": M, \"worker\": W, \"unit\": U, \"attempt\": A}",
                )
            })?;
        let segment = request
            .steps
            .map(|index| match self.steps.get(&index) {
                Some((step, stats)) => Ok((index, step.clone(), stats.clone())),
                None => Err(Status::invalid_argument(format!("this worker does not run step #{index}"))),
            })
            .collect::<Result<Segment, Status>>()?;
        self.leases.check(request.lease.as_ref()).await?;
        let data =
            futures::stream::once(async { Ok(first) }).chain(incoming).map_err(|s| FlightError::Tonic(Box::new(s)));
        let input = FlightRecordBatchStream::new_from_flight_data(data);
        // Two messages ahead at most: the rest waits on HTTP/2 flow control.
        let (tx, mut rx) = mpsc::channel(2);
        let ctx = match &request.lease {
            Some(lease) => self.ctx.for_attempt(UnitAttempt { unit: lease.unit, attempt: lease.attempt }),
            None => self.ctx.clone(),
        };
        let guard = InFlight::new(self.in_flight.clone());
        let task = tokio::spawn(async move {
            let _guard = guard;
            if let Err(status) = run_exchange(Arc::new(segment), ctx, input, tx.clone()).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        let abort = task.abort_handle();
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        // Dropping the response (the caller hung up) aborts the step's task.
        let stream = AbortOnDropStream { inner: stream.boxed(), abort };
        Ok(Response::new(stream.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake")
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(&self, _request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }

    async fn do_get(&self, _request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        unimplemented("DoGet")
    }

    async fn do_put(&self, _request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented("DoPut")
    }

    async fn do_action(&self, _request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented("DoAction")
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented("ListActions")
    }
}

/// A response stream that aborts the task producing it when dropped.
struct AbortOnDropStream {
    inner: Stream<FlightData>,
    abort: tokio::task::AbortHandle,
}

impl futures::Stream for AbortOnDropStream {
    type Item = Result<FlightData, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Drop for AbortOnDropStream {
    fn drop(&mut self) {
        self.abort.abort();
    }
}
