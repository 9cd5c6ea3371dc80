//! Resolves URIs to object stores: local paths and `file://`, `s3://` (AWS or any S3-compatible
//! endpoint) and `http(s)://`. Stores are created once per bucket or host and shared; remote ones
//! report requests that are slow to finish (see [`watch`]).

mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use self::watch::{Site, Watched};

/// A URI that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{uri}`: {message}")]
    BadUri { uri: String, message: String },
    #[error("`{uri}`: {source}")]
    Store { uri: String, source: object_store::Error },
}

/// S3 settings beyond the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// S3-compatible endpoint (also read from `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// Creates and caches object stores by scheme and bucket/host.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    s3: S3Settings,
    policy: RequestPolicy,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// An object store and the path of a URI inside it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// `scheme://authority` (or `file://`) used to rebuild URIs of listed objects.
    pub base: String,
}

impl Location {
    /// The file this location names, when it is on the local filesystem (`file://` or a path): the
    /// one the local store reads for it.
    pub fn local_file(&self) -> Option<PathBuf> {
        static LOCAL: LazyLock<LocalFileSystem> = LazyLock::new(LocalFileSystem::new);
        if self.base != "file://" {
            return None;
        }
        LOCAL.path_to_filesystem(&self.path).ok()
    }

    /// The URI of `path` in this location's store.
    pub fn uri_of(&self, path: &Path) -> String {
        match self.base.strip_suffix("//") {
            Some(scheme) if scheme.ends_with(':') => format!("{scheme}///{path}"),
            _ => format!("{}/{}", self.base.trim_end_matches('/'), path),
        }
    }
}

impl StoreRegistry {
    pub fn new(s3: S3Settings) -> Self {
        Self { s3, policy: RequestPolicy::default(), stores: Mutex::new(HashMap::new()) }
    }

    /// The same registry, building its stores with `policy` instead of the default.
    pub fn with_policy(mut self, policy: RequestPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Deletes the objects at `uris`, best effort: a URI that does not resolve or an object that
    /// cannot be deleted is skipped. For files a later sweep removes anyway (a losing attempt's).
    pub async fn delete_quietly(&self, uris: &[String]) {
        for uri in uris {
            if let Ok(location) = self.resolve(uri) {
                let _ = object_store::ObjectStoreExt::delete(location.store.as_ref(), &location.path).await;
            }
        }
    }

    /// Resolves `uri` (a URL, or a local path relative to the working directory).
    ///
    /// # Errors
    /// [`StoreError::BadUri`] for an unsupported scheme or malformed URI.
    pub fn resolve(&self, uri: &str) -> Result<Location, StoreError> {
        let bad = |message: &str| StoreError::BadUri { uri: uri.to_string(), message: message.to_string() };
        let url = match Url::parse(uri) {
            Ok(url) if url.scheme().len() > 1 => url,
            _ => local_url(uri).ok_or_else(|| bad("not a valid local path"))?,
        };
        let path = Path::from_url_path(url.path()).map_err(|e| bad(&e.to_string()))?;
        let (key, base) = match url.scheme() {
            "file" => ("file".to_string(), "file://".to_string()),
            "s3" | "s3a" | "http" | "https" => {
                let host = url.host_str().ok_or_else(|| bad("missing bucket or host"))?;
                let authority = match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                };
                let base = format!("{}://{authority}", url.scheme());
                (base.clone(), base)
            }
            other => {
                return Err(bad(&format!(
                    "unsupported scheme `{other}` (use a local path, file://, s3://, http:// or https://)"
                )));
            }
        };
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let store = match stores.get(&key) {
            Some(store) => store.clone(),
            None => {
                let store =
                    self.build(&url, &base).map_err(|source| StoreError::Store { uri: uri.to_string(), source })?;
                stores.insert(key, store.clone());
                store
            }
        };
        Ok(Location { store, path, base })
    }

