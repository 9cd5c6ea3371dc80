//! The Flight service of a worker that serves its pool's steps to workers of other pools.

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
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use weir_core::{Step, StepContext, StepError, StepOutput};

use super::{MAX_MESSAGE_BYTES, parse_step_command, part_metadata};

/// Runs the steps of this worker's pool for other workers.
pub struct StepServer {
    /// By index in `spec.steps`.
    steps: HashMap<usize, Arc<dyn Step>>,
    ctx: StepContext,
    in_flight: Arc<AtomicU32>,
}

impl StepServer {
    pub fn new(steps: HashMap<usize, Arc<dyn Step>>, ctx: StepContext) -> Self {
        Self { steps, ctx, in_flight: Arc::default() }
    }

    /// Exchanges in progress (the load the coordinator balances on).
    pub fn load(&self) -> Arc<AtomicU32> {
        self.in_flight.clone()
    }
}

/// Serves `server` on `listener` until `shutdown`; exchanges in progress finish first.
///
/// # Errors
/// When the server fails.
pub async fn serve_steps(
    server: StepServer,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(server)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
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

/// Encodes one output part: the batch, with its failures in the batch message's metadata.
async fn encode_part(output: StepOutput) -> Result<Vec<FlightData>, Status> {
    let metadata = part_metadata(&output.failures, output.busy);
    let batch: RecordBatch = output.batch;
    let mut messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(MAX_MESSAGE_BYTES)
        .build(futures::stream::once(async move { Ok(batch) }))
        .try_collect()
        .await
        .map_err(|e| Status::internal(format!("encoding the output: {e}")))?;
    if let Some(last) = messages.last_mut() {
        last.app_metadata = metadata;
    }
    Ok(messages)
}

/// Runs `step` on every batch of `input`, sending each output part to `out`.
async fn run_exchange(
    step: Arc<dyn Step>,
    ctx: StepContext,
    mut input: FlightRecordBatchStream,
    out: mpsc::Sender<Result<FlightData, Status>>,
) -> Result<(), Status> {
    while let Some(batch) = input.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("reading the morsel: {e}")))?;
        let mut output = step.clone().process(batch, ctx.clone()).await.map_err(step_status)?;
        let mut more = output.more.take();
        send_all(&out, encode_part(output).await?).await?;
        while let Some(part) = match more.as_mut() {
            Some(m) => m.next().await,
            None => None,
        } {
            let part = part.map_err(step_status)?;
            send_all(&out, encode_part(part).await?).await?;
        }
    }
    Ok(())
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
        let index = first
            .flight_descriptor
            .as_ref()
            .and_then(|d| parse_step_command(&d.cmd))
            .ok_or_else(|| Status::invalid_argument("the first message must name the step: {\"step\": N}"))?;
        let step = self
            .steps
            .get(&index)
            .cloned()
            .ok_or_else(|| Status::failed_precondition(format!("this worker does not run step #{index}")))?;
        let data =
            futures::stream::once(async { Ok(first) }).chain(incoming).map_err(|s| FlightError::Tonic(Box::new(s)));
        let input = FlightRecordBatchStream::new_from_flight_data(data);
        // Two messages ahead at most: the rest waits on HTTP/2 flow control.
        let (tx, mut rx) = mpsc::channel(2);
        let ctx = self.ctx.clone();
        let guard = InFlight::new(self.in_flight.clone());
        let task = tokio::spawn(async move {
            let _guard = guard;
            if let Err(status) = run_exchange(step, ctx, input, tx.clone()).await {
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
