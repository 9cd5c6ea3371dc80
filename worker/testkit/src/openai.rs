//! A real OpenAI-compatible HTTP server for tests, whose answers are scripted by directives in the prompt.
//!
//! [`OpenAiServer`] serves `POST /v1/chat/completions` and `POST /v1/responses` on a loopback port.
//! Each request's fate is read from its *prompt*: the last user message that holds a directive, or
//! the last user message when none does. The prompt's text is the request's *key*; fault counters
//! are kept per key, so every pipeline row scripts its own fate and rows do not disturb each other.
//!
//! # Directives
//! - none: 200 with content `echo: <prompt text>`, plus ` images=N [media/type LEN bytes]…` when
//!   the prompt has image parts (`data:` URLs are decoded; other URLs show as `[url URL]`).
//! - `[429 xN after=S]`: 429 `rate_limit_exceeded`, with `Retry-After: S` when `after=` is given.
//! - `[500 xN]`: 500 `server_error`.
//! - `[408 xN]`, `[409 xN]`, `[503 xN after=S]`: that status, with `Retry-After: S` when given.
//! - `[redirect xN]`: 307 to `/v1/moved` (a client that follows it gets 404 there).
//! - `[malformed xN]`: 200 whose body is not valid JSON.
//! - `[400]`: always 400 `bad request: …`, a fatal error the client must not retry.
//! - `[slow=MS]`: sleep MS milliseconds (tokio time, so paused clocks work) before answering.
//! - `[answer=TEXT]`: the content is exactly TEXT, which runs to the `]` closing the directive;
//!   balanced `{…}` / `[…]` and quoted strings inside it are skipped, so JSON answers work.
//! - `[repair=TEXT]`: on a request with more than one user message (the client's repair attempt),
//!   the content is TEXT instead of the `answer=`.
//!
//! `xN` is optional (default 1). The faults (every status above but 400, and `malformed`) form one schedule in the
//! order written: `[429 x2][500 x1]` fails the key's requests 1–2 with 429, request 3 with 500, and
//! answers from request 4 on. Bracketed text that is no directive is plain text.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The body of a `[malformed]` answer: a JSON document cut short.
const MALFORMED_BODY: &str = r#"{"choices": ["#;
/// Pause after a failed `accept`, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A running OpenAI-compatible test server on `127.0.0.1`; see the [module docs](self) for the
/// directives that script its answers.
///
/// # Guarantees
/// - Every request, on any path and whether valid or not, is recorded before it is answered, so
///   the accessors count it as soon as the client has sent it.
/// - Dropping the server aborts its accept loop and every connection (all are owned tasks): the
///   port stops answering and requests in progress are cut off.
#[derive(Debug)]
pub struct OpenAiServer {
    addr: SocketAddr,
    state: Arc<State>,
    /// The accept loop, which owns the connections; dropping the set aborts them all.
    _tasks: JoinSet<()>,
}

impl OpenAiServer {
    /// Binds a free loopback port and starts serving on it.
    ///
    /// Must be called within a tokio runtime, which runs the server.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new());
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, state.clone()));
        Ok(Self { addr, state, _tasks: tasks })
    }

    /// The base URL clients are configured with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many requests arrived so far, on any path.
    pub fn requests(&self) -> usize {
        self.state.log().len()
    }

    /// How many requests so far had a raw body containing `needle`.
    pub fn requests_containing(&self, needle: &str) -> usize {
        self.state.log().iter().filter(|r| r.body.contains(needle)).count()
    }

    /// The request bodies parsed as JSON, in arrival order; a body that is not JSON is `Null`, so
    /// indices match [`authorizations`](Self::authorizations) and [`arrivals`](Self::arrivals).
    pub fn bodies(&self) -> Vec<Value> {
        self.state.log().iter().map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null)).collect()
    }

    /// The `Authorization` header of each request, in arrival order (`None` when absent).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.state.log().iter().map(|r| r.authorization.clone()).collect()
    }

    /// The most requests that were being handled at once (sleeps of `[slow=MS]` included).
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// When each request arrived, measured from [`start`](Self::start) on the tokio clock.
    pub fn arrivals(&self) -> Vec<Duration> {
        self.state.log().iter().map(|r| r.arrival).collect()
    }
}