    /// The store for `url`'s bucket or host; `base` (`s3://bucket`, `http://host:port`) is how its
    /// objects are named in the slow-request warnings and request errors of remote stores.
    fn build(&self, url: &Url, base: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        let policy = &self.policy;
        let client = ClientOptions::new().with_timeout(policy.timeout).with_connect_timeout(policy.connect_timeout);
        let (store, endpoint): (Arc<dyn ObjectStore>, String) = match url.scheme() {
            "file" => return Ok(Arc::new(LocalFileSystem::new())),
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(policy.retry.clone());
                let endpoint = self.s3.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if let Some(endpoint) = endpoint {
                    let client = client.with_allow_http(endpoint.starts_with("http://"));
                    builder = builder.with_endpoint(endpoint).with_client_options(client);
                } else {
                    builder = builder.with_client_options(client);
                }
                if let Some(region) = &self.s3.region {
                    builder = builder.with_region(region);
                }
                let endpoint = s3_endpoint(&builder);
                (Arc::new(builder.build()?), endpoint)
            }
            _ => {
                let endpoint =
                    format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPort]);
                let client = client.with_allow_http(url.scheme() == "http");
                let store = HttpBuilder::new()
                    .with_url(endpoint.clone())
                    .with_retry(policy.retry.clone())
                    .with_client_options(client)
                    .build()?;
                (Arc::new(store), endpoint)
            }
        };
        let site = Site::new(base.to_string(), endpoint, policy.describe(), policy.report_every);
        Ok(Arc::new(Watched::new(store, site)))
    }
}

/// Where an S3 store's requests go: its configured endpoint, else AWS's regional one.
fn s3_endpoint(builder: &AmazonS3Builder) -> String {
    builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_else(|| {
        let region = builder.get_config_value(&AmazonS3ConfigKey::Region);
        format!("https://s3.{}.amazonaws.com", region.as_deref().unwrap_or("us-east-1"))
    })
}

/// How requests to remote object stores are bounded, and when one still pending is reported.
/// The default is what Weir runs with; tests shorten it.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// Retries of a failed request: [`retry_config`] by default.
    pub retry: RetryConfig,
    /// The longest one try may take, from connecting to the end of the answer's body:
    /// [`REQUEST_TIMEOUT`] by default.
    pub timeout: Duration,
    /// The longest one try may spend connecting: [`CONNECT_TIMEOUT`] by default.
    pub connect_timeout: Duration,
    /// A request still pending after this long is reported with a warning, and again each time
    /// this much more passes: [`SLOW_REQUEST_REPORT_PERIOD`] by default.
    pub report_every: Duration,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        Self {
            retry: retry_config(),
            timeout: REQUEST_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            report_every: SLOW_REQUEST_REPORT_PERIOD,
        }
    }
}

impl RequestPolicy {
    /// The limits in words, as the slow-request warning states them.
    fn describe(&self) -> String {
        format!(
            "object_store retries connection errors, timeouts and 5xx answers for up to {}, at most {} times; \
             each try times out after {}, its connect after {}",
            seconds(self.retry.retry_timeout),
            self.retry.max_retries,
            seconds(self.timeout),
            seconds(self.connect_timeout),
        )
    }
}

/// `30 s`, `1.5 s`: a duration as people read it in a log line.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0} s") } else { format!("{secs:.1} s") }
}

/// The longest one request may take, body included: long enough to stream a large Parquet part
/// over a slow link. A server that accepts a connection and never answers fails a try this late.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest one try may spend connecting: an unreachable host (dropped SYNs) fails a try in
/// this long instead of the operating system's minutes, and is then retried like a refused one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a request still pending is reported (first after this long): an unreachable
/// endpoint says so within seconds, while object_store is still retrying it.
pub const SLOW_REQUEST_REPORT_PERIOD: Duration = Duration::from_secs(5);

