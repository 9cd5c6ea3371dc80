//! `weir run --workers`: a coordinator and worker processes on localhost, started from this same
//! binary and supervised the way the operator supervises pods: a child that dies is restarted and
//! the job goes on; with ranges (`gpu=1..3`) the local autoscaler grows and drains the pools.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_auth::JobSecret;
use weir_crds::PoolName;

use super::EXIT_JOB_FAILED;
use super::autoscale::{LocalAutoscaler, Process};
pub use super::autoscale::{ScaleSettings, rate_window};
pub use super::topology::{PoolWorkers, Topology};

/// What to supervise.
#[derive(Debug, Clone)]
pub struct SuperviseOptions {
    pub manifest: PathBuf,
    pub topology: Topology,
    /// Compute threads per worker.
    pub threads: usize,
    /// Memory budget per worker.
    pub memory_limit: u64,
    /// Extra arguments for `weir coordinator` (lease timing).
    pub coordinator_args: Vec<String>,
    /// Extra arguments for every worker (exchange sizing).
    pub worker_args: Vec<String>,
    /// Extra arguments for every child, coordinator and workers (the log format).
    pub child_args: Vec<String>,
    /// A child restarted more often than this fails the run.
    pub max_restarts: u32,
    /// Print a progress line every few seconds.
    pub progress: bool,
    /// Scale pools with ranges in `topology`; `None` keeps every pool at its lower bound.
    pub scaling: Option<ScaleSettings>,
    /// A drained worker still running after this long gets SIGTERM (it hands back what it holds).
    pub drain_timeout: Duration,
}

/// Why a supervised run failed.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("starting `{name}`: {source}")]
    Spawn { name: String, source: std::io::Error },
    #[error("the job failed (see the coordinator's message above)")]
    JobFailed,
    #[error("`{name}` was restarted {restarts} times; giving up")]
    TooManyRestarts { name: String, restarts: u32 },
    #[error("interrupted")]
    Interrupted,
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("autoscaler: {0}")]
    Autoscaler(String),
    #[error("making the run's secret: {0}")]
    Secret(String),
}

/// How a supervised run ended.
#[derive(Debug, Clone, Default)]
pub struct Supervised {
    /// The coordinator's gRPC endpoint.
    pub endpoint: String,
    /// Seconds worker processes of each pool were alive, summed.
    pub worker_seconds: BTreeMap<PoolName, f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Coordinator,
    Worker(PoolName),
}

/// One child process and its history.
struct Managed {
    role: Role,
    name: String,
    args: Vec<OsString>,
    child: Option<Child>,
    restarts: u32,
    /// Where it serves `/metrics`.
    metrics_port: u16,
    /// When the current process started.
    started: Instant,
    /// Seconds its earlier processes were alive.
    lived: f64,
    /// When the autoscaler began draining it.
    draining: Option<Instant>,
    /// SIGTERM was sent (a drain that took too long).
    stopping: bool,
    /// The folder holding the run's secret, given to the child as `WEIR_JOB_SECRET_DIR`.
    secret_dir: PathBuf,
}

impl Managed {
    /// Starts `weir ARGS` as `name`, serving `/metrics` on `metrics_port`.
    fn start(
        role: Role,
        name: String,
        args: Vec<OsString>,
        metrics_port: u16,
        secret_dir: PathBuf,
    ) -> Result<Self, SuperviseError> {
        let mut managed = Self {
            secret_dir,
            role,
            name,
            args,
            child: None,
            restarts: 0,
            metrics_port,
            started: Instant::now(),
            lived: 0.0,
            draining: None,
            stopping: false,
        };
        managed.spawn()?;
        Ok(managed)
    }

    fn spawn(&mut self) -> Result<(), SuperviseError> {
        let exe =
            std::env::current_exe().map_err(|source| SuperviseError::Spawn { name: self.name.clone(), source })?;
        let child = Command::new(exe)
            .args(&self.args)
            .env(weir_auth::SECRET_DIR_ENV, &self.secret_dir)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SuperviseError::Spawn { name: self.name.clone(), source })?;
        self.child = Some(child);
        self.started = Instant::now();
        Ok(())
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.lived += self.started.elapsed().as_secs_f64();
        Some(status)
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    fn seconds_alive(&self) -> f64 {
        self.lived + if self.alive() { self.started.elapsed().as_secs_f64() } else { 0.0 }
    }

