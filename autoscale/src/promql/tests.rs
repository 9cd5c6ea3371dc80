use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::client::{parse_response, percent_encode};
use super::*;
use crate::signals::{DataProblem, JobSignals};

/// An instant-vector answer: each series as its labels and its value text.
fn vector(series: &[(&[(&str, &str)], &str)]) -> String {
    let result: Vec<serde_json::Value> = series
        .iter()
        .map(|(labels, value)| {
            let metric: BTreeMap<&str, &str> = labels.iter().copied().collect();
            json!({ "metric": metric, "value": [1_700_000_000.123, value] })
        })
        .collect();
    json!({ "status": "success", "data": { "resultType": "vector", "result": result } }).to_string()
}

fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample { labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), value }
}

#[test]
fn each_signal_has_its_query_and_the_job_is_escaped() {
    let q = queries("j", "1m");
    assert_eq!(q.busy, r#"sum by (pool, step) (rate(weir_step_busy_seconds_total{job="j"}[1m]))"#);
    assert_eq!(
        q.blocked_output,
        r#"sum by (pool, step) (rate(weir_step_blocked_seconds_total{job="j",on="output"}[1m]))"#
    );
    assert_eq!(q.rows_in, r#"sum by (pool, step) (rate(weir_step_rows_total{job="j",direction="in"}[1m]))"#);
    assert_eq!(
        q.slots,
        r#"sum by (pool, step) (weir_step_slots{job="j"} and on (worker, step) rate(weir_step_busy_seconds_total{job="j"}[1m]))"#
    );
    assert_eq!(q.workers_ready, r#"count by (pool) (weir_worker_ready_seconds{job="j"})"#);
    assert_eq!(q.ready_seconds, r#"max by (pool) (weir_worker_ready_seconds{job="j"})"#);
    assert_eq!(q.units, r#"max by (state) (weir_job_units{job="j"})"#);
    assert_eq!(q.commit_rate, r#"sum(rate(weir_job_units_committed_total{job="j"}[1m]))"#);
    let odd = queries("a\"b\\c\nd", "30s");
    assert!(odd.slots.starts_with(r#"sum by (pool, step) (weir_step_slots{job="a\"b\\c\nd"} and on"#), "{}", odd.slots);
}

#[test]
fn percent_encoding_keeps_only_unreserved_characters() {
    assert_eq!(percent_encode("az-AZ_09.~"), "az-AZ_09.~");
    assert_eq!(percent_encode(r#"sum(x{job="j"}[1m]) / 2"#), "sum%28x%7Bjob%3D%22j%22%7D%5B1m%5D%29%20%2F%202");
    assert_eq!(percent_encode("é+&"), "%C3%A9%2B%26");
}

#[test]
fn a_success_vector_becomes_samples() {
    let body = vector(&[(&[("pool", "cpu"), ("step", "decode")], "1.5"), (&[], "2e3")]);
    let samples = parse_response("q", StatusCode::OK, body.as_bytes()).expect("samples");
    assert_eq!(samples, vec![sample(&[("pool", "cpu"), ("step", "decode")], 1.5), sample(&[], 2000.0)]);
    let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"4"]}}"#;
    assert_eq!(parse_response("q", StatusCode::OK, scalar.as_bytes()), Ok(vec![sample(&[], 4.0)]));
}

#[test]
fn an_error_answer_is_a_query_problem() {
    // (status, body, the message)
    let cases = [
        (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
            "bad_data: parse error at char 5",
        ),
        (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>", "HTTP 502 Bad Gateway is not a Prometheus API answer"),
        (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            "expected an instant vector, got a matrix",
        ),
        (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
            "\"x\"",
        ),
    ];
    for (status, body, message) in cases {
        match parse_response("up", status, body.as_bytes()) {
            Err(DataProblem::Query { query, message: got }) => {
                assert_eq!(query, "up");
                assert!(got.contains(message), "{body}: {got}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn a_nan_or_infinite_value_is_not_a_number() {
    for value in ["NaN", "+Inf", "-Inf"] {
        let body = vector(&[(&[("pool", "gpu")], value)]);
        match parse_response("q", StatusCode::OK, body.as_bytes()) {
            Err(DataProblem::NotANumber(what)) => assert_eq!(what, format!("{value} for {{pool=\"gpu\"}} from `q`")),
            other => panic!("{value}: {other:?}"),
        }
    }
}

#[test]
fn only_plain_http_urls_are_accepted() {
    // (url, the refusal contains)
    let cases = [
        ("https://prom:9090", "https is not supported; use an http:// URL"),
        ("prom:9090", "not an http:// URL"),
        ("http://", "names no host"),
        ("http://me:secret@prom", "credentials"),
        ("http://prom/api?x=1", "no query"),
        ("http://prom/#top", "may not hold a fragment"),
    ];
    for (url, why) in cases {
        match Prometheus::new(url) {
            Err(DataProblem::Unreachable(message)) => {
                assert!(message.starts_with(&format!("Prometheus at {url} unreachable: ")), "{message}");
                assert!(message.contains(why), "{message}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(Prometheus::new(" HTTP://prom:9090/prefix/ ").expect("http").url(), "http://prom:9090/prefix");
}

/// A local HTTP server answering each request with `answer(path)`; it records the request heads.
struct Server {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(answer: fn(&str) -> (u16, String)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let (status, body) = answer(head.split_whitespace().nth(1).unwrap_or_default());
            seen.lock().expect("heads").push(head);
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Server { url, heads, task }
}

#[tokio::test]
async fn a_query_reaches_the_server_under_its_prefix_and_returns_its_samples() {
    let server = serve(|_| (200, vector(&[(&[("pool", "cpu")], "3")]))).await;
    let prom = Prometheus::new(&format!("{}/prom/", server.url)).expect("url");
    let samples = prom.query(r#"up{job="j"}"#).await.expect("samples");
    assert_eq!(samples, vec![sample(&[("pool", "cpu")], 3.0)]);
    let heads = server.heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 1);
    assert!(heads[0].starts_with("GET /prom/api/v1/query?query=up%7Bjob%3D%22j%22%7D HTTP/1.1\r\n"), "{}", heads[0]);
    let host = server.url.trim_start_matches("http://");
    assert!(heads[0].to_ascii_lowercase().contains(&format!("host: {host}\r\n")), "{}", heads[0]);
}

#[tokio::test]
async fn an_error_status_from_the_server_is_a_query_problem() {
    let server =
        serve(|_| (422, r#"{"status":"error","errorType":"execution","error":"too many samples"}"#.into())).await;
    let problem = Prometheus::new(&server.url).expect("url").query("up").await.unwrap_err();
    assert_eq!(problem, DataProblem::Query { query: "up".into(), message: "execution: too many samples".into() });
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    match Prometheus::new(&url).expect("url").query("up").await {
        Err(DataProblem::Unreachable(why)) => {
            assert!(why.starts_with(&format!("Prometheus at {url} unreachable: ")), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_unreachable_after_the_timeout() {
    // Bound but never accepted: the kernel completes the connection, nobody answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let prom = Prometheus::new(&url).expect("url").with_timeout(Duration::from_millis(200));
    match prom.query("up").await {
        Err(DataProblem::Unreachable(why)) => assert!(why.ends_with("no answer within 200ms"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_metrics_page_is_read_as_text_and_a_missing_one_is_unreachable() {
    let server = serve(|path| if path == "/metrics" { (200, "up 1\n".into()) } else { (404, String::new()) }).await;
    let text = get_text(&format!("{}/metrics", server.url), Duration::from_secs(5)).await;
    assert_eq!(text, Ok("up 1\n".to_string()));
    let missing = format!("{}/nothing", server.url);
    let problem = get_text(&missing, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(problem, DataProblem::Unreachable(format!("{missing} unreachable: HTTP 404 Not Found")));
    let problem = get_text("https://w0:9100/metrics", Duration::from_secs(5)).await.unwrap_err();
    assert!(problem.to_string().contains("https is not supported"), "{problem}");
}

/// Answers each of [`queries`] for job `j` with pools cpu (decode) and gpu (embed).
fn job_answers(path: &str) -> (u16, String) {
    let cpu: &[(&str, &str)] = &[("pool", "cpu"), ("step", "decode")];
    let gpu: &[(&str, &str)] = &[("pool", "gpu"), ("step", "embed")];
    let body = if path.contains("weir_job_units_committed_total") {
        vector(&[(&[], "0.5")])
    } else if path.contains("weir_job_units") {
        vector(&[(&[("state", "total")], "100"), (&[("state", "committed")], "10"), (&[("state", "leased")], "4")])
    } else if path.contains("count%20by") {
        vector(&[(&[("pool", "cpu")], "2"), (&[("pool", "gpu")], "1")])
    } else if path.contains("weir_worker_ready_seconds") {
        vector(&[(&[("pool", "cpu")], "5"), (&[("pool", "gpu")], "40")])
    } else if path.contains("weir_step_slots") {
        // Before busy: the slots query names the busy counter too (slots of rated workers only).
        vector(&[(cpu, "4"), (gpu, "1")])
    } else if path.contains("weir_step_busy_seconds_total") {
        vector(&[(cpu, "2"), (gpu, "0.9")])
    } else if path.contains("weir_step_blocked_seconds_total") {
        vector(&[(cpu, "0.5")])
    } else if path.contains("weir_step_rows_total") {
        vector(&[(cpu, "40"), (gpu, "10"), (&[("step", "no-pool")], "1")])
    } else {
        return (400, r#"{"status":"error","errorType":"bad_data","error":"unexpected"}"#.into());
    };
    (200, body)
}

#[tokio::test]
async fn the_signals_of_a_job_are_read_from_the_server() {
    let server = serve(job_answers).await;
    let prom = Prometheus::new(&server.url).expect("url");
    let signals = read_signals(&prom, "j", "1m", &["cpu", "gpu"]).await.expect("signals");
    let (cpu, gpu) = (&signals.pools["cpu"], &signals.pools["gpu"]);
    assert_eq!((cpu.utilization(), cpu.backpressure(), cpu.throughput()), (0.5, 0.125, 40.0));
    assert_eq!(
        (gpu.utilization(), gpu.throughput(), gpu.ready_seconds, gpu.workers_reporting),
        (0.9, 10.0, Some(40.0), 1)
    );
    assert_eq!(
        signals.job,
        JobSignals { units_total: 100.0, units_committed: 10.0, units_leased: 4.0, commit_rate: 0.5 }
    );
    assert_eq!(server.heads.lock().expect("heads").len(), 8);
}

#[test]
fn a_pool_without_a_busy_rate_has_no_samples_yet() {
    let samples = QuerySamples {
        slots: vec![sample(&[("pool", "gpu"), ("step", "embed")], 1.0)],
        units: vec![sample(&[("state", "total")], 10.0)],
        ..QuerySamples::default()
    };
    let problem = signals_from_samples(&samples, &["gpu"]).unwrap_err();
    assert_eq!(problem.to_string(), "no samples yet for weir_step_busy_seconds_total of pool gpu");
}

#[test]
fn samples_without_the_coordinators_units_mean_it_is_silent() {
    let gpu = [("pool", "gpu"), ("step", "embed")];
    let samples =
        QuerySamples { busy: vec![sample(&gpu, 0.5)], slots: vec![sample(&gpu, 1.0)], ..QuerySamples::default() };
    assert_eq!(signals_from_samples(&samples, &["gpu"]), Err(DataProblem::CoordinatorSilent));
}
