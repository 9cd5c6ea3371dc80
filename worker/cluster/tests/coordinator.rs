//! The coordinator's gRPC API, served in-process and driven by the generated client: leases,
//! commits only from the lease holder, failures, restarts from the checkpoint, finalization, and
//! callers that are not who they claim to be.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use tokio_util::sync::CancellationToken;
use weir_cluster::JobSecret;
use weir_cluster::coordinator::{Coordinator, CoordinatorOptions, bind};
use weir_cluster::proto::coordinator_client::CoordinatorClient;
use weir_cluster::proto::{self, lease_response::Result as Lease};
use weir_cluster::worker::connect;
use weir_crds::parse_manifest;
use weir_io::StoreRegistry;
use weir_io::sink::{PartKind, STAGING_DIR};

/// A job over `files` empty files, one unit per two files, writing under `dir/out`.
fn job(dir: &Path, files: usize) -> weir_crds::MultimodalJob {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    for i in 0..files {
        std::fs::write(input.join(format!("{i:03}.txt")), b"x").expect("write");
    }
    let text = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source:\n    files: {{uri: \"{}\", filesPerUnit: 2}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n  sink:\n    parquet: {{uri: \"{}\"}}\n",
        input.display(),
        dir.join("out").display()
    );
    parse_manifest(&text, "test").expect("manifest")
}

type Client = weir_cluster::CoordinatorConn;

struct Running {
    client: Client,
    secret: JobSecret,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<Result<weir_cluster::JobOutcome, weir_cluster::CoordinatorError>>,
}

async fn start(job: &weir_crds::MultimodalJob, options: CoordinatorOptions) -> Running {
    let stores = std::sync::Arc::new(StoreRegistry::default());
    let coordinator = Coordinator::start("t", &job.spec, stores, options).await.expect("start");
    let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let stop = CancellationToken::new();
    let secret = JobSecret::generate("t").expect("secret");
    let served = tokio::spawn(coordinator.serve(listener, secret.clone(), stop.clone()));
    let client = connect(&addr.to_string(), &secret).expect("connect");
    Running { client, secret, addr, stop, served }
}

fn options() -> CoordinatorOptions {
    CoordinatorOptions { linger: Duration::from_millis(100), ..CoordinatorOptions::default() }
}

async fn lease(client: &mut Client, worker: &str) -> Lease {
    let request = proto::LeaseRequest { worker: worker.into(), pool: "cpu".into() };
    client.lease(request).await.expect("lease").into_inner().result.expect("result")
}

/// Stages `rows` rows of `unit`'s attempt under the output `out` the way the sink does, and
/// returns the staged file's URI.
fn stage(out: &Path, unit: &proto::Unit, rows: usize) -> String {
    let relative = PartKind::Output.relative(unit.id, unit.attempt);
    let path = out.join(STAGING_DIR).join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let column: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("row {i}"))));
    let batch = RecordBatch::try_from_iter([("uri", column)]).expect("batch");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).expect("create"), batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    format!("file://{}", path.display())
}

/// A report of `unit` finished by `worker` with two rows, staged under `out`.
fn finished(out: &Path, unit: &proto::Unit, worker: &str) -> proto::CompleteRequest {
    let files = vec![stage(out, unit, 2)];
    proto::CompleteRequest {
        worker: worker.into(),
        unit: unit.id,
        attempt: unit.attempt,
        rows_in: 2,
        rows_out: 2,
        errors: 0,
        files,
    }
}

#[tokio::test]
async fn only_the_current_lease_holder_commits_and_a_retry_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 4);
    let mut run = start(&job, options()).await;
    let c = &mut run.client;
    let Lease::Unit(first) = lease(c, "a").await else { panic!("no unit") };
    assert_eq!((first.id, first.attempt), (0, 0));
    // The lease is handed back; the unit is leased again with a new attempt.
    let back = proto::FailRequest {
        worker: "a".into(),
        unit: 0,
        attempt: 0,
        message: "stopping".into(),
        fatal: false,
        handed_back: true,
    };
    c.fail(back).await.expect("fail");
    let Lease::Unit(again) = lease(c, "b").await else { panic!("no unit") };
    assert_eq!((again.id, again.attempt), (0, 1));
    // Only the holder of the current lease commits; a retried report of it stays committed, and
    // the handed-back attempt's late report is refused.
    let out = dir.path().join("out");
    let winner = finished(&out, &again, "b");
    assert!(c.complete(winner.clone()).await.expect("complete").into_inner().committed);
    assert!(c.complete(winner).await.expect("retry").into_inner().committed, "idempotent");
    let late = c.complete(finished(&out, &first, "a")).await.expect_err("late attempt refused");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late}");
    assert!(out.join("part-000000-1.parquet").exists(), "the winner is published");
    assert!(!out.join("part-000000-0.parquet").exists(), "the refused attempt is not");
    let status = c.status(proto::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!((status.units_total, status.units_committed, status.rows_out), (2, 1, 2));
    run.stop.cancel();
    let _ = run.served.await;
}