    fn pool(&self) -> Option<&PoolName> {
        match &self.role {
            Role::Worker(pool) => Some(pool),
            Role::Coordinator => None,
        }
    }

    fn sigterm(&self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is still ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
}

/// The children of one run and how to start more.
struct Family<'a> {
    options: &'a SuperviseOptions,
    endpoint: String,
    /// The folder holding the run's secret, and the secret.
    secret_dir: PathBuf,
    secret: JobSecret,
    children: Vec<Managed>,
    /// Lifetimes of workers drained and gone.
    gone: BTreeMap<PoolName, f64>,
}

impl Family<'_> {
    /// Starts a worker of `pool` at the lowest index no live worker of the pool has.
    fn add_worker(&mut self, pool: &PoolName) -> Result<(), SuperviseError> {
        let taken = |i: usize| self.children.iter().any(|c| c.name == format!("{pool}-{i}"));
        let index = (0..).find(|i| !taken(*i)).unwrap_or_default();
        let name = format!("{pool}-{index}");
        let metrics_port = free_port()?;
        let options = self.options;
        let args: Vec<OsString> = [
            "worker",
            &options.manifest.to_string_lossy(),
            "--coordinator",
            &self.endpoint,
            "--pool",
            pool.as_str(),
            "--id",
            &name,
            "--threads",
            &options.threads.to_string(),
            "--memory-limit",
            &options.memory_limit.to_string(),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--exchange-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(OsString::from)
        .chain(options.worker_args.iter().map(OsString::from))
        .chain(options.child_args.iter().map(OsString::from))
        .collect();
        let secret_dir = self.secret_dir.clone();
        self.children.push(Managed::start(Role::Worker(pool.clone()), name, args, metrics_port, secret_dir)?);
        Ok(())
    }

    /// Live, not draining workers of `pool`.
    fn count(&self, pool: &PoolName) -> usize {
        self.children.iter().filter(|c| c.pool() == Some(pool) && c.alive() && c.draining.is_none()).count()
    }

    fn processes(&self) -> Vec<Process> {
        self.children
            .iter()
            .filter(|c| c.alive())
            .map(|c| Process {
                name: c.name.clone(),
                pool: c.pool().cloned(),
                metrics: format!("http://127.0.0.1:{}/metrics", c.metrics_port),
                draining: c.draining.is_some(),
            })
            .collect()
    }

    fn worker_seconds(&self) -> BTreeMap<PoolName, f64> {
        let mut seconds = self.gone.clone();
        for child in &self.children {
            if let Some(pool) = child.pool() {
                *seconds.entry(pool.clone()).or_default() += child.seconds_alive();
            }
        }
        seconds
    }
}

