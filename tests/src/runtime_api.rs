//! A stand-in for Lambda's Runtime API and Extensions API, to test and measure a function
//! binary's whole life as Lambda drives it: cold start (extension registration), invocations
//! (buffered or streamed answers) and shutdown (SIGTERM). Unlike `cargo lambda watch`, it can do
//! what Lambda does the moment an answer is complete: freeze the process (SIGSTOP). Whatever the
//! function had not written by then would, in Lambda, wait for a thaw that may never come.
//!
//! For the benchmarks it also times each invocation (the function asking for it, the event
//! handed over, the last byte of the answer read), counts what an answer carried without
//! keeping it all (a list of a million favorites is 370 MiB), and can acknowledge every TCP
//! segment at once ([`Acks::Quick`]): the functions' runtime client sends with Nagle's algorithm
//! on and writes a streamed answer in several small pieces, so against a receiver that delays
//! its ACKs (Linux, up to 40 ms) a piece can wait for the ACK of the previous one. With quick
//! ACKs, what is measured is the function's own time, without those stalls.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// What separates a streamed answer's metadata prelude from its HTTP body.
const STREAM_SEPARATOR: &[u8] = &[0; 8];
/// One favorite in a listed body: every favorite's JSON has it once (see `ListedFavorite`).
const ITEM_MARK: &[u8] = b"\"created_at\":";
/// How much of an answer's end [`Answer::tail`] keeps.
const TAIL_BYTES: usize = 256;
/// The deadline handed with every invocation; nothing enforces it, the runtime client reports it.
const INVOCATION_DEADLINE: Duration = Duration::from_secs(900);

/// How the stand-in acknowledges what it receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Acks {
    /// The kernel's default: delayed ACKs, as any Linux receiver.
    #[default]
    Delayed,
    /// `TCP_QUICKACK` before every read (Linux turns it off again by itself) and `TCP_NODELAY`
    /// on what the stand-in sends.
    Quick,
}

/// How a [`RuntimeApi`] behaves.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub acks: Acks,
    /// The most bytes of an answer's body kept in [`Answer::body`]; all of them are counted.
    pub body_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            acks: Acks::Delayed,
            body_limit: usize::MAX,
        }
    }
}

/// An answer the function posted: its invocation, whether it was an error report (posted to
/// `…/error`, or a stream ended with an error trailer), whether it was streamed, and the body as
/// sent (for a stream: the metadata prelude, 8 NUL bytes, then the HTTP body), up to
/// [`Options::body_limit`] bytes, and the error type of a stream that broke off (its trailer).
#[derive(Debug)]
pub struct Answer {
    pub request_id: String,
    pub error: bool,
    pub streamed: bool,
    pub body: Vec<u8>,
    /// The error type in the trailer of a stream that broke off.
    pub stream_error: Option<String>,
    /// The last bytes of the body (at most 256), wherever `body` stopped.
    pub tail: Vec<u8>,
    /// Bytes of the whole body.
    pub bytes: u64,
    /// Favorites in the whole body (`"created_at":` marks).
    pub items: u64,
    /// When the function's `next` request that got this invocation arrived.
    pub asked_at: Instant,
    /// When the event was handed to the function.
    pub handed_at: Instant,
    /// When the last byte of the answer had been read.
    pub answered_at: Instant,
}

impl Answer {
    /// The API Gateway status code: from the prelude of a streamed answer, or the `statusCode`
    /// of a buffered one; `None` for an answer that is not an API Gateway response.
    pub fn status(&self) -> Option<u16> {
        let prelude = match self.streamed {
            true => &self.body[..find(&self.body, STREAM_SEPARATOR)?],
            false => &self.body[..],
        };
        let document: serde_json::Value = serde_json::from_slice(prelude).ok()?;
        document["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok())
    }

    /// The HTTP body as far as it was kept: after the prelude of a streamed answer, the `body`
    /// field of a buffered one, or the whole answer of a plain invocation.
    pub fn http_body(&self) -> Vec<u8> {
        if self.streamed {
            return match find(&self.body, STREAM_SEPARATOR) {
                Some(end) => self.body[end + STREAM_SEPARATOR.len()..].to_vec(),
                None => Vec::new(),
            };
        }
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(document) if document.get("statusCode").is_some() => {
                let body = document["body"].as_str().unwrap_or_default();
                if document["isBase64Encoded"].as_bool() == Some(true) {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap_or_default()
                } else {
                    body.as_bytes().to_vec()
                }
            }
            _ => self.body.clone(),
        }
    }

