//! `llm.prompt`'s Prometheus metrics, in the process's default registry (the worker's `/metrics`
//! serves it beside its own): requests by status, tokens by kind, request seconds, the adaptive
//! limit on requests in flight, and answers reused from the checkpoint. Labelled by the step's
//! output column (bounded: a job has few steps), never by row or prompt.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

struct Families {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    seconds: HistogramVec,
    limit: IntGaugeVec,
    reused: IntCounterVec,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        // The options are constant and registered once: failure is a bug.
        fn registered<M: prometheus::core::Collector + Clone + 'static>(metric: prometheus::Result<M>) -> M {
            let metric = metric.expect("llm metric options");
            prometheus::default_registry().register(Box::new(metric.clone())).expect("register an llm metric");
            metric
        }
        let counter =
            |name: &str, help: &str, labels: &[&str]| registered(IntCounterVec::new(Opts::new(name, help), labels));
        let seconds = registered(HistogramVec::new(
            HistogramOpts::new("weir_llm_request_seconds", "Seconds from sending a request to its whole answer.")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            &["output"],
        ));
        let limit = registered(IntGaugeVec::new(
            Opts::new("weir_llm_in_flight_limit", "The adaptive limit on requests in flight per worker."),
            &["output"],
        ));
        Families {
            requests: counter(
                "weir_llm_requests_total",
                "Requests sent, by HTTP status (or timeout, connection).",
                &["output", "code"],
            ),
            tokens: counter(
                "weir_llm_tokens_total",
                "Tokens the server counted, by kind (prompt, completion).",
                &["output", "kind"],
            ),
            seconds,
            limit,
            reused: counter(
                "weir_llm_answers_reused_total",
                "Answers taken from the checkpoint instead of asked again.",
                &["output"],
            ),
        }
    })
}

/// One step's metrics.
#[derive(Clone)]
pub struct StepMetrics {
    output: String,
    prompt_tokens: IntCounter,
    completion_tokens: IntCounter,
    seconds: Histogram,
    limit: IntGauge,
    reused: IntCounter,
}

impl std::fmt::Debug for StepMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepMetrics").field("output", &self.output).finish()
    }
}

impl StepMetrics {
    /// The metrics of the step writing `output`.
    pub fn new(output: &str) -> Self {
        let f = families();
        Self {
            output: output.to_string(),
            prompt_tokens: f.tokens.with_label_values(&[output, "prompt"]),
            completion_tokens: f.tokens.with_label_values(&[output, "completion"]),
            seconds: f.seconds.with_label_values(&[output]),
            limit: f.limit.with_label_values(&[output]),
            reused: f.reused.with_label_values(&[output]),
        }
    }

    pub fn request(&self, code: &str) {
        families().requests.with_label_values(&[self.output.as_str(), code]).inc();
    }

    pub fn tokens(&self, prompt: u32, completion: u32) {
        self.prompt_tokens.inc_by(u64::from(prompt));
        self.completion_tokens.inc_by(u64::from(completion));
    }

    pub fn observe_seconds(&self, took: Duration) {
        self.seconds.observe(took.as_secs_f64());
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    pub fn reused(&self, answers: usize) {
        self.reused.inc_by(answers as u64);
    }
}

/// The default registry's metrics in Prometheus' text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &prometheus::gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}
