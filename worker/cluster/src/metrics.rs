//! Prometheus metrics of coordinators and workers, served as text on `/metrics`.
//!
//! Names are `weir_*`; labels are bounded (job, pool, worker, step, and small fixed enums), never a
//! URI or a row. Step counters are synced from the executor's own counters at scrape time, so the
//! hot path pays nothing for them.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{CounterVec, Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weir_core::{MemoryBudget, PipelineStats, StepStatsSnapshot};

use crate::proto::JobStatus;

/// Creates a metric vector and registers it; the options are constant, so failure is a bug.
macro_rules! registered {
    ($registry:expr, $kind:ident, $name:expr, $help:expr, $labels:expr, $consts:expr) => {{
        let metric = $kind::new(Opts::new($name, $help).const_labels($consts.clone()), $labels)
            .expect(concat!("metric options of ", $name));
        $registry.register(Box::new(metric.clone())).expect(concat!("register ", $name));
        metric
    }};
}

/// A worker's metrics: per-step flow and time, memory budget, units by outcome.
pub struct WorkerMetrics {
    registry: Registry,
    rows: IntCounterVec,
    bytes: IntCounterVec,
    failed: IntCounterVec,
    busy: CounterVec,
    blocked: CounterVec,
    queue: IntGaugeVec,
    memory: IntGaugeVec,
    units: IntCounterVec,
    slots: IntGaugeVec,
    ready: GaugeVec,
    /// Step counters as last synced, to add only the difference.
    last: Mutex<Vec<StepStatsSnapshot>>,
    /// Which of the synced stages run here (the others stand in for another pool's steps, whose
    /// workers export them); `None`: all.
    local: Option<Vec<bool>>,
}

impl WorkerMetrics {
    /// Metrics labelled with this worker's job, pool and name.
    pub fn new(job: &str, pool: &str, worker: &str) -> Self {
        let registry = Registry::new();
        let consts: std::collections::HashMap<String, String> =
            [("job", job), ("pool", pool), ("worker", worker)].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self {
            rows: registered!(
                registry,
                IntCounterVec,
                "weir_step_rows_total",
                "Rows into and out of each step.",
                &["step", "direction"],
                consts
            ),
            bytes: registered!(
                registry,
                IntCounterVec,
                "weir_step_bytes_total",
                "Arrow bytes into and out of each step.",
                &["step", "direction"],
                consts
            ),
            failed: registered!(
                registry,
                IntCounterVec,
                "weir_step_rows_failed_total",
                "Rows each step failed.",
                &["step"],
                consts
            ),
            busy: registered!(
                registry,
                CounterVec,
                "weir_step_busy_seconds_total",
                "Seconds each step spent working.",
                &["step"],
                consts
            ),
            blocked: registered!(
                registry,
                CounterVec,
                "weir_step_blocked_seconds_total",
                "Seconds each step waited on its input or on its output (backpressure).",
                &["step", "on"],
                consts
            ),
            queue: registered!(
                registry,
                IntGaugeVec,
                "weir_step_queue_depth",
                "Morsels waiting at each step's input (sampled when the step takes one).",
                &["step"],
                consts
            ),
            memory: registered!(
                registry,
                IntGaugeVec,
                "weir_memory_budget_bytes",
                "The memory budget: its limit and the bytes reserved now.",
                &["kind"],
                consts
            ),
            units: registered!(
                registry,
                IntCounterVec,
                "weir_worker_units_total",
                "Units this worker leased, completed or failed.",
                &["outcome"],
                consts
            ),
            slots: registered!(
                registry,
                IntGaugeVec,
                "weir_step_slots",
                "Morsels each step works on at once on this worker: busy seconds per second over slots is its utilisation.",
                &["step"],
                consts
            ),
            ready: registered!(
                registry,
                GaugeVec,
                "weir_worker_ready_seconds",
                "Seconds from the worker's start until it was ready (steps built, models loaded); absent before.",
                &[],
                consts
            ),
            registry,
            last: Mutex::new(Vec::new()),
            local: None,
        }
    }

