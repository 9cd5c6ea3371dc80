//! The controller's Kubernetes I/O against a `tower_test` mock API server: each scenario lists the
//! requests one reconcile must make, in order, and fails on any other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodStatus,
};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};
use weir_autoscale::{DataProblem, Signals};
use weir_crds::{JobPhase, MultimodalJob, PoolName};

use super::*;
use crate::children::{OperatorPods, Peers};
use crate::decide::{CoordinatorProgress, WorkerSeen};
use crate::fixtures::{JobFixture, NAMESPACE, busy_pool, job};
use crate::metrics::Metrics;
use crate::scaling::SignalSource;

/// Progress as a running coordinator would report it; it knows no worker and drains none. It
/// keeps the coordinators it was asked to dial.
struct FixedProgress {
    progress: Option<CoordinatorProgress>,
    dialed: Mutex<Vec<Coordinator>>,
}

impl FixedProgress {
    fn dial(&self, coordinator: Coordinator) {
        self.dialed.lock().expect("dialed").push(coordinator);
    }
}

impl ProgressSource for FixedProgress {
    fn read(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<CoordinatorProgress>> {
        self.dial(coordinator);
        let progress = self.progress.clone();
        Box::pin(async move { progress })
    }

    fn workers(&self, coordinator: Coordinator) -> BoxFuture<'static, Option<Vec<WorkerSeen>>> {
        self.dial(coordinator);
        let workers = self.progress.as_ref().map(|_| Vec::new());
        Box::pin(async move { workers })
    }

    fn drain(&self, _coordinator: Coordinator, worker: String) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async move { Err(format!("no drain expected, asked for {worker}")) })
    }
}

/// One round's signals, the same every time.
struct FixedSignals(Result<Signals, DataProblem>);

impl SignalSource for FixedSignals {
    fn read(
        &self,
        _url: String,
        _job: String,
        _pools: Vec<String>,
    ) -> BoxFuture<'static, Result<Signals, DataProblem>> {
        let signals = self.0.clone();
        Box::pin(async move { signals })
    }
}

struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// The responder of one request: sends a JSON body with a status code.
type Reply = tower_test::mock::SendResponse<Response<Body>>;

impl ApiServer {
    /// Takes the next request, which must be `method` on `path` (query ignored); returns its JSON
    /// body (null when empty) and the responder.
    async fn next(&mut self, method: &Method, path: &str) -> (Value, Reply) {
        let Some((request, send)) = self.0.next_request().await else {
            panic!("expected {method} {path}, but the controller made no further request");
        };
        assert_eq!((request.method(), request.uri().path()), (method, path), "unexpected request");
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json body") };
        (body, send)
    }

    /// Expects `method` on `path`; answers `reply`, or echoes the request body when `reply` is
    /// null. Returns the request body.
    async fn expect(&mut self, method: Method, path: &str, reply: Value) -> Value {
        let (body, send) = self.next(&method, path).await;
        respond(send, 200, if reply.is_null() { &body } else { &reply });
        body
    }

    /// Expects the status patch of the fixture job and answers the job with that status.
    async fn expect_status(&mut self) -> Value {
        let (body, send) = self.next(&Method::PATCH, JOB_STATUS).await;
        let mut stored = serde_json::to_value(job("")).expect("job json");
        stored["status"] = body["status"].clone();
        respond(send, 200, &stored);
        body
    }

    /// Expects `method` on `path` and fails it with `code`.
    async fn expect_status_code(&mut self, method: Method, path: &str, code: u16) {
        let (_, send) = self.next(&method, path).await;
        let reason = match code {
            404 => "NotFound",
            409 => "AlreadyExists",
            _ => "InternalError",
        };
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "boom", "reason": reason, "code": code});
        respond(send, code, &status);
    }
}

fn respond(send: Reply, code: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    send.send_response(Response::builder().status(code).body(Body::from(bytes)).expect("response"));
}

fn context(progress: Option<CoordinatorProgress>) -> (Arc<Context>, ApiServer) {
    scaling_context(progress, Err(DataProblem::CoordinatorSilent))
}

