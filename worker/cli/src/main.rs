//! `weir`: run, validate and inspect MultimodalJob pipelines.

mod cluster_cmd;
mod verify_cmd;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use weir::cluster::WorkerResources;
use weir::cluster::supervise::Topology;
use weir::profile::render_text;
use weir::size::parse_duration;
use weir::size::{format_size, parse_size};
use weir::{RunOptions, run_job};
use weir_auth::JobSecret;
use weir_cluster::{CoordinatorOptions, WorkerOptions};
use weir_crds::{crd_yaml, parse_manifest, validate_manifest};
use weir_samples::images::{BAD_FILES, JpegSet, write_bad_files, write_jpeg_set};

/// Counts each thread's allocations, so the memory budget charges a kernel's scratch memory (a
/// decoder's planes), not only its output (`weir_core::alloc`).
#[global_allocator]
static ALLOCATOR: weir_core::alloc::TrackingAllocator = weir_core::alloc::TrackingAllocator;

#[derive(Parser)]
#[command(name = "weir", version, about = "Multimodal AI data pipelines, on a laptop or on Kubernetes")]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line) for a
    /// log collector. Levels come from RUST_LOG (default `info`).
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of log events on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per event, its fields at the top level.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// Installs the process's log subscriber: events to stderr, filtered by RUST_LOG (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a MultimodalJob manifest in this process (the embedded default).
    Run {
        /// The manifest (YAML).
        manifest: PathBuf,
        /// Memory budget for data in flight, e.g. 512MiB (default: a quarter of the memory limit, at most 2 GiB).
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<u64>,
        /// Compute threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Where to write the Markdown profile (default: <sink uri>/_weir/profile.md).
        #[arg(long)]
        profile: Option<String>,
        /// Do not draw progress bars.
        #[arg(long)]
        no_progress: bool,
        /// Run as a coordinator and worker processes on this machine, e.g. `cpu=2,gpu=1` (or `3`):
        /// the same processes and protocol as on Kubernetes; a process that dies is restarted.
        /// A range `gpu=1..3` is autoscaled from its lower bound (`gpu=1..3@3` starts at 3).
        #[arg(long, value_name = "POOL=N,...")]
        workers: Option<Topology>,
        /// With --workers: a worker silent for this long loses its units to other workers.
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        lease_ttl: Duration,
        #[command(flatten)]
        autoscale: cluster_cmd::AutoscaleArgs,
    },
    /// Serve a job's coordinator: plan units, lease them to workers, commit their results.
    Coordinator {
        manifest: PathBuf,
        /// Address to serve gRPC on (TLS; every call needs the job's token). On Kubernetes, the
        /// pod's IP.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// The folder holding the job's secret (`token`, `ca.crt`, `tls.crt`, `tls.key`; the
        /// operator mounts it, `weir secret create` makes one).
        #[arg(long, env = "WEIR_JOB_SECRET_DIR")]
        secret_dir: PathBuf,
        /// A worker silent for this long loses its units to other workers.
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        lease_ttl: Duration,
        /// How often workers renew their leases (default: a sixth of the lease TTL).
        #[arg(long, value_parser = parse_duration)]
        heartbeat: Option<Duration>,
        /// A unit that fails this many times fails the job.
        #[arg(long, default_value_t = 4)]
        max_failures: u32,
        /// Serve Prometheus metrics on this address (`/metrics`).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Run a job's units leased from its coordinator until the job ends (SIGTERM drains).
    Worker {
        manifest: PathBuf,
        /// The coordinator, e.g. weir-coordinator:7070 (always dialled over TLS).
        #[arg(long, env = "WEIR_COORDINATOR")]
        coordinator: String,
        /// The folder holding the job's secret (see `weir coordinator --secret-dir`).
        #[arg(long, env = "WEIR_JOB_SECRET_DIR")]
        secret_dir: PathBuf,
        /// The pool this worker serves, as `spec.pools` names it (`cpu`, `gpu-l4`, ...).
        #[arg(long, default_value = "cpu")]
        pool: weir_crds::PoolName,
        /// This worker's name (default: the host name and process id).
        #[arg(long, env = "WEIR_WORKER_ID")]
        id: Option<String>,
        /// Compute threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Memory budget for data in flight (default: a quarter of the memory limit, at most 2 GiB).
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<u64>,
        /// Units held at once (one running while the next is read).
        #[arg(long, default_value_t = 2)]
        capacity: usize,
        /// After SIGTERM, how long held units may take to finish before they are handed back.
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        grace: Duration,
        /// Serve Prometheus metrics on this address (`/metrics`).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// A worker of a pool that does not lease units serves its steps over Arrow Flight here.
        #[arg(long, default_value = "127.0.0.1:7071")]
        exchange_listen: SocketAddr,
        /// The address other workers reach this worker's Flight service at (default: the bound
        /// address; always TLS; on Kubernetes, the pod's name in the headless service).
        #[arg(long, env = "WEIR_EXCHANGE_ADVERTISE")]
        exchange_advertise: Option<String>,
        /// Morsels kept in flight to each other pool's workers (default: two per worker that pool
        /// may grow to, its replicas.max).
        #[arg(long)]
        exchange_in_flight: Option<usize>,
    },
    /// Show the progress of a job: from its running coordinator, else from its checkpoint.
    Status {
        manifest: PathBuf,
        /// Ask this coordinator (default: the one the job's checkpoint names).
        #[arg(long)]
        coordinator: Option<String>,
        /// The job's secret, to ask its coordinator (without it: what the checkpoint records).
        #[arg(long, env = "WEIR_JOB_SECRET_DIR")]
        secret_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print a line every 2 seconds until the job ends.
        #[arg(long)]
        watch: bool,
    },
    /// Make a job secret for `weir coordinator` and `weir worker` run by hand (the operator and
    /// `weir run --workers` make their own).
    Secret {
        #[command(subcommand)]
        what: SecretCommand,
    },
    /// Check manifests offline with the same rules as the Kubernetes API server; lists every problem.
    Validate {
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
    /// Check a finished job's output against its checkpoint: every committed file present,
    /// unchanged and holding its recorded rows, no uncommitted part file, manifest and `_SUCCESS`
    /// in agreement. Exits 0 when OK, 1 on any problem, 2 when it cannot check.
    Verify {
        /// The job's output (its sink URI).
        output: String,
        /// The job's checkpoint (default: OUTPUT/_weir/).
        #[arg(long, value_name = "URI")]
        checkpoint: Option<String>,
    },
    /// Print the MultimodalJob CustomResourceDefinition (YAML).
    Crd,
    /// Generate example input data.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Work with model weights.
    Model {
        #[command(subcommand)]
        what: Model,
    },
}

#[derive(Subcommand)]
enum Model {
    /// Convert a PyTorch checkpoint (`torch.save` zip or legacy pickle, a state dict) or a
    /// CTranslate2 Whisper `model.bin` into a safetensors file that model steps load.
    ///
    /// Usage: `weir model convert IN [IN...] OUT.safetensors`; a model split into parts is given
    /// as its parts in order.
    Convert {
        /// The checkpoint (`.pth`, `.pt`, `.bin`, `model.bin` or its parts), then the safetensors
        /// file to write.
        #[arg(required = true, num_args = 2.., value_name = "IN... OUT")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Generate {
    /// Photo-like JPEGs (300-800 px sides, quality 85, ~85 KB each by default).
    Images {
        /// Output folder.
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 300)]
        min_side: u32,
        #[arg(long, default_value_t = 800)]
        max_side: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also write one corrupt, truncated, empty, non-image and decompression-bomb file.
        #[arg(long)]
        with_bad_files: bool,
    },
    /// Test-pattern videos (640x360 H.264 with a tone) and tones in WAV, FLAC, MP3, M4A and Opus,
    /// made with the `ffmpeg` command, plus a truncated MP4 and an empty file.
    Media {
        /// Output folder (videos go to DIR/videos, audio to DIR/audio).
        dir: PathBuf,
        /// Seconds per video.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
    /// PDFs (several pages, one without a text layer), HTML, Markdown and text files, plus a
    /// truncated PDF and an encrypted one.
    Documents {
        /// Output folder.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    weir::tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run {
            manifest,
            memory_limit,
            threads,
            profile: _,
            no_progress,
            workers: Some(topology),
            lease_ttl,
            autoscale,
        } => exit(cluster_cmd::run_supervised(
            manifest,
            topology,
            cluster_cmd::SuperviseArgs { threads, memory_limit, lease_ttl, progress: !no_progress, autoscale },
            cli.log_format,
        )),
        Command::Run { manifest, memory_limit, threads, profile, no_progress, workers: None, .. } => exit(run(
            manifest,
            RunOptions { memory_limit, threads, progress: !no_progress, profile_uri: profile, ..Default::default() },
        )),
        Command::Coordinator { manifest, listen, secret_dir, lease_ttl, heartbeat, max_failures, metrics_listen } => {
            let heartbeat = heartbeat.unwrap_or(lease_ttl / 6);
            let options = CoordinatorOptions { lease_ttl, heartbeat, max_failures, ..Default::default() };
            cluster_cmd::coordinator(manifest, &secret_dir, listen, metrics_listen, options)
        }
        Command::Worker {
            manifest,
            coordinator,
            secret_dir,
            pool,
            id,
            threads,
            memory_limit,
            capacity,
            grace,
            metrics_listen,
            exchange_listen,
            exchange_advertise,
            exchange_in_flight,
        } => {
            let id = id.unwrap_or_else(cluster_cmd::default_worker_id);
            let secret = match JobSecret::load(&secret_dir) {
                Ok(secret) => secret,
                Err(e) => return exit(Err(e.into())),
            };
            let options = WorkerOptions { id, pool, coordinator, secret, capacity, grace };
            let resources = WorkerResources {
                threads,
                memory_limit,
                metrics: metrics_listen,
                exchange_listen,
                exchange_advertise,
                exchange_in_flight,
            };
            exit(cluster_cmd::worker(manifest, options, resources))
        }
        Command::Status { manifest, coordinator, secret_dir, json, watch } => {
            exit(cluster_cmd::status(manifest, coordinator.as_deref(), secret_dir.as_deref(), json, watch))
        }
        Command::Secret { what: SecretCommand::Create { dir, job } } => exit(create_secret(&dir, &job)),
        Command::Validate { manifests } => validate(&manifests),
        Command::Verify { output, checkpoint } => verify_cmd::verify(&output, checkpoint.as_deref()),
        Command::Crd => {
            print!("{}", crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Generate { what: Generate::Images { dir, count, min_side, max_side, seed, with_bad_files } } => exit(
            generate_images(dir, JpegSet { count, min_side, max_side, seed, ..JpegSet::default() }, with_bad_files),
        ),
        Command::Generate { what: Generate::Media { dir, seconds } } => exit(weir::examples::media(&dir, seconds)),
        Command::Generate { what: Generate::Documents { dir } } => exit(weir::examples::documents(&dir)),
        Command::Model { what: Model::Convert { files } } => exit(convert_model(&files)),
    }
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Write a new secret (token, CA, server certificate and key) into DIR, readable by its owner
    /// only; give DIR to every process of the job (`--secret-dir` or `WEIR_JOB_SECRET_DIR`).
    Create {
        dir: PathBuf,
        /// The job's name, written into its certificates.
        #[arg(long, default_value = "job")]
        job: String,
    },
}

fn create_secret(dir: &std::path::Path, job: &str) -> Result<()> {
    if dir.join(weir_auth::TOKEN_KEY).exists() {
        anyhow::bail!("{} already holds a secret; remove it first", dir.display());
    }
    JobSecret::generate(job)?.save(dir)?;
    println!("wrote a new job secret to {}", dir.display());
    Ok(())
}

fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", weir::error_text(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Reads and parses a manifest file.
fn read_job(manifest: &std::path::Path) -> Result<weir_crds::MultimodalJob> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    Ok(parse_manifest(&text, &manifest.display().to_string())?)
}

fn run(manifest: PathBuf, mut options: RunOptions) -> Result<()> {
    let job = read_job(&manifest)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        options.cancel = cancel.clone();
        let interrupted = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.cancel();
                }
            }
        });
        let result = run_job(&job, options).await;
        interrupted.abort();
        if cancel.is_cancelled() {
            anyhow::bail!(
                "interrupted: the run was stopped before it finished; no _SUCCESS marker was written \
                 (run it again to resume: committed units are not redone)"
            );
        }
        let report = result?;
        if report.already_complete {
            println!("{} is already complete (delete its _SUCCESS marker to run again)", report.output_uri);
            return Ok(());
        }
        let s = &report.summary;
        println!("\n{}\n", render_text(&report.stages, s.elapsed));
        if report.resumed.units > 0 {
            let r = &report.resumed;
            println!(
                "resumed: {} units ({} rows in, {} out, {} failed) were committed by an earlier run",
                r.units, r.rows_in, r.rows_out, r.rows_failed
            );
        }
        println!(
            "{} rows in, {} out, {} failed in {:.2}s ({:.1} rows/s); memory budget {} (peak reserved {})",
            s.rows_in,
            s.rows_out,
            s.rows_failed,
            s.elapsed.as_secs_f64(),
            s.rows_in as f64 / s.elapsed.as_secs_f64().max(1e-9),
            format_size(report.memory_limit),
            format_size(s.peak_reserved)
        );
        println!("output:  {}", report.output_uri);
        if let Some(errors) = &report.errors_uri {
            println!("errors:  {errors}");
        }
        println!("profile: {}", report.profile_uri);
        Ok(())
    })
}

