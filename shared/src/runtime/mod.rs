//! The Lambda runtime loop: poll the Runtime API for an invocation, hand it to the function,
//! post the answer, again. Ours rather than `lambda_runtime::run` for one reason: every
//! connection to the Runtime API must have `TCP_NODELAY`, and lambda_runtime 1.5 builds its
//! own client (`Runtime::new`) with Nagle's algorithm on and no way to change it. A streamed
//! answer goes out in several small writes, and on such a connection each one after the first
//! waits for the previous one's ACK, which the receiver may delay by up to 40 ms
//! (docs/upstream/lambda-runtime-nodelay.md has the measurements and the upstream proposal).
//!
//! Only the loop and the wire format of the answers are ours; everything else is the upstream
//! crates' public API: the Runtime API client (`lambda_runtime_api_client::PooledClient`, given
//! a connector with `TCP_NODELAY`), the invocation context (`lambda_runtime::Context`, parsed
//! from the `next` response's headers), and lambda_http's conversion of API Gateway events to
//! requests and of responses back (`Adapter` for buffered answers, `StreamAdapter` for
//! streamed ones, which also put the context and the X-Ray trace header into the request).
//!
//! What it keeps of lambda_runtime's behaviour: panics and errors of the handler are reported
//! as invocation errors; `_X_AMZN_TRACE_ID` holds the invocation's trace id; a streamed answer
//! is the metadata prelude, 8 NUL bytes, then the body, with the error trailers when the body
//! fails midway. What it adds: a failed cold start is reported to `/runtime/init/error`; a
//! failure to deliver one answer (a client that hung up, under an emulator) is logged and the
//! loop goes on; a streamed answer leaves in as few writes as its body allows ([`stream`]).
//!
//! This module owns the Lambda lifecycle only: it serves any `Router` and imports no adapter.

mod extension;
mod stream;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use lambda_http::lambda_runtime::{Config, Context, Diagnostic, LambdaEvent, MetadataPrelude};
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error, StreamAdapter};
use lambda_runtime_api_client::PooledClient;
use lambda_runtime_api_client::body::Body;
use tower::Service;

pub use extension::{RegisteredExtension, register_extension};

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
/// Sent by newer Runtime APIs with each invocation and echoed with its answer, so that an
/// answer to an invocation that already timed out is refused rather than taken for another.
const INVOCATION_ID: &str = "lambda-runtime-invocation-id";

/// How a function answers: as one JSON document, or streamed (the API Gateway integration of
/// a streaming function reads a metadata prelude, then the body as it is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Buffered,
    Streaming,
}

/// A connection to the Runtime API and the function's configuration, for one process.
pub struct Runtime {
    api: PooledClient,
    config: Arc<Config>,
}

impl Runtime {
    /// The Runtime API of `AWS_LAMBDA_RUNTIME_API`, and the function's configuration from the
    /// variables Lambda sets.
    pub fn from_env() -> Result<Self, Error> {
        let endpoint = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set: not started by a Lambda runtime")?;
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let config = Config {
            function_name: var("AWS_LAMBDA_FUNCTION_NAME"),
            memory: var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").parse().unwrap_or_default(),
            version: var("AWS_LAMBDA_FUNCTION_VERSION"),
            log_stream: var("AWS_LAMBDA_LOG_STREAM_NAME"),
            log_group: var("AWS_LAMBDA_LOG_GROUP_NAME"),
        };
        Self::new(&endpoint, config)
    }

    /// The Runtime API at `endpoint` (`host:port`, as in `AWS_LAMBDA_RUNTIME_API`).
    pub fn new(endpoint: &str, config: Config) -> Result<Self, Error> {
        Ok(Self {
            api: api_client(endpoint)?,
            config: Arc::new(config),
        })
    }

