//! The stand-in for a segment of steps of another pool: each morsel goes to a worker of that pool,
//! chosen by the coordinator, and comes back through every step of the segment.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_flight::FlightDescriptor;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use weir_auth::{Bearer, JobSecret};
use weir_core::{Step, StepContext, StepError, StepOutput};

use super::{ExchangeLease, MAX_MESSAGE_BYTES, parse_part_metadata, segment_command};
use crate::CoordinatorConn;
use crate::proto;
use crate::retry::{Backoff, retry_rpc};

/// How long a remote step waits for a worker of its pool to exist before failing the morsel.
const ROUTE_PATIENCE: Duration = Duration::from_secs(120);

/// Finds workers of a pool through the coordinator, one pick per morsel (so a grown pool gets work
/// at once and a drained worker none), and keeps a connection to each peer used.
pub struct Router {
    /// `None`: a fixed peer (see [`Router::to`]).
    coordinator: Option<CoordinatorConn>,
    worker: String,
    pool: String,
    /// Connections by endpoint; a fixed router holds its one peer here.
    clients: Mutex<HashMap<String, FlightClient>>,
    /// The job's secret, presented to every peer.
    secret: JobSecret,
}

impl Router {
    pub fn new(coordinator: CoordinatorConn, worker: &str, pool: &str, secret: JobSecret) -> Self {
        let (worker, pool) = (worker.to_string(), pool.to_string());
        Self { coordinator: Some(coordinator), worker, pool, clients: Mutex::default(), secret }
    }

    /// Always the peer at `endpoint`, without a coordinator (benchmarks, tools).
    ///
    /// # Errors
    /// When `endpoint` is not a URL.
    pub fn to(endpoint: &str, secret: JobSecret) -> Result<Self, StepError> {
        let client = flight_client(endpoint, &secret)?;
        let clients = Mutex::new(HashMap::from([(endpoint.to_string(), client)]));
        Ok(Self { coordinator: None, worker: String::new(), pool: String::new(), clients, secret })
    }