/// What the server shares between its connections.
#[derive(Debug)]
struct State {
    started: Instant,
    log: Mutex<Vec<Recorded>>,
    /// Requests per key so far, the current one included.
    per_key: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Numbers the answers' ids.
    answers: AtomicUsize,
}

/// One request as received.
#[derive(Debug)]
struct Recorded {
    body: String,
    authorization: Option<String>,
    arrival: Duration,
}

impl State {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            log: Mutex::default(),
            per_key: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            answers: AtomicUsize::new(0),
        }
    }

    /// The request log; a panic while it was held cannot leave it half-written, so poison is ignored.
    fn log(&self) -> MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more request for `key` and returns its 1-based number.
    fn count(&self, key: &str) -> usize {
        let mut per_key = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_key.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }
}

/// Marks one request in flight until dropped (also when the client goes away mid-answer).
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until aborted; each connection is a task of this loop's own set, so
/// aborting the loop drops them too. Connections stay open between requests (keep-alive).
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: pause rather than spin.
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            continue;
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Records a request, then answers it.
async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrival = state.started.elapsed();
    let _in_flight = InFlight::enter(state);
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned());
    let authorization = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let recorded = body.as_ref().cloned().unwrap_or_default();
    state.log().push(Recorded { body: recorded, authorization, arrival });
    let body = match body {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", &format!("cannot read body: {e}")),
    };
    let api = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") => Api::Chat,
        (&Method::POST, "/v1/responses") => Api::Responses,
        (method, path) => {
            return error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("unknown URL: {method} {path}"));
        }
    };
    match Exchange::parse(api, &body) {
        Ok(exchange) => answer(state, &exchange).await,
        Err(message) => error(StatusCode::BAD_REQUEST, "invalid_request_error", &message),
    }
}

/// Answers a valid request as its prompt's directives say.
async fn answer(state: &State, exchange: &Exchange) -> Response<Full<Bytes>> {
    let prompt = exchange.prompt();
    let directives = Directives::parse(&prompt.text);
    let n = state.count(&prompt.text);
    if let Some(slow) = directives.slow {
        tokio::time::sleep(slow).await;
    }
    if directives.bad_request {
        let message = format!("bad request: the prompt asks for [400]: {}", prompt.text);
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    match directives.fault(n) {
        Some(Fault::RateLimit { after }) => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
            );
            if let Some(after) = after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(after));
            }
            return response;
        }
        Some(Fault::ServerError) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request",
            );
        }
        Some(Fault::Malformed) => return response(StatusCode::OK, Bytes::from_static(MALFORMED_BODY.as_bytes())),
        Some(Fault::Status { code, after }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = error(status, "scripted", &format!("the prompt asks for [{code}]"));
            if let Some(after) = after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(after));
            }
            return response;
        }
        Some(Fault::Redirect) => {
            let mut response = error(StatusCode::TEMPORARY_REDIRECT, "moved", "moved to /v1/moved");
            response.headers_mut().insert(hyper::header::LOCATION, HeaderValue::from_static("/v1/moved"));
            return response;
        }
        None => {}
    }
    let repairing = exchange.messages.iter().filter(|m| m.role == "user").count() > 1;
    let repair = directives.repair.filter(|_| repairing);
    let content = repair.or(directives.answer).unwrap_or_else(|| echo(prompt));
    let id = state.answers.fetch_add(1, Ordering::SeqCst);
    json_response(StatusCode::OK, &exchange.completion(id, &content))
}

/// `echo: <text>`, with the prompt's images described.
fn echo(prompt: &Message) -> String {
    let mut echo = format!("echo: {}", prompt.text);
    if !prompt.images.is_empty() {
        echo = format!("{echo} images={} {}", prompt.images.len(), prompt.images.join(" "));
    }
    echo
}

/// `{"error": {...}}` in OpenAI's shape.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    response(status, Bytes::from(body.to_string()))
}

fn response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Which API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
}

/// A message's text parts, joined, and its images as described in echoes.
#[derive(Debug, Default)]
struct Message {
    role: String,
    text: String,
    /// `[media/type LEN bytes]` per `data:` URL, `[url URL]` per other URL.
    images: Vec<String>,
}

