//! The runtime loop (`shared::runtime`) against the Runtime API stand-in of the end-to-end
//! tests: what the function posts for each kind of answer, and what the handler is given.
//! Each test serves a small router in this process, so that the handler can be made to panic
//! or to break its stream off.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use bytes::Bytes;
use e2e::runtime_api::{Answer, RuntimeApi};
use lambda_http::RequestExt;
use serde_json::{Value, json};
use shared::runtime::{ResponseMode, Runtime};

const WAIT: Duration = Duration::from_secs(30);

/// An API Gateway REST event for `GET path`.
fn event(path: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(include_bytes!("../../../events/health/ok-200.json")).unwrap();
    event["path"] = json!(path);
    event["resource"] = json!(path);
    event["requestContext"]["path"] = json!(path);
    event["requestContext"]["resourcePath"] = json!(path);
    // No stage in the routed path (what AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH does in production).
    event["requestContext"]["stage"] = json!("$default");
    serde_json::to_vec(&event).unwrap()
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/context",
            get(|request: Request| async move {
                let context = request.lambda_context_ref().expect("the Lambda context").clone();
                let header = request
                    .headers()
                    .get("x-amzn-trace-id")
                    .map(|v| v.to_str().unwrap().to_string());
                axum::Json(json!({
                    "request_id": context.request_id,
                    "function_arn": context.invoked_function_arn,
                    "deadline": context.deadline,
                    "trace_header": header,
                    "trace_env": std::env::var("_X_AMZN_TRACE_ID").ok(),
                }))
            }),
        )
        .route(
            "/broken",
            get(|| async {
                let chunks = futures::stream::iter([
                    Ok(Bytes::from_static(b"{\"data\":[")),
                    Err(std::io::Error::other("the database went away")),
                ]);
                Body::from_stream(chunks)
            }),
        )
        .route("/panic", get(panics))
}

async fn panics() -> &'static str {
    panic!("a bug")
}

async fn serving(mode: ResponseMode) -> RuntimeApi {
    let api = RuntimeApi::start().await;
    let runtime = Runtime::new(&api.address, Default::default()).unwrap();
    tokio::spawn(runtime.serve(router(), mode));
    api
}

async fn answer(api: &RuntimeApi, path: &str) -> Answer {
    let id = api.invoke(event(path));
    let answer = api.answer(WAIT).await;
    assert_eq!(answer.request_id, id);
    answer
}

/// A streamed answer's prelude and body.
fn split(answer: &Answer) -> (Value, &[u8]) {
    let at = answer
        .body
        .windows(8)
        .position(|w| w == [0; 8])
        .expect("the 8 NUL bytes after the prelude");
    (
        serde_json::from_slice(&answer.body[..at]).unwrap(),
        &answer.body[at + 8..],
    )
}

#[tokio::test]
async fn a_buffered_answer_is_the_api_gateway_response_document() {
    let api = serving(ResponseMode::Buffered).await;
    let answer = answer(&api, "/hello").await;
    assert!(!answer.error && !answer.streamed);
    let document: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(document["statusCode"], 200);
    assert_eq!(document["body"], "hello");
}

#[tokio::test]
async fn a_streamed_answer_is_the_prelude_eight_nuls_and_the_body() {
    let api = serving(ResponseMode::Streaming).await;
    let answer = answer(&api, "/hello").await;
    assert!(!answer.error && answer.streamed);
    let (prelude, body) = split(&answer);
    assert_eq!(prelude["statusCode"], 200);
    assert_eq!(prelude["headers"]["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, b"hello");
    assert_eq!(answer.stream_error, None);
}

#[tokio::test]
async fn a_stream_that_breaks_off_ends_with_the_error_trailer() {
    let api = serving(ResponseMode::Streaming).await;
    let answer = answer(&api, "/broken").await;
    assert!(answer.streamed);
    let (prelude, body) = split(&answer);
    assert_eq!(prelude["statusCode"], 200);
    assert_eq!(body, b"{\"data\":[");
    assert_eq!(answer.stream_error.as_deref(), Some("Runtime.StreamError"));
}

#[tokio::test]
async fn the_handler_gets_the_invocation_context_and_trace_id() {
    let api = serving(ResponseMode::Buffered).await;
    let answer = answer(&api, "/context").await;
    let document: Value = serde_json::from_slice(&answer.body).unwrap();
    let seen: Value = serde_json::from_str(document["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["request_id"], answer.request_id.as_str());
    assert_eq!(
        seen["function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    );
    assert!(seen["deadline"].as_u64().unwrap() > 0);
    // The stand-in's trace id, as the X-Ray SDKs and the AWS SDK read it.
    assert_eq!(seen["trace_header"], "Root=1-00000000-000000000000000000000000");
    assert_eq!(seen["trace_env"], "Root=1-00000000-000000000000000000000000");
}

#[tokio::test]
async fn a_panic_is_reported_as_the_invocations_error_and_the_function_serves_on() {
    let api = serving(ResponseMode::Streaming).await;
    let failed = answer(&api, "/panic").await;
    assert!(failed.error);
    let diagnostic: Value = serde_json::from_slice(&failed.body).unwrap();
    assert_eq!(diagnostic["errorType"], "Runtime.Panic");
    assert!(diagnostic["errorMessage"].as_str().unwrap().contains("a bug"));
    let next = answer(&api, "/hello").await;
    assert!(!next.error);
}

#[tokio::test]
async fn an_event_that_is_no_http_request_is_reported_as_the_invocations_error() {
    let api = serving(ResponseMode::Buffered).await;
    let id = api.invoke(b"{\"not\": \"api gateway\"}".to_vec());
    let answer = api.answer(WAIT).await;
    assert_eq!(answer.request_id, id);
    assert!(answer.error);
    let diagnostic: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(diagnostic["errorType"], "Runtime.InvalidEvent");
}

#[tokio::test]
async fn a_failed_cold_start_is_reported_to_init_error() {
    let api = RuntimeApi::start().await;
    let runtime = Runtime::new(&api.address, Default::default()).unwrap();
    let started = runtime
        .init(async { Err::<(), lambda_http::Error>("JWT_SECRET is required".into()) })
        .await;
    assert!(started.is_err());
    let answer = api.answer(WAIT).await;
    assert_eq!(answer.request_id, "init");
    assert!(answer.error);
    let diagnostic: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(diagnostic["errorType"], "Runtime.InitError");
    assert_eq!(diagnostic["errorMessage"], "JWT_SECRET is required");
}
