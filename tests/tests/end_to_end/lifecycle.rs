//! A function binary's life as Lambda drives it, against a runtime API stand-in
//! (`e2e::runtime_api`) instead of the emulator: metrics leave the process before an answer is
//! complete (the stand-in freezes the process at that moment, as Lambda does), and SIGTERM
//! flushes what is left, closes the pools and exits 0.
//!
//! The functions run on the embedded SQLite database in a directory of their own, with the
//! sample events of `events/` (signed with `events/fixture.json`'s key). Also: every sample
//! event replayed through its binary, on Postgres; and the dashboard's and alarms' metrics
//! against what the functions print.

use std::path::PathBuf;
use std::time::Duration;

use e2e::events::fixture;
use e2e::runtime_api::{Answer, FunctionProcess, RuntimeApi};
use e2e::template::repo_root;
use serde_json::Value;
use shared::config::DatabaseSettings;

const STARTUP: Duration = Duration::from_secs(60);

fn event(path: &str) -> (Vec<u8>, Value) {
    let bytes = std::fs::read(repo_root().join("events").join(path)).unwrap();
    let json = serde_json::from_slice(&bytes).unwrap();
    (bytes, json)
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

    /// The fixture user, in the embedded database a function started here has created and
    /// migrated (the sample events are signed for them).
    async fn insert_fixture_user(&self) {
        let path = shared::development::database_path(&self.0);
        let url = format!("sqlite://{}", path.display());
        let database = shared::adapters::sql::Database::connect(&DatabaseSettings::for_url(&url), None)
            .await
            .unwrap();
        e2e::events::insert_fixture_user(&database).await.unwrap();
        database.close().await;
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
            assert_eq!(directive["Dimensions"], serde_json::json!([["function"]]), "{document}");
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
    let function = start("health", &runtime, &data, &fixture().jwt_secret);
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
    let function = start("list-favorites", &runtime, &data, &fixture().jwt_secret);
    runtime.registered_extension(STARTUP).await;
    data.insert_fixture_user().await;

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
        fixture().user_id.as_str(),
        "lines written while the body streams carry the request's span"
    );
    function.signal("CONT");
}

#[tokio::test]
async fn sigterm_flushes_the_metrics_closes_the_pool_and_exits_0() {
    let runtime = RuntimeApi::start().await;
    let data = DataDir::new();
    let mut function = start("health", &runtime, &data, &fixture().jwt_secret);
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

/// Every sample event of `events/` delivered to its function's binary as Lambda delivers it
/// (through the runtime API, parsed by lambda_http), against a fresh Postgres database holding
/// the fixture user: the answer's status is the one the event's name promises
/// (`events/<function>/<case>-<status>.json`), an error's JSON:API body says the same status,
/// every answer carries one X-Request-ID, and the list streams while the others do not.
#[tokio::test]
async fn every_event_through_its_binary_gets_the_status_its_name_promises() {
    let database = e2e::database::TestDatabase::create(&e2e::database::admin_url().unwrap(), "favorites_events", None)
        .await
        .unwrap();
    let users = shared::adapters::sql::Database::connect(&DatabaseSettings::for_url(&database.url), None)
        .await
        .unwrap();
    e2e::events::insert_fixture_user(&users).await.unwrap();
    users.close().await;

    let (mut checked, mut failures) = (0, Vec::new());
    let mut running: Option<(String, RuntimeApi, FunctionProcess)> = None;
    for event in e2e::events::all() {
        // One process per function, for all of its events.
        if running.as_ref().is_none_or(|(name, _, _)| *name != event.function) {
            let runtime = RuntimeApi::start().await;
            let function = FunctionProcess::start(
                &event.function,
                &runtime,
                &[
                    ("DATABASE_URL", database.url.as_str()),
                    ("JWT_SECRET", fixture().jwt_secret.as_str()),
                    ("BCRYPT_COST", "4"),
                    ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
                ],
            );
            running = Some((event.function.clone(), runtime, function));
        }
        let (_, runtime, function) = running.as_ref().unwrap();
        let described = shared::functions::ALL
            .iter()
            .find(|f| f.name == event.function)
            .unwrap_or_else(|| panic!("events/{}: no such function", event.function));
        let streams = described
            .api
            .as_ref()
            .is_some_and(|api| api.response == shared::runtime::ResponseMode::Streaming);
        let answer = match runtime.call(std::fs::read(&event.path).unwrap(), STARTUP).await {
            Ok(answer) => answer,
            Err(e) => panic!("{}: {e:#}\n{:#?}", event.name, function.last_lines(20)),
        };
        if let Some(problem) = answer_problem(&answer, event.expected, streams) {
            failures.push(format!("{}: {problem}", event.name));
        }
        checked += 1;
    }
    drop(running);
    database.drop_now().await.unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} events found");
}