/// A context whose autoscaling rounds read `signals`.
fn scaling_context(
    progress: Option<CoordinatorProgress>,
    signals: Result<Signals, DataProblem>,
) -> (Arc<Context>, ApiServer) {
    let (ctx, server, _) = dialing_context(progress, signals);
    (ctx, server)
}

/// A context, and the progress source that keeps the coordinators it was asked to dial.
fn dialing_context(
    progress: Option<CoordinatorProgress>,
    signals: Result<Signals, DataProblem>,
) -> (Arc<Context>, ApiServer, Arc<FixedProgress>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NAMESPACE);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let scaling = Scaling::new(Arc::new(FixedSignals(signals)), None);
    let source = Arc::new(FixedProgress { progress, dialed: Mutex::new(Vec::new()) });
    let peers = Peers {
        operator: Some(OperatorPods {
            namespace: "weir-system".into(),
            labels: [("app.kubernetes.io/name".to_string(), "weir".to_string())].into(),
        }),
        ..Peers::default()
    };
    let ctx = Context::new(client, Settings::default(), metrics, source.clone(), scaling).with_peers(peers);
    (Arc::new(ctx), ApiServer(handle), source)
}

/// Runs one reconcile against the scenario, both bounded in time so a missing or extra request
/// fails. The reconcile first reads the stored job, which the server answers with `job`.
async fn reconcile_with<S, F>(
    job: MultimodalJob,
    ctx: Arc<Context>,
    mut server: ApiServer,
    scenario: S,
) -> Result<Action, Error>
where
    S: FnOnce(ApiServer) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let stored = serde_json::to_value(&job).expect("job json");
    let server = tokio::spawn(async move {
        server.expect(Method::GET, JOB, stored).await;
        scenario(server).await;
    });
    let result =
        tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(job), ctx)).await.expect("reconcile hung");
    let served = tokio::time::timeout(Duration::from_secs(5), server).await.expect("scenario hung");
    if let Err(e) = served {
        panic!("scenario failed: {e:?}; reconcile returned {result:?}");
    }
    result
}

const PODS: &str = "/api/v1/namespaces/media/pods";
const SECRETS: &str = "/api/v1/namespaces/media/secrets";
const SECRET: &str = "/api/v1/namespaces/media/secrets/thumbs-weir-secret";
const POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/media/networkpolicies/thumbs-weir-ingress";
const JOB: &str = "/apis/weir.dev/v1alpha1/namespaces/media/multimodaljobs/thumbs";
const JOB_STATUS: &str = "/apis/weir.dev/v1alpha1/namespaces/media/multimodaljobs/thumbs/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/media/events";

fn pod_list(pods: &[Pod]) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods})
}

/// A child pod as the builders make it, with a status as the kubelet reports it.
fn pod(job: &MultimodalJob, slot: Slot, phase: &str, exit_code: Option<i32>) -> Pod {
    let settings = Settings::default();
    let owner = Owner::new(job, &settings).expect("owner");
    let mut pod = match slot {
        Slot::Coordinator => owner.coordinator_pod(),
        Slot::Worker(pool, index) => owner.worker_pod(&pool, index),
    };
    let terminated = exit_code.map(|code| ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated { exit_code: code, ..ContainerStateTerminated::default() }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    });
    pod.status = Some(PodStatus {
        phase: Some(phase.into()),
        pod_ip: Some("10.1.2.3".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if phase == "Running" { "True" } else { "False" }.into(),
            ..PodCondition::default()
        }]),
        container_statuses: terminated.map(|t| vec![t]),
        ..PodStatus::default()
    });
    pod
}

/// The job's secret, and its Secret as the API server stores it.
fn stored_secret(job: &MultimodalJob) -> (JobSecret, Value) {
    let secret = JobSecret::generate("thumbs").expect("secret");
    let settings = Settings::default();
    let stored = Owner::new(job, &settings).expect("owner").job_secret(&secret);
    (secret, serde_json::to_value(stored).expect("secret json"))
}

/// Answers the read of the job's Secret: `stored`, or 404 when it is null.
async fn expect_secret_read(server: &mut ApiServer, stored: &Value) {
    if stored.is_null() {
        server.expect_status_code(Method::GET, SECRET, 404).await;
    } else {
        server.expect(Method::GET, SECRET, stored.clone()).await;
    }
}

