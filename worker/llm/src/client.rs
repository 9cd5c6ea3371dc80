//! One request to the model's API, as many times as it takes: within the rate limits and the
//! adaptive cap on requests in flight, with a timeout, retried on 408, 409, 429, 5xx, timeouts,
//! broken connections and unreadable 200 answers after an exponential, jittered delay or the
//! server's `Retry-After`, whichever is longer.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;
use weir_crds::LlmApi;

use crate::limits::{AdaptiveLimit, Bucket};
use crate::metrics::StepMetrics;
use crate::request::{Answer, error_message, parse_answer};
use crate::secret::ApiKey;

/// First retry delay; the delay doubles each retry, with jitter, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between two tries that we choose.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured; a server asking for more is waited this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Largest answer body read; a larger one is an error (a model answer is kilobytes).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Talks to one endpoint for one step.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    api: LlmApi,
    key: Option<ApiKey>,
    timeout: Duration,
    retries: u32,
    in_flight: Arc<AdaptiveLimit>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    metrics: StepMetrics,
}

/// Settings of a [`Client`].
#[derive(Debug)]
pub struct ClientSettings {
    pub base_url: String,
    pub api: LlmApi,
    pub key: Option<ApiKey>,
    pub timeout: Duration,
    pub retries: u32,
    pub max_in_flight: usize,
    pub requests: Option<Bucket>,
    pub tokens: Option<Bucket>,
    pub metrics: StepMetrics,
}

/// Why one try failed.
enum Try {
    /// Worth another try, after at least `after` (the server's `Retry-After`).
    Transient {
        message: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

impl Client {
    /// A client for `settings`; redirects are not followed (the API key goes to `baseUrl` only).
    ///
    /// # Errors
    /// The HTTP client cannot be made (its TLS roots cannot be read).
    pub fn new(settings: ClientSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let path = match settings.api {
            LlmApi::Chat => "chat/completions",
            LlmApi::Responses => "responses",
        };
        Ok(Self {
            http,
            url: format!("{}/{path}", settings.base_url.trim_end_matches('/')),
            api: settings.api,
            key: settings.key,
            timeout: settings.timeout,
            retries: settings.retries,
            in_flight: AdaptiveLimit::new(settings.max_in_flight),
            requests: settings.requests,
            tokens: settings.tokens,
            metrics: settings.metrics,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `body` (a request's JSON) until it is answered, fails for good, or has failed `retries + 1` times.
    /// `estimate` is the tokens charged against the token limit before each try.
    ///
    /// # Errors
    /// The last failure, with the status the server gave and its message; after retries it says
    /// how many tries were made.
    pub async fn ask(&self, body: &bytes::Bytes, estimate: u32) -> Result<Answer, String> {
        let mut tries = 0u32;
        loop {
            let (message, after) = match self.try_once(body.clone(), estimate).await {
                Ok(answer) => return Ok(answer),
                Err(Try::Fatal(message)) => return Err(message),
                Err(Try::Transient { message, after }) => (message, after),
            };
            if tries >= self.retries {
                let n = tries + 1;
                return Err(format!("{message} (gave up after {n} tr{})", if n == 1 { "y" } else { "ies" }));
            }
            tokio::time::sleep(backoff(tries).max(after.unwrap_or_default())).await;
            tries += 1;
        }
    }

    async fn try_once(&self, body: bytes::Bytes, estimate: u32) -> Result<Answer, Try> {
        if let Some(requests) = &self.requests {
            requests.take(1.0).await;
        }
        if let Some(tokens) = &self.tokens {
            tokens.take(f64::from(estimate)).await;
        }
        let place = self.in_flight.acquire().await;
        self.metrics.set_limit(self.in_flight.limit());
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.send(body)).await;
        self.metrics.observe_seconds(started.elapsed());
        let (status, retry_after, bytes) = match result {
            Err(_) => {
                self.metrics.request("timeout");
                return Err(Try::Transient {
                    message: format!("no answer within {}s", self.timeout.as_secs()),
                    after: None,
                });
            }
            Ok(Err(e)) => {
                self.metrics.request("connection");
                return Err(Try::Transient { message: connection_problem(&self.url, &e), after: None });
            }
            Ok(Ok(answer)) => answer,
        };
        // A status outside the standard ones is counted as `other`: the label stays bounded.
        self.metrics.request(if status.canonical_reason().is_some() { status.as_str() } else { "other" });
        if status.is_success() {
            return match parse_answer(self.api, &bytes) {
                Ok(answer) => {
                    place.succeeded();
                    if let Some(tokens) = &self.tokens {
                        let used = f64::from(answer.prompt_tokens) + f64::from(answer.completion_tokens);
                        if used > 0.0 {
                            tokens.charge(used - f64::from(estimate));
                        }
                    }
                    self.metrics.tokens(answer.prompt_tokens, answer.completion_tokens);
                    Ok(answer)
                }
                Err(message) => {
                    let message = format!("{} answered 200, but {}", self.url, self.redacted(&message));
                    Err(Try::Transient { message, after: None })
                }
            };
        }
        let message = format!("{} answered {status}: {}", self.url, self.redacted(&error_message(&bytes)));
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            place.overloaded();
            self.metrics.set_limit(self.in_flight.limit());
        }
        match status {
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS => {
                Err(Try::Transient { message, after: retry_after })
            }
            s if s.is_server_error() => Err(Try::Transient { message, after: retry_after }),
            s if s.is_redirection() => Err(Try::Fatal(format!(
                "{message} (redirects are not followed: set endpoint.baseUrl to where it points)"
            ))),
            _ => Err(Try::Fatal(message)),
        }
    }

    /// `text` from the server with the API key, should the server have echoed it, replaced.
    fn redacted(&self, text: &str) -> String {
        match &self.key {
            Some(key) => key.redact(text),
            None => text.to_string(),
        }
    }

    /// One POST: the status, the `Retry-After` it asks for, and the body (at most
    /// [`MAX_ANSWER_BYTES`]).
    async fn send(&self, body: bytes::Bytes) -> Result<(StatusCode, Option<Duration>, Vec<u8>), reqwest::Error> {
        let mut request =
            self.http.post(&self.url).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        if let Some(key) = &self.key {
            request = request.header(AUTHORIZATION, key.bearer());
        }
        let mut response = request.send().await?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                bytes.extend_from_slice(b"... (answer over the size limit, cut)");
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, bytes))
    }
}

/// A `Retry-After` value: seconds (fractions allowed, as some servers send) or an HTTP date
/// (httpdate's reading: the three forms RFC 9110 names, years 1970-9999), at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        Ok(_) => return None,
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(std::time::SystemTime::now()).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The delay before retry `tries` (0-based): a random point between half and all of
/// 500 ms x 2^tries (at most 30 s), so that many rows refused at once do not come back at once.
pub fn backoff(tries: u32) -> Duration {
    let ceiling = FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(tries)).min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// A transport failure in words, without the request (which may carry a key in a header).
fn connection_problem(url: &str, error: &reqwest::Error) -> String {
    let mut message = format!("{url}: ");
    message.push_str(if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("soon"), None);
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date past is now");
        assert_eq!(retry_after("Sun, 06 Nov 99999999999999 08:49:37 GMT"), None, "a year no clock reaches");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon).expect("a date ahead");
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30), "{wait:?}");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for tries in 0..12 {
            let ceiling = FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(tries)).min(MAX_BACKOFF);
            let wait = backoff(tries);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "try {tries}: {wait:?}");
        }
    }
}