#[tokio::test]
async fn a_restarted_coordinator_continues_from_the_committed_units_in_a_new_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 6);
    let mut run = start(&job, options()).await;
    let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
    let report = finished(&dir.path().join("out"), &unit, "a");
    assert!(run.client.complete(report).await.expect("complete").into_inner().committed);
    run.stop.cancel();
    let _ = run.served.await;

    let mut run = start(&job, options()).await;
    let status = run.client.status(proto::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!((status.units_committed, status.epoch), (1, 1));
    let Lease::Unit(next) = lease(&mut run.client, "a").await else { panic!("no unit") };
    assert_eq!((next.id, next.attempt), (1, 1000), "unit 0 is done; attempts of epoch 1 start at 1000");
    run.stop.cancel();
    let _ = run.served.await;
}

#[tokio::test]
async fn a_fatal_failure_fails_the_job_and_workers_are_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let mut run = start(&job, options()).await;
    let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
    let fatal = proto::FailRequest {
        worker: "a".into(),
        unit: unit.id,
        attempt: unit.attempt,
        message: "row file:///x failed in step #0".into(),
        fatal: true,
        handed_back: false,
    };
    run.client.fail(fatal).await.expect("fail");
    let Lease::Ended(ended) = lease(&mut run.client, "a").await else { panic!("not ended") };
    assert!(!ended.succeeded);
    assert!(ended.message.contains("file:///x"), "{}", ended.message);
    let outcome = run.served.await.expect("join");
    assert!(outcome.is_err_and(|e| e.to_string().contains("file:///x")));
    assert!(!dir.path().join("out/_SUCCESS").exists());
}

#[tokio::test]
async fn finishing_every_unit_writes_the_manifest_and_marker_and_sweeps_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 4);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    // Left by a lost attempt, published or staged; written before the last commit, which starts
    // finalizing at once.
    std::fs::write(out.join("part-000000-7.parquet"), b"orphan of a lost attempt").expect("orphan");
    std::fs::create_dir_all(out.join(STAGING_DIR)).expect("staging");
    std::fs::write(out.join(STAGING_DIR).join("part-000001-9.parquet"), b"staged by a lost attempt").expect("staged");
    let mut run = start(&job, options()).await;
    for _ in 0..2 {
        let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
        let report = finished(&out, &unit, "a");
        assert!(run.client.complete(report).await.expect("complete").into_inner().committed);
    }
    let outcome = run.served.await.expect("join").expect("succeeded");
    assert_eq!(outcome.status.phase, proto::Phase::Succeeded as i32);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_SUCCESS")).expect("marker")).expect("json");
    assert_eq!(marker["rowsVerified"], 4, "{marker}");
    assert!(out.join("_weir/manifest.json").exists());
    assert!(!out.join("part-000000-7.parquet").exists(), "the orphan is deleted");
    assert!(!out.join(STAGING_DIR).join("part-000001-9.parquet").exists(), "the staged leftover is deleted");
    assert!(out.join("part-000000-0.parquet").exists() && out.join("part-000001-0.parquet").exists());
}