    /// From the event handed over to the last byte of the answer: what a warm invocation costs.
    pub fn invocation_time(&self) -> Duration {
        self.answered_at - self.handed_at
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

struct Inner {
    options: Options,
    events: Mutex<VecDeque<(String, Vec<u8>)>>,
    event_added: Notify,
    /// Per invocation handed over: when its `next` arrived and when the event left.
    handed: Mutex<HashMap<String, (Instant, Instant)>>,
    answers: mpsc::UnboundedSender<Answer>,
    extensions: mpsc::UnboundedSender<String>,
    /// A process to SIGSTOP as soon as an answer has been read to its end.
    freeze: Mutex<Option<u32>>,
}

/// The runtime API of one execution environment, on a free port of 127.0.0.1; stops serving
/// when dropped.
pub struct RuntimeApi {
    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub address: String,
    inner: Arc<Inner>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    extensions: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        Self::start_with(Options::default())
            .await
            .expect("starting the runtime API stand-in")
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (extensions_tx, extensions) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            options,
            events: Mutex::new(VecDeque::new()),
            event_added: Notify::new(),
            handed: Mutex::new(HashMap::new()),
            answers: answers_tx,
            extensions: extensions_tx,
            freeze: Mutex::new(None),
        });
        let router = Router::new()
            .route("/2020-01-01/extension/register", post(register))
            .route("/2020-01-01/extension/event/next", get(std::future::pending::<()>))
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the runtime API stand-in to 127.0.0.1")?;
        let address = format!("127.0.0.1:{}", listener.local_addr()?.port());
        let listener = AckListener {
            listener,
            acks: options.acks,
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            inner,
            answers: tokio::sync::Mutex::new(answers),
            extensions: tokio::sync::Mutex::new(extensions),
            server,
        })
    }

    /// Queues an invocation with this event; returns its request id.
    pub fn invoke(&self, event: Vec<u8>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner.events.lock().unwrap().push_back((id.clone(), event));
        self.inner.event_added.notify_one();
        id
    }

    /// Freezes `function` (SIGSTOP) the moment its next answer has been read to the end, before
    /// the answer is acknowledged: as Lambda freezes an instance once its answer is complete.
    pub fn freeze_on_answer(&self, function: &FunctionProcess) {
        *self.inner.freeze.lock().unwrap() = Some(function.pid());
    }

    pub async fn answer(&self, within: Duration) -> Answer {
        self.try_answer(within)
            .await
            .expect("the function did not answer in time")
    }

    /// The next answer, or `None` when none came within `within`.
    pub async fn try_answer(&self, within: Duration) -> Option<Answer> {
        tokio::time::timeout(within, self.answers.lock().await.recv())
            .await
            .ok()
            .flatten()
    }

    /// Invokes the function with `event` and waits for its answer, at most `within`.
    pub async fn call(&self, event: Vec<u8>, within: Duration) -> anyhow::Result<Answer> {
        let id = self.invoke(event);
        let answer = self
            .try_answer(within)
            .await
            .with_context(|| format!("the function did not answer within {within:?}"))?;
        anyhow::ensure!(
            answer.request_id == id,
            "an answer to {} came instead of {id}",
            answer.request_id
        );
        Ok(answer)
    }

    /// The name of the next extension the function registers.
    pub async fn registered_extension(&self, within: Duration) -> String {
        tokio::time::timeout(within, self.extensions.lock().await.recv())
            .await
            .expect("the function registered no extension in time")
            .unwrap()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn register(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let name = header(&headers, "lambda-extension-name");
    let _ = inner.extensions.send(name);
    (
        [("lambda-extension-identifier", uuid::Uuid::new_v4().to_string())],
        axum::Json(serde_json::json!({
            "functionName": "test-function",
            "functionVersion": "$LATEST",
            "handler": "bootstrap",
        })),
    )
        .into_response()
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    let asked_at = Instant::now();
    loop {
        let notified = inner.event_added.notified();
        let event = inner.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                + INVOCATION_DEADLINE;
            inner
                .handed
                .lock()
                .unwrap()
                .insert(id.clone(), (asked_at, Instant::now()));
            return (
                [
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:test-function".to_string(),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000".to_string(),
                    ),
                ],
                event,
            )
                .into_response();
        }
        notified.await;
    }
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    take_answer(&inner, id, false, &headers, body).await
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> StatusCode {
    take_answer(&inner, id, true, &headers, body).await
}

async fn init_error(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Body) -> StatusCode {
    take_answer(&inner, "init".into(), true, &headers, body).await
}

/// Reads an answer to its end, counting it as it arrives and keeping what the options say.
async fn take_answer(inner: &Inner, request_id: String, error: bool, headers: &HeaderMap, body: Body) -> StatusCode {
    let mut counted = Counted::new(inner.options.body_limit);
    let mut stream_error = None;
    let mut body = body;
    while let Some(Ok(frame)) = body.frame().await {
        match frame.into_data() {
            Ok(data) => counted.take(&data),
            Err(frame) => {
                let error_type = frame
                    .trailers_ref()
                    .and_then(|t| t.get("lambda-runtime-function-error-type"))
                    .map(|v| v.to_str().unwrap_or("(not text)").to_string());
                stream_error = stream_error.or(error_type);
            }
        }
    }
    let answered_at = Instant::now();
    if let Some(pid) = inner.freeze.lock().unwrap().take() {
        signal(pid, "STOP");
    }
    let (asked_at, handed_at) = inner
        .handed
        .lock()
        .unwrap()
        .remove(&request_id)
        .unwrap_or((answered_at, answered_at));
    let streamed = header(headers, "lambda-runtime-function-response-mode") == "streaming";
    let _ = inner.answers.send(Answer {
        request_id,
        error: error || stream_error.is_some(),
        streamed,
        body: counted.kept,
        stream_error,
        tail: counted.tail,
        bytes: counted.bytes,
        items: counted.items,
        asked_at,
        handed_at,
        answered_at,
    });
    StatusCode::ACCEPTED
}

