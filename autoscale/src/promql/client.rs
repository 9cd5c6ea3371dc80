//! A minimal client of the Prometheus HTTP API: instant queries over plain HTTP/1.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;

use super::http::{Endpoint, get};
use crate::signals::{DataProblem, series_name};

/// How long one query may take, connecting included, unless [`Prometheus::with_timeout`] says
/// otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus server reached over plain HTTP (`http://host[:port][/prefix]`).
#[derive(Debug, Clone)]
pub struct Prometheus {
    /// `http://authority/prefix`, without a trailing slash; for messages.
    base: String,
    /// Its path is the prefix before `/api/v1`: empty or starting with `/`.
    endpoint: Endpoint,
    timeout: Duration,
}

impl Prometheus {
    /// A server at `url` (`http://host[:port][/prefix]`); port 80 when the URL names none.
    ///
    /// # Errors
    /// [`DataProblem::Unreachable`] for anything but an `http://` URL with a host and at most a
    /// path prefix: `https://` is refused with the advice to use an http URL or a TLS-terminating
    /// sidecar.
    pub fn new(url: &str) -> Result<Self, DataProblem> {
        let url = url.trim();
        let refuse = |why: &str| DataProblem::Unreachable(format!("Prometheus at {url} unreachable: {why}"));
        let mut endpoint = Endpoint::parse(url).map_err(refuse)?;
        if endpoint.path.contains('?') {
            return Err(refuse("the URL may hold a path prefix but no query"));
        }
        endpoint.path = endpoint.path.trim_end_matches('/').to_string();
        let base = format!("http://{}{}", endpoint.host, endpoint.path);
        Ok(Self { base, endpoint, timeout: DEFAULT_TIMEOUT })
    }

    /// The same server with another limit on each query's time.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's URL, normalised: `http://`, no trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Runs an instant query (`GET /api/v1/query`) and returns its series.
    ///
    /// # Errors
    /// - [`DataProblem::Unreachable`] when the server cannot be reached or does not answer in time;
    /// - [`DataProblem::Query`] when it answers with an error status or something other than an
    ///   instant vector (or scalar);
    /// - [`DataProblem::NotANumber`] when a value is NaN or infinite.
    ///
    /// # Cancellation
    /// Dropping the future closes the connection: it is driven here, never spawned.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, DataProblem> {
        let path = format!("{}/api/v1/query?query={}", self.endpoint.path, percent_encode(promql));
        let (status, body) = get(&self.endpoint, &path, self.timeout)
            .await
            .map_err(|why| DataProblem::Unreachable(format!("Prometheus at {} unreachable: {why}", self.base)))?;
        parse_response(promql, status, &body)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query-string value.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix_time, "value"]`.
    value: (f64, String),
}

/// The series of one query's answer (any HTTP status: Prometheus sends its errors as JSON too).
pub(crate) fn parse_response(query: &str, status: StatusCode, body: &[u8]) -> Result<Vec<Sample>, DataProblem> {
    let failed = |message: String| DataProblem::Query { query: query.into(), message };
    let answer: ApiResponse = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        failed(format!("HTTP {status} is not a Prometheus API answer ({e}): {text}"))
    })?;
    if answer.status != "success" {
        let kind = answer.error_type.unwrap_or_else(|| "error".into());
        let error = answer.error.unwrap_or_else(|| format!("status {:?}", answer.status));
        return Err(failed(format!("{kind}: {error}")));
    }
    let ApiData { result_type, result } = answer.data.ok_or_else(|| failed("an answer without data".into()))?;
    let shape = |e: serde_json::Error| failed(format!("a malformed {result_type}: {e}"));
    let series: Vec<(BTreeMap<String, String>, String)> = match result_type.as_str() {
        "vector" => serde_json::from_value::<Vec<VectorItem>>(result)
            .map_err(shape)?
            .into_iter()
            .map(|item| (item.metric, item.value.1))
            .collect(),
        "scalar" => {
            let (_, value): (f64, String) = serde_json::from_value(result).map_err(shape)?;
            vec![(BTreeMap::new(), value)]
        }
        other => return Err(failed(format!("expected an instant vector, got a {other}"))),
    };
    series.into_iter().map(|(labels, text)| sample(query, labels, &text)).collect()
}

fn sample(query: &str, labels: BTreeMap<String, String>, text: &str) -> Result<Sample, DataProblem> {
    let value: f64 = text.parse().map_err(|_| DataProblem::Query {
        query: query.into(),
        message: format!("the value {text:?} is not a number"),
    })?;
    if !value.is_finite() {
        return Err(DataProblem::NotANumber(format!("{text} for {} from `{query}`", series_name(&labels))));
    }
    Ok(Sample { labels, value })
}
