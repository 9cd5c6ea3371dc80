//! Image preprocessing benchmark: decode -> resize 224x224 -> JPEG encode -> Parquet on 2,000
//! generated photo-like JPEGs (300-800 px sides). Prints images/s and the peak RSS of the run.
//!
//! `cargo bench -p weir-benches --bench preprocess` (options after `--`: `--images N`,
//! `--threads N`, `--memory-limit 512MiB`). The data set is generated once under the target dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir::size::{format_size, parse_size};
use weir::{RunOptions, run_job};
use weir_testkit::images::{JpegSet, write_jpeg_set};
use weir_testkit::process::{Finished, wait_peak_rss};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let images: usize = flag("--images").map_or(Ok(2000), |v| v.parse()).context("--images")?;
    let threads = flag("--threads").unwrap_or_else(|| "0".into());
    let memory = flag("--memory-limit").unwrap_or_else(|| "256MiB".into());
    let data = data_dir(images)?;
    let bytes: u64 = std::fs::read_dir(&data)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    let out = tempfile::tempdir()?;
    let manifest = out.path().join("bench.yaml");
    std::fs::write(&manifest, manifest_text(&data, &out.path().join("out")))?;

    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args(["--child", &manifest.display().to_string(), &threads, &memory])
        .spawn()?;
    let Finished { success, peak_rss } = wait_peak_rss(child)?;
    let elapsed = started.elapsed().as_secs_f64();
    if !success {
        bail!("the benchmark run failed");
    }
    println!(
        "preprocess: {images} JPEGs ({} total, {} avg), decode -> resize 224x224 -> JPEG q85 -> Parquet",
        format_size(bytes),
        format_size(bytes / images as u64)
    );
    println!(
        "preprocess: {:.0} images/s  ({elapsed:.2} s wall, process start included), peak RSS {}",
        images as f64 / elapsed,
        format_size(peak_rss)
    );
    Ok(())
}

/// The generated input set, reused across runs.
fn data_dir(images: usize) -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    let dir = target.join(format!("bench-data/jpeg-{images}"));
    let done = dir.join(".complete");
    if !done.exists() {
        eprintln!("generating {images} JPEGs in {} ...", dir.display());
        write_jpeg_set(&dir, JpegSet { count: images, quality: 85, ..JpegSet::default() })?;
        std::fs::write(&done, b"")?;
    }
    Ok(dir)
}

fn manifest_text(data: &Path, out: &Path) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {{name: bench-preprocess}}
spec:
  source: {{files: {{uri: \"{}/\", glob: \"*.jpg\", filesPerUnit: 250}}}}
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

fn child(args: &[String]) -> Result<()> {
    weir::tune_allocator();
    let [manifest, threads, memory] = args else { bail!("usage: --child MANIFEST THREADS MEMORY") };
    let job = weir_crds::parse_manifest(&std::fs::read_to_string(manifest)?, manifest)?;
    let options = RunOptions {
        threads: threads.parse()?,
        memory_limit: Some(parse_size(memory).map_err(anyhow::Error::msg)?),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(run_job(&job, options))?;
    let s = &report.summary;
    eprintln!(
        "pipeline: {} rows in {:.2} s ({:.0} rows/s in the pipeline)",
        s.rows_out,
        s.elapsed.as_secs_f64(),
        s.rows_out as f64 / s.elapsed.as_secs_f64()
    );
    eprintln!("{}", weir::profile::render_text(&report.stages, s.elapsed));
    Ok(())
}
