//! The operator on a real cluster (kind, k3d, any): opt-in. The tests are `#[ignore]`d, so a plain
//! `cargo test` lists them as ignored rather than passing them; run them with `KUBECONFIG` set and
//! `cargo test -p weir-e2e --test kubernetes -- --ignored`.
//!
//! What it needs besides the cluster:
//! - `WEIR_E2E_IMAGE`: the image built by the `Dockerfile`, loaded into the cluster (default
//!   `weir:dev`, e.g. `docker build -t weir:dev . && kind load docker-image weir:dev`).
//! - An S3-compatible server both this test and the pods reach: `WEIR_E2E_S3_ENDPOINT` as the pods
//!   see it (e.g. `http://minio.minio.svc:9000`), `WEIR_E2E_S3_HOST_ENDPOINT` as this test sees it
//!   (default the same; e.g. a port-forward), a bucket `WEIR_E2E_BUCKET` (default `weir-e2e`) that
//!   exists, and `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
//!
//! The tests install the committed CRD (read from `crds/multimodaljob.yaml` the way kubectl reads
//! it, YAML 1.1) and dry-run every example on the server; run the operator in this process
//! (watching a fresh namespace) and apply an image job on two named pools: phases, conditions,
//! pods per pool, progress, suspend and resume, the result in the bucket, and that deleting the
//! job deletes its pods; and apply a job whose step reads a column no step makes: it fails with
//! `Valid=False` and the message `weir validate` gives, and no pod is created.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;
use weir_crds::{JobPhase, MultimodalJob};
use weir_io::StoreRegistry;
use weir_io::store::S3Settings;
use weir_operator::children::{JOB_LABEL, Settings};
use weir_operator::controller::{self, Context};
use weir_operator::metrics::Metrics;
use weir_operator::progress::GrpcProgress;
use weir_operator::scaling::{PrometheusSignals, Scaling};

/// Why the suite is ignored by default.
const NEEDS_CLUSTER: &str = "needs a cluster: set KUBECONFIG";

struct Cluster {
    client: Client,
    namespace: String,
    image: String,
    pod_endpoint: String,
    host_endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

impl Cluster {
    /// The cluster `KUBECONFIG` names.
    ///
    /// # Panics
    /// When `KUBECONFIG` or the S3 settings are not set, or the cluster is unreachable.
    async fn connect() -> Self {
        assert!(std::env::var_os("KUBECONFIG").is_some(), "{NEEDS_CLUSTER}; see this file's docs");
        weir_operator::install_crypto_provider();
        let client = Client::try_default().await.expect("KUBECONFIG is set but the cluster is unreachable");
        let pod_endpoint = std::env::var("WEIR_E2E_S3_ENDPOINT").expect("WEIR_E2E_S3_ENDPOINT (S3 as the pods see it)");
        Self {
            client,
            namespace: format!("weir-e2e-{}", std::process::id()),
            image: var("WEIR_E2E_IMAGE", "weir:dev"),
            host_endpoint: var("WEIR_E2E_S3_HOST_ENDPOINT", &pod_endpoint),
            pod_endpoint,
            bucket: var("WEIR_E2E_BUCKET", "weir-e2e"),
            key: std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
            secret: std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// The bucket as this test reaches it, through the same registry the workers use (credentials
    /// from the `AWS_*` environment).
    fn store(&self) -> Arc<dyn ObjectStore> {
        let settings = S3Settings { endpoint: Some(self.host_endpoint.clone()), region: Some("us-east-1".into()) };
        StoreRegistry::new(settings).resolve(&format!("s3://{}/", self.bucket)).expect("S3 store").store
    }

    /// A connected cluster with the CRD installed and a fresh namespace.
    async fn prepared() -> Self {
        let cluster = Self::connect().await;
        cluster.install_crd().await;
        cluster.create_namespace().await;
        cluster
    }

    /// Applies the committed `crds/multimodaljob.yaml`, read as kubectl reads it.
    async fn install_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = PatchParams::apply("weir-e2e").force();
        let text = std::fs::read_to_string(repo_file("crds/multimodaljob.yaml")).expect("committed CRD");
        let crd: CustomResourceDefinition =
            serde_json::from_value(weir_crds::yaml11::from_str(&text).expect("YAML 1.1")).expect("a CRD");
        crds.patch("multimodaljobs.weir.dev", &params, &Patch::Apply(crd)).await.expect("apply CRD");
        wait(Duration::from_secs(60), "the CRD is established", || async {
            let crd = crds.get("multimodaljobs.weir.dev").await.ok()?;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }

    async fn create_namespace(&self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": self.namespace}})).expect("ns");
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "weir-s3"},
            "stringData": {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}
        }))
        .expect("secret");
        secrets.create(&PostParams::default(), &secret).await.expect("create secret");
    }