/// Runs the job as child processes until the coordinator reports its end.
///
/// # Errors
/// [`SuperviseError::JobFailed`] when the job failed; the others when supervision itself failed.
///
/// # Cancellation
/// Cancelling `shutdown` sends SIGTERM to every child (workers hand back their units), waits for
/// them, and returns [`SuperviseError::Interrupted`]; the checkpoint lets a later run continue.
pub async fn supervise(options: &SuperviseOptions, shutdown: CancellationToken) -> Result<Supervised, SuperviseError> {
    // One secret per run, in a private folder removed when the run ends: only this run's
    // processes can call each other.
    let secret = JobSecret::generate("local").map_err(|e| SuperviseError::Secret(e.to_string()))?;
    let folder =
        tempfile::Builder::new().prefix("weir-secret-").tempdir().map_err(|e| SuperviseError::Secret(e.to_string()))?;
    let secret_dir = folder.path().join("secret");
    secret.save(&secret_dir).map_err(|e| SuperviseError::Secret(e.to_string()))?;
    let port = free_port()?;
    let endpoint = format!("https://127.0.0.1:{port}");
    let metrics_port = free_port()?;
    let manifest = OsString::from(options.manifest.as_os_str());
    let mut coordinator_args: Vec<OsString> =
        vec!["coordinator".into(), manifest, "--listen".into(), format!("127.0.0.1:{port}").into()];
    coordinator_args.extend(["--metrics-listen".into(), format!("127.0.0.1:{metrics_port}").into()]);
    coordinator_args.extend(options.coordinator_args.iter().map(OsString::from));
    coordinator_args.extend(options.child_args.iter().map(OsString::from));
    let mut coordinator =
        Managed::start(Role::Coordinator, "coordinator".into(), coordinator_args, metrics_port, secret_dir.clone())?;
    wait_listening(&mut coordinator, port).await;
    let mut family = Family {
        options,
        endpoint: endpoint.clone(),
        secret_dir,
        secret: secret.clone(),
        children: vec![coordinator],
        gone: BTreeMap::new(),
    };
    for pool in &options.topology.0 {
        for _ in 0..pool.start {
            family.add_worker(&pool.pool)?;
        }
    }
    let mut scaler = match &options.scaling {
        Some(settings) => Some(
            LocalAutoscaler::new(settings.clone(), &options.topology, &endpoint, &secret)
                .await
                .map_err(SuperviseError::Autoscaler)?,
        ),
        None => None,
    };
    let result = watch(&mut family, scaler.as_mut(), &shutdown).await;
    stop_all(&mut family.children).await;
    if let Some(scaler) = scaler.as_mut() {
        scaler.publish_targets(&[]);
    }
    result.map(|()| Supervised { endpoint, worker_seconds: family.worker_seconds() })
}

/// Restarts children that die until the coordinator exits for good; scales the pools between
/// rounds of the autoscaler.
async fn watch(
    family: &mut Family<'_>,
    mut scaler: Option<&mut LocalAutoscaler>,
    shutdown: &CancellationToken,
) -> Result<(), SuperviseError> {
    let options = family.options;
    let mut last_progress = Instant::now();
    // A worker exited 0 undrained: it was told the job ended, so nothing is scaled any more.
    let mut ending = false;
    if let Some(scaler) = scaler.as_deref_mut() {
        scaler.publish_targets(&family.processes());
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Err(SuperviseError::Interrupted),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let mut changed = false;
        let mut finished = Vec::new();
        for (i, child) in family.children.iter_mut().enumerate() {
            let Some(status) = child.exited() else { continue };
            changed = true;
            match (&child.role, status.code()) {
                (Role::Coordinator, Some(0)) => return Ok(()),
                (Role::Coordinator, Some(code)) if code == i32::from(EXIT_JOB_FAILED) => {
                    return Err(SuperviseError::JobFailed);
                }
                // A worker being drained is gone for good however it ended (what it still held is
                // leased again); any worker told the job ended exits 0 too.
                (Role::Worker(_), _) if child.draining.is_some() => {
                    finished.push(i);
                    continue;
                }
                // Told the job ended: no more scaling, the coordinator exits next.
                (Role::Worker(_), Some(0)) => {
                    ending = true;
                    continue;
                }
                _ => {}
            }
            if child.restarts >= options.max_restarts {
                return Err(SuperviseError::TooManyRestarts { name: child.name.clone(), restarts: child.restarts });
            }
            child.restarts += 1;
            let (name, restarts) = (&child.name, child.restarts);
            tracing::warn!(child = %name, restarts, "{name} exited ({status}); restarting it");
            child.spawn()?;
        }
        for i in finished.into_iter().rev() {
            let child = family.children.remove(i);
            if let Some(pool) = child.pool() {
                *family.gone.entry(pool.clone()).or_default() += child.seconds_alive();
                eprintln!("weir run: {} drained and stopped", child.name);
            }
        }
        let late = |c: &Managed| !c.stopping && c.draining.is_some_and(|at| at.elapsed() > options.drain_timeout);
        for child in family.children.iter_mut().filter(|c| late(c)) {
            tracing::warn!(child = %child.name, "{} did not drain in time; sending SIGTERM", child.name);
            child.sigterm();
            child.stopping = true;
        }
        if let Some(scaler) = scaler.as_deref_mut() {
            if scaler.due() && !ending {
                changed |= scale(family, scaler).await?;
            }
            if changed {
                scaler.publish_targets(&family.processes());
            }
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            if let Ok(status) = super::status::query(&family.endpoint, &family.secret).await {
                // The run's progress display, like the embedded run's bars: output, not a log event.
                eprintln!("weir run: {}", super::status::one_line(&status));
            }
        }
    }
}