    /// Runs the cold start `init`; when it fails, tells Lambda why (`/runtime/init/error`,
    /// which Lambda shows as the reason of the failed start) before passing the error on.
    pub async fn init<T>(&self, init: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let error = match init.await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let diagnostic = Diagnostic {
            error_type: "Runtime.InitError".into(),
            error_message: error.to_string(),
        };
        let request = post("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(json_body(&diagnostic));
        match request {
            Ok(request) => {
                if let Err(report) = self.send(request).await {
                    tracing::warn!(error = %report, "the failed cold start could not be reported to the Runtime API");
                }
            }
            Err(report) => tracing::warn!(error = %report, "the failed cold start could not be reported"),
        }
        Err(error)
    }

    /// Serves `router` until the process ends.
    pub async fn serve(self, router: Router, mode: ResponseMode) -> Infallible {
        self.run(HttpHandler { router, mode }).await
    }

    /// Serves a function that takes and answers any JSON document (not an HTTP request):
    /// `handler`'s error is reported as the invocation's error.
    pub async fn serve_events<F, Fut>(self, handler: F) -> Infallible
    where
        F: FnMut(LambdaEvent<serde_json::Value>) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, Error>>,
    {
        self.run(EventHandler(handler)).await
    }

    /// The loop. A failure to fetch an invocation is retried with a growing pause (a Runtime
    /// API that is really gone means the sandbox is being torn down, and this cannot outlive
    /// it); a failure to deliver one answer ends that invocation only.
    async fn run(self, mut handler: impl Handler) -> Infallible {
        const FIRST_PAUSE: Duration = Duration::from_millis(10);
        let mut pause = FIRST_PAUSE;
        loop {
            let next = match self.next().await {
                Ok(Some(next)) => next,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(error = %error, pause_ms = pause.as_millis() as u64, "no invocation from the Runtime API; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            pause = FIRST_PAUSE;
            if let Err(error) = self.invoke(&mut handler, next).await {
                tracing::warn!(error = %error, "an invocation could not be answered; serving on");
            }
        }
    }

    /// The next invocation: `None` when the Runtime API answered without one (`cargo lambda
    /// watch` answers 204 to keep a runtime polling).
    async fn next(&self) -> Result<Option<Invocation>, Error> {
        let request = lambda_runtime_api_client::build_request()
            .method(Method::GET)
            .uri("/2018-06-01/runtime/invocation/next")
            .body(Body::empty())?;
        let reply = call(&self.api, request).await?;
        if reply.status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let reply = reply.success("GET next")?;
        Ok(Some(Invocation {
            headers: reply.headers,
            payload: reply.body,
        }))
    }

    /// Hands one invocation to the handler and posts what came of it.
    async fn invoke(&self, handler: &mut impl Handler, next: Invocation) -> Result<(), Error> {
        let request_id = next
            .headers
            .get(REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .ok_or("an invocation without a request id")?
            .to_owned();
        let invocation_id = next.headers.get(INVOCATION_ID).cloned();
        let answer = match Context::new(&request_id, self.config.clone(), &next.headers) {
            Ok(context) => {
                set_trace_id(context.xray_trace_id.as_deref());
                // The handler's own code runs inside the future, so that a panic in it, early
                // or late, is caught here and becomes the invocation's error.
                AssertUnwindSafe(async { handler.invoke(next.payload, context).await })
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(panicked(&panic)))
            }
            Err(error) => Err(Diagnostic {
                error_type: "Runtime.InvalidInvocation".into(),
                error_message: format!("the invocation's headers do not parse: {error}"),
            }),
        };
        let path = format!("/2018-06-01/runtime/invocation/{request_id}");
        let mut request = match answer {
            Ok(Answer::Buffered(json)) => post(&format!("{path}/response")).body(Body::from(json))?,
            Ok(Answer::Streaming(prelude, body)) => stream::request(&format!("{path}/response"), prelude, body).await?,
            Err(diagnostic) => {
                tracing::error!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "the invocation failed");
                post(&format!("{path}/error"))
                    .header("lambda-runtime-function-error-type", "unhandled")
                    .body(json_body(&diagnostic))?
            }
        };
        if let Some(invocation_id) = invocation_id {
            request.headers_mut().insert(INVOCATION_ID, invocation_id);
        }
        self.send(request).await
    }

    /// Posts an answer or an error report; 410 (the invocation timed out meanwhile) and 413
    /// (the answer is too large) come back as errors.
    async fn send(&self, request: Request<Body>) -> Result<(), Error> {
        call(&self.api, request)
            .await?
            .success("the Runtime API, given the answer,")?;
        Ok(())
    }
}

/// What the Runtime API answered, read to the end, so that the connection goes back to the
/// pool for the next request.
struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    /// The reply when it is a success; else an error saying what `who` answered.
    fn success(self, who: &str) -> Result<Self, Error> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(format!(
            "{who} answered {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        )
        .into())
    }
}

async fn call(api: &PooledClient, request: Request<Body>) -> Result<Reply, Error> {
    let (parts, body) = api.call(request).await?.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// A client for the Runtime API whose connections have `TCP_NODELAY`: each request and answer
/// leaves at once instead of waiting for the ACK of the one before. Used by the runtime loop
/// and the internal extension alike.
fn api_client(endpoint: &str) -> Result<PooledClient, Error> {
    let base = format!("http://{}", endpoint.trim_start_matches("http://"))
        .parse()
        .map_err(|e| format!("AWS_LAMBDA_RUNTIME_API {endpoint:?} is not host:port: {e}"))?;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    Ok(PooledClient::builder()
        .with_connector(connector)
        .with_endpoint(base)
        .build())
}

/// An invocation as `GET next` gives it: its headers (ids, deadline, trace) and the event.
struct Invocation {
    headers: http::HeaderMap,
    payload: Bytes,
}

/// What a handler made of an invocation.
enum Answer {
    /// One JSON document.
    Buffered(Vec<u8>),
    /// The metadata prelude (status, headers, cookies), then the body as it is produced.
    Streaming(MetadataPrelude, stream::BodyStream),
}

/// A function, as the loop calls it.
trait Handler {
    fn invoke(&mut self, payload: Bytes, context: Context) -> impl Future<Output = Result<Answer, Diagnostic>>;
}

struct HttpHandler {
    router: Router,
    mode: ResponseMode,
}

impl Handler for HttpHandler {
    async fn invoke(&mut self, payload: Bytes, context: Context) -> Result<Answer, Diagnostic> {
        let event: LambdaRequest = parse_event(&payload)?;
        let event = LambdaEvent::new(event, context);
        // The adapters are called without `ready()`, and dropped before the await: an axum
        // Router is always ready, and an adapter is not Send (it holds a `PhantomData<&Body>`).
        let router = self.router.clone();
        match self.mode {
            ResponseMode::Buffered => {
                let call = Adapter::from(router).call(event);
                let response = call.await.map_err(never)?;
                let json = serde_json::to_vec(&response).map_err(|e| diagnostic("Runtime.SerializationError", e))?;
                Ok(Answer::Buffered(json))
            }
            ResponseMode::Streaming => {
                let call = StreamAdapter::from(router).call(event);
                let response = call.await.map_err(never)?;
                let body = response.stream.map_err(Error::from).boxed();
                Ok(Answer::Streaming(response.metadata_prelude, body))
            }
        }
    }
}

struct EventHandler<F>(F);

impl<F, Fut> Handler for EventHandler<F>
where
    F: FnMut(LambdaEvent<serde_json::Value>) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, Error>>,
{
    async fn invoke(&mut self, payload: Bytes, context: Context) -> Result<Answer, Diagnostic> {
        let event = parse_event(&payload)?;
        let answer = (self.0)(LambdaEvent::new(event, context)).await?;
        let json = serde_json::to_vec(&answer).map_err(|e| diagnostic("Runtime.SerializationError", e))?;
        Ok(Answer::Buffered(json))
    }
}

fn parse_event<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(payload))
        .map_err(|e| diagnostic("Runtime.InvalidEvent", format!("the event does not parse: {e}")))
}

