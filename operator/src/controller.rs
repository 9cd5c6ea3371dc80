//! The kube-rs controller: observe a job's pods, its Secret, its coordinator's progress and
//! workers, run the autoscaling round when one is due, decide, apply children by server-side
//! apply (the Secret: create once), ask the coordinator for drains, write the status, record events.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_auth::JobSecret;
use weir_crds::{AutoscalingMode, JobPhase, MultimodalJob};

use crate::children::{
    COORDINATOR_PORT, FIELD_MANAGER, Owner, Peers, Settings, coordinator_name, exchange_service_name, job_selector,
    network_policy_name, plan_name, read_job_secret, secret_name,
};
use crate::decide::{Observed, Plan, ScalingRound, Slot, decide};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observe::{PodPhase, PodView, Role};
use crate::progress::{Coordinator, ProgressSource};
use crate::scaling::Scaling;

/// Back-off after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);
/// Pod events arriving within this window cause one reconcile, not one each: a job of 50 pods
/// starting up writes its status a few times, not 150.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub progress: Arc<dyn ProgressSource>,
    /// Each job's autoscaler and drains, between reconciles.
    pub scaling: Scaling,
    /// Who besides a job's own pods may connect to them (its NetworkPolicy).
    pub peers: Peers,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        progress: Arc<dyn ProgressSource>,
        scaling: Scaling,
    ) -> Self {
        // Events need a reporting instance: the pod's name in a cluster, the host's outside.
        let instance =
            std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "local".into());
        let reporter = Reporter { controller: FIELD_MANAGER.to_string(), instance: Some(instance) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            progress,
            scaling,
            peers: Peers::default(),
        }
    }

    /// The same, with the jobs' NetworkPolicies admitting `peers` (default: [`Peers::default`]).
    #[must_use]
    pub fn with_peers(mut self, peers: Peers) -> Self {
        self.peers = peers;
        self
    }
}

/// Runs the controller until SIGTERM or Ctrl-C, watching `namespace` or every namespace.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    let (jobs, pods) = match namespace {
        Some(ns) => {
            (Api::<MultimodalJob>::namespaced(ctx.client.clone(), ns), Api::<Pod>::namespaced(ctx.client.clone(), ns))
        }
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let owned = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let controller = Controller::new(jobs, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().debounce(DEBOUNCE));
    ctx.metrics.watch_jobs(controller.store());
    controller
        .owns(pods, owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not run");
            }
        })
        .await;
}

/// One reconcile of one job: idempotent, so a repeat (or an operator restart) converges.
///
/// # Errors
/// Kubernetes API failures; the controller retries after [`ERROR_REQUEUE`].
pub async fn reconcile(cached: Arc<MultimodalJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    if cached.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector delete the children.
        forget(&cached, &ctx);
        return Ok(Action::await_change());
    }
    // Decide from the stored job, not the cache: the cache may not hold our last status write
    // yet, and deciding from it would undo that write (a restart count, a start time).
    let namespace = cached.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let jobs: Api<MultimodalJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(job) = jobs.get_opt(&cached.name_any()).await? else {
        forget(&cached, &ctx);
        return Ok(Action::await_change());
    };
    let owner = Owner::new(&job, &ctx.settings)?;
    let uid = job.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let listed = pods.list(&ListParams::default().labels(&job_selector(&owner.name))).await?;
    let views: Vec<PodView> = listed.items.iter().filter_map(|p| PodView::of(&owner.name, &uid, p)).collect();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let secret = SecretState::of(&owner.name, secrets.get_opt(&secret_name(&owner.name)).await?.as_ref(), &views);
    let coordinator =
        coordinator_address(&views).zip(secret.usable.clone()).map(|(address, secret)| Coordinator { address, secret });
    let (progress, workers) = match &coordinator {
        Some(c) => futures::join!(ctx.progress.read(c.clone()), ctx.progress.workers(c.clone())),
        None => (None, None),
    };
    let round = ctx.scaling.round(&uid, &job, &views).await;
    let now = Time(Timestamp::now());
    let drains = ctx.scaling.drains(&uid, &views, workers.as_deref(), &now);
    let seen = Observed {
        pods: &views,
        progress: progress.as_ref(),
        workers: workers.as_deref(),
        drains: &drains,
        scaling: round.as_ref(),
        secret_problem: secret.problem.as_deref(),
        now,
    };
    let plan = decide(&job, &seen);
    execute(&owner, &plan, &views, secret.create, &ctx).await?;
    drain(&uid, coordinator.as_ref(), &plan.drain, &ctx).await;
    record_scaling(&owner, &plan, round.as_ref(), &ctx);
    let requeue = match (plan.requeue, ctx.scaling.next_round_in(&uid)) {
        // A round is due again after the interval even when nothing else changes.
        (Some(a), Some(b)) if plan.status.phase == Some(JobPhase::Running) => Some(a.min(b)),
        (requeue, _) => requeue,
    };
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Drops what the operator remembers of a job that is gone, and its autoscaler metrics.
fn forget(job: &MultimodalJob, ctx: &Context) {
    if let Some(uid) = job.uid() {
        ctx.scaling.forget(&uid);
    }
    ctx.metrics.autoscaler_forget(&job.namespace().unwrap_or_default(), &job.name_any());
}

