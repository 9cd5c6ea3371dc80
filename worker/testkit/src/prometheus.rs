//! A real Prometheus server for tests: Debian's `prometheus` on a free loopback port, scraping
//! the targets a `file_sd_configs` file lists (`weir run --prometheus-targets FILE` keeps one).
//!
//! The binary is `$WEIR_PROMETHEUS` or `prometheus` on the PATH (`scripts/test.sh` installs
//! Debian's package). It scrapes every second with `honor_labels: true`, so the `job` label of
//! Weir's metrics (the MultimodalJob's name) wins over the scrape job's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Prometheus may take to answer its readiness check before [`Prometheus::start`] gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus, killed and reaped on drop (its data directory is the caller's).
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus with its data in `dir`, scraping the targets listed in `targets` (a
    /// `file_sd_configs` JSON file, re-read every second) every second.
    ///
    /// # Panics
    /// When the binary cannot be started (the message says how to get it), or it is not ready
    /// within 30 seconds: this is test setup, where a panic is the clearest report.
    pub fn start(dir: &Path, targets: &Path) -> Self {
        let bin = std::env::var("WEIR_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let config = dir.join("prometheus.yml");
        let text = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  \
             - job_name: weir\n    \
               honor_labels: true\n    \
               file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n",
            targets.display()
        );
        std::fs::write(&config, text).expect("write prometheus.yml");
        let data: PathBuf = dir.join("data");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{bin}`: {e} (install Debian's prometheus, or set WEIR_PROMETHEUS)")
            });
        // Owned from here on, so an early panic below still kills the child.
        let server = Self { child, port };
        let started = Instant::now();
        while server.get("/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(started.elapsed() < START_TIMEOUT, "prometheus did not become ready within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The server's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The JSON body of the instant query `promql` (`GET /api/v1/query`), or `None` when the
    /// server does not answer.
    pub fn query(&self, promql: &str) -> Option<String> {
        let encoded: String = promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
            .collect();
        self.get(&format!("/api/v1/query?query={encoded}")).map(|(_, body)| body)
    }

    /// A plain HTTP/1.0 GET of `path` (so the body is never chunked): its status code and body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        let status = reply.split(' ').nth(1)?.parse().ok()?;
        let (_, body) = reply.split_once("\r\n\r\n")?;
        Some((status, body.to_string()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