/// A valid request: its model and its messages, the system instructions included.
#[derive(Debug)]
struct Exchange {
    api: Api,
    model: String,
    messages: Vec<Message>,
    /// Index in `messages` of the prompt: the last user message holding a directive, else the
    /// last user message. A repair attempt thus keeps its row's directives and key.
    prompt: usize,
}

impl Exchange {
    /// Reads a request body, or says what is wrong with it.
    fn parse(api: Api, body: &str) -> Result<Self, String> {
        let request: Value = serde_json::from_str(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
        let model = match request.get("model") {
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            _ => return Err("missing required parameter: `model`".into()),
        };
        let mut messages = Vec::new();
        match api {
            Api::Chat => {
                let Some(Value::Array(items)) = request.get("messages") else {
                    return Err("missing required parameter: `messages`".into());
                };
                for item in items {
                    messages.push(message(item)?);
                }
            }
            Api::Responses => {
                if let Some(Value::String(instructions)) = request.get("instructions") {
                    messages.push(Message { role: "system".into(), text: instructions.clone(), images: Vec::new() });
                }
                match request.get("input") {
                    Some(Value::String(text)) => {
                        messages.push(Message { role: "user".into(), text: text.clone(), ..Default::default() })
                    }
                    Some(Value::Array(items)) => {
                        for item in items {
                            messages.push(message(item)?);
                        }
                    }
                    _ => return Err("missing required parameter: `input`".into()),
                }
            }
        }
        let users = || messages.iter().enumerate().rev().filter(|(_, m)| m.role == "user");
        let prompt = users()
            .find(|(_, m)| Directives::parse(&m.text) != Directives::default())
            .or_else(|| users().next())
            .map(|(i, _)| i)
            .ok_or("no user message in the request")?;
        Ok(Self { api, model, messages, prompt })
    }

    /// The message whose directives drive the answer, and whose text is the request's key.
    fn prompt(&self) -> &Message {
        &self.messages[self.prompt]
    }

    /// The success body for `content`, with token usage counted as whitespace-separated words.
    fn completion(&self, id: usize, content: &str) -> Value {
        let prompt_tokens: usize = self.messages.iter().map(|m| words(&m.text)).sum();
        let completion_tokens = words(content);
        let total_tokens = prompt_tokens + completion_tokens;
        match self.api {
            Api::Chat => json!({
                "id": format!("chatcmpl-{id}"),
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total_tokens},
            }),
            Api::Responses => json!({
                "id": format!("resp_{id}"),
                "object": "response",
                "created_at": 0,
                "status": "completed",
                "model": self.model,
                "output": [{
                    "type": "message",
                    "id": format!("msg_{id}"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": content, "annotations": []}],
                }],
                "output_text": content,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens, "total_tokens": total_tokens},
            }),
        }
    }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Reads one message of either API: `{role, content}` where content is a string, null, or a list
/// of parts (`text`/`input_text`/`output_text` and `image_url`/`input_image`). A message without a
/// role is `user`, as in the Responses API's short form; other Responses items (`function_call`…)
/// take their type as role, so they never count as user messages.
fn message(item: &Value) -> Result<Message, String> {
    let role = match (item.get("role").and_then(Value::as_str), item.get("type").and_then(Value::as_str)) {
        (Some(role), _) => role,
        (None, None | Some("message")) => "user",
        (None, Some(kind)) => kind,
    }
    .to_string();
    let mut message = Message { role, ..Default::default() };
    match item.get("content") {
        Some(Value::String(text)) => message.text = text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text" | "output_text") => {
                        texts.push(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("image_url" | "input_image") => message.images.push(image(part)?),
                    _ => {}
                }
            }
            message.text = texts.join(" ");
        }
        _ => {}
    }
    Ok(message)
}

/// Describes an image part: `{"image_url": "URL"}` or `{"image_url": {"url": "URL"}}`.
fn image(part: &Value) -> Result<String, String> {
    let url = match part.get("image_url") {
        Some(Value::String(url)) => url.as_str(),
        Some(Value::Object(object)) => object.get("url").and_then(Value::as_str).unwrap_or_default(),
        _ => "",
    };
    if url.is_empty() {
        return Err("image part without an `image_url`".into());
    }
    let Some(data) = url.strip_prefix("data:") else { return Ok(format!("[url {url}]")) };
    let Some((media, encoded)) = data.split_once(";base64,") else {
        return Err("image data URL is not `data:<media type>;base64,<data>`".into());
    };
    let bytes = decoded_len(encoded).ok_or_else(|| format!("image data URL of {media} is not valid base64"))?;
    Ok(format!("[{media} {bytes} bytes]"))
}

