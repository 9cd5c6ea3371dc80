//! A storage outage mid-job: the S3 server (moto, behind a [`TcpProxy`]) refuses every connection
//! for 10 s while `weir run --workers` reads, writes and commits through it. The job must pause,
//! retry with backoff and complete with every good row exactly once.
//!
//! `scripts/test.sh` installs moto into a virtualenv and sets `WEIR_MOTO_SERVER`; without it this
//! test fails and says how to get one.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_testkit::images::{BAD_FILES, JpegSet, write_bad_files, write_jpeg_set};
use weir_testkit::moto::Moto;
use weir_testkit::proxy::TcpProxy;

const BUCKET: &str = "weir";
/// How long the S3 server is unreachable.
const OUTAGE: Duration = Duration::from_secs(10);
/// The whole run, outage included, must end within this.
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// Sized so that on two slow cores the run is still busy when the outage starts, and stays busy
/// for several seconds after it starts.
const IMAGES: JpegSet = JpegSet { count: 400, min_side: 300, max_side: 500, quality: 85, seed: 11 };

/// `weir ARGS MANIFEST` talking to S3 through `proxy`.
fn weir_via(proxy: SocketAddr, args: &[&str], manifest: &FsPath) -> Command {
    let mut command = weir_s3(&format!("http://{proxy}"));
    command.args(args).arg(manifest);
    command
}

