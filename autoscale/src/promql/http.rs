//! Plain HTTP/1.1 GETs over one TCP connection each: the transport of queries and scrapes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::signals::DataProblem;

/// Where an `http://host[:port][/path]` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Where to connect: `host:port`, port 80 when the URL names none.
    pub addr: String,
    /// The `Host` header: the URL's authority.
    pub host: String,
    /// The rest of the URL: empty or starting with `/` (or `?`).
    pub path: String,
}

impl Endpoint {
    /// Splits `url`; the error says why it is not a plain `http://` URL with a host.
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let Some(rest) = strip_scheme(url, "http://") else {
            return Err(if strip_scheme(url, "https://").is_some() {
                "https is not supported; use an http:// URL (e.g. a TLS-terminating sidecar next to Prometheus)"
            } else {
                "not an http:// URL"
            });
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err("the URL names no host");
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported");
        }
        if path.contains('#') {
            return Err("the URL may not hold a fragment");
        }
        let after_host = authority.rfind(']').map_or(authority, |end| &authority[end..]);
        let addr = if after_host.contains(':') { authority.to_string() } else { format!("{authority}:80") };
        Ok(Self { addr, host: authority.into(), path: path.into() })
    }
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &url[scheme.len()..])
}

/// `GET path` at `endpoint`, within `timeout`: the status and the whole body.
///
/// # Errors
/// Why the exchange failed (connection, protocol, or no answer in time), in words.
///
/// # Cancellation
/// Dropping the future closes the connection: it is driven here, never spawned.
pub(crate) async fn get(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<(StatusCode, Bytes), String> {
    match tokio::time::timeout(timeout, exchange(endpoint, path)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn exchange(endpoint: &Endpoint, path: &str) -> Result<(StatusCode, Bytes), String> {
    let stream = TcpStream::connect(&endpoint.addr).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let request =
        Request::get(path).header(HOST, &endpoint.host).body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    };
    tokio::pin!(exchange, connection);
    let answer = tokio::select! {
        answer = &mut exchange => answer,
        driven = &mut connection => match driven {
            Err(e) => Err(e),
            // The connection ended first; the exchange now ends too, with its answer or error.
            Ok(()) => (&mut exchange).await,
        },
    };
    answer.map_err(|e| e.to_string())
}

/// The body of `GET url` as text (lossy UTF-8), e.g. a process's `/metrics`.
///
/// # Errors
/// [`DataProblem::Unreachable`] naming `url` when it is not a plain `http://` URL, cannot be
/// reached, does not answer within `timeout`, or answers with a status other than 2xx.
pub async fn get_text(url: &str, timeout: Duration) -> Result<String, DataProblem> {
    let unreachable = |why: &str| DataProblem::Unreachable(format!("{url} unreachable: {why}"));
    let endpoint = Endpoint::parse(url.trim()).map_err(unreachable)?;
    let path = if endpoint.path.starts_with('/') { endpoint.path.clone() } else { format!("/{}", endpoint.path) };
    let (status, body) = get(&endpoint, &path, timeout).await.map_err(|why| unreachable(&why))?;
    if !status.is_success() {
        return Err(unreachable(&format!("HTTP {status}")));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