/// The length of standard base64 (padding optional) once decoded; `None` when it is not base64.
fn decoded_len(encoded: &str) -> Option<usize> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const PADDING_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    PADDING_OPTIONAL.decode(encoded).ok().map(|bytes| bytes.len())
}

/// A scripted failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// 429, with `Retry-After` seconds when given.
    RateLimit {
        after: Option<u64>,
    },
    ServerError,
    Malformed,
    /// Another status (408, 409, 503), with `Retry-After` seconds when given.
    Status {
        code: u16,
        after: Option<u64>,
    },
    /// 307 to `/v1/moved`.
    Redirect,
}

/// The directives of a prompt.
#[derive(Debug, Default, PartialEq, Eq)]
struct Directives {
    /// Each fault with how many requests it takes, in the order written.
    faults: Vec<(Fault, usize)>,
    bad_request: bool,
    slow: Option<Duration>,
    answer: Option<String>,
    repair: Option<String>,
}

impl Directives {
    fn parse(text: &str) -> Self {
        let mut directives = Self::default();
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            rest = &rest[open + 1..];
            if let Some(consumed) = directives.take(rest) {
                rest = &rest[consumed..];
            }
        }
        directives
    }

    /// Reads the directive at the start of `rest` (just after its `[`) and returns the bytes it
    /// spans, closing `]` included; `None` when the brackets hold no directive.
    fn take(&mut self, rest: &str) -> Option<usize> {
        for (key, slot) in [("answer=", &mut self.answer), ("repair=", &mut self.repair)] {
            if let Some(value) = rest.strip_prefix(key) {
                let end = closing_bracket(value)?;
                *slot = Some(value[..end].to_string());
                return Some(key.len() + end + 1);
            }
        }
        let end = rest.find(']')?;
        let mut tokens = rest[..end].split_whitespace();
        let head = tokens.next()?;
        let options: Vec<&str> = tokens.collect();
        let times = match options.iter().find_map(|o| o.strip_prefix('x')) {
            Some(times) => times.parse().ok()?,
            None => 1,
        };
        let after = match options.iter().find_map(|o| o.strip_prefix("after=")) {
            Some(after) => Some(after.parse().ok()?),
            None => None,
        };
        match head {
            "429" => self.faults.push((Fault::RateLimit { after }, times)),
            "500" => self.faults.push((Fault::ServerError, times)),
            "malformed" => self.faults.push((Fault::Malformed, times)),
            "408" | "409" | "503" => self.faults.push((Fault::Status { code: head.parse().ok()?, after }, times)),
            "redirect" => self.faults.push((Fault::Redirect, times)),
            "400" => self.bad_request = true,
            _ => self.slow = Some(Duration::from_millis(head.strip_prefix("slow=")?.parse().ok()?)),
        }
        Some(end + 1)
    }

    /// The fault for the key's `n`th request (1-based), if the schedule has one.
    fn fault(&self, n: usize) -> Option<Fault> {
        let mut remaining = n;
        for &(fault, times) in &self.faults {
            if remaining <= times {
                return Some(fault);
            }
            remaining -= times;
        }
        None
    }
}

