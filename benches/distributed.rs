//! The distributed path's cost: the image preprocessing pipeline run in one process (`weir run`)
//! and as a coordinator plus two worker processes (`weir run --workers cpu=2`) on the same data;
//! and Arrow Flight exchange throughput for 224x224x3 tensors between two local processes.
//!
//! `cargo build --release -p weir && cargo bench -p weir-benches --bench distributed` (options
//! after `--`: `--images N`, `--files-per-unit N`, `--rounds N`, `--tensors N`, `--batch N`). Both runs include process
//! start; the data set is generated once under the target dir (shared with `preprocess`).

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use harness::{Args, data_dir};
use weir_cluster::exchange::{AcceptAnyLease, RemoteStep, Router, StepServer, serve_steps, server_bind};
use weir_core::{ComputePool, Step, StepContext, StepError, StepOutput};
use weir_testkit::images::{JpegSet, write_jpeg_set};

const TENSOR_BYTES: usize = 224 * 224 * 3;

fn main() -> Result<()> {
    let args = Args::from_env();
    if let Some(child) = args.child() {
        return serve_identity(child);
    }
    let images: usize = args.flag("--images", 2000)?;
    let rounds: usize = args.flag("--rounds", 3)?;
    // Small units keep both workers busy to the end of a job this short: with large ones, one
    // worker sits idle while the other finishes the last units it holds.
    let files_per_unit: usize = args.flag("--files-per-unit", 25)?;
    let weir = weir_binary()?;
    let data = data_dir(&format!("jpeg-{images}"), |dir| {
        write_jpeg_set(dir, JpegSet { count: images, quality: 85, ..JpegSet::default() })?;
        Ok(())
    })?;
    let work = tempfile::tempdir()?;
    let manifest = work.path().join("bench.yaml");
    std::fs::write(&manifest, manifest_text(&data, &work.path().join("out"), files_per_unit))?;
    let (mut embedded, mut distributed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        embedded.push(timed_run(&weir, &manifest, &work.path().join("out"), &[])?);
        distributed.push(timed_run(&weir, &manifest, &work.path().join("out"), &["--workers", "cpu=2"])?);
    }
    let (one, many) = (median(&mut embedded), median(&mut distributed));
    println!(
        "distributed: {images} JPEGs in units of {files_per_unit}, decode -> resize 224x224 -> JPEG q85 -> Parquet, median of {rounds} runs"
    );
    println!("distributed: in one process        {:.0} images/s ({one:.2} s)", images as f64 / one);
    println!("distributed: coordinator + 2 workers {:.0} images/s ({many:.2} s)", images as f64 / many);
    println!("distributed: throughput change {:+.1}%", (one / many - 1.0) * 100.0);
    flight(args.flag("--tensors", 2048)?, args.flag("--batch", 32)?)
}

/// The `weir` release binary beside this benchmark.
fn weir_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).context("benchmark path")?;
    let weir = release.join("weir");
    if !weir.exists() {
        bail!("{} is missing: run `cargo build --release -p weir` first", weir.display());
    }
    Ok(weir)
}

fn manifest_text(data: &Path, out: &Path, files_per_unit: usize) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {{name: bench-distributed}}
spec:
  source: {{files: {{uri: \"{}/\", glob: \"*.jpg\", filesPerUnit: {files_per_unit}}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
    - {{op: image.resize, input: image, output: image, width: 224, height: 224}}
    - {{op: image.encode, input: image, output: thumbnail, quality: 85}}
    - {{op: select, columns: [uri, thumbnail]}}
  sink: {{parquet: {{uri: \"{}/\"}}}}
",
        data.display(),
        out.display()
    )
}

/// Seconds `weir run MANIFEST EXTRA...` takes, from a clean output folder.
fn timed_run(weir: &Path, manifest: &Path, out: &Path, extra: &[&str]) -> Result<f64> {
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let status = Command::new(weir)
        .arg("run")
        .arg(manifest)
        .args(["--no-progress", "--memory-limit", "512MiB"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("weir run {extra:?} failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Sends `tensors` 224x224x3 tensors, `batch` per morsel with two morsels in flight, through a
/// Flight exchange with a child process that returns each morsel unchanged.
fn flight(tensors: usize, batch: usize) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let folder = tempfile::tempdir()?;
    let secret = weir_cluster::JobSecret::generate("bench")?;
    secret.save(folder.path())?;
    let mut server = Command::new(std::env::current_exe()?)
        .args(["--child", &port.to_string()])
        .env(weir_auth::SECRET_DIR_ENV, folder.path())
        .spawn()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(async {
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the exchange server did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let step = Arc::new(RemoteStep::new(0..=0, "identity", Arc::new(Router::to(&endpoint, secret.clone())?), 2));
        let ctx = StepContext::new(ComputePool::new(1)?);
        let morsel = tensor_batch(batch)?;
        let morsels = tensors.div_ceil(batch);
        let started = Instant::now();
        let mut returned = 0usize;
        let mut outputs =
            futures::stream::iter(0..morsels).map(|_| step.clone().process(morsel.clone(), ctx.clone())).buffered(2);
        while let Some(output) = outputs.next().await {
            returned += output?.batch.num_rows();
        }
        Ok((returned, started.elapsed().as_secs_f64()))
    });
    let _ = server.kill();
    let _ = server.wait();
    let (returned, seconds) = result?;
    let megabytes = (returned * TENSOR_BYTES) as f64 / 1e6;
    println!(
        "flight: {returned} tensors of 224x224x3 in morsels of {batch}, to a local process and back: {:.0} MB/s each way ({:.0} tensors/s)",
        megabytes / seconds,
        returned as f64 / seconds
    );
    Ok(())
}

fn tensor_batch(rows: usize) -> Result<RecordBatch> {
    let pixels: Vec<Vec<u8>> = (0..rows).map(|i| (0..TENSOR_BYTES).map(|p| (p * 31 + i) as u8).collect()).collect();
    let column: ArrayRef = Arc::new(BinaryArray::from_iter_values(pixels.iter()));
    Ok(RecordBatch::try_from_iter([("tensor", column)])?)
}

/// Returns its input: the exchange's own cost, with no work on the far side.
struct Identity;

impl Step for Identity {
    fn name(&self) -> &str {
        "identity"
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        _ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        async move { Ok(StepOutput::ok(input)) }.boxed()
    }
}

/// The child: an exchange server on the given port running [`Identity`] as step 0.
fn serve_identity(args: &[String]) -> Result<()> {
    let [port] = args else { bail!("usage: --child PORT") };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let (listener, _) = server_bind(addr).await?;
        let steps = [(0usize, Arc::new(Identity) as Arc<dyn Step>)].into_iter().collect();
        let server = StepServer::new(steps, StepContext::new(ComputePool::new(1)?), Arc::new(AcceptAnyLease));
        let secret = weir_cluster::JobSecret::load(std::path::Path::new(&std::env::var(weir_auth::SECRET_DIR_ENV)?))?;
        serve_steps(server, listener, secret, tokio_util::sync::CancellationToken::new()).await?;
        Ok(())
    })
}