/// Uploads every file of `dir` under `images/`, 16 at a time; returns their `s3://` URIs.
async fn upload_images(store: &Arc<dyn ObjectStore>, dir: &FsPath) -> BTreeSet<String> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir).expect("list images").map(|e| e.expect("entry").path()).collect();
    futures::stream::iter(files)
        .map(|file| async move {
            let name = file.file_name().and_then(|n| n.to_str()).expect("file name").to_string();
            let bytes = std::fs::read(&file).expect("read image");
            store.put(&Path::from(format!("images/{name}")), PutPayload::from(bytes)).await.expect("upload");
            format!("s3://{BUCKET}/images/{name}")
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Decodes, resizes and re-encodes every image in `s3://weir/images/`; output and checkpoint in S3.
fn image_job(dir: &FsPath) -> PathBuf {
    write_manifest(
        dir,
        "outage",
        &format!(
            r#"  source:
    files: {{uri: "s3://{BUCKET}/images/", filesPerUnit: 10}}
{IMAGE_STEPS}  sink:
    parquet: {{uri: "s3://{BUCKET}/out/"}}
  checkpoint: {{uri: "s3://{BUCKET}/checkpoint/"}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
"#
        ),
    )
}

/// `weir status --json` of the job, through `proxy`.
fn status(proxy: SocketAddr, manifest: &FsPath) -> serde_json::Value {
    let output = weir_via(proxy, &["status", "--json"], manifest).output().expect("weir status");
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// A running `weir run`, its output going to files (a chatty run cannot block on a full pipe).
/// Dropping it before it exits (a failed assertion) stops it and its worker processes.
struct Run {
    child: Child,
    started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Run {
    /// Starts `weir run --workers cpu=2` on `manifest` through `proxy`, its output under `dir`.
    fn start(proxy: SocketAddr, manifest: &FsPath, dir: &FsPath) -> Self {
        let (stdout, stderr) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
        let child = weir_via(proxy, &["run", "--no-progress", "--workers", "cpu=2"], manifest)
            .stdout(Stdio::from(std::fs::File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(std::fs::File::create(&stderr).expect("stderr file")))
            .spawn()
            .expect("weir run");
        Self { child, started: Instant::now(), stdout, stderr }
    }

    /// Whether the run has not exited (never panics, so `drop` may ask).
    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls the job's status until units are being committed; fails if the run ends first.
    fn wait_until_committing(&mut self, proxy: SocketAddr, manifest: &FsPath) -> serde_json::Value {
        loop {
            assert!(
                self.is_running(),
                "the run ended before the outage began: make the job bigger so the test cannot pass vacuously"
            );
            assert!(self.started.elapsed() < RUN_DEADLINE, "no unit was committed within {RUN_DEADLINE:?}");
            let status = status(proxy, manifest);
            if status["phase"] == "Running" && status["unitsCommitted"].as_u64().is_some_and(|n| n > 0) {
                return status;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the run to exit, failing once [`RUN_DEADLINE`] has passed since it started.
    fn wait(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(self.started.elapsed() < RUN_DEADLINE, "the run did not finish within {RUN_DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.is_running() {
            return;
        }
        // SIGTERM first: `weir run` passes it on to its coordinator and workers.
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("outage: stopped the unfinished run; its stderr:\n{}", self.stderr());
    }
}

/// Every row of the Parquet files named `part-*.parquet` directly under `dir/`.
async fn read_parts(store: &Arc<dyn ObjectStore>, dir: &str) -> Vec<arrow_array::RecordBatch> {
    let listing = store.list_with_delimiter(Some(&Path::from(dir))).await.expect("list");
    let parts = listing
        .objects
        .into_iter()
        .map(|meta| meta.location)
        .filter(|p| p.filename().is_some_and(|name| name.starts_with("part-") && name.ends_with(".parquet")));
    let files: Vec<bytes::Bytes> = futures::stream::iter(parts)
        .then(|part| async move { store.get(&part).await?.bytes().await })
        .try_collect()
        .await
        .expect("read part files");
    files
        .into_iter()
        .flat_map(|bytes| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet").build().expect("reader");
            reader.map(|batch| batch.expect("batch")).collect::<Vec<_>>()
        })
        .collect()
}

/// Values of string column `name`, failing on any duplicate.
fn unique_strings(batches: &[arrow_array::RecordBatch], name: &str) -> BTreeSet<String> {
    let values = strings(batches, name);
    let unique: BTreeSet<String> = values.iter().cloned().collect();
    assert_eq!(unique.len(), values.len(), "a `{name}` was written twice");
    unique
}

#[test]
fn a_ten_second_storage_outage_pauses_the_job_and_loses_nothing() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let proxy = TcpProxy::start(moto.endpoint().trim_start_matches("http://").parse().expect("moto address"))
        .expect("start proxy");
    let store = s3_store(moto.endpoint(), BUCKET);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, IMAGES).expect("jpegs");
    write_bad_files(&images).expect("bad files");
    let inputs = runtime.block_on(upload_images(&store, &images));
    let bad: BTreeSet<String> = BAD_FILES.iter().map(|name| format!("s3://{BUCKET}/images/{name}")).collect();
    let good: BTreeSet<String> = inputs.difference(&bad).cloned().collect();
    let manifest = image_job(dir.path());

    let mut run = Run::start(proxy.addr(), &manifest, dir.path());
    let before = run.wait_until_committing(proxy.addr(), &manifest);

    let cut_at = run.started.elapsed();
    proxy.cut();
    assert!(run.is_running(), "the run ended before the outage began");
    let (committed, total) = (&before["unitsCommitted"], &before["unitsTotal"]);
    assert!(committed.as_u64() < total.as_u64(), "every unit was committed before the outage began: {before}");
    eprintln!("outage: S3 cut at {:.1}s with {committed} of {total} units committed", cut_at.as_secs_f64());
    std::thread::sleep(OUTAGE);
    proxy.restore().expect("restore the proxy");
    let outage = run.started.elapsed() - cut_at;
    eprintln!("outage: S3 restored at {:.1}s after {:.1}s", run.started.elapsed().as_secs_f64(), outage.as_secs_f64());
    assert!(run.is_running(), "the run ended during the outage; stderr:\n{}", run.stderr());

    let exit = run.wait();
    let total_time = run.started.elapsed();
    let after_restore = total_time - cut_at - outage;
    eprintln!(
        "outage: the run took {:.1}s, {:.1}s after the restore",
        total_time.as_secs_f64(),
        after_restore.as_secs_f64()
    );
    assert!(exit.success(), "the run failed after the outage; stderr:\n{}", run.stderr());
    let summary = format!("{} rows in, {} out, {} failed", inputs.len(), good.len(), bad.len());
    assert!(run.stdout().contains(&summary), "stdout: {}", run.stdout());

    runtime.block_on(async {
        let rows = read_parts(&store, "out").await;
        assert_eq!(unique_strings(&rows, "uri"), good, "every good input exactly once");
        let errors = read_parts(&store, "out/_errors").await;
        assert_eq!(unique_strings(&errors, "row_ref"), bad, "the errors hold exactly the bad files");
        store.head(&Path::from("out/_SUCCESS")).await.expect("the _SUCCESS marker");
    });
}
