//! An object store wrapper that warns while a request is slow to finish and names the object and
//! endpoint in the errors of failed requests.
//!
//! object_store retries a request that cannot connect or times out for up to its retry window,
//! silently; without this a job pointed at an unreachable endpoint printed nothing for a minute.
//! A store reports at most about two requests per period, however many are pending: 32 downloads
//! stuck on one endpoint make two lines every few seconds, not 32.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use tokio::time::{Instant, MissedTickBehavior};

/// What a wrapped store's warnings and errors say about it, and its requests pending.
#[derive(Debug)]
pub(crate) struct Site {
    /// How objects are named: `s3://bucket` or `http://host:port`.
    base: String,
    /// Where requests go, e.g. `http://127.0.0.1:9000` or `https://s3.us-east-1.amazonaws.com`.
    endpoint: String,
    /// The retry and timeout limits in words.
    limits: String,
    /// A pending request is reported after this long, then each time this much more passes.
    period: Duration,
    /// Requests (and stream items) being waited on now.
    pending: AtomicUsize,
    /// When this store last reported a pending request.
    last_report: Mutex<Option<Instant>>,
}

/// One kind of request, as warnings and errors name it.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Head,
    GetRanges,
    Put,
    StartUpload,
    PutPart,
    CompleteUpload,
    AbortUpload,
    List,
    Delete,
    Copy,
    Rename,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::GetRanges => "GET (ranges of)",
            Self::Put => "PUT",
            Self::StartUpload => "start of multipart PUT",
            Self::PutPart => "PUT part of",
            Self::CompleteUpload => "completion of multipart PUT",
            Self::AbortUpload => "abort of multipart PUT",
            Self::List => "LIST",
            Self::Delete => "DELETE",
            Self::Copy => "COPY",
            Self::Rename => "RENAME",
        })
    }
}