    /// Exports only the stages `local` marks (by position): a leasing worker's stand-ins for
    /// another pool's steps are that pool's to report.
    #[must_use]
    pub fn with_local_steps(mut self, local: Vec<bool>) -> Self {
        self.local = Some(local);
        self
    }

    /// Records that the worker became ready `seconds` after it started.
    pub fn ready(&self, seconds: f64) {
        self.ready.with_label_values::<&str>(&[]).set(seconds);
    }

    /// Counts a unit outcome: `leased`, `completed`, `failed` or `handed_back`.
    pub fn unit(&self, outcome: &str) {
        self.units.with_label_values(&[outcome]).inc();
    }

    /// Brings the step counters up to `stats` and the gauges up to `budget`.
    pub fn sync(&self, stats: &PipelineStats, budget: &MemoryBudget) {
        let now = stats.snapshot();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (i, step) in now.iter().enumerate() {
            if self.local.as_ref().is_some_and(|local| !local.get(i).copied().unwrap_or(true)) {
                continue;
            }
            let before = last.get(i).filter(|b| b.name == step.name).cloned().unwrap_or_else(|| zero(&step.name));
            let name = step.name.as_str();
            self.rows.with_label_values(&[name, "in"]).inc_by(step.rows_in.saturating_sub(before.rows_in));
            self.rows.with_label_values(&[name, "out"]).inc_by(step.rows_out.saturating_sub(before.rows_out));
            self.bytes.with_label_values(&[name, "in"]).inc_by(step.bytes_in.saturating_sub(before.bytes_in));
            self.bytes.with_label_values(&[name, "out"]).inc_by(step.bytes_out.saturating_sub(before.bytes_out));
            self.failed.with_label_values(&[name]).inc_by(step.rows_failed.saturating_sub(before.rows_failed));
            self.busy.with_label_values(&[name]).inc_by(seconds(step.busy, before.busy));
            self.blocked.with_label_values(&[name, "input"]).inc_by(seconds(step.blocked_in, before.blocked_in));
            self.blocked.with_label_values(&[name, "output"]).inc_by(seconds(step.blocked_out, before.blocked_out));
            self.queue.with_label_values(&[name]).set(step.queue_depth as i64);
            self.slots.with_label_values(&[name]).set(step.concurrency as i64);
        }
        *last = now;
        self.memory.with_label_values(&["limit"]).set(budget.limit() as i64);
        self.memory.with_label_values(&["used"]).set(budget.used() as i64);
    }

    /// The text exposition of every metric: the worker's own, then those its steps register in
    /// the process's default registry (`llm.prompt`'s `weir_llm_*`).
    pub fn render(&self) -> String {
        let mut text = render(&self.registry);
        text.push_str(&render(prometheus::default_registry()));
        text
    }
}

fn zero(name: &str) -> StepStatsSnapshot {
    StepStatsSnapshot { name: name.to_string(), ..Default::default() }
}

fn seconds(now: Duration, before: Duration) -> f64 {
    now.saturating_sub(before).as_secs_f64()
}

/// The coordinator's metrics: the job's units, rows and workers.
pub struct CoordinatorMetrics {
    registry: Registry,
    units: IntGaugeVec,
    rows: IntGaugeVec,
    workers: IntGaugeVec,
    attempts_failed: IntCounterVec,
    /// The failed attempts counted so far, to add only the difference at each sync.
    attempts_failed_seen: AtomicU64,
    committed: IntCounterVec,
    /// Units committed by this coordinator counted so far.
    committed_seen: AtomicU64,
}

