//! The local autoscaler of `weir run --workers cpu=1..2,gpu=1..3`, against real processes and a
//! real Prometheus: the genuinely slow gpu pool (a MiniLM embedding, one thread per process) grows
//! and the fast cpu pool does not, an idle pool is drained without redoing a unit, and every row
//! is written once. Each decision checked follows from the work's shape, not from this machine's
//! speed. Needs the MiniLM weights (`WEIR_MODELS`, fetched by scripts/test.sh) and, for the
//! Prometheus test, Debian's `prometheus`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, StringArray};
use common::*;
use weir_testkit::prometheus::Prometheus;

fn minilm() -> PathBuf {
    let models = std::env::var_os("WEIR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("WEIR_MODELS is not set: run scripts/test.sh, which fetches the model files"));
    models.join("all-MiniLM-L6-v2/model.safetensors")
}

/// `count` texts of about 150 words each, different enough to be real work for the embedding.
fn write_texts(dir: &Path, count: usize) -> BTreeSet<String> {
    std::fs::create_dir_all(dir).expect("texts dir");
    let words = [
        "river", "mountain", "engine", "pipeline", "image", "frame", "cluster", "worker", "model", "tensor", "batch",
        "stream", "harbour", "lantern", "orchard", "signal", "memory", "budget", "photon", "granite",
    ];
    (0..count)
        .map(|i| {
            let text: Vec<&str> = (0..150).map(|w| words[(i * 7 + w * 13 + w * w) % words.len()]).collect();
            let path = dir.join(format!("t{i:04}.txt"));
            std::fs::write(&path, format!("Text {i}. {}.", text.join(" "))).expect("write text");
            file_uri(&path)
        })
        .collect()
}

/// A job whose cpu steps are fast (read, decode text) and whose gpu step is a real embedding;
/// `autoscaling` is the manifest's block (or empty).
fn embed_job(dir: &Path, texts: &Path, autoscaling: &str) -> PathBuf {
    let steps = "    - {op: text.embed, input: text, output: embedding, pool: gpu, model: {arch: bert, uri: \"MODEL\"}}\n    - {op: select, columns: [uri, embedding]}\n";
    job_with(dir, texts, steps, autoscaling)
}

/// The same embedding on the cpu pool, and only a cheap `select` on the gpu pool: the gpu pool
/// idles however many workers it has.
fn idle_gpu_job(dir: &Path, texts: &Path, autoscaling: &str) -> PathBuf {
    let steps = "    - {op: text.embed, input: text, output: embedding, pool: cpu, model: {arch: bert, uri: \"MODEL\"}}\n    - {op: select, columns: [uri, embedding], pool: gpu}\n";
    job_with(dir, texts, steps, autoscaling)
}

/// A job reading `texts`, decoding them on the cpu pool, then `steps` (with `MODEL` standing for
/// the MiniLM weights), into `dir/out`.
fn job_with(dir: &Path, texts: &Path, steps: &str, autoscaling: &str) -> PathBuf {
    let steps = steps.replace("MODEL", &minilm().display().to_string());
    write_manifest(
        dir,
        "scale",
        &format!(
            r#"  source:
    files: {{uri: "{}", filesPerUnit: 4}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: document.text, input: bytes, output: text}}
{steps}  sink:
    parquet: {{uri: "{}"}}
  pools:
    gpu: {{replicas: {{min: 1, max: 3}}, gpusPerPod: 0}}
{autoscaling}"#,
            file_uri(texts),
            file_uri(&dir.join("out"))
        ),
    )
}

/// The `uri` of every output row, counting duplicates.
fn output_uris(out: &Path) -> Vec<String> {
    read_parquet_dir(out)
        .iter()
        .flat_map(|batch| {
            let uris = batch.column_by_name("uri").expect("uri column");
            let uris = uris.as_any().downcast_ref::<StringArray>().expect("uri strings");
            (0..uris.len()).map(|i| uris.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect()
}

fn assert_exactly_once(inputs: &BTreeSet<String>, out: &Path) {
    let rows = output_uris(out);
    assert_eq!(rows.len(), inputs.len(), "rows written");
    assert_eq!(&rows.into_iter().collect::<BTreeSet<_>>(), inputs, "every input once");
}

/// The attempt numbers of every committed unit, within their epoch.
fn committed_attempts(out: &Path) -> Vec<(u64, u32)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = object_store::local::LocalFileSystem::new_with_prefix(out.join("_weir")).expect("checkpoint dir");
        let checkpoint = weir_checkpoint::CheckpointStore::new(Arc::new(store), object_store::path::Path::from(""));
        let committed = checkpoint.committed().await.expect("committed units");
        committed.values().map(|c| (c.unit, c.attempt % 1000)).collect()
    })
}

/// Lines of the supervisor's decisions for `pool` with `action` (`up`, `down`, `hold`).
fn decisions<'a>(log: &'a str, pool: &str, action: &str) -> Vec<&'a str> {
    let (head, tail) = (format!("autoscaler {pool} "), format!("({action})"));
    log.lines().filter(|l| l.contains(&head) && l.contains(&tail)).collect()
}

