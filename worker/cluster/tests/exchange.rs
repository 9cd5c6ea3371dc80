//! A segment of steps served over Arrow Flight: every part of a step's output goes through the rest
//! of the segment (the covered step does nothing on the leasing side), and each failed row is recorded under the step and
//! the input row where it failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use tokio_util::sync::CancellationToken;
use weir_cluster::JobSecret;
use weir_cluster::exchange::{AcceptAnyLease, RemoteStep, Router, StepServer, serve_steps, server_bind};
use weir_core::step::CoveredStep;
use weir_core::unit::{BoxError, FileEntry, UnitInput};
use weir_core::{
    ComputePool, ErrorHandling, ErrorRecord, MemoryBudget, Pipeline, PipelineOptions, RowFailure, Step, StepContext,
    StepError, StepOutput, UnitReader, UnitSink, UnitSummary, WorkUnit,
};

/// One row per file: its URI as the row reference, and its size as `n`.
struct Sizes;

impl UnitReader for Sizes {
    fn read(&self, unit: &WorkUnit) -> BoxStream<'static, Result<RecordBatch, BoxError>> {
        let UnitInput::Files(files) = &unit.input else { return stream::empty().boxed() };
        let refs: Vec<String> = files.iter().map(|f| f.uri.clone()).collect();
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        let batch = RecordBatch::try_from_iter([
            (weir_core::ROW_REF_COLUMN, Arc::new(StringArray::from(refs)) as ArrayRef),
            ("n", Arc::new(UInt64Array::from(sizes)) as ArrayRef),
        ]);
        stream::once(async move { batch.map_err(|e| Box::new(e) as BoxError) }).boxed()
    }
}

fn n_of(batch: &RecordBatch) -> Vec<u64> {
    batch.column_by_name("n").expect("n").as_primitive::<UInt64Type>().values().to_vec()
}

/// The rows of `input` whose size passes `keep`.
fn keep_where(input: &RecordBatch, keep: impl Fn(u64) -> bool) -> RecordBatch {
    let dropped: Vec<usize> = n_of(input).into_iter().enumerate().filter(|(_, n)| !keep(*n)).map(|(r, _)| r).collect();
    weir_core::batch::drop_rows(input, &dropped).expect("drop rows")
}

/// Fails the rows of `input` whose size is `n`, keeping the others.
fn fail_size(input: &RecordBatch, n: u64, message: &str) -> StepOutput {
    let failures =
        n_of(input).into_iter().enumerate().filter(|(_, size)| *size == n).map(|(r, _)| RowFailure::new(r, message));
    StepOutput::new(keep_where(input, |size| size != n), failures.collect())
}

/// Step 1 (served): fails rows of size 0, and answers in two parts, even sizes then odd ones.
struct EvensThenOdds;

impl Step for EvensThenOdds {
    fn name(&self) -> &str {
        "evens-then-odds"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        let failures = fail_size(&input, 0, "size 0").failures;
        let odds = StepOutput::ok(keep_where(&input, |n| n % 2 == 1));
        let evens = StepOutput::new(keep_where(&input, |n| n != 0 && n % 2 == 0), failures);
        let output = StepOutput { more: Some(stream::once(async move { Ok(odds) }).boxed()), ..evens };
        futures::future::ready(Ok(output)).boxed()
    }
}

/// Step 2 (served): fails rows of size 7.
struct NotSeven;

impl Step for NotSeven {
    fn name(&self) -> &str {
        "not-seven"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        futures::future::ready(Ok(fail_size(&input, 7, "seven"))).boxed()
    }
}