/// Asks the coordinator to drain each of `names`; a drain that fails is logged and asked again
/// at the next reconcile (the pod is not recorded as draining, so decide picks a pod again).
async fn drain(uid: &str, coordinator: Option<&Coordinator>, names: &[String], ctx: &Context) {
    let Some(coordinator) = coordinator else {
        if !names.is_empty() {
            tracing::warn!(pods = ?names, "cannot drain: the coordinator has no address or the job no usable secret");
        }
        return;
    };
    for name in names {
        match ctx.progress.drain(coordinator.clone(), name.clone()).await {
            Ok(known) => {
                tracing::info!(pod = %name, known, "draining a worker for a scale-down");
                ctx.scaling.drain_started(uid, name, Time(Timestamp::now()));
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot drain a worker; retrying at the next reconcile"),
        }
    }
}

/// The autoscaler's metrics: each pool's desired count, and this round's decisions.
fn record_scaling(owner: &Owner<'_>, plan: &Plan, round: Option<&ScalingRound>, ctx: &Context) {
    let autoscaled = owner.job.spec.autoscaling.as_ref().is_some_and(|a| a.mode() != AutoscalingMode::Disabled);
    if !autoscaled {
        ctx.metrics.autoscaler_forget(&owner.namespace, &owner.name);
        return;
    }
    for (pool, replicas) in &plan.status.pools {
        ctx.metrics.autoscaler_desired(&owner.namespace, &owner.name, pool, replicas.desired);
    }
    if let Some(ScalingRound::Decided { decisions, .. }) = round {
        ctx.metrics.autoscaler_decided(&owner.namespace, &owner.name, decisions);
    }
}

/// Logs the failure, counts it by kind, and retries later.
pub fn error_policy(job: Arc<MultimodalJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(ERROR_REQUEUE)
}

/// The coordinator's gRPC address (`ip:port`), when it runs and has an IP.
fn coordinator_address(pods: &[PodView]) -> Option<String> {
    let pod = pods.iter().find(|p| p.role == Role::Coordinator && p.phase == PodPhase::Running && !p.terminating)?;
    let ip = pod.ip.as_ref()?;
    Some(if ip.contains(':') { format!("[{ip}]:{COORDINATOR_PORT}") } else { format!("{ip}:{COORDINATOR_PORT}") })
}

/// The job's Secret as one reconcile found it.
struct SecretState {
    /// What the operator dials the coordinator with.
    usable: Option<JobSecret>,
    /// There is none and no pod of the job is starting or running: make one.
    create: bool,
    /// Why it cannot serve the job's pods, for the status (never its content).
    problem: Option<String>,
}

impl SecretState {
    /// A Secret is made only while no pod lives: running pods hold the one they started with,
    /// and a new one would split the job in two (new pods could not talk to the old ones).
    fn of(job: &str, stored: Option<&Secret>, pods: &[PodView]) -> Self {
        let name = secret_name(job);
        let live = pods.iter().any(|p| !p.terminating && matches!(p.phase, PodPhase::Pending | PodPhase::Running));
        let (usable, problem) = match stored.map(read_job_secret) {
            Some(Ok(secret)) => (Some(secret), None),
            Some(Err(e)) => (
                None,
                Some(format!(
                    "the job's Secret `{name}` is unusable ({e}): delete it, then suspend and resume the job to \
                     start its pods with a new one"
                )),
            ),
            None if live => (
                None,
                Some(format!(
                    "the job's Secret `{name}` is missing while its pods run: suspend and resume the job to start \
                     its pods with a new one"
                )),
            ),
            None => (None, None),
        };
        Self { usable, create: stored.is_none() && !live, problem }
    }
}

/// Creates the job's Secret with a new token and identity. One made meanwhile (a retried
/// reconcile, another replica) is kept: an existing Secret is never replaced.
async fn create_secret(owner: &Owner<'_>, ctx: &Context) -> Result<(), Error> {
    let secret = owner.job_secret(&JobSecret::generate(&owner.name)?);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
    match api.create(&params, &secret).await {
        Ok(_) => {
            tracing::info!(job = %owner.name, secret = %secret_name(&owner.name), "created the job's secret");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Carries out a plan: children first (the Secret before the pods that mount it), then
/// deletions, the status last (so a failed step is retried from the same observed state rather
/// than recorded as done).
async fn execute(
    owner: &Owner<'_>,
    plan: &Plan,
    pods: &[PodView],
    create_job_secret: bool,
    ctx: &Context,
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = owner.namespace.as_str();
    if plan.ensure_children {
        if create_job_secret {
            create_secret(owner, ctx).await?;
        }
        apply(&Api::namespaced(client.clone(), ns), &owner.plan_config_map()?).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        apply(&services, &owner.coordinator_service()).await?;
        apply(&services, &owner.exchange_service()).await?;
        apply(&Api::<NetworkPolicy>::namespaced(client.clone(), ns), &owner.network_policy(&ctx.peers)).await?;
        if let Some(account) = owner.service_account() {
            apply(&Api::<ServiceAccount>::namespaced(client.clone(), ns), &account).await?;
        }
    }
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for slot in &plan.create {
        let pod = match slot {
            Slot::Coordinator => owner.coordinator_pod(),
            Slot::Worker(pool, index) => owner.worker_pod(pool, *index),
        };
        apply(&pod_api, &pod).await?;
    }
    for name in &plan.delete {
        delete(&pod_api, name, &DeleteParams::default()).await?;
    }
    for name in &plan.force_delete {
        tracing::warn!(pod = %name, "force-deleting a pod stuck terminating (its node is presumed lost)");
        delete(&pod_api, name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await?;
    }
    if plan.delete_all {
        delete_children(owner, pods, ctx).await?;
    }
    if owner.job.status.as_ref() != Some(&plan.status) {
        let jobs: Api<MultimodalJob> = Api::namespaced(client.clone(), ns);
        let patch = StatusPatch {
            api_version: MultimodalJob::api_version(&()).to_string(),
            kind: MultimodalJob::kind(&()).to_string(),
            status: &plan.status,
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        jobs.patch_status(&owner.name, &params, &Patch::Apply(&patch)).await?;
    }
    let reference = owner.job.object_ref(&());
    for transition in &plan.events {
        let event = Event {
            type_: if transition.warning { EventType::Warning } else { EventType::Normal },
            reason: transition.reason.to_string(),
            note: Some(transition.note.clone()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(job = %owner.name, error = %e, "cannot record an event");
        }
    }
    Ok(())
}

/// The status subresource as server-side apply wants it: typed status under apiVersion and kind.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: String,
    kind: String,
    status: &'a weir_crds::MultimodalJobStatus,
}

async fn delete_children(owner: &Owner<'_>, pods: &[PodView], ctx: &Context) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = owner.namespace.as_str();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for pod in pods.iter().filter(|p| !p.terminating) {
        delete(&pod_api, &pod.name, &DeleteParams::default()).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let params = DeleteParams::default();
    delete(&services, &coordinator_name(&owner.name), &params).await?;
    delete(&services, &exchange_service_name(&owner.name), &params).await?;
    delete(&Api::<ConfigMap>::namespaced(client.clone(), ns), &plan_name(&owner.name), &params).await?;
    delete(&Api::<NetworkPolicy>::namespaced(client.clone(), ns), &network_policy_name(&owner.name), &params).await?;
    delete(&Api::<Secret>::namespaced(client.clone(), ns), &secret_name(&owner.name), &params).await?;
    // Only an account the job created is its to delete.
    if let Some(name) = owner.service_account().and_then(|a| a.metadata.name) {
        delete(&Api::<ServiceAccount>::namespaced(client.clone(), ns), &name, &params).await?;
    }
    Ok(())
}

/// Server-side apply of a child owned by the operator's field manager.
async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().ok_or(Error::MissingObjectKey("name"))?;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?;
    Ok(())
}

/// Deletes `name`; one already gone is fine.
async fn delete<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<(), Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