fn validate(manifests: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in manifests {
        let report = match std::fs::read_to_string(path) {
            Ok(text) => validate_manifest(&text),
            Err(e) => {
                eprintln!("{}: cannot read: {e}", path.display());
                failed = true;
                continue;
            }
        };
        if report.is_valid() {
            println!("{}: valid", path.display());
        } else {
            failed = true;
            eprintln!(
                "{}: {} problem{}",
                path.display(),
                report.problems.len(),
                if report.problems.len() == 1 { "" } else { "s" }
            );
            for p in &report.problems {
                eprintln!("  - {p}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn convert_model(files: &[PathBuf]) -> Result<()> {
    let Some((output, inputs)) = files.split_last() else { anyhow::bail!("give the input file(s), then the output") };
    let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
    let converted = weir_models::convert::convert(&inputs, output)?;
    let graph = converted.graph_nodes.map(|n| format!(" and a graph of {n} nodes")).unwrap_or_default();
    println!("wrote {} tensors ({}){graph} to {}", converted.tensors, format_size(converted.bytes), output.display());
    Ok(())
}

fn generate_images(dir: PathBuf, set: JpegSet, bad: bool) -> Result<()> {
    let paths = write_jpeg_set(&dir, set).with_context(|| format!("writing images to {}", dir.display()))?;
    let bytes: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    println!("wrote {} JPEGs ({}) to {}", paths.len(), format_size(bytes), dir.display());
    if bad {
        write_bad_files(&dir)?;
        println!("wrote bad files: {}", BAD_FILES.join(", "));
    }
    Ok(())
}