/// The shared children, applied in order; returns the NetworkPolicy applied.
async fn expect_children(server: &mut ApiServer) -> Value {
    server.expect(Method::PATCH, "/api/v1/namespaces/media/configmaps/thumbs-plan", Value::Null).await;
    server.expect(Method::PATCH, "/api/v1/namespaces/media/services/thumbs-coordinator", Value::Null).await;
    server.expect(Method::PATCH, "/api/v1/namespaces/media/services/thumbs-workers", Value::Null).await;
    server.expect(Method::PATCH, POLICY, Value::Null).await
}

/// The pods list, then the read of the job's Secret, which exists.
async fn expect_observed(server: &mut ApiServer, pods: &[Pod], secret: &Value) {
    server.expect(Method::GET, PODS, pod_list(pods)).await;
    expect_secret_read(server, secret).await;
}

#[tokio::test]
async fn create_a_new_job_gets_its_secret_children_pods_status_and_an_event() {
    let (ctx, server) = context(None);
    let action = reconcile_with(job(""), ctx, server, |mut server| async move {
        server.expect(Method::GET, PODS, pod_list(&[])).await;
        expect_secret_read(&mut server, &Value::Null).await;
        let secret = server.expect(Method::POST, SECRETS, Value::Null).await;
        assert_eq!(secret["metadata"]["name"], "thumbs-weir-secret");
        assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!((secret["type"].clone(), secret["immutable"].clone()), (json!("Opaque"), json!(true)));
        let keys: Vec<&str> = secret["data"].as_object().expect("data").keys().map(String::as_str).collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key", "token"]);
        let policy = expect_children(&mut server).await;
        assert_eq!(policy["kind"], "NetworkPolicy");
        assert_eq!(policy["metadata"]["ownerReferences"][0]["kind"], "MultimodalJob");
        assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["weir.dev/job"], "thumbs");
        let operator = &policy["spec"]["ingress"][1]["from"][0];
        assert_eq!(operator["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "weir-system");
        let coordinator =
            server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-coordinator", Value::Null).await;
        assert_eq!(coordinator["spec"]["restartPolicy"], "Never");
        assert_eq!(coordinator["spec"]["volumes"][1]["secret"]["secretName"], "thumbs-weir-secret");
        let worker = server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-cpu-0", Value::Null).await;
        assert_eq!(worker["metadata"]["ownerReferences"][0]["kind"], "MultimodalJob");
        let status = server.expect_status().await;
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["kind"], "MultimodalJob");
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "Created");
    })
    .await
    .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_running_job_reports_its_coordinators_progress() {
    let progress =
        CoordinatorProgress { units_total: 4, units_committed: 1, eta_seconds: Some(30.0), ..Default::default() };
    let (ctx, server) = context(Some(progress));
    let job = job("").in_phase(JobPhase::Pending, 0);
    let pods =
        [pod(&job, Slot::Coordinator, "Running", None), pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None)];
    let (_, secret) = stored_secret(&job);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        let status = server.expect_status().await;
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(status["status"]["progress"]["percent"], "25%");
        assert_eq!(status["status"]["progress"]["eta"], "30s");
        assert_eq!(status["status"]["pools"]["cpu"]["ready"], 1);
        server.expect(Method::POST, EVENTS, Value::Null).await;
    })
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn scale_a_pool_grows_to_its_new_minimum_and_shrinks_from_the_highest_index() {
    let progress = CoordinatorProgress { units_total: 9, units_committed: 3, ..Default::default() };
    let (ctx, server) = context(Some(progress.clone()));
    let grown = job("  pools:\n    cpu: {replicas: {min: 3, max: 3}}\n").in_phase(JobPhase::Running, 0);
    let pods = [
        pod(&grown, Slot::Coordinator, "Running", None),
        pod(&grown, Slot::Worker(PoolName::cpu(), 0), "Running", None),
    ];
    let (_, secret) = stored_secret(&grown);
    reconcile_with(grown, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-cpu-1", Value::Null).await;
        server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-cpu-2", Value::Null).await;
        let status = server.expect_status().await;
        assert_eq!(status["status"]["pools"]["cpu"]["desired"], 3);
    })
    .await
    .expect("reconcile");

    let (ctx, server) = context(Some(progress));
    let shrunk = job("  pools:\n    cpu: {replicas: {min: 1, max: 3}}\n").in_phase(JobPhase::Running, 0);
    let pods: Vec<Pod> = std::iter::once(pod(&shrunk, Slot::Coordinator, "Running", None))
        .chain((0..3).map(|i| pod(&shrunk, Slot::Worker(PoolName::cpu(), i), "Running", None)))
        .collect();
    let (_, secret) = stored_secret(&shrunk);
    reconcile_with(shrunk, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/pods/thumbs-cpu-2", json!(pods[3])).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/pods/thumbs-cpu-1", json!(pods[2])).await;
        let status = server.expect_status().await;
        assert_eq!(status["status"]["pools"]["cpu"]["desired"], 1);
    })
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn suspend_deletes_the_workers_and_reports_suspended() {
    let (ctx, server) = context(None);
    let job = job("  suspend: true\n").in_phase(JobPhase::Running, 0);
    let pods =
        [pod(&job, Slot::Coordinator, "Running", None), pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None)];
    let (_, secret) = stored_secret(&job);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/pods/thumbs-cpu-0", json!(pods[1])).await;
        let status = server.expect_status().await;
        assert_eq!(status["status"]["phase"], "Suspended");
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "Suspended");
    })
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn finish_a_coordinator_that_exited_zero_succeeds_the_job_and_stops_the_workers() {
    let (ctx, server) = context(None);
    let job = job("  ttlSecondsAfterFinished: 3600\n").in_phase(JobPhase::Running, 0);
    let pods = [
        pod(&job, Slot::Coordinator, "Succeeded", Some(0)),
        pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None),
    ];
    let (_, secret) = stored_secret(&job);
    let action = reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/pods/thumbs-cpu-0", json!(pods[1])).await;
        let status = server.expect_status().await;
        assert_eq!(status["status"]["phase"], "Succeeded");
        assert!(status["status"]["completionTime"].is_string());
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "Succeeded");
    })
    .await
    .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn ttl_expiry_deletes_every_child_but_not_the_job() {
    let (ctx, server) = context(None);
    let mut job = job("  ttlSecondsAfterFinished: 10\n").in_phase(JobPhase::Succeeded, 0).finished_at(100);
    // The status as the finishing reconcile wrote it, so only the deletions remain to do.
    job.status = Some(decide(&job, &Observed::new(&[], None, crate::fixtures::at(100))).status);
    let pods = [pod(&job, Slot::Coordinator, "Succeeded", Some(0))];
    let (_, secret) = stored_secret(&job);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/pods/thumbs-coordinator", json!(pods[0])).await;
        let gone = json!({"kind": "Status", "apiVersion": "v1", "status": "Success"});
        server.expect(Method::DELETE, "/api/v1/namespaces/media/services/thumbs-coordinator", gone.clone()).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/services/thumbs-workers", gone.clone()).await;
        server.expect(Method::DELETE, "/api/v1/namespaces/media/configmaps/thumbs-plan", gone.clone()).await;
        server.expect(Method::DELETE, POLICY, gone.clone()).await;
        server.expect(Method::DELETE, SECRET, gone).await;
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "TTLExpired");
    })
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn restart_an_operator_that_restarts_adopts_the_pods_it_made_and_creates_none() {
    let progress = CoordinatorProgress { units_total: 4, units_committed: 2, ..Default::default() };
    let (ctx, server) = context(Some(progress.clone()));
    let mut job = job("").in_phase(JobPhase::Running, 0);
    let pods =
        [pod(&job, Slot::Coordinator, "Running", None), pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None)];
    let uid = job.metadata.uid.clone().expect("uid");
    let views: Vec<PodView> = pods.iter().filter_map(|p| PodView::of("thumbs", &uid, p)).collect();
    // What the previous operator wrote moments ago: this reconcile must find nothing to change.
    let before = decide(&job, &Observed::new(&views, Some(&progress), Time(Timestamp::now())));
    job.status = Some(before.status);
    let (_, secret) = stored_secret(&job);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
    })
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn delete_a_job_being_deleted_is_left_to_the_garbage_collector() {
    let (ctx, server) = context(None);
    let mut job = job("");
    job.metadata.deletion_timestamp = Some(crate::fixtures::at(5));
    let action = reconcile(Arc::new(job), ctx).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    drop(server);
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_with_a_metric_label() {
    let (ctx, server) = context(None);
    let error = reconcile_with(job(""), ctx.clone(), server, |mut server| async move {
        server.expect_status_code(Method::GET, PODS, 500).await;
    })
    .await
    .expect_err("the list failed");
    assert_eq!(error.metric_label(), "api");
    let action = error_policy(Arc::new(job("")), &error, ctx.clone());
    assert_eq!(action, Action::requeue(ERROR_REQUEUE));
    assert!(ctx.metrics.render().contains("weir_operator_reconcile_errors_total{kind=\"api\"} 1"));
}

const AUTO: &str = "  pools:\n    cpu: {replicas: {min: 1, max: 3}}\n  autoscaling: {mode: auto, prometheus: {url: \"http://prometheus:9090\"}}\n";

/// A running job of one cpu worker, whose Prometheus says the pool is saturated (0.95 busy).
fn saturated(mode: &str) -> (Arc<Context>, ApiServer, MultimodalJob, Vec<Pod>) {
    let progress = CoordinatorProgress { units_total: 100, units_committed: 10, ..Default::default() };
    let (ctx, server) = scaling_context(Some(progress), Ok(busy_pool("cpu", 0.95)));
    let job = job(&AUTO.replace("mode: auto", mode)).in_phase(JobPhase::Running, 0);
    let pods = vec![
        pod(&job, Slot::Coordinator, "Running", None),
        pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None),
    ];
    (ctx, server, job, pods)
}

