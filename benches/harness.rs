//! What every benchmark shares: runs a manifest in a child process (so its peak RSS is the run's
//! own), parses `--flag value` options, and keeps generated inputs under the target dir.

// Each benchmark uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir::size::parse_size;
use weir::{RunOptions, run_job};
use weir_testkit::process::{Finished, wait_peak_rss};

/// A finished benchmark run.
pub struct Measured {
    /// Wall seconds, process start included.
    pub seconds: f64,
    pub peak_rss: u64,
}

/// The command line, for [`Args::flag`].
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Self(std::env::args().collect())
    }

    /// The arguments after `--child`, when this process is a benchmark's child run.
    pub fn child(&self) -> Option<&[String]> {
        self.0.iter().position(|a| a == "--child").map(|i| &self.0[i + 1..])
    }

    /// Whether the switch `name` (no value) is given.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// `--name VALUE`, parsed, or `default`.
    pub fn flag<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        match self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)) {
            Some(v) => v.parse().with_context(|| format!("{name} {v}")),
            None => Ok(default),
        }
    }
}

/// A directory for generated inputs named `name`, reused across runs: `fill` runs only once.
pub fn data_dir(name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    let dir = target.join("bench-data").join(name);
    let done = dir.join(".complete");
    if !done.exists() {
        eprintln!("generating {} ...", dir.display());
        std::fs::create_dir_all(&dir)?;
        fill(&dir)?;
        std::fs::write(&done, b"")?;
    }
    Ok(dir)
}

/// Total size of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    Ok(std::fs::read_dir(dir)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
}

/// Runs `manifest` in a child process of this benchmark with `threads` compute threads (0: one
/// per core) and a memory budget, and measures it.
pub fn run_measured(manifest_text: &str, threads: usize, memory: &str) -> Result<Measured> {
    let out = tempfile::tempdir()?;
    let manifest = out.path().join("bench.yaml");
    std::fs::write(&manifest, manifest_text.replace("{out}", &out.path().join("out").display().to_string()))?;
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args(["--child", &manifest.display().to_string(), &threads.to_string(), memory])
        .spawn()?;
    let Finished { success, peak_rss } = wait_peak_rss(child)?;
    let seconds = started.elapsed().as_secs_f64();
    if !success {
        bail!("the benchmark run failed");
    }
    Ok(Measured { seconds, peak_rss })
}

/// As in `weir`: the budget charges kernels' scratch memory.
#[global_allocator]
static ALLOCATOR: weir_core::alloc::TrackingAllocator = weir_core::alloc::TrackingAllocator;

/// The child side of [`run_measured`]: runs the job and prints its profile to stderr.
pub fn child(args: &[String]) -> Result<()> {
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
    eprintln!("budget: at most {} reserved at once", weir::size::format_size(s.peak_reserved));
    Ok(())
}