/// A request that failed, named: wraps the source of object_store's `Generic` errors (network
/// failures, timeouts, 5xx after retries), whose own text gives the endpoint's URL at most and
/// leaves the reason (`operation timed out`, `Connection refused`) to its innermost cause.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target} at {endpoint} failed: {detail}")]
struct Failed {
    op: Op,
    target: String,
    endpoint: String,
    /// The innermost cause, then `source` in parentheses (just `source` if it has no cause).
    detail: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// `error`'s innermost cause, then `error` in parentheses; just `error` if it has no cause.
fn detail(error: &(dyn std::error::Error + 'static)) -> String {
    let mut root = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    if std::ptr::addr_eq(root, error) { error.to_string() } else { format!("{root} ({error})") }
}

impl Site {
    /// A site named `base` (`s3://bucket`) whose requests go to `endpoint`; `limits` states the
    /// retry and timeout limits, `period` how often a pending request is reported.
    pub(crate) fn new(base: String, endpoint: String, limits: String, period: Duration) -> Self {
        Self { base, endpoint, limits, period, pending: AtomicUsize::new(0), last_report: Mutex::new(None) }
    }

    /// The URI of `path` under this site.
    fn uri(&self, path: &Path) -> String {
        format!("{}/{path}", self.base)
    }

    /// Runs `call`, warning each [`Site::period`] it stays pending (unless another request of
    /// this store was reported in the last half period). Dropping the returned future drops
    /// `call` and the ticker with it.
    async fn waiting<T>(&self, op: Op, target: impl Fn() -> String, call: impl Future<Output = T>) -> T {
        let _pending = Pending::enter(&self.pending);
        let started = Instant::now();
        let mut ticks = tokio::time::interval_at(started + self.period, self.period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::pin!(call);
        loop {
            tokio::select! {
                biased;
                done = &mut call => return done,
                _ = ticks.tick() => if self.may_report() {
                    tracing::warn!(
                        op = %op,
                        endpoint = %self.endpoint,
                        "still waiting on {op} {} at {} after {:.1} s{} ({})",
                        target(),
                        self.endpoint,
                        started.elapsed().as_secs_f64(),
                        self.others_pending(),
                        self.limits,
                    );
                },
            }
        }
    }

    /// Whether no request of this store was reported in the last half period (then the caller
    /// reports, and this records it). Half, so that one request's own reports, a period apart,
    /// are never held back.
    fn may_report(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last_report.lock().unwrap_or_else(PoisonError::into_inner);
        let due = last.is_none_or(|at| now.duration_since(at) >= self.period / 2);
        if due {
            *last = Some(now);
        }
        due
    }

    /// `, with 3 other requests to it pending`, or nothing when the reported one is alone.
    fn others_pending(&self) -> String {
        match self.pending.load(Ordering::Relaxed).saturating_sub(1) {
            0 => String::new(),
            1 => ", with 1 other request to it pending".to_string(),
            n => format!(", with {n} other requests to it pending"),
        }
    }

    /// [`Site::waiting`] for a request on `path`, its error named (see [`Site::name_error`]).
    async fn watch<T>(&self, op: Op, path: &Path, call: impl Future<Output = Result<T>>) -> Result<T> {
        let target = || self.uri(path);
        self.waiting(op, target, call).await.map_err(|e| self.name_error(op, target(), e))
    }

    /// `error` with the request's operation, target and endpoint added if it is `Generic`; other
    /// variants (not found, access denied, ...) are definite answers that name their path already.
    fn name_error(&self, op: Op, target: String, error: object_store::Error) -> object_store::Error {
        match error {
            object_store::Error::Generic { store, source } => {
                let detail = detail(source.as_ref());
                let source = Box::new(Failed { op, target, endpoint: self.endpoint.clone(), detail, source });
                object_store::Error::Generic { store, source }
            }
            other => other,
        }
    }

    /// `items`, each one's wait watched as `op` on `target` and its error named.
    fn watch_stream<T: Send + 'static>(
        self: Arc<Self>,
        op: Op,
        target: impl Fn() -> String + Send + Sync + 'static,
        items: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        stream::unfold((items, self, target), move |(mut items, site, target)| async move {
            let item = site.waiting(op, &target, items.next()).await?;
            let item = item.map_err(|e| site.name_error(op, target(), e));
            Some((item, (items, site, target)))
        })
        .boxed()
    }
}

/// One request counted in [`Site::pending`] while this lives.
struct Pending<'a>(&'a AtomicUsize);

impl<'a> Pending<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A store whose requests are watched (see the module docs). Bodies of `get` answers are not:
/// the request is done once the answer's headers arrive.
#[derive(Debug)]
pub(crate) struct Watched {
    inner: Arc<dyn ObjectStore>,
    site: Arc<Site>,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, site: Site) -> Self {
        Self { inner, site: Arc::new(site) }
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for Watched {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.site.watch(Op::Put, location, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.site.watch(Op::StartUpload, location, self.inner.put_multipart_opts(location, opts)).await?;
        Ok(Box::new(WatchedUpload { inner, site: self.site.clone(), path: location.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.site.watch(op, location, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.site.watch(Op::GetRanges, location, self.inner.get_ranges(location, ranges)).await
    }

    /// Names the path most recently handed to the store: in a batch, the batch's last.
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let latest = Arc::new(Mutex::new(None::<Path>));
        let seen = latest.clone();
        let locations = locations
            .inspect(move |path| {
                if let Ok(path) = path {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.clone());
                }
            })
            .boxed();
        let site = self.site.clone();
        let target = move || {
            let latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
            site.uri(latest.as_ref().unwrap_or(&Path::default()))
        };
        self.site.clone().watch_stream(Op::Delete, target, self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let target = self.list_target(prefix);
        self.site.clone().watch_stream(Op::List, move || target.clone(), self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        let target = self.list_target(prefix);
        self.site.clone().watch_stream(Op::List, move || target.clone(), self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let target = || self.list_target(prefix);
        let listed = self.site.waiting(Op::List, target, self.inner.list_with_delimiter(prefix)).await;
        listed.map_err(|e| self.site.name_error(Op::List, target(), e))
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let target = || format!("{} to {}", self.site.uri(from), self.site.uri(to));
        let copied = self.site.waiting(Op::Copy, target, self.inner.copy_opts(from, to, options)).await;
        copied.map_err(|e| self.site.name_error(Op::Copy, target(), e))
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let target = || format!("{} to {}", self.site.uri(from), self.site.uri(to));
        let renamed = self.site.waiting(Op::Rename, target, self.inner.rename_opts(from, to, options)).await;
        renamed.map_err(|e| self.site.name_error(Op::Rename, target(), e))
    }
}

impl Watched {
    /// What a listing of `prefix` is named: `s3://bucket/prefix/`.
    fn list_target(&self, prefix: Option<&Path>) -> String {
        format!("{}/", self.site.uri(prefix.unwrap_or(&Path::default())).trim_end_matches('/'))
    }
}

/// A multipart upload whose part, completion and abort requests are watched.
#[derive(Debug)]
struct WatchedUpload {
    inner: Box<dyn MultipartUpload>,
    site: Arc<Site>,
    path: Path,
}

#[async_trait]
impl MultipartUpload for WatchedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let (site, path) = (self.site.clone(), self.path.clone());
        Box::pin(async move { site.watch(Op::PutPart, &path, part).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.site.watch(Op::CompleteUpload, &self.path, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        self.site.watch(Op::AbortUpload, &self.path, self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    fn capture() -> (weir_testkit::logs::Lines, tracing::subscriber::DefaultGuard) {
        weir_testkit::logs::capture(tracing::Level::INFO)
    }

    fn site() -> Site {
        Site::new("s3://bucket".into(), "http://127.0.0.1:9".into(), "limits".into(), Duration::from_secs(5))
    }

    /// A request that succeeds after `millis`.
    async fn succeed_after(millis: u64) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_request_is_reported_each_period_with_its_object_and_endpoint() {
        let (lines, _guard) = capture();
        let path = Path::from("data/x.parquet");
        site().watch(Op::Get, &path, succeed_after(12_500)).await.expect("sleep");
        let text = lines.text();
        assert_eq!(text.matches("still waiting on GET s3://bucket/data/x.parquet at http://127.0.0.1:9").count(), 2);
        assert!(text.contains("after 5.0 s (limits)") && text.contains("after 10.0 s (limits)"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_done_within_the_period_is_not_reported() {
        let (lines, _guard) = capture();
        site().watch(Op::Put, &Path::from("x"), succeed_after(4_900)).await.expect("sleep");
        assert_eq!(lines.text(), "");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_pending_together_make_one_report_per_period_that_counts_the_others() {
        let (lines, _guard) = capture();
        let (site, paths) = (site(), [Path::from("a"), Path::from("b"), Path::from("c")]);
        let request = |path| site.watch(Op::Get, path, succeed_after(7_500));
        let (a, b, c) = tokio::join!(request(&paths[0]), request(&paths[1]), request(&paths[2]));
        (a.and(b).and(c)).expect("sleeps");
        let text = lines.text();
        assert_eq!(text.matches("still waiting on GET").count(), 1, "{text}");
        assert!(text.contains("after 5.0 s, with 2 other requests to it pending (limits)"), "{text}");
    }

    #[test]
    fn generic_errors_name_the_request_and_definite_answers_keep_their_variant() {
        let site = site();
        let generic = object_store::Error::Generic { store: "S3", source: "connection refused".into() };
        let named = site.name_error(Op::Head, site.uri(&Path::from("a/b")), generic);
        assert!(matches!(named, object_store::Error::Generic { store: "S3", .. }));
        assert_eq!(
            named.to_string(),
            "Generic S3 error: HEAD s3://bucket/a/b at http://127.0.0.1:9 failed: connection refused"
        );
        let missing = object_store::Error::NotFound { path: "a/b".into(), source: "404".into() };
        assert!(matches!(site.name_error(Op::Get, String::new(), missing), object_store::Error::NotFound { .. }));
    }

    #[tokio::test]
    async fn a_watched_store_passes_requests_through() {
        let store = Watched::new(Arc::new(InMemory::new()), site());
        let path = Path::from("a/b");
        store.put(&path, PutPayload::from_static(b"abc")).await.expect("put");
        assert_eq!(store.get(&path).await.expect("get").bytes().await.expect("body"), "abc");
        let listed: Vec<_> = store.list(Some(&Path::from("a"))).collect().await;
        assert_eq!(listed.len(), 1);
        store.delete(&path).await.expect("delete");
        let missing = store.head(&path).await.expect_err("deleted");
        assert!(matches!(missing, object_store::Error::NotFound { .. }), "{missing}");
    }
}