#[tokio::test]
async fn a_heartbeat_after_the_end_carries_the_verdict_and_counts_as_telling_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let patient = CoordinatorOptions { linger: Duration::from_secs(60), ..CoordinatorOptions::default() };
    let mut run = start(&job, patient).await;
    let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
    let report = finished(&dir.path().join("out"), &unit, "a");
    assert!(run.client.complete(report).await.expect("complete").into_inner().committed);
    let heartbeat = proto::HeartbeatRequest { worker: "a".into(), pool: "cpu".into(), ..Default::default() };
    let ended = loop {
        let reply = run.client.heartbeat(heartbeat.clone()).await.expect("heartbeat").into_inner();
        if let Some(ended) = reply.ended {
            assert!(reply.job_ended);
            break ended;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(ended.succeeded, "{}", ended.message);
    assert_eq!(ended.message, "2 rows written, 0 failed");
    // Its only worker was told: the coordinator exits without waiting out its linger.
    let outcome = tokio::time::timeout(Duration::from_secs(10), run.served).await.expect("exited before linger");
    assert!(outcome.expect("join").is_ok());
}

fn heartbeat(worker: &str, held: &[&proto::Unit], exchange: &str, in_flight: u32) -> proto::HeartbeatRequest {
    proto::HeartbeatRequest {
        worker: worker.into(),
        held: held.iter().map(|u| proto::UnitAttempt { unit: u.id, attempt: u.attempt }).collect(),
        pool: if exchange.is_empty() { "cpu".into() } else { "gpu".into() },
        exchange_endpoint: exchange.into(),
        exchanges_in_flight: in_flight,
    }
}

async fn workers(client: &mut Client) -> Vec<proto::WorkerView> {
    client.workers(proto::WorkersRequest {}).await.expect("workers").into_inner().workers
}

#[tokio::test]
async fn a_drained_leasing_worker_finishes_what_it_holds_and_no_unit_is_redone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 8);
    let mut run = start(&job, options()).await;
    let c = &mut run.client;
    let Lease::Unit(held) = lease(c, "a").await else { panic!("no unit") };
    let drained = c.drain(proto::DrainRequest { worker: "a".into() }).await.expect("drain").into_inner();
    assert!(drained.known);
    let unknown = c.drain(proto::DrainRequest { worker: "nobody".into() }).await.expect("drain").into_inner();
    assert!(!unknown.known, "a worker the coordinator never saw");
    let view = workers(c).await;
    assert_eq!(view.len(), 1);
    assert!(view[0].draining && !view[0].drained, "it still holds a unit: {view:?}");
    assert_eq!(view[0].units_held, 1);
    // No new unit goes to it, while another worker still gets one.
    assert!(matches!(lease(c, "a").await, Lease::Drained(_)));
    let Lease::Unit(other) = lease(c, "b").await else { panic!("b gets a unit") };
    assert_ne!(other.id, held.id);
    // Its heartbeats keep its lease alive; it is not told to exit while it holds the unit.
    let beat = c.heartbeat(heartbeat("a", &[&held], "", 0)).await.expect("heartbeat").into_inner();
    assert!(beat.revoked.is_empty() && !beat.drained);
    // It finishes the unit: committed at its first attempt, nothing handed back or redone.
    let report = finished(&dir.path().join("out"), &held, "a");
    assert!(c.complete(report).await.expect("complete").into_inner().committed);
    assert!(workers(c).await.iter().any(|w| w.worker == "a" && w.drained), "drained once it holds nothing");
    assert!(matches!(lease(c, "a").await, Lease::Drained(_)), "told to exit");
    assert!(workers(c).await.iter().all(|w| w.worker != "a"), "and forgotten");
    // A late heartbeat does not bring it back; it is told it was drained.
    let late = c.heartbeat(heartbeat("a", &[], "", 0)).await.expect("heartbeat").into_inner();
    assert!(late.drained);
    assert!(workers(c).await.iter().all(|w| w.worker != "a"));
    let status = c.status(proto::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!((status.units_committed, status.attempts_failed), (1, 0));
    run.stop.cancel();
    let _ = run.served.await;
}

