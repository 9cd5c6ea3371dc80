//! The operator's Prometheus metrics and its `/metrics` and `/healthz` endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::runtime::reflector::Store;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramTimer, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use weir_autoscale::Decision;
use weir_crds::{JobPhase, MultimodalJob};

use crate::error::Error;

/// Metrics registered once: `weir_operator_*` (labels bounded: error kind, phase) and
/// `weir_autoscaler_*` (labels: namespace, job, pool, action).
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    errors: IntCounterVec,
    duration: Histogram,
    jobs: IntGaugeVec,
    /// The controller's cache of jobs, read at scrape time so deleted jobs drop out.
    store: Mutex<Option<Store<MultimodalJob>>>,
    autoscaler: Autoscaler,
}

/// What the autoscaler decided, per job and pool.
struct Autoscaler {
    desired: IntGaugeVec,
    recommended: IntGaugeVec,
    utilization: GaugeVec,
    backpressure: GaugeVec,
    decisions: IntCounterVec,
    /// The pools each job (namespace, name) has series for, so a job gone takes them along.
    series: Mutex<BTreeMap<(String, String), BTreeSet<String>>>,
}

const POOL_LABELS: [&str; 3] = ["namespace", "job", "pool"];
const ACTIONS: [&str; 3] = ["up", "down", "hold"];

impl Autoscaler {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let int_gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &POOL_LABELS);
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &POOL_LABELS);
        let this = Self {
            desired: int_gauge("weir_autoscaler_desired_replicas", "Worker pods the operator keeps in the pool.")?,
            recommended: int_gauge(
                "weir_autoscaler_recommended_replicas",
                "What the autoscaler's last round called for in the pool.",
            )?,
            utilization: gauge("weir_autoscaler_utilization", "Busy share of the pool's busiest step, last round.")?,
            backpressure: gauge(
                "weir_autoscaler_backpressure",
                "Share of time the pool's most blocked step waited on its output, last round.",
            )?,
            decisions: IntCounterVec::new(
                Opts::new("weir_autoscaler_decisions_total", "Autoscaler decisions, by pool and action."),
                &["namespace", "job", "pool", "action"],
            )?,
            series: Mutex::new(BTreeMap::new()),
        };
        registry.register(Box::new(this.desired.clone()))?;
        registry.register(Box::new(this.recommended.clone()))?;
        registry.register(Box::new(this.utilization.clone()))?;
        registry.register(Box::new(this.backpressure.clone()))?;
        registry.register(Box::new(this.decisions.clone()))?;
        Ok(this)
    }

    fn remember(&self, namespace: &str, job: &str, pool: &str) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series.entry((namespace.to_string(), job.to_string())).or_default().insert(pool.to_string());
    }
}

impl Metrics {
    /// # Errors
    /// Only if two metrics were given the same name.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new("weir_operator_reconciles_total", "Reconciles started.")?;
        let errors = IntCounterVec::new(
            Opts::new("weir_operator_reconcile_errors_total", "Reconciles that failed, by error kind."),
            &["kind"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("weir_operator_reconcile_duration_seconds", "Time one reconcile took.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let jobs = IntGaugeVec::new(Opts::new("weir_operator_jobs", "MultimodalJobs by phase."), &["phase"])?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        let autoscaler = Autoscaler::new(&registry)?;
        Ok(Self { registry, reconciles, errors, duration, jobs, store: Mutex::new(None), autoscaler })
    }

    /// The replicas the operator keeps in `pool` of job `namespace/job`.
    pub fn autoscaler_desired(&self, namespace: &str, job: &str, pool: &str, desired: i32) {
        self.autoscaler.remember(namespace, job, pool);
        self.autoscaler.desired.with_label_values(&[namespace, job, pool]).set(i64::from(desired));
    }

    /// One round's decisions for job `namespace/job`.
    pub fn autoscaler_decided(&self, namespace: &str, job: &str, decisions: &[Decision]) {
        let a = &self.autoscaler;
        for d in decisions {
            let labels = [namespace, job, d.pool.as_str()];
            a.remember(namespace, job, &d.pool);
            a.recommended.with_label_values(&labels).set(i64::from(d.recommended));
            a.utilization.with_label_values(&labels).set(d.inputs.utilization);
            a.backpressure.with_label_values(&labels).set(d.inputs.backpressure);
            let action = d.action.to_string();
            a.decisions.with_label_values(&[namespace, job, d.pool.as_str(), action.as_str()]).inc();
        }
    }

    /// Drops every autoscaler series of job `namespace/job` (it is gone, or no longer scaled).
    pub fn autoscaler_forget(&self, namespace: &str, job: &str) {
        let a = &self.autoscaler;
        let key = (namespace.to_string(), job.to_string());
        let pools = a.series.lock().unwrap_or_else(PoisonError::into_inner).remove(&key).unwrap_or_default();
        for pool in &pools {
            let labels = [namespace, job, pool.as_str()];
            let _ = a.desired.remove_label_values(&labels);
            let _ = a.recommended.remove_label_values(&labels);
            let _ = a.utilization.remove_label_values(&labels);
            let _ = a.backpressure.remove_label_values(&labels);
            for action in ACTIONS {
                let _ = a.decisions.remove_label_values(&[namespace, job, pool.as_str(), action]);
            }
        }
    }

    /// Counts a reconcile; the timer records its duration when dropped.
    pub fn reconcile_started(&self) -> HistogramTimer {
        self.reconciles.inc();
        self.duration.start_timer()
    }

    pub fn reconcile_failed(&self, error: &Error) {
        self.errors.with_label_values(&[error.metric_label()]).inc();
    }

    /// Jobs by phase are counted from this cache at every scrape.
    pub fn watch_jobs(&self, store: Store<MultimodalJob>) {
        if let Ok(mut slot) = self.store.lock() {
            *slot = Some(store);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.count_jobs();
        let mut buffer = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    fn count_jobs(&self) {
        let Ok(slot) = self.store.lock() else { return };
        let Some(store) = slot.as_ref() else { return };
        let jobs = store.state();
        for phase in ["Pending", "Running", "Suspended", "Succeeded", "Failed"] {
            let count = jobs.iter().filter(|j| phase_label(j) == phase).count();
            self.jobs.with_label_values(&[phase]).set(count as i64);
        }
    }
}

fn phase_label(job: &MultimodalJob) -> &'static str {
    match job.status.as_ref().and_then(|s| s.phase) {
        None | Some(JobPhase::Pending) => "Pending",
        Some(JobPhase::Running) => "Running",
        Some(JobPhase::Suspended) => "Suspended",
        Some(JobPhase::Succeeded) => "Succeeded",
        Some(JobPhase::Failed) => "Failed",
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the returned future is dropped; dropping
/// it also drops every open connection.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, &request)) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" | "/readyz" => (StatusCode::OK, "ok\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