/// One autoscaler round: grows pools by starting workers and shrinks them by draining the idlest.
/// Returns whether the set of processes changed.
async fn scale(family: &mut Family<'_>, scaler: &mut LocalAutoscaler) -> Result<bool, SuperviseError> {
    let counts: BTreeMap<PoolName, usize> =
        family.options.topology.0.iter().map(|p| (p.pool.clone(), family.count(&p.pool))).collect();
    let decisions = scaler.round(&family.processes(), &counts).await;
    let mut changed = false;
    for decision in decisions {
        let Ok(pool) = PoolName::new(&decision.pool) else { continue };
        let current = family.count(&pool);
        let desired = decision.desired as usize;
        if desired > current {
            for _ in current..desired {
                family.add_worker(&pool)?;
            }
            changed = true;
        } else if desired < current {
            let victims = scaler.pick_idlest(&pool, current - desired).await;
            for name in victims {
                if let Some(child) = family.children.iter_mut().find(|c| c.name == name && c.draining.is_none()) {
                    child.draining = Some(Instant::now());
                    changed = true;
                }
            }
        }
    }
    Ok(changed)
}

/// How long the workers wait for the coordinator to listen before they start anyway (the watch
/// loop then reports whatever kept it from listening).
const COORDINATOR_START: Duration = Duration::from_secs(30);

/// Returns once the coordinator accepts connections on `port`, has exited, or
/// [`COORDINATOR_START`] has passed. The workers start after it: each binds its exchange port on
/// `127.0.0.1:0`, and the kernel may hand a worker the port [`free_port`] found for the coordinator
/// if the coordinator has not bound it yet (seen once the workers started in 3 ms).
async fn wait_listening(coordinator: &mut Managed, port: u16) {
    let deadline = Instant::now() + COORDINATOR_START;
    while Instant::now() < deadline && coordinator.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port for a child to listen on, free when checked, and outside the kernel's ephemeral range
/// where there is room below it: a port the kernel hands out for `bind(:0)` (every worker's
/// exchange port, and any other process's) can be taken between this check and the child's own
/// bind, which failed runs with `binding 127.0.0.1:N: Address already in use` once the children
/// started in milliseconds. Below the range only an explicit bind of the same port can take it.
fn free_port() -> Result<u16, SuperviseError> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let below = ephemeral_start.saturating_sub(BELOW_EPHEMERAL_FROM);
    for _ in 0..PORT_TRIES.min(usize::from(below)) {
        let port = BELOW_EPHEMERAL_FROM + (random() % u64::from(below)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(SuperviseError::Port)
}

/// The lowest port [`free_port`] picks from, clear of the well-known and commonly configured ones.
const BELOW_EPHEMERAL_FROM: u16 = 20000;

/// Ports [`free_port`] tries below the ephemeral range before it takes one the kernel picks.
const PORT_TRIES: usize = 64;

/// A random number (std's hasher keys are random per process and per `RandomState`).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// SIGTERM to every child still running, then SIGKILL to those not gone within 15 s.
async fn stop_all(children: &mut [Managed]) {
    for child in children.iter() {
        child.sigterm();
    }
    for child in children.iter_mut() {
        if let Some(mut process) = child.child.take() {
            if tokio::time::timeout(Duration::from_secs(15), process.wait()).await.is_err() {
                let _ = process.kill().await;
            }
            child.lived += child.started.elapsed().as_secs_f64();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_lies_below_the_ephemeral_range_and_can_be_bound() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("the kernel's range");
        let start: u16 = range.split_whitespace().next().and_then(|s| s.parse().ok()).expect("its start");
        let ports: Vec<u16> = (0..20).map(|_| free_port().expect("a port")).collect();
        for &port in &ports {
            assert!(start <= BELOW_EPHEMERAL_FROM || (BELOW_EPHEMERAL_FROM..start).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
        assert!(ports.iter().any(|p| *p != ports[0]), "{ports:?} are not spread");
    }
}