/// What is wrong with an answer that should have `expected` as its status, if anything.
fn answer_problem(answer: &Answer, expected: u16, streams: bool) -> Option<String> {
    if answer.error || answer.streamed != streams {
        return Some(format!(
            "an error report or the wrong response mode (streamed: {}): {}",
            answer.streamed,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let body = answer.http_body();
    let status = answer.status();
    if status != Some(expected) {
        return Some(format!("got {status:?}: {}", String::from_utf8_lossy(&body)));
    }
    let head: Value = match streams {
        true => serde_json::from_slice(&answer.body[..answer.body.windows(8).position(|w| w == [0u8; 8])?]).ok()?,
        false => serde_json::from_slice(&answer.body).ok()?,
    };
    let request_ids = match streams {
        true => usize::from(head["headers"]["x-request-id"].is_string()),
        false => head["multiValueHeaders"]["x-request-id"].as_array().map_or(0, Vec::len),
    };
    if request_ids != 1 {
        return Some(format!("{request_ids} X-Request-ID headers instead of one: {head}"));
    }
    if expected >= 400 {
        let document: Value = serde_json::from_slice(&body).unwrap_or_default();
        let wanted = expected.to_string();
        if document["errors"][0]["status"].as_str() != Some(wanted.as_str()) {
            return Some(format!("not a JSON:API error with status {expected}: {document}"));
        }
    }
    None
}

/// template.yaml's dashboard and alarms against what the functions print: every custom metric
/// the dashboard shows or an alarm watches is printed by its function, and every metric a
/// function prints is on the dashboard. The functions run on the embedded database with Redis
/// and the enrichment service refused (the cache fails open, lists go out unenriched, the
/// circuit opens), through every route that records a metric; then a list on a working Redis,
/// twice, for its hits.
#[tokio::test]
async fn the_dashboard_and_the_alarms_show_exactly_the_metrics_the_functions_print() {
    use e2e::events::{bearer, both, favorite_path};
    use serde_json::json;

    let template = e2e::template::Template::load(&repo_root().join("template.yaml")).unwrap();
    let shown = template
        .custom_metrics(shared::metrics::NAMESPACE, shared::metrics::DIMENSION)
        .unwrap();
    assert!(!shown.is_empty(), "template.yaml shows no custom metric");

    let data = DataDir::new();
    // Ports nothing listens on: every connection is refused.
    let refused = || format!("127.0.0.1:{}", e2e::bench::free_port().unwrap());
    let (redis_down, enrichment_down) = (format!("redis://{}", refused()), format!("http://{}", refused()));
    let jwt_secret = fixture().jwt_secret;
    let degraded = [
        ("FAVORITES_DATA_DIR", data.path()),
        ("JWT_SECRET", jwt_secret.as_str()),
        ("BCRYPT_COST", "4"),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
        ("REDIS_URL", redis_down.as_str()),
        ("ENRICHMENT_URL", enrichment_down.as_str()),
        ("ENRICHMENT_API_KEY", "metrics-check-key"),
        ("ENRICHMENT_BREAKER_FAILURES", "1"),
        ("LOGIN_MAX_FAILURES_PER_EMAIL", "2"),
    ];
    let mut outputs = Vec::new();
    // Runs `binary` with `env`, sends each (event, patch) and expects its status.
    async fn drive(binary: &str, env: &[(&str, &str)], calls: Vec<(&str, Value, u16)>) -> (Vec<String>, Vec<Answer>) {
        let runtime = RuntimeApi::start().await;
        let function = FunctionProcess::start(binary, &runtime, env);
        let mut answers = Vec::new();
        for (name, patch, status) in calls {
            let event = e2e::events::event(name, patch).unwrap();
            let answer = runtime.call(event, STARTUP).await.unwrap();
            assert_eq!(
                answer.status(),
                Some(status),
                "{binary} {name}: {}\n{:#?}",
                String::from_utf8_lossy(&answer.http_body()),
                function.last_lines(10)
            );
            answers.push(answer);
        }
        (function.output(), answers)
    }

    let email = format!("metrics-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({"body": {"email": email, "password": "metrics password"}});
    let once = both(
        credentials.clone(),
        json!({"headers": {"Idempotency-Key": "metrics-signup"}}),
    );
    let (output, _) = drive(
        "signup",
        &degraded,
        vec![
            ("signup/valid-201.json", once.clone(), 201),
            ("signup/valid-201.json", once, 201),
        ],
    )
    .await;
    outputs.push(output);
    let victim = json!({"body": {"email": "victim@example.com", "password": "wrong password"}});
    let (output, answers) = drive(
        "login",
        &degraded,
        vec![
            ("login/valid-200.json", credentials, 200),
            ("login/valid-200.json", victim.clone(), 401),
            ("login/valid-200.json", victim.clone(), 401),
            ("login/valid-200.json", victim, 429),
        ],
    )
    .await;
    outputs.push(output);
    let token: Value = serde_json::from_slice(&answers[0].http_body()).unwrap();
    let auth = bearer(token["token"].as_str().unwrap());
    let chart = |id: &str| {
        both(
            auth.clone(),
            json!({"body": {"id": id}, "headers": {"Idempotency-Key": id}}),
        )
    };
    let (output, _) = drive(
        "add-favorite",
        &degraded,
        vec![
            ("add-favorite/chart-201.json", chart("m1"), 201),
            ("add-favorite/chart-201.json", chart("m1"), 201),
            ("add-favorite/chart-201.json", chart("m2"), 201),
        ],
    )
    .await;
    outputs.push(output);
    let described = both(
        both(auth.clone(), favorite_path("m1")),
        json!({"body": {"description": "d"}}),
    );
    let (output, _) = drive(
        "update-favorite",
        &degraded,
        vec![("update-favorite/missing-404.json", described, 200)],
    )
    .await;
    outputs.push(output);
    // Past the cache's cool-down after the writes' failures, so that the lists' calls fail too.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let list = ("list-favorites/first-page-200.json", auth.clone(), 200);
    let (output, _) = drive("list-favorites", &degraded, vec![list.clone(), list.clone()]).await;
    outputs.push(output);
    let (output, _) = drive(
        "remove-favorite",
        &degraded,
        vec![(
            "remove-favorite/missing-404.json",
            both(auth.clone(), favorite_path("m2")),
            204,
        )],
    )
    .await;
    outputs.push(output);
    for (binary, event) in [
        ("get-favorite", "get-favorite/missing-404.json"),
        ("health", "health/ok-200.json"),
    ] {
        let status = if binary == "health" { 200 } else { 404 };
        let (output, _) = drive(binary, &degraded, vec![(event, both(auth.clone(), json!({})), status)]).await;
        outputs.push(output);
    }
    let redis = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (make test sets it)");
    let mut cached = degraded.to_vec();
    cached.retain(|(name, _)| !name.starts_with("ENRICHMENT") && *name != "REDIS_URL");
    cached.push(("REDIS_URL", redis.as_str()));
    let (output, _) = drive("list-favorites", &cached, vec![list.clone(), list]).await;
    outputs.push(output);
    // The account last: wrong passwords until the throttle refuses, then (in an instance with
    // counters of its own) the right one, whose cache drop fails open.
    let leave = |password: &str| both(auth.clone(), json!({"body": {"password": password}}));
    let wrong = ("delete-account/wrong-password-401.json", leave("wrong password"), 401);
    let throttled = ("delete-account/wrong-password-401.json", leave("wrong password"), 429);
    let (output, _) = drive("delete-account", &degraded, vec![wrong.clone(), wrong, throttled]).await;
    outputs.push(output);
    let right = ("delete-account/wrong-password-401.json", leave("metrics password"), 204);
    let (output, _) = drive("delete-account", &degraded, vec![right]).await;
    outputs.push(output);

    let printed: std::collections::BTreeSet<(String, String)> =
        outputs.iter().flat_map(|lines| emitted(lines)).collect();
    let on_dashboard: std::collections::BTreeSet<(String, String)> = shown
        .iter()
        .filter(|(_, _, at)| at.contains("widget"))
        .map(|(function, metric, _)| (function.clone(), metric.clone()))
        .collect();
    let mut problems = Vec::new();
    for (function, metric, at) in &shown {
        if !printed.contains(&(function.clone(), metric.clone())) {
            problems.push(format!("{at}: {metric} of {function}, which {function} never printed"));
        }
    }
    for (function, metric) in printed.difference(&on_dashboard) {
        problems.push(format!(
            "{function} printed {metric}, which the dashboard does not show"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
