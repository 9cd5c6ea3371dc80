//! The operator's path: the signals of a job read from a Prometheus server with PromQL; and the
//! plain HTTP GET the local supervisor scrapes `/metrics` with.

mod client;
mod http;
mod queries;

pub use client::{DEFAULT_TIMEOUT, Prometheus, Sample};
pub use http::get_text;
pub use queries::{Queries, QuerySamples, queries, read_signals, signals_from_samples};

#[cfg(test)]
mod tests;