    /// Runs the operator in this process, watching the test's namespace, until the handle is aborted.
    fn start_operator(&self) -> tokio::task::JoinHandle<()> {
        let settings =
            Settings { image: self.image.clone(), gpu_image: None, image_pull_policy: Some("IfNotPresent".into()) };
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let prometheus = std::env::var("WEIR_PROMETHEUS_URL").ok();
        let scaling = Scaling::new(Arc::new(PrometheusSignals), prometheus);
        let ctx = Arc::new(Context::new(self.client.clone(), settings, metrics, Arc::new(GrpcProgress), scaling));
        let namespace = self.namespace.clone();
        tokio::spawn(async move {
            let _ = controller::run(ctx, Some(&namespace)).await;
        })
    }

    async fn delete_namespace(&self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.namespace, &DeleteParams::default()).await;
    }

    fn job(&self, prefix: &str) -> MultimodalJob {
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: thumbs}}\nspec:\n  source:\n    files: {{uri: \"s3://{bucket}/{prefix}/in/\", filesPerUnit: 10}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n    - {{op: image.decode, input: bytes, output: image}}\n    - {{op: image.resize, input: image, output: image, width: 64, height: 64, pool: resize}}\n    - {{op: image.encode, input: image, output: thumbnail, format: png}}\n  sink:\n    parquet: {{uri: \"s3://{bucket}/{prefix}/out/\", columns: [uri, thumbnail]}}\n  pools:\n    cpu: {{replicas: {{min: 2, max: 2}}, resources: {{requests: {{cpu: 100m, memory: 256Mi}}, limits: {{memory: 1Gi}}}}}}\n    resize: {{replicas: {{min: 1, max: 1}}, resources: {{requests: {{cpu: 100m, memory: 256Mi}}, limits: {{memory: 1Gi}}}}}}\n  storage: {{secretRef: {{name: weir-s3}}, endpoint: \"{endpoint}\", region: us-east-1}}\n  ttlSecondsAfterFinished: 3600\n",
            bucket = self.bucket,
            endpoint = self.pod_endpoint,
        );
        weir_crds::parse_manifest(&text, "e2e").expect("e2e job")
    }
}

/// Polls `check` every second until it returns `Some`, failing after `limit`.
async fn wait<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn phase(jobs: &Api<MultimodalJob>) -> Option<JobPhase> {
    jobs.get("thumbs").await.ok()?.status?.phase
}