#[tokio::test]
async fn autoscale_an_up_decision_creates_pods_writes_only_the_status_and_records_scaled_up() {
    let (ctx, server, job, pods) = saturated("mode: auto");
    let (_, secret) = stored_secret(&job);
    let action = reconcile_with(job, ctx.clone(), server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        // The round says 1 → 3 (its max): two pods by server-side apply.
        for name in ["thumbs-cpu-1", "thumbs-cpu-2"] {
            let created = server.expect(Method::PATCH, &format!("{PODS}/{name}"), Value::Null).await;
            assert_eq!(created["metadata"]["annotations"]["prometheus.io/scrape"], "true");
        }
        // The job itself is never written (the mock fails any request not listed): its status is.
        let status = server.expect_status().await;
        let cpu = &status["status"]["pools"]["cpu"];
        assert_eq!((cpu["desired"].clone(), cpu["recommended"].clone()), (json!(3), json!(3)));
        assert!(cpu["lastScaleTime"].is_string());
        assert!(cpu["reason"].as_str().is_some_and(|r| r.contains("1 → 3")), "{cpu}");
        let ready =
            status["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "AutoscalerReady"));
        assert_eq!(ready.map(|c| c["status"].clone()), Some(json!("True")));
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "ScaledUp");
        assert!(event["note"].as_str().is_some_and(|n| n.contains("1 → 3")), "{event}");
    })
    .await
    .expect("reconcile");
    assert_eq!(action, Action::requeue(crate::decide::PROGRESS_INTERVAL));
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("weir_autoscaler_desired_replicas{job=\"thumbs\",namespace=\"media\",pool=\"cpu\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "weir_autoscaler_decisions_total{action=\"up\",job=\"thumbs\",namespace=\"media\",pool=\"cpu\"} 1"
        )
    );
}

