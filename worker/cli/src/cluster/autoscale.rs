//! The local autoscaler of `weir run --workers cpu=1..2,gpu=1..3`: the operator's decision
//! function (`weir-autoscale`), fed from two scrapes of the processes' own `/metrics` (or from a
//! Prometheus), and the coordinator's drain to take a worker away without redoing its work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_autoscale::exposition::{Scrape, signals_from_scrapes};
use weir_autoscale::promql::{Prometheus, get_text, read_signals};
use weir_autoscale::{Action, Autoscaler, DataProblem, Decision, Policy, PoolState, Signals};
use weir_cluster::metrics::{AutoscalerMetrics, PoolDecision};
use weir_cluster::proto::{DrainRequest, WorkersRequest};
use weir_crds::PoolName;

use super::MetricsServer;
use super::topology::{PoolWorkers, Topology};

/// How long one scrape or query may take.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// How the local autoscaler runs.
#[derive(Debug, Clone)]
pub struct ScaleSettings {
    /// The job's name (the `job` label of its metrics).
    pub job: String,
    /// The pool that leases units.
    pub leasing_pool: PoolName,
    /// Time between decisions.
    pub interval: Duration,
    pub policy: Policy,
    /// Read signals from this Prometheus (which must scrape the run: see `targets_file`) instead
    /// of scraping the processes directly.
    pub prometheus: Option<String>,
    /// Serve the autoscaler's own metrics (`weir_autoscaler_*`) here.
    pub metrics_listen: Option<SocketAddr>,
    /// Keep a Prometheus `file_sd_configs` target list of every process of the run here.
    pub targets_file: Option<PathBuf>,
}

/// A live process of the run, as the autoscaler reads it.
#[derive(Debug, Clone)]
pub struct Process {
    pub name: String,
    /// `None` for the coordinator.
    pub pool: Option<PoolName>,
    /// Its `/metrics` URL.
    pub metrics: String,
    pub draining: bool,
}

/// The decision function, its inputs from the last round, and the coordinator to drain through.
pub struct LocalAutoscaler {
    settings: ScaleSettings,
    autoscaler: Autoscaler,
    bounds: Vec<PoolWorkers>,
    coordinator: weir_cluster::CoordinatorConn,
    prometheus: Option<Prometheus>,
    /// Each process's previous scrape (the rates are taken between two).
    previous: BTreeMap<String, Scrape>,
    next: Instant,
    metrics: Arc<AutoscalerMetrics>,
    /// The last reason printed per pool, so a hold is printed when its reason changes.
    printed: BTreeMap<String, String>,
    server: Option<MetricsServer>,
}

impl LocalAutoscaler {
    /// An autoscaler for the pools of `topology`, draining through the coordinator at `endpoint`.
    ///
    /// # Errors
    /// When the Prometheus URL or the metrics address is unusable.
    pub async fn new(
        settings: ScaleSettings,
        topology: &Topology,
        endpoint: &str,
        secret: &weir_auth::JobSecret,
    ) -> Result<Self, String> {
        let coordinator = weir_cluster::worker::connect(endpoint, secret).map_err(|e| e.to_string())?;
        let prometheus = settings.prometheus.as_deref().map(Prometheus::new).transpose().map_err(|e| e.to_string())?;
        let metrics = Arc::new(AutoscalerMetrics::new(&settings.job));
        let server = match settings.metrics_listen {
            Some(at) => {
                let render = metrics.clone();
                let server = MetricsServer::start(at, Arc::new(move || render.render()))
                    .await
                    .map_err(|e| format!("--metrics-listen {at}: {e}"))?;
                eprintln!("weir run: autoscaler metrics on {}", server.url);
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            autoscaler: Autoscaler::new(settings.policy.clone()),
            next: Instant::now() + settings.interval,
            settings,
            bounds: topology.0.clone(),
            coordinator,
            prometheus,
            previous: BTreeMap::new(),
            metrics,
            printed: BTreeMap::new(),
            server,
        })
    }

    /// Whether the next round is due.
    pub fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// One round: reads the signals, decides each pool, prints and records the decisions.
    /// `counts` are the live, not draining workers per pool.
    pub async fn round(&mut self, processes: &[Process], counts: &BTreeMap<PoolName, usize>) -> Vec<Decision> {
        self.next = Instant::now() + self.settings.interval;
        let scrapes = scrape_all(processes).await;
        let pools: Vec<&str> = self.bounds.iter().map(|p| p.pool.as_str()).collect();
        let signals: Result<Signals, DataProblem> = match &self.prometheus {
            Some(prometheus) => read_signals(prometheus, &self.settings.job, &self.window(), &pools).await,
            None => signals_from_scrapes(&self.previous, &scrapes, &self.settings.job, &pools),
        };
        let states: BTreeMap<String, PoolState> = self
            .bounds
            .iter()
            .map(|p| {
                let current = counts.get(&p.pool).copied().unwrap_or(0) as u32;
                let ready = ready_workers(processes, &scrapes, &p.pool).min(current);
                let state = PoolState { min: p.min as u32, max: p.max as u32, current, ready };
                (p.pool.to_string(), state)
            })
            .collect();
        self.previous = scrapes;
        let leasing = self.settings.leasing_pool.to_string();
        let decisions = self.autoscaler.decide(Instant::now(), signals.as_ref(), &states, &leasing);
        for decision in &decisions {
            self.report(decision);
        }
        decisions
    }