impl CoordinatorMetrics {
    pub fn new(job: &str) -> Self {
        let registry = Registry::new();
        let consts: std::collections::HashMap<String, String> = [("job".to_string(), job.to_string())].into();
        Self {
            units: registered!(
                registry,
                IntGaugeVec,
                "weir_job_units",
                "The job's work units: total, committed and leased now.",
                &["state"],
                consts
            ),
            rows: registered!(
                registry,
                IntGaugeVec,
                "weir_job_rows",
                "Source rows of committed units: in, out (written) and failed; total planned.",
                &["kind"],
                consts
            ),
            workers: registered!(
                registry,
                IntGaugeVec,
                "weir_job_workers",
                "Workers heard from recently, by pool.",
                &["pool"],
                consts
            ),
            attempts_failed: registered!(
                registry,
                IntCounterVec,
                "weir_job_attempts_failed_total",
                "Unit attempts that failed since this coordinator started.",
                &[],
                consts
            ),
            attempts_failed_seen: AtomicU64::new(0),
            committed: registered!(
                registry,
                IntCounterVec,
                "weir_job_units_committed_total",
                "Units this coordinator committed since it started: the commit rate's source.",
                &[],
                consts
            ),
            committed_seen: AtomicU64::new(0),
            registry,
        }
    }

    /// Sets every gauge from `status` and the live workers per pool, and brings the failed-attempts
    /// counter up to `status` (it never goes down, even if an older status is synced after a newer).
    pub fn sync(&self, status: &JobStatus, workers: &[(String, usize)]) {
        for (state, value) in
            [("total", status.units_total), ("committed", status.units_committed), ("leased", status.units_leased)]
        {
            self.units.with_label_values(&[state]).set(value as i64);
        }
        for (kind, value) in [
            ("total", status.rows_total),
            ("in", status.rows_in),
            ("out", status.rows_out),
            ("failed", status.rows_failed),
        ] {
            self.rows.with_label_values(&[kind]).set(value as i64);
        }
        self.workers.reset();
        for (pool, n) in workers {
            self.workers.with_label_values(&[pool]).set(*n as i64);
        }
        let before = self.attempts_failed_seen.fetch_max(status.attempts_failed, Ordering::Relaxed);
        self.attempts_failed.with_label_values::<&str>(&[]).inc_by(status.attempts_failed.saturating_sub(before));
        let before = self.committed_seen.fetch_max(status.units_committed_here, Ordering::Relaxed);
        self.committed.with_label_values::<&str>(&[]).inc_by(status.units_committed_here.saturating_sub(before));
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// The local autoscaler's decisions (`weir run --workers cpu=1..4`), named as the operator's.
pub struct AutoscalerMetrics {
    registry: Registry,
    desired: IntGaugeVec,
    recommended: IntGaugeVec,
    utilization: GaugeVec,
    backpressure: GaugeVec,
    decisions: IntCounterVec,
}

/// One pool's figures of an autoscaler round.
#[derive(Debug, Clone, Default)]
pub struct PoolDecision<'a> {
    pub pool: &'a str,
    pub desired: u32,
    pub recommended: u32,
    pub utilization: f64,
    pub backpressure: f64,
    /// `up`, `down` or `hold`.
    pub action: &'a str,
}

impl AutoscalerMetrics {
    pub fn new(job: &str) -> Self {
        let registry = Registry::new();
        let consts: std::collections::HashMap<String, String> = [("job".to_string(), job.to_string())].into();
        Self {
            desired: registered!(
                registry,
                IntGaugeVec,
                "weir_autoscaler_desired_replicas",
                "Workers the autoscaler keeps in each pool.",
                &["pool"],
                consts
            ),
            recommended: registered!(
                registry,
                IntGaugeVec,
                "weir_autoscaler_recommended_replicas",
                "Workers each pool's signals called for at the last decision.",
                &["pool"],
                consts
            ),
            utilization: registered!(
                registry,
                GaugeVec,
                "weir_autoscaler_utilization",
                "Busy seconds per second over slots of each pool's busiest step, at the last decision.",
                &["pool"],
                consts
            ),
            backpressure: registered!(
                registry,
                GaugeVec,
                "weir_autoscaler_backpressure",
                "Fraction of time each pool's steps waited on their output, at the last decision.",
                &["pool"],
                consts
            ),
            decisions: registered!(
                registry,
                IntCounterVec,
                "weir_autoscaler_decisions_total",
                "Autoscaler decisions per pool, by action (up, down, hold).",
                &["pool", "action"],
                consts
            ),
            registry,
        }
    }