    /// The same router, naming `worker` as the holder of the leases its exchanges serve.
    pub fn on_behalf_of(mut self, worker: &str) -> Self {
        self.worker = worker.to_string();
        self
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, FlightClient>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peer for the next morsel: the coordinator's least-loaded pick (waiting while the pool
    /// has no worker), or the fixed peer.
    async fn peer(&self) -> Result<(String, FlightClient), StepError> {
        let Some(coordinator) = &self.coordinator else {
            return self
                .clients()
                .iter()
                .next()
                .map(|(e, c)| (e.clone(), c.clone()))
                .ok_or_else(|| StepError::Transient("the fixed peer failed".into()));
        };
        let request = proto::RouteRequest { worker: self.worker.clone(), pool: self.pool.clone() };
        let started = Instant::now();
        let endpoint = loop {
            let reply = retry_rpc(&CancellationToken::new(), Backoff::bounded(ROUTE_PATIENCE), || {
                let mut client = coordinator.clone();
                let request = request.clone();
                async move { client.route(request).await }
            })
            .await
            .map_err(|s| {
                StepError::Transient(format!("asking the coordinator for a {} worker: {}", self.pool, s.message()))
            })?;
            if !reply.endpoint.is_empty() {
                break reply.endpoint;
            }
            if started.elapsed() > ROUTE_PATIENCE {
                return Err(StepError::Transient(format!("no {} worker is available", self.pool)));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if let Some(client) = self.clients().get(&endpoint) {
            return Ok((endpoint, client.clone()));
        }
        let client = flight_client(&endpoint, &self.secret)?;
        self.clients().insert(endpoint.clone(), client.clone());
        Ok((endpoint, client))
    }

    /// Drops the connection to a peer that failed (a coordinator-routed one reconnects if it is
    /// picked again).
    fn forget(&self, endpoint: &str) {
        if self.coordinator.is_some() {
            self.clients().remove(endpoint);
        }
    }
}

/// A Flight client of a peer that presents the job's token over TLS.
type FlightClient = FlightServiceClient<InterceptedService<Channel, Bearer>>;

fn flight_client(endpoint: &str, secret: &JobSecret) -> Result<FlightClient, StepError> {
    let channel = secret
        .endpoint(endpoint)
        .map_err(|e| StepError::Other(format!("peer endpoint `{endpoint}`: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    Ok(FlightServiceClient::with_interceptor(channel, secret.bearer())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Consecutive steps of the job (`steps`, indices in `spec.steps`), run by a worker of another
/// pool in one exchange per morsel, so a morsel crosses the network once each way however many
/// steps the segment has. In the pipeline it takes the place of the segment's first step, and each
/// later step of the segment is a [`CoveredStep`](weir_core::step::CoveredStep).
pub struct RemoteStep {
    steps: RangeInclusive<usize>,
    name: String,
    router: Arc<Router>,
    concurrency: usize,
}

impl RemoteStep {
    /// `concurrency` morsels are in flight at once (two keep a GPU busy while the next arrives);
    /// `name` is the first step's.
    pub fn new(steps: RangeInclusive<usize>, name: &str, router: Arc<Router>, concurrency: usize) -> Self {
        Self { steps, name: name.to_string(), router, concurrency: concurrency.max(1) }
    }

    async fn exchange(self: Arc<Self>, input: RecordBatch, ctx: StepContext) -> Result<StepOutput, StepError> {
        let (endpoint, mut client) = self.router.peer().await?;
        let failed = |e: String| {
            self.router.forget(&endpoint);
            StepError::Transient(format!("{} on {endpoint}: {e}", self.name))
        };
        let lease =
            ctx.attempt.map(|a| ExchangeLease { worker: self.router.worker.clone(), unit: a.unit, attempt: a.attempt });
        let command = segment_command(&self.steps, lease.as_ref());
        let request = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(MAX_MESSAGE_BYTES)
            .with_flight_descriptor(Some(FlightDescriptor::new_cmd(command)))
            .build(futures::stream::once(async move { Ok(input) }))
            .filter_map(|message| async move { message.ok() });
        let response = client.do_exchange(request).await.map_err(|s| match s.code() {
            // The peer found the lease revoked: the unit is not wanted, and the peer is fine.
            tonic::Code::PermissionDenied => {
                StepError::Withdrawn(format!("{} on {endpoint}: {}", self.name, s.message()))
            }
            _ => failed(s.message().to_string()),
        })?;
        let mut decoder = FlightDataDecoder::new(response.into_inner().map_err(|s| FlightError::Tonic(Box::new(s))));
        let first = next_part(&mut decoder).await.map_err(&failed)?;
        let mut output = first.ok_or_else(|| failed("the peer answered nothing".into()))?;
        let router = self.router.clone();
        let name = self.name.clone();
        let more = futures::stream::try_unfold(Some(decoder), move |state| {
            let (router, endpoint, name) = (router.clone(), endpoint.clone(), name.clone());
            async move {
                let Some(mut decoder) = state else { return Ok(None) };
                match next_part(&mut decoder).await {
                    Ok(Some(part)) => Ok(Some((part, Some(decoder)))),
                    Ok(None) => Ok(None),
                    Err(e) => {
                        router.forget(&endpoint);
                        Err(StepError::Transient(format!("{name} on {endpoint}: {e}")))
                    }
                }
            }
        });
        output.more = Some(more.boxed());
        Ok(output)
    }
}

/// The next output part of an exchange; `None` at its end.
async fn next_part(decoder: &mut FlightDataDecoder) -> Result<Option<StepOutput>, String> {
    while let Some(message) = decoder.next().await {
        let message = message.map_err(|e| match e {
            FlightError::Tonic(status) => status.message().to_string(),
            other => other.to_string(),
        })?;
        if let DecodedPayload::RecordBatch(batch) = message.payload {
            let (failures, busy) = parse_part_metadata(&message.inner.app_metadata)?;
            let mut output = StepOutput::new(batch, failures);
            output.busy = busy;
            return Ok(Some(output));
        }
    }
    Ok(None)
}

impl Step for RemoteStep {
    fn name(&self) -> &str {
        &self.name
    }

    fn concurrency(&self) -> Option<usize> {
        Some(self.concurrency)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        self.exchange(input, ctx).boxed()
    }
}
