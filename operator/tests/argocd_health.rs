//! `manifests/argocd/health.lua`, run in a real Lua interpreter on statuses the operator writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt, Table};
use weir_crds::{JobPhase, MultimodalJob};
use weir_operator::decide::{CoordinatorProgress, Observed, decide};
use weir_operator::observe::{PodPhase, PodView, Role};

const SCRIPT: &str = include_str!("../../manifests/argocd/health.lua");

fn job(extra: &str) -> MultimodalJob {
    let text = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t, namespace: ns, uid: u, generation: 2}}\nspec:\n  source:\n    files: {{uri: \"s3://in/\"}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n  sink:\n    parquet: {{uri: \"s3://out/\"}}\n{extra}"
    );
    weir_crds::parse_manifest(&text, "test").expect("manifest")
}

fn coordinator(phase: PodPhase, exit_code: Option<i32>) -> PodView {
    PodView {
        name: "t-coordinator".into(),
        role: Role::Coordinator,
        phase,
        ready: phase == PodPhase::Running,
        terminating: false,
        deletion_deadline: None,
        problem: None,
        exit_code,
        message: Some("row 3 of a.jpg failed".into()),
        ip: Some("10.0.0.1".into()),
    }
}

/// The job after one reconcile that saw `pods`.
fn reconciled(mut job: MultimodalJob, pods: &[PodView], progress: Option<&CoordinatorProgress>) -> MultimodalJob {
    let now = Time(Timestamp::now());
    job.status = Some(decide(&job, &Observed::new(pods, progress, now)).status);
    job
}

fn health(job: &MultimodalJob) -> (String, String) {
    let lua = Lua::new();
    let object = lua.to_value(job).expect("job as a Lua table");
    lua.globals().set("obj", object).expect("set obj");
    let result: Table = lua.load(SCRIPT).eval().expect("health.lua runs");
    (result.get("status").expect("status"), result.get("message").expect("message"))
}

#[test]
fn a_job_the_operator_has_not_seen_is_progressing() {
    assert_eq!(health(&job("")).0, "Progressing");
}

#[test]
fn a_running_job_is_progressing_with_its_percentage() {
    let progress = CoordinatorProgress { units_total: 4, units_committed: 3, ..Default::default() };
    let running = reconciled(job(""), &[coordinator(PodPhase::Running, None)], Some(&progress));
    assert_eq!(running.status.as_ref().and_then(|s| s.phase), Some(JobPhase::Running));
    let (status, message) = health(&running);
    assert_eq!(status, "Progressing");
    assert!(message.starts_with("75% done"), "{message}");
}

#[test]
fn success_is_healthy_failure_degraded_and_suspension_suspended() {
    let started = reconciled(job(""), &[], None);
    let succeeded = reconciled(started.clone(), &[coordinator(PodPhase::Succeeded, Some(0))], None);
    assert_eq!(health(&succeeded).0, "Healthy");

    let failed = reconciled(started.clone(), &[coordinator(PodPhase::Failed, Some(3))], None);
    let (status, message) = health(&failed);
    assert_eq!(status, "Degraded");
    assert!(message.contains("a.jpg"), "{message}");

    let mut suspending = started;
    suspending.spec.suspend = Some(true);
    assert_eq!(health(&reconciled(suspending, &[], None)).0, "Suspended");
}

#[test]
fn a_spec_change_the_operator_has_not_observed_yet_is_progressing() {
    let mut succeeded = reconciled(reconciled(job(""), &[], None), &[coordinator(PodPhase::Succeeded, Some(0))], None);
    succeeded.metadata.generation = Some(3);
    let (status, message) = health(&succeeded);
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 3"));
}

#[test]
fn the_argocd_config_map_patch_carries_health_lua_verbatim() {
    let patch: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../manifests/argocd/argocd-cm-patch.yaml")).expect("patch yaml");
    let embedded = patch["data"]["resource.customizations.health.weir.dev_MultimodalJob"].as_str().expect("health key");
    assert_eq!(embedded, SCRIPT, "regenerate manifests/argocd/argocd-cm-patch.yaml from health.lua");
}