#[tokio::test]
async fn a_drained_serving_worker_gets_no_routes_and_is_released_once_its_exchanges_are_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let heartbeat_every = Duration::from_millis(200);
    let mut run = start(&job, CoordinatorOptions { heartbeat: heartbeat_every, ..options() }).await;
    let c = &mut run.client;
    for (worker, endpoint) in [("g0", "http://g0:7071"), ("g1", "http://g1:7071")] {
        let register = proto::RegisterRequest {
            worker: worker.into(),
            pool: "gpu".into(),
            capacity: 1,
            exchange_endpoint: endpoint.into(),
        };
        c.register(register).await.expect("register");
    }
    c.heartbeat(heartbeat("g0", &[], "http://g0:7071", 2)).await.expect("heartbeat");
    c.drain(proto::DrainRequest { worker: "g0".into() }).await.expect("drain");
    for _ in 0..4 {
        let route = proto::RouteRequest { worker: "cpu-0".into(), pool: "gpu".into() };
        let endpoint = c.route(route).await.expect("route").into_inner().endpoint;
        assert_eq!(endpoint, "http://g1:7071", "routes avoid the draining worker");
    }
    // Exchanges in flight, or a quiet report too soon after the drain began (a route given just
    // before it may not have connected yet): not drained.
    let busy = c.heartbeat(heartbeat("g0", &[], "http://g0:7071", 1)).await.expect("heartbeat").into_inner();
    assert!(!busy.drained);
    let early = c.heartbeat(heartbeat("g0", &[], "http://g0:7071", 0)).await.expect("heartbeat").into_inner();
    assert!(!early.drained, "reported quiet before a heartbeat interval passed");
    tokio::time::sleep(heartbeat_every * 2).await;
    let quiet = c.heartbeat(heartbeat("g0", &[], "http://g0:7071", 0)).await.expect("heartbeat").into_inner();
    assert!(quiet.drained, "quiet a heartbeat interval after the drain: told to exit");
    let names: Vec<String> = workers(c).await.into_iter().map(|w| w.worker).collect();
    assert_eq!(names, ["g1"]);
    run.stop.cancel();
    let _ = run.served.await;
}

/// A caller without the job's token: refused before anything runs, whatever it asks.
#[tokio::test]
async fn a_client_without_the_jobs_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let run = start(&job, options()).await;
    // TLS that trusts the job's CA, but no token.
    let channel = run.secret.endpoint(&run.addr.to_string()).expect("endpoint").connect().await.expect("tls");
    let mut bare = CoordinatorClient::new(channel);
    let refused = bare.status(proto::StatusRequest {}).await.expect_err("status refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    let lease = bare.lease(proto::LeaseRequest { worker: "m".into(), pool: "cpu".into() }).await;
    assert_eq!(lease.expect_err("lease refused").code(), tonic::Code::Unauthenticated);
    let forged = proto::CompleteRequest { worker: "m".into(), unit: 0, attempt: 7777, ..Default::default() };
    assert_eq!(bare.complete(forged).await.expect_err("refused").code(), tonic::Code::Unauthenticated);
    // Another job's token and CA: the handshake fails, nothing is sent.
    let stranger = JobSecret::generate("other").expect("secret");
    let mut other = connect(&run.addr.to_string(), &stranger).expect("client");
    assert!(other.status(proto::StatusRequest {}).await.is_err());
    // Plain HTTP/2: no TLS, no answer.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", run.addr)).expect("uri").connect_lazy();
    assert!(CoordinatorClient::new(plain).status(proto::StatusRequest {}).await.is_err());
    run.stop.cancel();
    let _ = run.served.await;
}

/// The port speaks TLS, not plaintext that a token would travel over in the clear: a client that
/// opens with the HTTP/2 preface gets no HTTP/2 frames back.
#[tokio::test]
async fn the_coordinator_negotiates_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let run = start(&job, options()).await;
    let mut tcp = tokio::net::TcpStream::connect(run.addr).await.expect("connect");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("write");
    let mut reply = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut reply)).await.expect("answered or closed");
    let reply = &reply[..read.unwrap_or(0)];
    assert!(reply.is_empty() || reply[0] == 0x15, "a TLS alert or nothing, not HTTP/2: {reply:?}");
    // And a TLS client with the job's CA and token is answered.
    let mut client = connect(&run.addr.to_string(), &run.secret).expect("client");
    assert!(client.status(proto::StatusRequest {}).await.is_ok());
    run.stop.cancel();
    let _ = run.served.await;
}