/// The byte offset of the `]` that closes a directive's value, skipping balanced brackets and
/// braces and quoted strings (with `\` escapes) in between.
fn closing_bracket(value: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' | '[' => depth += 1,
            ']' if depth == 0 => return Some(i),
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A reply as a tiny HTTP/1.1 client saw it.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_str(&self.body).expect("reply body is JSON")
        }

        fn content(&self) -> String {
            self.json()["choices"][0]["message"]["content"].as_str().expect("content").to_string()
        }
    }

    /// Sends one request on a fresh connection and reads the reply to the end.
    async fn post(server: &OpenAiServer, path: &str, body: &str, auth: Option<&str>) -> Reply {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Reply { status, headers, body: body.to_string() }
    }

    async fn chat(server: &OpenAiServer, prompt: &str) -> Reply {
        let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]});
        post(server, "/v1/chat/completions", &body.to_string(), None).await
    }

    #[tokio::test]
    async fn plain_prompts_are_echoed_with_word_counts() {
        let server = OpenAiServer::start().await.expect("start");
        let body = json!({"model": "gpt-test", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there world"},
        ]});
        let reply = post(&server, "/v1/chat/completions", &body.to_string(), Some("Bearer sk-test")).await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "gpt-test");
        assert_eq!(json["choices"][0]["finish_reason"], "stop");
        assert_eq!(reply.content(), "echo: hello there world");
        assert_eq!(json["usage"], json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}));
        assert_eq!(server.requests(), 1);
        assert_eq!(server.authorizations(), vec![Some("Bearer sk-test".to_string())]);
        assert_eq!(server.bodies(), vec![body]);
        assert!(server.base_url().starts_with("http://127.0.0.1:") && server.base_url().ends_with("/v1"));
    }

    #[tokio::test]
    async fn rate_limits_count_per_key_then_answer() {
        let server = OpenAiServer::start().await.expect("start");
        for _ in 0..2 {
            let reply = chat(&server, "row a [429 x2 after=3]").await;
            assert_eq!(reply.status, 429);
            assert_eq!(reply.header("retry-after"), Some("3"));
            assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
            // Another key has its own counter.
            let other = chat(&server, "row b [429 x1]").await;
            assert_eq!(other.header("retry-after"), None);
        }
        assert_eq!(chat(&server, "row a [429 x2 after=3]").await.status, 200);
        assert_eq!(chat(&server, "row b [429 x1]").await.status, 200);
        assert_eq!(server.requests_containing("row a"), 3);
        assert_eq!(server.arrivals().len(), 6);
        assert!(server.arrivals().windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn faults_run_in_the_order_written() {
        let server = OpenAiServer::start().await.expect("start");
        let prompt = "[500 x1][malformed x1] then fine";
        let first = chat(&server, prompt).await;
        assert_eq!(first.status, 500);
        assert_eq!(first.json()["error"]["type"], "server_error");
        let second = chat(&server, prompt).await;
        assert_eq!(second.status, 200);
        assert!(serde_json::from_str::<Value>(&second.body).is_err(), "malformed body: {}", second.body);
        assert_eq!(chat(&server, prompt).await.content(), format!("echo: {prompt}"));
    }

    #[tokio::test]
    async fn bad_request_directive_always_fails() {
        let server = OpenAiServer::start().await.expect("start");
        for _ in 0..3 {
            let reply = chat(&server, "doomed [400]").await;
            assert_eq!(reply.status, 400);
            assert!(reply.json()["error"]["message"].as_str().expect("message").starts_with("bad request: "));
        }
    }

    #[tokio::test]
    async fn responses_api_has_its_own_shape() {
        let server = OpenAiServer::start().await.expect("start");
        let body = json!({"model": "gpt-r", "instructions": "be kind", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "two words"}]},
        ]});
        let reply = post(&server, "/v1/responses", &body.to_string(), None).await;
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!(json["object"], "response");
        assert_eq!(json["model"], "gpt-r");
        assert_eq!(json["output_text"], "echo: two words");
        assert_eq!(
            json["output"][0]["content"][0],
            json!({"type": "output_text", "text": "echo: two words", "annotations": []})
        );
        assert_eq!(json["usage"], json!({"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}));

        let plain = post(&server, "/v1/responses", r#"{"model": "m", "input": "just text"}"#, None).await;
        assert_eq!(plain.json()["output_text"], "echo: just text");
    }

    #[tokio::test]
    async fn answers_may_hold_nested_json() {
        let server = OpenAiServer::start().await.expect("start");
        let reply =
            chat(&server, r#"classify [answer={"breed": "pug", "tags": ["a]"], "m": {"c": 0.9}}] please"#).await;
        assert_eq!(reply.content(), r#"{"breed": "pug", "tags": ["a]"], "m": {"c": 0.9}}"#);
    }

    #[tokio::test]
    async fn repair_attempts_get_the_repair_answer() {
        let server = OpenAiServer::start().await.expect("start");
        let prompt = r#"dog [answer=not json][repair={"breed": "pug"}]"#;
        assert_eq!(chat(&server, prompt).await.content(), "not json");
        let body = json!({"model": "gpt-test", "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": "not json"},
            {"role": "user", "content": "That was not valid JSON; answer again."},
        ]});
        let reply = post(&server, "/v1/chat/completions", &body.to_string(), None).await;
        assert_eq!(reply.content(), r#"{"breed": "pug"}"#);
    }

    #[tokio::test]
    async fn invalid_requests_say_what_is_wrong() {
        let server = OpenAiServer::start().await.expect("start");
        let no_model =
            post(&server, "/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "x"}]}"#, None).await;
        assert_eq!(no_model.status, 400);
        assert!(no_model.json()["error"]["message"].as_str().expect("message").contains("`model`"));
        let no_messages = post(&server, "/v1/chat/completions", r#"{"model": "m"}"#, None).await;
        assert!(no_messages.json()["error"]["message"].as_str().expect("message").contains("`messages`"));
        let no_input = post(&server, "/v1/responses", r#"{"model": "m"}"#, None).await;
        assert!(no_input.json()["error"]["message"].as_str().expect("message").contains("`input`"));
        assert_eq!(post(&server, "/v1/chat/completions", "{not json", None).await.status, 400);
        let unknown = post(&server, "/v1/embeddings", "{}", None).await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.json()["error"]["message"].is_string());
        assert_eq!(server.requests(), 5);
        assert_eq!(server.bodies()[3], Value::Null);
    }

    #[tokio::test]
    async fn image_parts_are_decoded_and_described() {
        let server = OpenAiServer::start().await.expect("start");
        // "hello" is 5 bytes; "hi" (aGk=) is 2.
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGVsbG8="}},
            {"type": "text", "text": "this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk"}},
        ]}]});
        let reply = post(&server, "/v1/chat/completions", &body.to_string(), None).await;
        assert_eq!(reply.content(), "echo: what is this? images=2 [image/jpeg 5 bytes] [image/png 2 bytes]");

        let body = json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "see"},
            {"type": "input_image", "image_url": "data:image/webp;base64,AAAA"},
        ]}]});
        let reply = post(&server, "/v1/responses", &body.to_string(), None).await;
        assert_eq!(reply.json()["output_text"], "echo: see images=1 [image/webp 3 bytes]");

        let bad = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}},
        ]}]});
        assert_eq!(post(&server, "/v1/chat/completions", &bad.to_string(), None).await.status, 400);
    }

    #[tokio::test]
    async fn concurrent_slow_requests_are_in_flight_together() {
        let server = OpenAiServer::start().await.expect("start");
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(chat(&server, "first [slow=300]"), chat(&server, "second [slow=300]"));
        assert_eq!((a.status, b.status), (200, 200));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(server.max_in_flight(), 2);
    }

    #[tokio::test]
    async fn dropping_the_server_stops_it() {
        let server = OpenAiServer::start().await.expect("start");
        let addr = server.addr;
        drop(server);
        // The abort takes effect when the runtime next runs the accept loop.
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the port still accepts connections after the server was dropped");
    }

    #[test]
    fn directives_parse_and_ignore_plain_brackets() {
        let d = Directives::parse("[note] [429 x2 after=1] [slow=50] [answer=[1, 2]] [x] [500]");
        assert_eq!(d.faults, vec![(Fault::RateLimit { after: Some(1) }, 2), (Fault::ServerError, 1)]);
        assert_eq!(d.slow, Some(Duration::from_millis(50)));
        assert_eq!(d.answer.as_deref(), Some("[1, 2]"));
        assert_eq!(d.fault(3), Some(Fault::ServerError));
        assert_eq!(d.fault(4), None);
        assert_eq!(Directives::parse("[429 xmany] [answer={unclosed"), Directives::default());
    }

    #[test]
    fn base64_lengths_follow_padding() {
        assert_eq!(decoded_len("aGVsbG8="), Some(5));
        assert_eq!(decoded_len("aGVsbG8"), Some(5));
        assert_eq!(decoded_len("aGVsbA=="), Some(4));
        assert_eq!(decoded_len(""), Some(0));
        assert_eq!(decoded_len("a"), None);
        assert_eq!(decoded_len("a$bc"), None);
        assert_eq!(decoded_len("aGk=="), None);
    }
}