/// How long one request to an object store keeps being retried: long enough to ride out a
/// storage outage of tens of seconds (a restarting S3-compatible server, a network blip) inside
/// the request, rather than turn it into a failed row, unit or commit.
///
/// object_store retries, for every request, a failed connect (refused), a connection dropped
/// before an answer began, and 5xx, 429 and 408 answers; a timeout or reset only for safe or
/// idempotent requests (GET, HEAD, LIST, overwriting PUT, multipart parts), not for a
/// create-if-absent PUT (the checkpoint's commits, whose callers retry them).
///
/// Kept under `download`'s default 60 s per-attempt timeout, which would otherwise cut a request
/// that is still retrying.
pub const RETRY_WINDOW: Duration = Duration::from_secs(30);

/// First pause between retries of a request.
const INIT_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between retries, so about how long requests take to resume after an outage.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The retry policy of every store built here: backoff with jitter until [`RETRY_WINDOW`] has
/// passed since the request started (then one last try at most [`MAX_BACKOFF`] later).
///
/// object_store draws each pause uniformly between `init_backoff` and `base` times the previous
/// one, so with `base: 2` pauses grow by only ~50 ms a retry on average and a retry count bounds
/// the window poorly (10 retries from 100 ms last 2.6 s in the median, 1.4 s at the 1st
/// percentile). Hence `base: 3` (pauses grow ~1.5x a retry on average) and a window bounded by
/// time: `max_retries` is a backstop that even the shortest pauses cannot use up before the
/// window ends.
pub fn retry_config() -> RetryConfig {
    let backstop = RETRY_WINDOW.as_millis().div_ceil(INIT_BACKOFF.as_millis());
    RetryConfig {
        backoff: BackoffConfig { init_backoff: INIT_BACKOFF, max_backoff: MAX_BACKOFF, base: 3.0 },
        max_retries: usize::try_from(backstop).unwrap_or(usize::MAX),
        retry_timeout: RETRY_WINDOW,
    }
}

/// A `file://` URL for a local path (absolute, or relative to the working directory).
fn local_url(path: &str) -> Option<Url> {
    let p = std::path::Path::new(path);
    let absolute = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
    let trailing = path.ends_with('/');
    let mut url = Url::from_file_path(normalize(&absolute)).ok()?;
    if trailing && !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Some(url)
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether an object-store error may go away if retried.
pub fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_file_urls_resolve_to_the_same_object() {
        let registry = StoreRegistry::default();
        let a = registry.resolve("/tmp/weir/x.jpg").expect("path");
        let b = registry.resolve("file:///tmp/weir/x.jpg").expect("url");
        assert_eq!(a.path, b.path);
        assert_eq!(a.uri_of(&a.path), "file:///tmp/weir/x.jpg");
        let rel = registry.resolve("data/../data/images/").expect("relative");
        assert!(rel.path.as_ref().ends_with("data/images"), "{}", rel.path);
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = StoreRegistry::default().resolve("ftp://host/x").expect_err("ftp");
        assert!(err.to_string().contains("unsupported scheme `ftp`"), "{err}");
    }

    #[test]
    fn the_retry_window_ends_retries_before_the_retry_count_does() {
        let config = retry_config();
        let shortest_total = config.backoff.init_backoff * u32::try_from(config.max_retries).expect("retries");
        assert!(shortest_total >= config.retry_timeout, "{shortest_total:?} < {:?}", config.retry_timeout);
        assert!(config.retry_timeout >= Duration::from_secs(30));
        let download_timeout = Duration::from_secs(u64::from(crate::download::DEFAULT_TIMEOUT_SECONDS));
        assert!(config.retry_timeout + config.backoff.max_backoff < download_timeout);
    }

    #[test]
    fn s3_and_http_uris_keep_bucket_and_key() {
        let registry = StoreRegistry::new(S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
        });
        let s3 = registry.resolve("s3://bucket/a/b.jpg").expect("s3");
        assert_eq!((s3.base.as_str(), s3.path.as_ref()), ("s3://bucket", "a/b.jpg"));
        let http = registry.resolve("http://127.0.0.1:8080/x/y.png").expect("http");
        assert_eq!((http.base.as_str(), http.path.as_ref()), ("http://127.0.0.1:8080", "x/y.png"));
    }
}