    fn window(&self) -> String {
        format!("{}s", rate_window(self.settings.interval).as_secs())
    }

    fn report(&mut self, decision: &Decision) {
        let action = decision.action.to_string();
        self.metrics.record(&PoolDecision {
            pool: &decision.pool,
            desired: decision.desired,
            recommended: decision.recommended,
            utilization: decision.inputs.utilization,
            backpressure: decision.inputs.backpressure,
            action: &action,
        });
        let changed = self.printed.get(&decision.pool) != Some(&decision.reason);
        if decision.action != Action::Hold || changed {
            // The run's own output, as the progress lines: what the autoscaler did and why.
            eprintln!(
                "weir run: autoscaler {} {} → {} ({}): {}",
                decision.pool, decision.current, decision.desired, action, decision.reason
            );
            self.printed.insert(decision.pool.clone(), decision.reason.clone());
        }
    }

    /// Drains the `n` idlest workers of `pool` (fewest units held and exchanges served, the
    /// highest index first on a tie) and returns their names; none when the coordinator does not
    /// answer (the next round tries again).
    pub async fn pick_idlest(&self, pool: &PoolName, n: usize) -> Vec<String> {
        let mut client = self.coordinator.clone();
        let workers = match client.workers(WorkersRequest {}).await {
            Ok(reply) => reply.into_inner().workers,
            Err(status) => {
                tracing::warn!(pool = %pool, "cannot list workers to drain: {}", status.message());
                return Vec::new();
            }
        };
        let mut candidates: Vec<_> = workers.into_iter().filter(|w| w.pool == pool.as_str() && !w.draining).collect();
        candidates.sort_by_key(|w| (w.units_held + w.exchanges_in_flight, std::cmp::Reverse(index_of(&w.worker))));
        let mut drained = Vec::new();
        for worker in candidates.into_iter().take(n) {
            match client.drain(DrainRequest { worker: worker.worker.clone() }).await {
                Ok(reply) if reply.get_ref().known => {
                    let (name, held) = (&worker.worker, worker.units_held);
                    eprintln!(
                        "weir run: draining {name} (holds {held} units, {} exchanges)",
                        worker.exchanges_in_flight
                    );
                    drained.push(worker.worker);
                }
                Ok(_) => {}
                Err(status) => tracing::warn!(worker = %worker.worker, "drain refused: {}", status.message()),
            }
        }
        drained
    }

    /// Writes the Prometheus `file_sd_configs` list of `processes` (and of the autoscaler's own
    /// metrics) to the targets file, if one was asked for.
    pub fn publish_targets(&self, processes: &[Process]) {
        let Some(path) = &self.settings.targets_file else { return };
        let mut targets: Vec<String> = processes
            .iter()
            .filter_map(|p| p.metrics.strip_prefix("http://")?.strip_suffix("/metrics").map(String::from))
            .collect();
        if let Some(server) = &self.server {
            targets
                .extend(server.url.strip_prefix("http://").and_then(|u| u.strip_suffix("/metrics")).map(String::from));
        }
        let list = serde_json::json!([{ "targets": targets, "labels": {} }]);
        // Written whole, then renamed: Prometheus never reads half a file.
        let staged = path.with_extension("tmp");
        let written = std::fs::write(&staged, list.to_string()).and_then(|()| std::fs::rename(&staged, path));
        if let Err(e) = written {
            tracing::warn!("cannot write the targets file {}: {e}", path.display());
        }
    }
}

/// The rate window of the PromQL queries for decisions every `interval`: four intervals, at least
/// 10 s (a Prometheus scraping every few seconds has samples enough in it).
pub fn rate_window(interval: Duration) -> Duration {
    (interval * 4).max(Duration::from_secs(10))
}

/// Scrapes every process at once; one that does not answer (starting, or gone) is left out.
async fn scrape_all(processes: &[Process]) -> BTreeMap<String, Scrape> {
    let reads = processes.iter().map(|p| async move {
        let text = get_text(&p.metrics, READ_TIMEOUT).await.ok()?;
        Some((p.name.clone(), Scrape::parse(Instant::now(), &text).ok()?))
    });
    futures::future::join_all(reads).await.into_iter().flatten().collect()
}

/// Workers of `pool`, not draining, whose scrape says they are ready.
fn ready_workers(processes: &[Process], scrapes: &BTreeMap<String, Scrape>, pool: &PoolName) -> u32 {
    let ready = |name: &str| {
        scrapes.get(name).is_some_and(|s| s.samples.iter().any(|(metric, _, _)| metric == "weir_worker_ready_seconds"))
    };
    processes.iter().filter(|p| p.pool.as_ref() == Some(pool) && !p.draining && ready(&p.name)).count() as u32
}

/// The index in a worker name `pool-N`.
fn index_of(worker: &str) -> u32 {
    worker.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}