async fn pods(api: &Api<Pod>) -> Vec<Pod> {
    api.list(&ListParams::default().labels(&format!("{JOB_LABEL}=thumbs"))).await.map(|l| l.items).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn an_image_job_runs_suspends_resumes_succeeds_and_is_cleaned_up_on_a_real_cluster() {
    let cluster = Cluster::prepared().await;
    let prefix = cluster.namespace.clone();
    let store = cluster.store();
    let images = tempfile::tempdir().expect("tmp");
    let set = weir_testkit::images::JpegSet { count: 60, min_side: 200, max_side: 400, ..Default::default() };
    weir_testkit::images::write_jpeg_set(images.path(), set).expect("images");
    for entry in std::fs::read_dir(images.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let bytes = std::fs::read(&path).expect("read");
        store.put(&Path::from(format!("{prefix}/in/{name}")), bytes.into()).await.expect("upload");
    }
    let operator = cluster.start_operator();

    let jobs: Api<MultimodalJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pod_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    jobs.create(&PostParams::default(), &cluster.job(&prefix)).await.expect("create job");

    wait(Duration::from_secs(180), "the job runs with a coordinator, 2 cpu workers and 1 resize worker", || async {
        let names: Vec<String> = pods(&pod_api).await.iter().map(|p| p.name_any()).collect();
        let running = phase(&jobs).await == Some(JobPhase::Running);
        let named = ["thumbs-cpu-1", "thumbs-resize-0"].iter().all(|n| names.contains(&n.to_string()));
        (running && names.len() == 4 && named).then_some(())
    })
    .await;

    let suspend = PatchParams::default();
    jobs.patch("thumbs", &suspend, &Patch::Merge(json!({"spec": {"suspend": true}}))).await.expect("suspend");
    wait(Duration::from_secs(120), "the job is suspended with no pods", || async {
        (phase(&jobs).await == Some(JobPhase::Suspended) && pods(&pod_api).await.is_empty()).then_some(())
    })
    .await;
    jobs.patch("thumbs", &suspend, &Patch::Merge(json!({"spec": {"suspend": false}}))).await.expect("resume");

    let done = wait(Duration::from_secs(600), "the job finishes", || async {
        let job = jobs.get("thumbs").await.ok()?;
        let status = job.status?;
        matches!(status.phase, Some(JobPhase::Succeeded | JobPhase::Failed)).then_some(status)
    })
    .await;
    assert_eq!(done.phase, Some(JobPhase::Succeeded), "{:?}", done.message);
    let complete = done.conditions.iter().find(|c| c.type_ == "Complete").expect("Complete condition");
    assert_eq!(complete.status, "True");
    let progress = done.progress.expect("progress");
    assert_eq!(progress.units_done, progress.units_total);
    let marker = store.get(&Path::from(format!("{prefix}/out/_SUCCESS"))).await;
    assert!(marker.is_ok(), "no _SUCCESS marker in the bucket");

    jobs.delete("thumbs", &DeleteParams::foreground()).await.expect("delete job");
    wait(Duration::from_secs(120), "the job's pods are gone", || async {
        pods(&pod_api).await.is_empty().then_some(())
    })
    .await;
    // Foreground deletion: the job goes only after its children (they block their owner's deletion).
    wait(Duration::from_secs(60), "the job is gone", || async {
        jobs.get_opt("thumbs").await.ok()?.is_none().then_some(())
    })
    .await;
    operator.abort();
    cluster.delete_namespace().await;
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn the_committed_crd_installs_and_every_example_passes_a_server_side_dry_run() {
    let cluster = Cluster::prepared().await;
    let jobs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &kube::api::ApiResource::erase::<MultimodalJob>(&()),
    );
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let mut checked = 0;
    for dir in ["manifests/kubernetes", "manifests/examples"] {
        for entry in std::fs::read_dir(repo_file(dir)).expect("examples") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let object = serde_json::from_value(weir_crds::yaml11::from_str(&text).expect("YAML 1.1")).expect("object");
            let created = jobs.create(&dry_run, &object).await;
            assert!(created.is_ok(), "{}: the API server refused it: {created:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} examples");
    // What CEL still checks on the server: a job with two sources is refused with our message.
    let two_sources = std::fs::read_to_string(repo_file("manifests/kubernetes/images-local.yaml"))
        .expect("example")
        .replace("  source:\n", "  source:\n    parquet: {uri: \"s3://x/y/\"}\n");
    let object = serde_json::from_value(weir_crds::yaml11::from_str(&two_sources).expect("yaml")).expect("object");
    let refused = jobs.create(&dry_run, &object).await.expect_err("two sources");
    assert!(refused.to_string().contains("source needs exactly one of files or parquet"), "{refused}");
    cluster.delete_namespace().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG"]
async fn a_job_whose_step_reads_a_missing_column_fails_before_any_pod_exists() {
    let cluster = Cluster::prepared().await;
    let operator = cluster.start_operator();
    let jobs: Api<MultimodalJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let pod_api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut job = cluster.job(&cluster.namespace);
    // The resize step reads `pixels`, which no step makes: CEL lets it through, the operator does not.
    let resize = job.spec.steps.remove(2);
    let text = serde_json::to_string(&resize).expect("step").replace("\"input\":\"image\"", "\"input\":\"pixels\"");
    job.spec.steps.insert(2, serde_json::from_str(&text).expect("step"));
    jobs.create(&PostParams::default(), &job).await.expect("the API server accepts the job");
    let status = wait(Duration::from_secs(60), "the job fails", || async {
        let status = jobs.get("thumbs").await.ok()?.status?;
        (status.phase == Some(JobPhase::Failed)).then_some(status)
    })
    .await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").expect("Valid condition");
    assert_eq!(valid.status, "False");
    assert!(valid.message.contains("reads column `pixels`, which does not exist"), "{}", valid.message);
    assert!(pods(&pod_api).await.is_empty(), "a pod was created for an invalid job");
    operator.abort();
    cluster.delete_namespace().await;
}