#[tokio::test]
async fn autoscale_in_recommend_mode_writes_the_status_and_a_recommended_event_and_creates_no_pod() {
    let (ctx, server, job, pods) = saturated("mode: recommend");
    let (_, secret) = stored_secret(&job);
    reconcile_with(job, ctx.clone(), server, |mut server| async move {
        expect_observed(&mut server, &pods, &secret).await;
        expect_children(&mut server).await;
        let status = server.expect_status().await;
        let cpu = &status["status"]["pools"]["cpu"];
        assert_eq!((cpu["desired"].clone(), cpu["recommended"].clone()), (json!(1), json!(3)));
        assert!(cpu.get("lastScaleTime").is_none(), "{cpu}");
        let event = server.expect(Method::POST, EVENTS, Value::Null).await;
        assert_eq!(event["reason"], "Recommended");
    })
    .await
    .expect("reconcile");
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("weir_autoscaler_recommended_replicas{job=\"thumbs\",namespace=\"media\",pool=\"cpu\"} 3")
    );
}

#[tokio::test]
async fn secret_an_existing_one_is_never_replaced_and_the_coordinator_is_dialled_with_it() {
    let progress = CoordinatorProgress { units_total: 4, units_committed: 1, ..Default::default() };
    let (ctx, server, source) = dialing_context(Some(progress), Err(DataProblem::CoordinatorSilent));
    let job = job("").in_phase(JobPhase::Running, 0);
    let pods =
        [pod(&job, Slot::Coordinator, "Running", None), pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None)];
    let (secret, stored) = stored_secret(&job);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &stored).await;
        // No POST nor PATCH of the Secret: the mock fails any request not listed.
        expect_children(&mut server).await;
        server.expect_status().await;
    })
    .await
    .expect("reconcile");
    let dialed = source.dialed.lock().expect("dialed").clone();
    assert_eq!(dialed.len(), 2, "Status and Workers");
    for coordinator in dialed {
        assert_eq!(coordinator, Coordinator { address: "10.1.2.3:7070".into(), secret: secret.clone() });
    }
}

