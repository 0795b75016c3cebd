//! A function binary's life as Lambda drives it, against a runtime API stand-in
//! (`e2e::runtime_api`) instead of the emulator: metrics leave the process before an answer is
//! complete (the stand-in freezes the process at that moment, as Lambda does), and SIGTERM
//! flushes what is left, closes the pools and exits 0.
//!
//! The functions run on the embedded SQLite database in a directory of their own, with the
//! sample events of `events/` (signed with `events/fixture.json`'s key).

use std::path::PathBuf;
use std::time::Duration;

use e2e::runtime_api::{Answer, FunctionProcess, RuntimeApi};
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn event(path: &str) -> (Vec<u8>, Value) {
    let bytes = std::fs::read(repository().join("events").join(path)).unwrap();
    let json = serde_json::from_slice(&bytes).unwrap();
    (bytes, json)
}

fn fixture(key: &str) -> String {
    let bytes = std::fs::read(repository().join("events/fixture.json")).unwrap();
    let fixture: Value = serde_json::from_slice(&bytes).unwrap();
    fixture[key].as_str().unwrap().to_string()
}

/// A data directory of its own for the embedded database; removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("favorites-lifecycle-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(binary: &str, runtime: &RuntimeApi, data: &DataDir, jwt_secret: &str) -> FunctionProcess {
    FunctionProcess::start(
        binary,
        runtime,
        &[
            ("FAVORITES_DATA_DIR", data.path()),
            ("JWT_SECRET", jwt_secret),
            ("BCRYPT_COST", "4"),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
        ],
    )
}

/// `(function, metric)` for every metric value in the EMF documents among `lines`.
fn emitted(lines: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for document in lines.iter().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        let Some(directives) = document["_aws"]["CloudWatchMetrics"].as_array() else {
            continue;
        };
        for directive in directives {
            assert_eq!(directive["Namespace"], "Favorites");
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(!document[name].is_null(), "{name} has no value: {document}");
                found.push((document["function"].as_str().unwrap().to_string(), name.to_string()));
            }
        }
    }
    found
}

fn has(found: &[(String, String)], function: &str, metric: &str) -> bool {
    found.iter().any(|(f, m)| f == function && m == metric)
}

/// The JSON log lines with this message.
fn logged(lines: &[String], message: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// The API Gateway answer of a buffered function: status and `x-request-id` values.
fn buffered_answer(answer: &Answer) -> (u64, Vec<String>) {
    assert!(!answer.streamed && !answer.error, "{answer:?}");
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    let ids = body["multiValueHeaders"]["x-request-id"]
        .as_array()
        .map(|ids| ids.iter().map(|id| id.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (body["statusCode"].as_u64().unwrap(), ids)
}

#[tokio::test]
async fn a_buffered_answer_sends_its_metrics_before_the_invocation_ends() {
    let runtime = RuntimeApi::start().await;
    let data = DataDir::new();
    let function = start("health", &runtime, &data, &fixture("jwt_secret"));
    assert_eq!(
        runtime.registered_extension(STARTUP).await,
        "favorites-graceful-shutdown",
        "registered for SIGTERM at cold start"
    );

    runtime.freeze_on_answer(&function);
    let (bytes, event) = event("health/ok-200.json");
    let invocation = runtime.invoke(bytes);
    let answer = runtime.answer(STARTUP).await;
    assert_eq!(answer.request_id, invocation);
    let (status, request_ids) = buffered_answer(&answer);
    assert_eq!(status, 200);
    assert_eq!(request_ids.len(), 1, "one X-Request-ID: {request_ids:?}");

    // Frozen since its answer was complete: this is all it wrote before that.
    let output = function.output();
    assert!(
        has(&emitted(&output), "health", "ColdStart"),
        "the cold start's metric was not written before the answer was complete: {output:#?}"
    );
    let finished = logged(&output, "request finished");
    assert_eq!(finished.len(), 1, "{output:#?}");
    let span = &finished[0]["span"];
    assert_eq!(span["lambda_request_id"], invocation.as_str());
    assert_eq!(span["apigw_request_id"], event["requestContext"]["requestId"]);
    assert_eq!(span["request_id"], request_ids[0].as_str());
    function.signal("CONT");
}

#[tokio::test]
async fn a_streamed_list_sends_its_metrics_before_its_stream_ends() {
    let runtime = RuntimeApi::start().await;
    let data = DataDir::new();
    let function = start("list-favorites", &runtime, &data, &fixture("jwt_secret"));
    runtime.registered_extension(STARTUP).await;

    runtime.freeze_on_answer(&function);
    let (bytes, _) = event("list-favorites/first-page-200.json");
    runtime.invoke(bytes);
    let answer = runtime.answer(STARTUP).await;
    assert!(answer.streamed && !answer.error, "{answer:?}");
    let prelude_end = answer
        .body
        .windows(8)
        .position(|w| w == [0u8; 8])
        .expect("a metadata prelude");
    let prelude: Value = serde_json::from_slice(&answer.body[..prelude_end]).unwrap();
    assert_eq!(prelude["statusCode"], 200);
    assert!(prelude["headers"]["x-request-id"].is_string(), "{prelude}");
    let list: Value = serde_json::from_slice(&answer.body[prelude_end + 8..]).unwrap();
    assert_eq!(
        list["data"],
        serde_json::json!([]),
        "the fixture user has no favorites here"
    );

    let output = function.output();
    let found = emitted(&output);
    assert!(
        has(&found, "list-favorites", "StreamedItems") && has(&found, "list-favorites", "ColdStart"),
        "the list's metrics were not written before its stream ended: {output:#?}"
    );
    let streamed = logged(&output, "list streamed");
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        streamed[0]["span"]["user_id"],
        fixture("user_id").as_str(),
        "lines written while the body streams carry the request's span"
    );
    function.signal("CONT");
}

#[tokio::test]
async fn sigterm_flushes_the_metrics_closes_the_pool_and_exits_0() {
    let runtime = RuntimeApi::start().await;
    let data = DataDir::new();
    let mut function = start("health", &runtime, &data, &fixture("jwt_secret"));
    runtime.registered_extension(STARTUP).await;

    // Never invoked: its ColdStart is still waiting to be sent.
    function.signal("TERM");
    let status = function
        .wait(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM");
    let output = function.output();
    assert_eq!(status.code(), Some(0), "{output:#?}");
    assert_eq!(logged(&output, "shutting down")[0]["signal"], "SIGTERM");
    let shut_down = logged(&output, "shut down");
    assert_eq!(shut_down.len(), 1, "{output:#?}");
    assert_eq!(shut_down[0]["closed"], "database pool");
    assert_eq!(shut_down[0]["in_time"], true);
    assert!(
        has(&emitted(&output), "health", "ColdStart"),
        "the pending metric was not flushed on SIGTERM: {output:#?}"
    );
}
