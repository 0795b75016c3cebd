//! A stand-in for Lambda's Runtime API and Extensions API, to test a function binary's whole
//! life as Lambda drives it: cold start (extension registration), invocations (buffered or
//! streamed answers) and shutdown (SIGTERM). Unlike `cargo lambda watch`, it can do what
//! Lambda does the moment an answer is complete: freeze the process (SIGSTOP). Whatever the
//! function had not written by then would, in Lambda, wait for a thaw that may never come.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, mpsc};

/// An answer the function posted: its invocation, whether it was an error report, whether it
/// was streamed, and the body as sent (for a stream: the metadata prelude, 8 NUL bytes, then
/// the HTTP body), with the error type of a stream that broke off (its trailer).
#[derive(Debug)]
pub struct Answer {
    pub request_id: String,
    pub error: bool,
    pub streamed: bool,
    pub body: Vec<u8>,
    pub stream_error: Option<String>,
}

struct Inner {
    events: Mutex<VecDeque<(String, Vec<u8>)>>,
    event_added: Notify,
    answers: mpsc::UnboundedSender<Answer>,
    extensions: mpsc::UnboundedSender<String>,
    /// A process to SIGSTOP as soon as an answer has been read to its end.
    freeze: Mutex<Option<u32>>,
}

pub struct RuntimeApi {
    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub address: String,
    inner: Arc<Inner>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    extensions: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (extensions_tx, extensions) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            events: Mutex::new(VecDeque::new()),
            event_added: Notify::new(),
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            address,
            inner,
            answers: tokio::sync::Mutex::new(answers),
            extensions: tokio::sync::Mutex::new(extensions),
        }
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
        tokio::time::timeout(within, self.answers.lock().await.recv())
            .await
            .expect("the function did not answer in time")
            .unwrap()
    }

    /// The name of the next extension the function registers.
    pub async fn registered_extension(&self, within: Duration) -> String {
        tokio::time::timeout(within, self.extensions.lock().await.recv())
            .await
            .expect("the function registered no extension in time")
            .unwrap()
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
    loop {
        let notified = inner.event_added.notified();
        let event = inner.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 60_000;
            return (
                [
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
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

async fn take_answer(inner: &Inner, request_id: String, error: bool, headers: &HeaderMap, body: Body) -> StatusCode {
    let (body, stream_error) = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => {
            let stream_error = collected
                .trailers()
                .and_then(|trailers| trailers.get("lambda-runtime-function-error-type"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (collected.to_bytes().to_vec(), stream_error)
        }
        Err(_) => (Vec::new(), None),
    };
    if let Some(pid) = inner.freeze.lock().unwrap().take() {
        signal(pid, "STOP");
    }
    let streamed = header(headers, "lambda-runtime-function-response-mode") == "streaming";
    let _ = inner.answers.send(Answer {
        request_id,
        error,
        streamed,
        body,
        stream_error,
    });
    StatusCode::ACCEPTED
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

/// A function binary running against a [`RuntimeApi`], its stdout and stderr collected line by
/// line. Killed when dropped.
pub struct FunctionProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl FunctionProcess {
    /// Starts the workspace's debug build of `binary` (`cargo build --workspace` first; `make
    /// test` does) with nothing from our environment but `PATH` and `HOME`, and `env`.
    pub fn start(binary: &str, runtime: &RuntimeApi, env: &[(&str, &str)]) -> Self {
        let path = binary_path(binary);
        let mut child = Command::new(&path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
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
        Self { child, lines }
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