#[tokio::test]
async fn secret_one_made_meanwhile_is_kept_when_the_create_conflicts() {
    let (ctx, server) = context(None);
    reconcile_with(job(""), ctx, server, |mut server| async move {
        server.expect(Method::GET, PODS, pod_list(&[])).await;
        expect_secret_read(&mut server, &Value::Null).await;
        server.expect_status_code(Method::POST, SECRETS, 409).await;
        expect_children(&mut server).await;
        server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-coordinator", Value::Null).await;
        server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-cpu-0", Value::Null).await;
        server.expect_status().await;
        server.expect(Method::POST, EVENTS, Value::Null).await;
    })
    .await
    .expect("a Secret that exists already is fine");
}

#[tokio::test]
async fn secret_missing_while_the_pods_run_is_not_made_again_and_the_status_says_why() {
    let (ctx, server, source) =
        dialing_context(Some(CoordinatorProgress::default()), Err(DataProblem::CoordinatorSilent));
    let job = job("").in_phase(JobPhase::Running, 0);
    let pods =
        [pod(&job, Slot::Coordinator, "Running", None), pod(&job, Slot::Worker(PoolName::cpu(), 0), "Running", None)];
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &Value::Null).await;
        expect_children(&mut server).await;
        let status = server.expect_status().await;
        let message = status["status"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("Secret `thumbs-weir-secret` is missing while its pods run"), "{message}");
    })
    .await
    .expect("reconcile");
    assert!(source.dialed.lock().expect("dialed").is_empty(), "no secret, no call");
}

#[tokio::test]
async fn secret_that_is_unusable_is_kept_and_named_in_the_status_without_its_content() {
    let (ctx, server, source) =
        dialing_context(Some(CoordinatorProgress::default()), Err(DataProblem::CoordinatorSilent));
    let job = job("").in_phase(JobPhase::Running, 0);
    let pods = [pod(&job, Slot::Coordinator, "Running", None)];
    let (secret, mut stored) = stored_secret(&job);
    let pem = String::from_utf8(secret.to_data()[weir_auth::KEY_KEY].clone()).expect("key");
    let key = pem.lines().nth(1).expect("the key's first line").to_string();
    stored["data"].as_object_mut().expect("data").remove(weir_auth::TOKEN_KEY);
    reconcile_with(job, ctx, server, |mut server| async move {
        expect_observed(&mut server, &pods, &stored).await;
        expect_children(&mut server).await;
        server.expect(Method::PATCH, "/api/v1/namespaces/media/pods/thumbs-cpu-0", Value::Null).await;
        let status = server.expect_status().await;
        let message = status["status"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("Secret `thumbs-weir-secret` is unusable"), "{message}");
        assert!(message.contains("`token` is missing"), "{message}");
        assert!(!status.to_string().contains(&key), "the status holds no key material");
    })
    .await
    .expect("reconcile");
    assert!(source.dialed.lock().expect("dialed").is_empty());
}
