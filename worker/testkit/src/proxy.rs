//! A loopback TCP proxy that can stage a network outage: [`TcpProxy::cut`] refuses and drops every
//! connection, [`TcpProxy::restore`] serves again on the same port.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long connecting to the upstream, or to the proxy itself to wake its acceptor, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the acceptor does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A TCP proxy on `127.0.0.1` in front of one upstream address, one pair of threads per connection.
///
/// # Guarantees
/// - While serving, every connection to [`addr`](Self::addr) is forwarded byte for byte to a new
///   connection to the upstream, half-closes included; a connection the upstream refuses is closed.
/// - After [`cut`](Self::cut) returns, connecting to `addr` is refused and every connection that
///   was open has been shut down (its client reads end-of-file): the server seems to be down.
/// - Dropping the proxy cuts it and joins every thread it started.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    connections: Arc<Connections>,
    /// The running acceptor; `None` while cut.
    acceptor: Mutex<Option<Acceptor>>,
}

impl TcpProxy {
    /// Starts serving on a free loopback port, forwarding to `upstream`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Connections::default());
        let acceptor = Acceptor::spawn(listener, upstream, connections.clone());
        Ok(Self { addr, upstream, connections, acceptor: Mutex::new(Some(acceptor)) })
    }

    /// The address clients connect to; the same before and after a cut.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts an outage: closes the listening socket (new connections are refused) and shuts down
    /// every connection in flight. Does nothing when already cut.
    pub fn cut(&self) {
        let mut acceptor = self.lock_acceptor();
        let Some(Acceptor { stop, thread }) = acceptor.take() else { return };
        stop.store(true, Ordering::SeqCst);
        // The acceptor blocks in `accept`: a connection of our own wakes it to see `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        let pipes = thread.join().unwrap_or_default();
        // The listener is closed now, so no connection can be added while these are shut down.
        self.connections.shut_down_all();
        for pipe in pipes {
            let _ = pipe.join();
        }
    }

    /// Ends an outage: listens on the same port again. Does nothing when not cut.
    ///
    /// # Errors
    /// When the port cannot be bound again (another socket took it during the outage).
    pub fn restore(&self) -> io::Result<()> {
        let mut acceptor = self.lock_acceptor();
        if acceptor.is_none() {
            // The cut left this port's proxied connections in TIME_WAIT; binding it again needs
            // SO_REUSEADDR, which std's `TcpListener::bind` sets on every Unix.
            let listener = TcpListener::bind(self.addr)?;
            *acceptor = Some(Acceptor::spawn(listener, self.upstream, self.connections.clone()));
        }
        Ok(())
    }

    fn lock_acceptor(&self) -> MutexGuard<'_, Option<Acceptor>> {
        self.acceptor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The thread accepting connections; it owns the listening socket and returns its pipe threads.
#[derive(Debug)]
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<JoinHandle<()>>>,
}

impl Acceptor {
    fn spawn(listener: TcpListener, upstream: SocketAddr, connections: Arc<Connections>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || accept_loop(&listener, upstream, &connections, &stopping));
        Self { stop, thread }
    }
}

/// Accepts and forwards connections until `stop` is set; returns the threads still forwarding.
fn accept_loop(
    listener: &TcpListener,
    upstream: SocketAddr,
    connections: &Arc<Connections>,
    stop: &AtomicBool,
) -> Vec<JoinHandle<()>> {
    let mut pipes: Vec<JoinHandle<()>> = Vec::new();
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        pipes.retain(|pipe| !pipe.is_finished());
        let Ok(client) = client else {
            std::thread::sleep(ACCEPT_ERROR_PAUSE);
            continue;
        };
        // Dropping `client` when the upstream refuses closes it, as a dead server would.
        let Ok(server) = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) else { continue };
        let Ok(id) = connections.add(&client, &server) else { continue };
        let connections = connections.clone();
        pipes.push(std::thread::spawn(move || pipe(client, server, id, &connections)));
    }
    pipes
}