/// Steps 0 and 3 (local): fail rows of one size.
struct Not(u64, &'static str);

impl Step for Not {
    fn name(&self) -> &str {
        self.1
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        futures::future::ready(Ok(fail_size(&input, self.0, self.1))).boxed()
    }
}

/// Remembers the sizes written and the errors recorded.
#[derive(Clone, Default)]
struct Collect {
    sizes: Arc<Mutex<Vec<u64>>>,
    errors: Arc<Mutex<Vec<ErrorRecord>>>,
}

impl UnitSink for Collect {
    async fn write(&mut self, _unit: &WorkUnit, batch: RecordBatch) -> Result<(), BoxError> {
        self.sizes.lock().expect("sizes").extend(n_of(&batch));
        Ok(())
    }

    async fn write_errors(&mut self, _unit: &WorkUnit, errors: Vec<ErrorRecord>) -> Result<(), BoxError> {
        self.errors.lock().expect("errors").extend(errors);
        Ok(())
    }

    async fn finish_unit(&mut self, unit: &WorkUnit) -> Result<UnitSummary, BoxError> {
        Ok(UnitSummary { unit: unit.id, attempt: unit.attempt, ..Default::default() })
    }

    fn buffered_bytes(&self) -> u64 {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_segment_keeps_every_row_and_names_where_each_failure_happened() {
    let compute = ComputePool::new(1).expect("pool");
    let served: HashMap<usize, Arc<dyn Step>> =
        [(1, Arc::new(EvensThenOdds) as Arc<dyn Step>), (2, Arc::new(NotSeven) as Arc<dyn Step>)].into_iter().collect();
    let server = StepServer::new(served, StepContext::new(compute.clone()), Arc::new(AcceptAnyLease));
    let (listener, addr) = server_bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let stop = CancellationToken::new();
    let secret = JobSecret::generate("exchange").expect("secret");
    let serving = tokio::spawn(serve_steps(server, listener, secret.clone(), stop.clone()));

    let router = Arc::new(Router::to(&format!("http://{addr}"), secret).expect("router"));
    let steps: Vec<Arc<dyn Step>> = vec![
        Arc::new(Not(5, "not-five")),
        Arc::new(RemoteStep::new(1..=2, "evens-then-odds", router, 2)),
        Arc::new(CoveredStep::new("not-seven")),
        Arc::new(Not(9, "not-nine")),
    ];
    let sizes = [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    let files = sizes.iter().map(|n| FileEntry { uri: format!("file-{n}"), size: *n }).collect();
    let unit = WorkUnit { id: 0, attempt: 0, input: UnitInput::Files(files) };
    let options = PipelineOptions {
        errors: ErrorHandling { skip_rows: true, max_error_ratio: 1.0 },
        max_morsel_rows: 4,
        ..PipelineOptions::default()
    };
    let pipeline = Pipeline::new(Arc::new(Sizes), steps, MemoryBudget::new(64 << 20), compute, options);
    let sink = Collect::default();

    let summary = pipeline.run(vec![unit], sink.clone()).await.expect("run");

    let mut written = sink.sizes.lock().expect("sizes").clone();
    written.sort();
    assert_eq!(written, [1, 2, 3, 4, 6, 8, 10, 11], "every row not failed, once");
    let mut errors: Vec<(String, usize, String, String)> = sink
        .errors
        .lock()
        .expect("errors")
        .iter()
        .map(|e| (e.row_ref.clone(), e.step_index, e.step.clone(), e.message.clone()))
        .collect();
    errors.sort();
    let expected = [
        ("file-0", 1, "evens-then-odds", "size 0"),
        ("file-5", 0, "not-five", "not-five"),
        ("file-7", 2, "not-seven", "seven"),
        ("file-9", 3, "not-nine", "not-nine"),
    ]
    .map(|(r, i, s, m)| (r.to_string(), i, s.to_string(), m.to_string()));
    assert_eq!(errors, expected);
    assert_eq!((summary.rows_in, summary.rows_failed), (12, 4));
    stop.cancel();
    serving.await.expect("join").expect("serve");
}

/// A Flight caller without the job's token, or with another job's secret, gets nothing run: a
/// worker's exchange port is not a file reader or free compute for whoever reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_call_without_the_jobs_token_is_refused() {
    let compute = ComputePool::new(1).expect("pool");
    let served: HashMap<usize, Arc<dyn Step>> = [(0, Arc::new(NotSeven) as Arc<dyn Step>)].into_iter().collect();
    let server = StepServer::new(served, StepContext::new(compute.clone()), Arc::new(AcceptAnyLease));
    let (listener, addr) = server_bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let stop = CancellationToken::new();
    let secret = JobSecret::generate("exchange").expect("secret");
    let serving = tokio::spawn(serve_steps(server, listener, secret.clone(), stop.clone()));
    let input = RecordBatch::try_from_iter([
        (weir_core::ROW_REF_COLUMN, Arc::new(StringArray::from(vec!["file-7", "file-8"])) as ArrayRef),
        ("n", Arc::new(UInt64Array::from(vec![7u64, 8])) as ArrayRef),
    ])
    .expect("batch");
    let ctx = StepContext::new(compute);

    // TLS with the job's CA, but no token: Unauthenticated.
    let channel = secret.endpoint(&addr.to_string()).expect("endpoint").connect().await.expect("tls connects");
    let mut bare = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let status = bare.list_actions(arrow_flight::Empty {}).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");

    // Another job's secret: its CA does not know this server, so nothing is sent at all.
    let stranger = JobSecret::generate("other").expect("secret");
    let step = RemoteStep::new(0..=0, "not-seven", Arc::new(Router::to(&addr.to_string(), stranger).expect("r")), 1);
    assert!(Arc::new(step).process(input.clone(), ctx.clone()).await.is_err());

    // Plain HTTP/2 without TLS: refused as well.
    let plain = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    let mut plain = arrow_flight::flight_service_client::FlightServiceClient::new(plain);
    assert!(plain.list_actions(arrow_flight::Empty {}).await.is_err());

    // The job's own secret: served.
    let step = RemoteStep::new(0..=0, "not-seven", Arc::new(Router::to(&addr.to_string(), secret).expect("r")), 1);
    let output = Arc::new(step).process(input, ctx).await.expect("served");
    assert_eq!(output.batch.num_rows() + output.failures.len(), 2);
    stop.cancel();
    serving.await.expect("join").expect("serve");
}