/// The tests of this file run one at a time: each is several processes on a 2-core machine, and
/// the decisions they check follow from how busy the workers are.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spawn_run(manifest: &Path, extra: &[&str]) -> Child {
    spawn_run_on("cpu=1..2,gpu=1..3", manifest, extra)
}

fn spawn_run_on(workers: &str, manifest: &Path, extra: &[&str]) -> Child {
    weir()
        .args(["run", "--no-progress", "--workers", workers, "--threads", "1"])
        .args(["--autoscale-interval", "2s", "--lease-ttl", "6s"])
        .args(extra)
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir run")
}

#[test]
fn the_slow_gpu_pool_grows_the_fast_cpu_pool_does_not_and_every_row_is_written_once() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_texts(&dir.path().join("texts"), 240);
    // One single-threaded gpu worker is busy all the time (utilisation about 1), well above the
    // band 0.4..0.8 around the target 0.6: the pool grows; the cpu pool (about 0.2) stays at 1.
    let manifest = embed_job(dir.path(), &dir.path().join("texts"), "  autoscaling: {targetUtilization: 0.6}\n");
    let run = spawn_run(&manifest, &[]).wait_with_output().expect("wait");
    let log = text(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(!decisions(&log, "gpu", "up").is_empty(), "the gpu pool never grew:\n{log}");
    assert!(decisions(&log, "cpu", "up").is_empty(), "the cpu pool is not the bottleneck:\n{log}");
    assert!(log.contains("utilisation"), "decisions carry their figures:\n{log}");
    assert!(text(&run.stdout).contains("worker-seconds:"), "{}", text(&run.stdout));
    assert_exactly_once(&inputs, &dir.path().join("out"));
    assert_first_attempts_only(&dir.path().join("out"), &log);
}

#[test]
fn an_idle_pool_is_drained_without_redoing_a_unit_and_every_row_is_written_once() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_texts(&dir.path().join("texts"), 240);
    // The gpu pool starts at 3 with nothing to do but a `select`: below the band whatever the
    // machine, it is drained (by half a round, at once: the window is 0 s) while the cpu worker
    // embeds.
    let manifest = idle_gpu_job(dir.path(), &dir.path().join("texts"), "");
    let run = spawn_run_on("cpu=1,gpu=1..3@3", &manifest, &["--scale-down-window", "0s"]);
    let run = run.wait_with_output().expect("wait");
    let log = text(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(!decisions(&log, "gpu", "down").is_empty(), "the gpu pool never shrank:\n{log}");
    assert!(log.contains("weir run: draining gpu-") && log.contains("drained and stopped"), "{log}");
    assert!(!log.contains("handed back"), "a drain handed a unit back:\n{log}");
    assert_exactly_once(&inputs, &dir.path().join("out"));
    assert_first_attempts_only(&dir.path().join("out"), &log);
}

/// Nothing was redone: every one of the 60 units committed its first attempt.
fn assert_first_attempts_only(out: &Path, log: &str) {
    let attempts = committed_attempts(out);
    assert_eq!(attempts.len(), 60, "units committed");
    assert!(attempts.iter().all(|(_, attempt)| *attempt == 0), "a unit ran twice: {attempts:?}\n{log}");
}

#[test]
fn a_real_prometheus_scraping_the_run_feeds_the_decisions_and_every_dashboard_panel() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_texts(&dir.path().join("texts"), 240);
    let manifest = embed_job(dir.path(), &dir.path().join("texts"), "");
    let targets = dir.path().join("targets.json");
    std::fs::write(&targets, "[]").expect("targets");
    let prometheus = Prometheus::start(dir.path(), &targets);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let mut run = spawn_run(
        &manifest,
        &[
            "--prometheus",
            &prometheus.url(),
            "--prometheus-targets",
            &targets.display().to_string(),
            "--metrics-listen",
            &metrics.to_string(),
        ],
    );
    let expressions = dashboard_expressions("scale");
    let mut unanswered: BTreeSet<String> = expressions.iter().cloned().collect();
    let started = Instant::now();
    while !unanswered.is_empty() && run.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not finish");
        std::thread::sleep(Duration::from_millis(500));
        unanswered.retain(|expr| !prometheus.query(expr).is_some_and(|body| has_series(&body)));
    }
    let output = run.wait_with_output().expect("wait");
    let log = text(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(unanswered.is_empty(), "dashboard queries without a series during the run: {unanswered:#?}\n{log}");
    assert!(!decisions(&log, "gpu", "up").is_empty(), "the gpu pool never grew on Prometheus' figures:\n{log}");
    assert!(decisions(&log, "cpu", "up").is_empty(), "{log}");
    assert_exactly_once(&inputs, &dir.path().join("out"));
}

/// Every panel expression of the Grafana dashboard, with `$job` and `$pool` filled in.
fn dashboard_expressions(job: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/grafana/weir-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let expressions: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(|e| e.replace("$job", job).replace("$pool", ".*")))
        .collect();
    assert!(expressions.len() >= 7, "the dashboard lost its panels: {expressions:?}");
    expressions
}

/// Whether a Prometheus query answer holds at least one series.
fn has_series(body: &str) -> bool {
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else { return false };
    answer["status"] == "success" && answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty())
}