    /// Records one pool's decision.
    pub fn record(&self, decision: &PoolDecision<'_>) {
        let pool = decision.pool;
        self.desired.with_label_values(&[pool]).set(i64::from(decision.desired));
        self.recommended.with_label_values(&[pool]).set(i64::from(decision.recommended));
        self.utilization.with_label_values(&[pool]).set(decision.utilization);
        self.backpressure.with_label_values(&[pool]).set(decision.backpressure);
        self.decisions.with_label_values(&[pool, decision.action]).inc();
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    // Encoding text into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) with the text `render` returns,
/// until `shutdown`; any other request is answered 404.
///
/// # Cancellation
/// Returns when `shutdown` is cancelled; connections in progress are dropped with it (they are
/// owned by this future, so dropping it drops them too).
pub async fn serve_metrics(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let render = render.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(respond(&request, render.as_ref())) }
            });
            // One short exchange per scrape: the connection closes after the response, and a
            // client that does not send its request within the timeout is dropped.
            let _ = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn respond(request: &Request<Incoming>, render: &(dyn Fn() -> String + Send + Sync)) -> Response<Full<Bytes>> {
    let (status, body) = if request.method() == Method::GET && request.uri().path() == "/metrics" {
        (StatusCode::OK, render())
    } else {
        (StatusCode::NOT_FOUND, "not found: try /metrics\n".to_string())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weir_core::StepStats;

    use super::*;

    #[test]
    fn step_counters_follow_the_executor_across_syncs() {
        let decode = Arc::new(StepStats::new("image.decode", 2));
        let stats = PipelineStats::new(vec![decode.clone()]);
        let budget = MemoryBudget::new(1 << 20);
        let metrics = WorkerMetrics::new("j", "cpu", "cpu-0");
        decode.record_in(10, 1000);
        decode.record_out(9, 5000);
        decode.record_failed(1);
        decode.add_busy(Duration::from_millis(1500));
        metrics.sync(&stats, &budget);
        decode.record_in(5, 500);
        decode.add_blocked_out(Duration::from_secs(2));
        decode.set_queue_depth(2);
        metrics.sync(&stats, &budget);
        metrics.unit("completed");
        let text = metrics.render();
        for line in [
            r#"weir_step_rows_total{direction="in",job="j",pool="cpu",step="image.decode",worker="cpu-0"} 15"#,
            r#"weir_step_rows_total{direction="out",job="j",pool="cpu",step="image.decode",worker="cpu-0"} 9"#,
            r#"weir_step_rows_failed_total{job="j",pool="cpu",step="image.decode",worker="cpu-0"} 1"#,
            r#"weir_step_busy_seconds_total{job="j",pool="cpu",step="image.decode",worker="cpu-0"} 1.5"#,
            r#"weir_step_blocked_seconds_total{job="j",on="output",pool="cpu",step="image.decode",worker="cpu-0"} 2"#,
            r#"weir_step_queue_depth{job="j",pool="cpu",step="image.decode",worker="cpu-0"} 2"#,
            r#"weir_memory_budget_bytes{job="j",kind="limit",pool="cpu",worker="cpu-0"} 1048576"#,
            r#"weir_worker_units_total{job="j",outcome="completed",pool="cpu",worker="cpu-0"} 1"#,
            r#"weir_step_slots{job="j",pool="cpu",step="image.decode",worker="cpu-0"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn a_worker_exports_only_its_own_steps_and_its_readiness_once_ready() {
        let local = Arc::new(StepStats::new("image.decode", 2));
        let remote = Arc::new(StepStats::new("text.embed", 2));
        let stats = PipelineStats::new(vec![local.clone(), remote.clone()]);
        let metrics = WorkerMetrics::new("j", "cpu", "cpu-0").with_local_steps(vec![true, false]);
        remote.add_busy(Duration::from_secs(3));
        metrics.sync(&stats, &MemoryBudget::new(1 << 20));
        let text = metrics.render();
        assert!(text.contains(r#"weir_step_slots{job="j",pool="cpu",step="image.decode",worker="cpu-0"} 2"#), "{text}");
        assert!(!text.contains("text.embed"), "a stand-in's figures belong to the serving pool:\n{text}");
        assert!(!text.contains("weir_worker_ready_seconds{"), "not ready yet:\n{text}");
        metrics.ready(2.5);
        assert!(metrics.render().contains(r#"weir_worker_ready_seconds{job="j",pool="cpu",worker="cpu-0"} 2.5"#));
    }

    #[test]
    fn job_gauges_reflect_the_status() {
        let metrics = CoordinatorMetrics::new("j");
        let status = JobStatus { units_total: 10, units_committed: 4, rows_out: 40, ..Default::default() };
        metrics.sync(&status, &[("cpu".into(), 3)]);
        let text = metrics.render();
        assert!(text.contains(r#"weir_job_units{job="j",state="committed"} 4"#), "{text}");
        assert!(text.contains(r#"weir_job_rows{job="j",kind="out"} 40"#), "{text}");
        assert!(text.contains(r#"weir_job_workers{job="j",pool="cpu"} 3"#), "{text}");
        metrics.sync(&JobStatus { units_committed_here: 3, ..status.clone() }, &[]);
        metrics.sync(&JobStatus { units_committed_here: 2, ..status }, &[]);
        let text = metrics.render();
        assert!(text.contains(r#"weir_job_units_committed_total{job="j"} 3"#), "{text}");
    }

    #[test]
    fn failed_attempts_are_a_counter_that_follows_the_status_and_never_goes_down() {
        let metrics = CoordinatorMetrics::new("j");
        metrics.sync(&JobStatus::default(), &[]);
        let counter = |m: &CoordinatorMetrics| sample(&m.render(), r#"weir_job_attempts_failed_total{job="j"}"#);
        assert_eq!(counter(&metrics), Some(0.0), "exported before the first failure");
        for (seen, expected) in [(2, 2.0), (5, 5.0), (3, 5.0), (6, 6.0)] {
            metrics.sync(&JobStatus { attempts_failed: seen, ..Default::default() }, &[]);
            assert_eq!(counter(&metrics), Some(expected), "after a status with {seen}");
        }
        assert!(metrics.render().contains("# TYPE weir_job_attempts_failed_total counter"));
    }

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
    }

    #[tokio::test]
    async fn metrics_are_served_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(listener, Arc::new(|| "weir_up 1\n".to_string()), stop.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("weir_up 1\n"), "{reply}");
        stop.cancel();
        server.await.expect("server");
    }

    #[tokio::test]
    async fn other_paths_are_not_found_and_every_reply_is_prometheus_text() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_metrics(listener, Arc::new(|| "weir_up 1\n".to_string()), stop.clone()));
        for (request, status) in [
            ("GET /metrics?x=1 HTTP/1.1", "HTTP/1.1 200 OK"),
            ("GET /healthz HTTP/1.1", "HTTP/1.1 404 Not Found"),
            ("POST /metrics HTTP/1.1", "HTTP/1.1 404 Not Found"),
        ] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(format!("{request}\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.expect("read");
            assert!(reply.starts_with(status), "{request}: {reply}");
            assert!(reply.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{request}: {reply}");
        }
        stop.cancel();
        server.await.expect("server");
    }
}