fn diagnostic(error_type: &str, error: impl std::fmt::Display) -> Diagnostic {
    Diagnostic {
        error_type: error_type.into(),
        error_message: error.to_string(),
    }
}

/// axum's router never fails: its errors are answers.
fn never(error: Infallible) -> Diagnostic {
    match error {}
}

fn panicked(panic: &Box<dyn std::any::Any + Send>) -> Diagnostic {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    tracing::error!(panic = %message, "the handler panicked");
    diagnostic("Runtime.Panic", format!("the handler panicked: {message}"))
}

fn post(path: &str) -> http::request::Builder {
    lambda_runtime_api_client::build_request()
        .method(Method::POST)
        .uri(path)
}

fn json_body<T: serde::Serialize>(value: &T) -> Body {
    Body::from(serde_json::to_vec(value).unwrap_or_default())
}

/// `_X_AMZN_TRACE_ID`, where the X-Ray SDKs (and the AWS SDK's recursion detection, which
/// forwards it on calls to AWS) read the current invocation's trace id, as lambda_runtime
/// sets it. lambda_http also puts it into each request's `x-amzn-trace-id` header.
fn set_trace_id(trace_id: Option<&str>) {
    // SAFETY: a write to the environment races only with reads through libc in another thread
    // (Rust's `std::env` readers take the lock this write takes). It happens where
    // lambda_runtime does it, between invocations, before the handler runs, when this
    // process's other threads are idle or in hyper's and the clients' I/O, which read no
    // environment; a DNS lookup of a background reconnect (getaddrinfo reads RES_OPTIONS) is
    // the one reader that could overlap, the risk lambda_runtime takes too.
    unsafe {
        match trace_id {
            Some(trace_id) => std::env::set_var("_X_AMZN_TRACE_ID", trace_id),
            None => std::env::remove_var("_X_AMZN_TRACE_ID"),
        }
    }
}

/// The header value of a trailer or header we build from our own text.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