/// A client holding the token but no lease cannot forge a result: not for an attempt never leased,
/// not for another worker's lease, not with files outside the attempt's own, not naming another
/// unit's file (which the sweep would then delete).
#[tokio::test]
async fn a_stolen_token_without_the_lease_cannot_complete_a_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 4);
    let out = dir.path().join("out");
    let mut run = start(&job, options()).await;
    let c = &mut run.client;
    let forged = proto::CompleteRequest {
        worker: "mallory".into(),
        unit: 0,
        attempt: 7777,
        rows_in: 21,
        rows_out: 21,
        errors: 0,
        files: vec!["../../../../etc/passwd".into(), "/etc/shadow".into()],
    };
    let refused = c.complete(forged).await.expect_err("never leased");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    let Lease::Unit(held) = lease(c, "a").await else { panic!("no unit") };
    let Lease::Unit(other) = lease(c, "b").await else { panic!("no unit") };
    // Another worker's lease.
    let stolen = finished(&out, &held, "mallory");
    assert_eq!(c.complete(stolen).await.expect_err("not its lease").code(), tonic::Code::FailedPrecondition);
    // The holder, naming files it may not write.
    for files in [vec!["file:///etc/passwd".to_string()], vec![stage(&out, &other, 2)], vec!["gopher://x/y".into()]] {
        let report = proto::CompleteRequest { files: files.clone(), ..finished(&out, &held, "a") };
        let refused = c.complete(report).await.expect_err("foreign files");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{files:?}: {refused}");
    }
    // Rows without a file.
    let empty = proto::CompleteRequest { files: Vec::new(), ..finished(&out, &held, "a") };
    assert_eq!(c.complete(empty).await.expect_err("no file").code(), tonic::Code::InvalidArgument);
    let status = c.status(proto::StatusRequest {}).await.expect("status").into_inner();
    assert_eq!((status.units_committed, status.rows_out), (0, 0), "nothing was believed");
    assert!(
        std::fs::read_dir(&out).expect("out").flatten().all(|e| !e.file_name().to_string_lossy().starts_with("part-"))
    );
    // The holder's honest report is accepted.
    assert!(c.complete(finished(&out, &held, "a")).await.expect("honest").into_inner().committed);
    run.stop.cancel();
    let _ = run.served.await;
}

/// A committed file deleted before the job ends is caught when finalizing: its unit runs again,
/// and the marker counts only rows that exist.
#[tokio::test]
async fn a_committed_file_deleted_mid_job_is_redone_before_the_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 4);
    let out = dir.path().join("out");
    let mut run = start(&job, options()).await;
    let c = &mut run.client;
    let Lease::Unit(first) = lease(c, "a").await else { panic!("no unit") };
    assert!(c.complete(finished(&out, &first, "a")).await.expect("complete").into_inner().committed);
    let published = out.join(PartKind::Output.relative(first.id, first.attempt));
    std::fs::remove_file(&published).expect("delete a committed file");
    let Lease::Unit(second) = lease(c, "a").await else { panic!("no unit") };
    assert!(c.complete(finished(&out, &second, "a")).await.expect("complete").into_inner().committed);
    // Finalizing found the hole and leased the unit again, with a new attempt.
    let redo = loop {
        match lease(c, "a").await {
            Lease::Unit(unit) => break unit,
            Lease::WaitMs(ms) => tokio::time::sleep(Duration::from_millis(ms.min(100))).await,
            other => panic!("expected the unit again, got {other:?}"),
        }
    };
    assert_eq!(redo.id, first.id);
    assert_ne!(redo.attempt, first.attempt);
    assert!(!out.join("_SUCCESS").exists(), "no marker over a hole");
    assert!(c.complete(finished(&out, &redo, "a")).await.expect("complete").into_inner().committed);
    let outcome = run.served.await.expect("join").expect("succeeded");
    assert_eq!(outcome.status.rows_out, 4);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_SUCCESS")).expect("marker")).expect("json");
    assert_eq!(marker["rowsVerified"], 4);
}

/// A plan cut short at a unit boundary is refused, not run as a smaller job.
#[tokio::test]
async fn a_truncated_plan_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 8);
    let run = start(&job, options()).await;
    run.stop.cancel();
    let _ = run.served.await;
    let plan = dir.path().join("out/_weir/plan.pb");
    let bytes = std::fs::read(&plan).expect("plan");
    let whole = <proto::Plan as prost::Message>::decode(bytes.as_slice()).expect("decode");
    let half = proto::Plan { units: whole.units[..2].to_vec(), ..Default::default() };
    std::fs::write(&plan, prost::Message::encode_to_vec(&half)).expect("truncate");
    let stores = std::sync::Arc::new(StoreRegistry::default());
    let error = Coordinator::start("t", &job.spec, stores, options()).await.err().expect("refused");
    assert!(error.to_string().contains("plan"), "{error}");
}

/// Passes its morsel through, counting the morsels it ran.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl weir_core::Step for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: weir_core::StepContext,
    ) -> futures::future::BoxFuture<'static, Result<weir_core::StepOutput, weir_core::StepError>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Ok(weir_core::StepOutput::ok(input)) })
    }
}

