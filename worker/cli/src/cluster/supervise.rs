//! `weir run --workers`: a coordinator and worker processes on localhost, started from this same
//! binary and supervised the way the operator supervises pods: a child that dies is restarted and
//! the job goes on.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use weir_crds::PoolName;

use super::EXIT_JOB_FAILED;

/// Worker processes per pool, e.g. `cpu=2,gpu-l4=1` (a bare number means `cpu=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology(pub Vec<(PoolName, usize)>);

impl Topology {
    /// Parses `cpu=2,gpu-l4=1` or `3`: pool names as in `spec.pools`, each at most once.
    ///
    /// # Errors
    /// A message naming the malformed part.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(n) = text.trim().parse::<usize>() {
            return Self::checked(vec![(PoolName::cpu(), n)]);
        }
        let mut pools = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (pool, count) =
                part.split_once('=').ok_or_else(|| format!("`{part}`: expected POOL=COUNT, e.g. cpu=2"))?;
            let count: usize = count.trim().parse().map_err(|_| format!("`{part}`: COUNT must be a whole number"))?;
            let pool = PoolName::new(pool.trim()).map_err(|e| format!("`{part}`: {e}"))?;
            if pools.iter().any(|(p, _)| *p == pool) {
                return Err(format!("`{part}`: pool {pool} is named twice"));
            }
            pools.push((pool, count));
        }
        Self::checked(pools)
    }

    fn checked(pools: Vec<(PoolName, usize)>) -> Result<Self, String> {
        if pools.iter().map(|(_, n)| n).sum::<usize>() == 0 {
            return Err("at least one worker is needed".into());
        }
        Ok(Self(pools))
    }

    pub fn workers(&self) -> usize {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// Whether the topology fits a job that runs on `in_use` (leasing pool first): every pool
    /// the job uses gets a worker, and no worker serves a pool the job does not use.
    ///
    /// # Errors
    /// A message naming the missing or unused pool and the job's pools.
    pub fn check_against(&self, in_use: &[PoolName]) -> Result<(), String> {
        let names: Vec<&str> = in_use.iter().map(PoolName::as_str).collect();
        let listed = |pool: &PoolName| self.0.iter().any(|(p, n)| p == pool && *n > 0);
        if let Some(missing) = in_use.iter().find(|p| !listed(p)) {
            return Err(format!(
                "the job runs steps on pool {missing}, which --workers gives no worker (the job's pools: {})",
                names.join(", ")
            ));
        }
        if let Some((unused, _)) = self.0.iter().find(|(p, n)| *n > 0 && !in_use.contains(p)) {
            return Err(format!("no step of the job runs on pool {unused} (the job's pools: {})", names.join(", ")));
        }
        Ok(())
    }
}

impl std::str::FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

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
    /// Extra arguments for every child, coordinator and workers (the log format).
    pub child_args: Vec<String>,
    /// A child restarted more often than this fails the run.
    pub max_restarts: u32,
    /// Print a progress line every few seconds.
    pub progress: bool,
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
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Coordinator,
    Worker,
}

struct Supervised {
    role: Role,
    name: String,
    args: Vec<OsString>,
    child: Option<Child>,
    restarts: u32,
}