/// A body as it arrives: its first bytes kept (up to a limit), its last ones, its bytes and
/// favorites counted. The benchmarks count HTTP answers with it too.
pub struct Counted {
    limit: usize,
    pub kept: Vec<u8>,
    pub tail: Vec<u8>,
    pub bytes: u64,
    pub items: u64,
    /// The end of the previous piece that could be the start of a mark split between pieces
    /// (shorter than a mark, so that no mark is counted twice).
    carry: Vec<u8>,
}

impl Counted {
    /// Keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            kept: Vec::new(),
            tail: Vec::new(),
            bytes: 0,
            items: 0,
            carry: Vec::new(),
        }
    }

    pub fn take(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..room.min(data.len())]);
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(data);
        self.items += window.windows(ITEM_MARK.len()).filter(|w| *w == ITEM_MARK).count() as u64;
        self.carry = window[window.len().saturating_sub(ITEM_MARK.len() - 1)..].to_vec();
        self.tail
            .extend_from_slice(&data[data.len().saturating_sub(TAIL_BYTES)..]);
        let excess = self.tail.len().saturating_sub(TAIL_BYTES);
        self.tail.drain(..excess);
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// Accepts connections whose reads acknowledge at once, with [`Acks::Quick`].
struct AckListener {
    listener: TcpListener,
    acks: Acks,
}

impl axum::serve::Listener for AckListener {
    type Io = AckStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    if self.acks == Acks::Quick {
                        let _ = stream.set_nodelay(true);
                    }
                    let acks = self.acks;
                    return (AckStream { stream, acks }, address);
                }
                // Out of file descriptors and the like: wait, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that, with [`Acks::Quick`], turns quick ACKs on before every read: Linux leaves
/// quick-ACK mode by itself after a while, so once per connection is not enough.
struct AckStream {
    stream: TcpStream,
    acks: Acks,
}

impl AsyncRead for AckStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.acks == Acks::Quick {
            let _ = socket2::SockRef::from(&this.stream).set_tcp_quickack(true);
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AckStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A function binary running against a [`RuntimeApi`], its stdout and stderr collected line by
/// line. Killed when dropped.
pub struct FunctionProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Just before the process was spawned.
    pub started_at: Instant,
}

impl FunctionProcess {
    /// Starts the workspace's debug build of `binary` (`cargo build --workspace` first; `make
    /// test` does) with nothing from our environment but `PATH` and `HOME`, and `env`.
    pub fn start(binary: &str, runtime: &RuntimeApi, env: &[(&str, &str)]) -> Self {
        let path = binary_path(binary);
        let mut all: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), std::env::var("HOME").unwrap_or_default()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), binary.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "512".into()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::spawn(&path, runtime, &all).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts the binary at `path` with exactly `env` and `AWS_LAMBDA_RUNTIME_API`, nothing
    /// inherited: as Lambda starts a function.
    pub fn spawn(path: &FsPath, runtime: &RuntimeApi, env: &[(String, String)]) -> anyhow::Result<Self> {
        let mut command = Command::new(path);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started_at = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Ok(Self {
            child,
            lines,
            started_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines written so far, once nothing new has arrived for a moment (bounded).
    pub fn output(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let count = self.lines.lock().unwrap().len();
            if count == seen || Instant::now() > deadline {
                return self.lines.lock().unwrap().clone();
            }
            seen = count;
        }
    }

    /// The last `n` lines written so far, at once (for an error message).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/<binary>`, beside the directory of the running test binary.
fn binary_path(binary: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile_dir = test.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join(binary);
    assert!(
        path.exists(),
        "{} is missing: build the functions first (cargo build --workspace; make test does)",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_marks_split_between_pieces_once() {
        let body = br#"{"data":[{"id":"a","created_at":"x"},{"id":"b","created_at":"y"}],"next_cursor":null}"#;
        for split in 0..body.len() {
            let mut counted = Counted::new(10);
            counted.take(&body[..split]);
            counted.take(&body[split..]);
            assert_eq!(counted.items, 2, "split at {split}");
            assert_eq!(counted.bytes, body.len() as u64);
            assert_eq!(counted.kept, &body[..10]);
            assert!(counted.tail.ends_with(br#"],"next_cursor":null}"#));
        }
    }
}