/// A worker serving its pool's steps over Flight runs them only for a lease the coordinator
/// confirms: not for an exchange naming no lease, not for another worker's lease, not for a lease
/// that ended (the unit committed); the caller's executor takes the refusal as its unit withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_exchange_runs_only_for_a_current_lease() {
    use weir_cluster::exchange::{CoordinatorLeases, LEASE_CHECK_TTL, RemoteStep, Router, StepServer};
    use weir_core::{ComputePool, Step, StepContext, StepError, UnitAttempt};

    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 4);
    let out = dir.path().join("out");
    let mut run = start(&job, options()).await;
    let counting = Arc::new(Counting::default());
    let compute = ComputePool::new(1).expect("pool");
    let served = [(0usize, counting.clone() as Arc<dyn Step>)].into_iter().collect();
    let leases = CoordinatorLeases::new(connect(&run.addr.to_string(), &run.secret).expect("connect"));
    let server = StepServer::new(served, StepContext::new(compute.clone()), Arc::new(leases));
    let (listener, flight) =
        weir_cluster::exchange::server_bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let serving =
        tokio::spawn(weir_cluster::exchange::serve_steps(server, listener, run.secret.clone(), run.stop.clone()));
    let Lease::Unit(held) = lease(&mut run.client, "a").await else { panic!("no unit") };
    let Lease::Unit(other) = lease(&mut run.client, "b").await else { panic!("no unit") };
    let input = RecordBatch::try_from_iter([(
        weir_core::ROW_REF_COLUMN,
        Arc::new(StringArray::from(vec!["in/000.txt"])) as ArrayRef,
    )])
    .expect("batch");
    let exchange = |worker: &str, unit: Option<&proto::Unit>| {
        let router = Router::to(&flight.to_string(), run.secret.clone()).expect("router").on_behalf_of(worker);
        let step = Arc::new(RemoteStep::new(0..=0, "counting", Arc::new(router), 1));
        let ctx = match unit {
            Some(u) => StepContext::new(compute.clone()).for_attempt(UnitAttempt { unit: u.id, attempt: u.attempt }),
            None => StepContext::new(compute.clone()),
        };
        step.process(input.clone(), ctx)
    };

    // The holder of a current lease is served.
    let output = exchange("a", Some(&held)).await.expect("served");
    assert_eq!(output.batch.num_rows(), 1);
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // No lease named, another worker's lease, an attempt never leased: refused, nothing run.
    for (worker, unit) in [("a", None), ("a", Some(&other)), ("b", Some(&held))] {
        let Err(refused) = exchange(worker, unit).await else { panic!("{worker} {unit:?}: served") };
        assert!(matches!(refused, StepError::Withdrawn(_)), "{worker} {unit:?}: {refused}");
    }
    let never = proto::Unit { attempt: held.attempt + 5, ..held.clone() };
    assert!(matches!(exchange("a", Some(&never)).await.err(), Some(StepError::Withdrawn(_))));
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1, "a refused exchange ran nothing");
    // Once the unit is committed its lease is over: refused (after the confirmed answer's TTL).
    assert!(run.client.complete(finished(&out, &held, "a")).await.expect("commit").into_inner().committed);
    tokio::time::sleep(LEASE_CHECK_TTL + Duration::from_millis(100)).await;
    let Err(refused) = exchange("a", Some(&held)).await else { panic!("served after the lease ended") };
    assert!(refused.to_string().contains("not leased"), "{refused}");
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    run.stop.cancel();
    let _ = serving.await;
    let _ = run.served.await;
}

#[tokio::test]
async fn a_heartbeat_says_how_many_workers_of_its_pool_split_the_jobs_rate_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let mut run = start(&job, options()).await;
    let c = &mut run.client;
    for (worker, pool) in [("g0", "gpu"), ("g1", "gpu"), ("g2", "gpu"), ("c0", "cpu")] {
        let register = proto::RegisterRequest {
            worker: worker.into(),
            pool: pool.into(),
            capacity: 1,
            exchange_endpoint: if pool == "gpu" { format!("http://{worker}:7071") } else { String::new() },
        };
        c.register(register).await.expect("register");
    }
    let gpu = c.heartbeat(heartbeat("g0", &[], "http://g0:7071", 0)).await.expect("heartbeat").into_inner();
    assert_eq!(gpu.pool_workers, 3, "three gpu workers each take a third");
    let cpu = c.heartbeat(heartbeat("c0", &[], "", 0)).await.expect("heartbeat").into_inner();
    assert_eq!(cpu.pool_workers, 1, "the cpu worker is alone in its pool");
    run.stop.cancel();
    let _ = run.served.await;
}
