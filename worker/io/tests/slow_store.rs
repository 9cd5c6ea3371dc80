//! Stores built by [`StoreRegistry`] against endpoints that never answer, refuse connections or
//! answer at once: slow requests are reported while object_store retries them, and their final
//! errors name the object and the endpoint.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Once;
use std::time::Duration;

use futures::StreamExt;
use object_store::{BackoffConfig, ObjectStoreExt, RetryConfig};
use weir_io::store::{RequestPolicy, S3Settings, StoreRegistry};
use weir_testkit::logs::Lines;

/// Captures the warnings logged on this thread (the tests run on a current-thread runtime and
/// the store reports from inside the caller's future) until the guard drops.
fn capture_warnings() -> (Lines, tracing::subscriber::DefaultGuard) {
    weir_testkit::logs::capture(tracing::Level::WARN)
}

/// Static test credentials, so the S3 store signs requests instead of asking an instance
/// metadata service for credentials.
fn use_test_credentials() {
    static ONCE: Once = Once::new();
    // SAFETY: every test calls this before it starts a request, and `Once` holds the others back
    // until the variables are written, so no thread of this process reads them meanwhile.
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    });
}

/// Weir's stores for the S3 endpoint at `endpoint`, with `policy`.
fn registry(endpoint: &str, policy: RequestPolicy) -> StoreRegistry {
    use_test_credentials();
    let s3 = S3Settings { endpoint: Some(endpoint.to_string()), region: Some("us-east-1".into()) };
    StoreRegistry::new(s3).with_policy(policy)
}

/// Limits short enough for a test: retries for 1 s, a try cut at 2 s, a report every 200 ms.
fn short_policy() -> RequestPolicy {
    RequestPolicy {
        retry: RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                base: 2.0,
            },
            max_retries: 100,
            retry_timeout: Duration::from_secs(1),
        },
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        report_every: Duration::from_millis(200),
    }
}

/// A listener that never accepts: the kernel completes the connections (up to its backlog) and
/// nothing ever answers them.
fn blackhole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    (listener, endpoint)
}

/// The generous bound on every request of these tests: their limits end them in seconds.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_get_from_a_silent_endpoint_is_reported_while_pending_and_fails_naming_object_and_endpoint() {
    let (_listener, endpoint) = blackhole();
    let (lines, _guard) = capture_warnings();
    let location = registry(&endpoint, short_policy()).resolve("s3://bucket/data/x.parquet").expect("resolve");
    let got = tokio::time::timeout(BOUND, location.store.get(&location.path)).await.expect("bounded");
    let error = got.expect_err("nothing answers").to_string();
    assert!(error.contains(&format!("GET s3://bucket/data/x.parquet at {endpoint} failed: ")), "{error}");
    let logged = lines.text();
    assert!(
        logged.contains(&format!("still waiting on GET s3://bucket/data/x.parquet at {endpoint} after ")),
        "{logged}"
    );
    assert!(logged.contains("each try times out after 2 s"), "{logged}");
    println!("warning: {}\nerror: {error}", logged.lines().next().unwrap_or_default());
}

#[tokio::test]
async fn a_listing_of_a_silent_endpoint_is_reported_while_pending() {
    let (_listener, endpoint) = blackhole();
    let (lines, _guard) = capture_warnings();
    let location = registry(&endpoint, short_policy()).resolve("s3://bucket/data/").expect("resolve");
    let mut listing = location.store.list(Some(&location.path));
    let first = tokio::time::timeout(BOUND, listing.next()).await.expect("bounded").expect("one item");
    let error = first.expect_err("nothing answers").to_string();
    assert!(error.contains(&format!("LIST s3://bucket/data/ at {endpoint}")), "{error}");
    let logged = lines.text();
    assert!(logged.contains(&format!("still waiting on LIST s3://bucket/data/ at {endpoint}")), "{logged}");
}

#[tokio::test]
async fn a_refused_connection_fails_in_bounded_time_naming_the_endpoint() {
    let closed = blackhole().1;
    let location = registry(&closed, short_policy()).resolve("s3://bucket/k.json").expect("resolve");
    let put = location.store.put(&location.path, "{}".into());
    let error = tokio::time::timeout(BOUND, put).await.expect("bounded").expect_err("refused").to_string();
    assert!(error.contains(&format!("PUT s3://bucket/k.json at {closed} failed: ")), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    println!("error: {error}");
}

#[tokio::test]
async fn a_request_answered_at_once_logs_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let server = std::thread::spawn(move || answer_one_head(&listener));
    let (lines, _guard) = capture_warnings();
    let location = registry(&endpoint, RequestPolicy::default()).resolve("s3://bucket/x.bin").expect("resolve");
    let meta = tokio::time::timeout(BOUND, location.store.head(&location.path)).await.expect("bounded").expect("head");
    assert_eq!(meta.size, 5);
    server.join().expect("server");
    assert_eq!(lines.text(), "");
}

/// Serves one connection: reads a request's head and answers it as S3 answers a HEAD of a
/// 5-byte object.
fn answer_one_head(listener: &TcpListener) {
    let (stream, _) = listener.accept().expect("accept");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).expect("read") > 0 && line != "\r\n" {
        line.clear();
    }
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\
                  Last-Modified: Tue, 01 Jan 2030 00:00:00 GMT\r\nConnection: close\r\n\r\n";
    reader.get_mut().write_all(answer.as_bytes()).expect("write");
}
