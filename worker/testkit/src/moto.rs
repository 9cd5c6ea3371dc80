//! A real S3-compatible server for tests: moto's `moto_server` on a free loopback port.
//!
//! The binary is named by `WEIR_MOTO_SERVER` (`scripts/test.sh` installs `moto[server]` into a
//! virtualenv and sets it). moto accepts any credentials (use `test`/`test`, region `us-east-1`)
//! and honours `If-None-Match: *` on `PUT`, so conditional puts behave as on AWS S3.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `moto_server` may take to accept connections before [`Moto::start`] gives up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Held while a server starts (see [`Moto::start`]).
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running moto S3 server, killed and reaped on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    /// Starts `$WEIR_MOTO_SERVER` on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// When `WEIR_MOTO_SERVER` is unset (the message says how to get it), or the server does not
    /// start within 20 seconds: this is test setup, where a panic is the clearest report.
    pub fn start() -> Self {
        let bin = std::env::var("WEIR_MOTO_SERVER").unwrap_or_else(|_| {
            panic!("WEIR_MOTO_SERVER is not set: run scripts/test.sh, which installs moto[server] and sets it")
        });
        // One start at a time in this process: a port is free when picked and only taken when
        // the server binds it, so two tests starting at once could pick the same one; the loser's
        // server then exits and its test talks to the winner's until that one stops. Holding
        // the lock until the server accepts connections means the next pick cannot be its port.
        let _one_at_a_time = STARTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server `{bin}`: {e}"));
        // Owned from here on, so an early panic below still kills the child.
        let mut moto = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < START_TIMEOUT, "moto_server did not start within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port answers: it must be our server answering, not another process's.
        if let Ok(Some(status)) = moto.child.try_wait() {
            panic!("moto_server exited ({status}) while port {port} answers: another process holds the port")
        }
        moto
    }

    /// The server's base URL, `http://127.0.0.1:<port>`, for an S3 client's endpoint setting.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates `bucket` with a plain HTTP `PUT` (moto accepts unsigned requests).
    ///
    /// # Panics
    /// When the server cannot be reached or does not answer `200`.
    pub fn create_bucket(&self, bucket: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to moto_server");
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("send create-bucket request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read create-bucket reply");
        assert!(reply.starts_with("HTTP/1.1 200"), "moto_server refused bucket `{bucket}`: {reply}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