/// Forwards both directions of one proxied connection until both end, then forgets it.
fn pipe(client: TcpStream, server: TcpStream, id: u64, connections: &Connections) {
    if let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) {
        let upward = std::thread::spawn(move || forward(client_reader, server_writer));
        forward(server, client);
        let _ = upward.join();
    }
    connections.remove(id);
}

/// Copies `from` into `to` until end-of-file, which it passes on as a half-close; on an error
/// (a reset) it shuts both sockets down so that the other direction ends too.
fn forward(mut from: TcpStream, mut to: TcpStream) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

/// The open proxied connections (client side and upstream side), so that a cut can end them.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
}

impl Connections {
    /// Remembers a connection; its id is for [`remove`](Self::remove).
    fn add(&self, client: &TcpStream, server: &TcpStream) -> io::Result<u64> {
        let sockets = [client.try_clone()?, server.try_clone()?];
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, sockets);
        Ok(id)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Shuts down both sides of every open connection; their pipe threads then end and remove them.
    fn shut_down_all(&self) {
        for socket in self.lock().values().flatten() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, [TcpStream; 2]>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A server that echoes every connection's bytes back, for the life of the test process.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo server");
        let addr = listener.local_addr().expect("echo address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    if let Ok(mut reader) = stream.try_clone() {
                        let mut writer = stream;
                        let _ = io::copy(&mut reader, &mut writer);
                    }
                });
            }
        });
        addr
    }

    /// Sends `message` through a new connection to `addr` and returns what comes back.
    fn echo(addr: SocketAddr, message: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(message)?;
        stream.shutdown(Shutdown::Write)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        Ok(reply)
    }

    fn is_refused(addr: SocketAddr) -> bool {
        TcpStream::connect(addr).is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
    }

    /// Whether a socket on local `port` is in TIME_WAIT (Linux's `/proc/net/tcp`, state `06`).
    fn in_time_wait(port: u16) -> bool {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let local = format!(":{port:04X}");
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|addr| addr.ends_with(&local)) && fields.get(3) == Some(&"06")
        })
    }

    #[test]
    fn connections_are_refused_during_a_cut_and_served_again_on_the_same_port_after_restore() {
        let proxy = TcpProxy::start(echo_server()).expect("start proxy");
        assert_eq!(echo(proxy.addr(), b"before").expect("echo before the cut"), b"before");
        let mut open = TcpStream::connect(proxy.addr()).expect("connect");

        proxy.cut();
        assert!(is_refused(proxy.addr()), "connecting during the cut is refused");
        // The proxy closed `open` first, so once the client closes too its side is in TIME_WAIT,
        // which a plain bind of the port would fail on.
        let _ = open.read_to_end(&mut Vec::new());
        drop(open);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !in_time_wait(proxy.addr().port()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(in_time_wait(proxy.addr().port()), "the cut leaves a connection in TIME_WAIT");

        proxy.restore().expect("restore");
        assert_eq!(echo(proxy.addr(), b"after").expect("echo after the restore"), b"after");
    }

    #[test]
    fn a_cut_ends_connections_in_flight() {
        let proxy = TcpProxy::start(echo_server()).expect("start proxy");
        let mut open = TcpStream::connect(proxy.addr()).expect("connect");
        open.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        open.write_all(b"ping").expect("write");
        let mut reply = [0; 4];
        open.read_exact(&mut reply).expect("echo");

        proxy.cut();
        let mut rest = Vec::new();
        let ended = open.read_to_end(&mut rest).map(|_| rest.is_empty());
        assert!(ended.unwrap_or(true), "the client reads end-of-file (or a reset), not data");
    }

    #[test]
    fn dropping_the_proxy_stops_serving() {
        let proxy = TcpProxy::start(echo_server()).expect("start proxy");
        let addr = proxy.addr();
        let _idle = TcpStream::connect(addr).expect("connect");
        drop(proxy);
        assert!(is_refused(addr));
    }

    #[test]
    fn a_refused_upstream_closes_the_client_connection() {
        let gone = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("free port");
        let proxy = TcpProxy::start(gone).expect("start proxy");
        let reply = echo(proxy.addr(), b"hello");
        assert!(reply.map(|r| r.is_empty()).unwrap_or(true), "no bytes come back, only the close");
    }
}