impl Supervised {
    fn spawn(&mut self) -> Result<(), SuperviseError> {
        let exe =
            std::env::current_exe().map_err(|source| SuperviseError::Spawn { name: self.name.clone(), source })?;
        let child = Command::new(exe)
            .args(&self.args)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SuperviseError::Spawn { name: self.name.clone(), source })?;
        self.child = Some(child);
        Ok(())
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
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
pub async fn supervise(options: &SuperviseOptions, shutdown: CancellationToken) -> Result<String, SuperviseError> {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(SuperviseError::Port)?.port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let manifest = OsString::from(options.manifest.as_os_str());
    let mut coordinator_args: Vec<OsString> =
        vec!["coordinator".into(), manifest.clone(), "--listen".into(), format!("127.0.0.1:{port}").into()];
    coordinator_args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    coordinator_args.extend(options.coordinator_args.iter().map(OsString::from));
    coordinator_args.extend(options.child_args.iter().map(OsString::from));
    let mut children = vec![Supervised {
        role: Role::Coordinator,
        name: "coordinator".into(),
        args: coordinator_args,
        child: None,
        restarts: 0,
    }];
    for (pool, count) in &options.topology.0 {
        for index in 0..*count {
            let name = format!("{pool}-{index}");
            let args: Vec<OsString> = [
                "worker",
                &options.manifest.to_string_lossy(),
                "--coordinator",
                &endpoint,
                "--pool",
                pool.as_str(),
                "--id",
                &name,
                "--threads",
                &options.threads.to_string(),
                "--memory-limit",
                &options.memory_limit.to_string(),
                "--metrics-listen",
                "127.0.0.1:0",
                "--exchange-listen",
                "127.0.0.1:0",
            ]
            .iter()
            .map(OsString::from)
            .chain(options.child_args.iter().map(OsString::from))
            .collect();
            children.push(Supervised { role: Role::Worker, name, args, child: None, restarts: 0 });
        }
    }
    for child in &mut children {
        child.spawn()?;
    }
    let result = watch(&mut children, options, &endpoint, &shutdown).await;
    stop_all(&mut children).await;
    result.map(|()| endpoint)
}

/// Restarts children that die until the coordinator exits for good.
async fn watch(
    children: &mut [Supervised],
    options: &SuperviseOptions,
    endpoint: &str,
    shutdown: &CancellationToken,
) -> Result<(), SuperviseError> {
    let mut last_progress = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Err(SuperviseError::Interrupted),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        for child in children.iter_mut() {
            let Some(status) = child.exited() else { continue };
            match (child.role, status.code()) {
                (Role::Coordinator, Some(0)) => return Ok(()),
                (Role::Coordinator, Some(code)) if code == i32::from(EXIT_JOB_FAILED) => {
                    return Err(SuperviseError::JobFailed);
                }
                (Role::Worker, Some(0)) => continue,
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
        if options.progress && last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = tokio::time::Instant::now();
            if let Ok(status) = super::status::query(endpoint).await {
                // The run's progress display, like the embedded run's bars: output, not a log event.
                eprintln!("weir run: {}", super::status::one_line(&status));
            }
        }
    }
}

/// SIGTERM to every child still running, then SIGKILL to those not gone within 15 s.
async fn stop_all(children: &mut [Supervised]) {
    for child in children.iter_mut() {
        if let Some(pid) = child.child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is still ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
    for child in children.iter_mut() {
        if let Some(mut process) = child.child.take()
            && tokio::time::timeout(Duration::from_secs(15), process.wait()).await.is_err()
        {
            let _ = process.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str) -> PoolName {
        PoolName::new(name).expect("pool name")
    }

    #[test]
    fn topologies_parse_and_typos_are_named() {
        assert_eq!(Topology::parse("cpu=2,gpu=1"), Ok(Topology(vec![(pool("cpu"), 2), (pool("gpu"), 1)])));
        assert_eq!(Topology::parse("cpu=1,gpu-l4=2"), Ok(Topology(vec![(pool("cpu"), 1), (pool("gpu-l4"), 2)])));
        assert_eq!(Topology::parse("3"), Ok(Topology(vec![(pool("cpu"), 3)])));
        assert!(Topology::parse("cpu2").unwrap_err().contains("`cpu2`"));
        assert!(Topology::parse("GPU=1").unwrap_err().contains("not a pool name"));
        assert!(Topology::parse("cpu=1,cpu=2").unwrap_err().contains("twice"));
        assert!(Topology::parse("cpu=0").is_err());
    }

    #[test]
    fn a_topology_must_serve_every_pool_of_the_job_and_no_other() {
        let pools = |names: &[&str]| names.iter().map(|n| PoolName::new(*n).expect("name")).collect::<Vec<_>>();
        let topology = Topology::parse("cpu=2,gpu-l4=1").expect("topology");
        assert_eq!(topology.check_against(&pools(&["cpu", "gpu-l4"])), Ok(()));
        assert!(topology.check_against(&pools(&["cpu", "gpu-l4", "gpu-h100"])).unwrap_err().contains("gpu-h100"));
        assert!(topology.check_against(&pools(&["cpu"])).unwrap_err().contains("gpu-l4"));
    }
}
