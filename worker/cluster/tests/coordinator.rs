//! The coordinator's gRPC API, served in-process and driven by the generated client: leases,
//! first-attempt-wins commits, failures, restarts from the checkpoint, and finalization.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_cluster::coordinator::{Coordinator, CoordinatorOptions, bind};
use weir_cluster::proto::coordinator_client::CoordinatorClient;
use weir_cluster::proto::{self, lease_response::Result as Lease};
use weir_crds::parse_manifest;
use weir_io::StoreRegistry;

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

struct Running {
    client: CoordinatorClient<tonic::transport::Channel>,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<Result<weir_cluster::JobOutcome, weir_cluster::CoordinatorError>>,
}

async fn start(job: &weir_crds::MultimodalJob, options: CoordinatorOptions) -> Running {
    let stores = std::sync::Arc::new(StoreRegistry::default());
    let coordinator = Coordinator::start("t", &job.spec, stores, options).await.expect("start");
    let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let stop = CancellationToken::new();
    let served = tokio::spawn(coordinator.serve(listener, stop.clone()));
    let client = CoordinatorClient::connect(format!("http://{addr}")).await.expect("connect");
    Running { client, stop, served }
}

fn options() -> CoordinatorOptions {
    CoordinatorOptions { linger: Duration::from_millis(100), ..CoordinatorOptions::default() }
}

async fn lease(client: &mut CoordinatorClient<tonic::transport::Channel>, worker: &str) -> Lease {
    let request = proto::LeaseRequest { worker: worker.into(), pool: "cpu".into() };
    client.lease(request).await.expect("lease").into_inner().result.expect("result")
}

fn complete(unit: &proto::Unit, worker: &str, files: Vec<String>) -> proto::CompleteRequest {
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
async fn the_first_finished_attempt_is_committed_and_a_later_one_is_refused() {
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
    // Both attempts finish: the first to report wins, a retried report of it stays committed.
    let winner = complete(&again, "b", vec![]);
    assert!(c.complete(winner.clone()).await.expect("complete").into_inner().committed);
    assert!(c.complete(winner).await.expect("retry").into_inner().committed, "idempotent");
    assert!(!c.complete(complete(&first, "a", vec![])).await.expect("late").into_inner().committed);
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
    assert!(run.client.complete(complete(&unit, "a", vec![])).await.expect("complete").into_inner().committed);
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
    // Left by a lost attempt; written before the last commit, which starts finalizing at once.
    std::fs::write(out.join("part-000000-7.parquet"), b"orphan of a lost attempt").expect("orphan");
    let mut run = start(&job, options()).await;
    for _ in 0..2 {
        let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
        let kept = out.join(format!("part-{:06}-{}.parquet", unit.id, unit.attempt));
        std::fs::write(&kept, b"kept").expect("part");
        let files = vec![format!("file://{}", kept.display())];
        assert!(run.client.complete(complete(&unit, "a", files)).await.expect("complete").into_inner().committed);
    }
    let outcome = run.served.await.expect("join").expect("succeeded");
    assert_eq!(outcome.status.phase, proto::Phase::Succeeded as i32);
    assert!(out.join("_SUCCESS").exists());
    assert!(out.join("_weir/manifest.json").exists());
    assert!(!out.join("part-000000-7.parquet").exists(), "the orphan is deleted");
    assert!(out.join("part-000000-0.parquet").exists() && out.join("part-000001-0.parquet").exists());
}

#[tokio::test]
async fn a_heartbeat_after_the_end_carries_the_verdict_and_counts_as_telling_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(dir.path(), 2);
    let patient = CoordinatorOptions { linger: Duration::from_secs(60), ..CoordinatorOptions::default() };
    let mut run = start(&job, patient).await;
    let Lease::Unit(unit) = lease(&mut run.client, "a").await else { panic!("no unit") };
    assert!(run.client.complete(complete(&unit, "a", Vec::new())).await.expect("complete").into_inner().committed);
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

async fn workers(client: &mut CoordinatorClient<tonic::transport::Channel>) -> Vec<proto::WorkerView> {
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
    assert!(c.complete(complete(&held, "a", vec![])).await.expect("complete").into_inner().committed);
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
