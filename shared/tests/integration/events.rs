//! Every API Gateway event in `events/` replayed through its function's handler, in process,
//! against a fresh Postgres database: the status must be the one the event's name promises
//! (`events/<function>/<case>-<status>.json`).

use axum::Router;
use e2e::events::{SampleEvent, fixture};
use shared::config::Env;
use shared::wiring::Wiring;
use tower::ServiceExt;

/// The router function `name` serves with the settings it reads from `env`.
pub(crate) async fn router(name: &str, env: &dyn Env) -> Router {
    shared::functions::router(name, env, &Wiring::default())
        .await
        .unwrap_or_else(|e| panic!("events/{name}: {e:#}"))
}

fn request(event: &SampleEvent) -> lambda_http::Request {
    lambda_http::request::from_str(&std::fs::read_to_string(&event.path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_event_gets_the_status_its_name_promises() {
    // API Gateway REST events carry a stage; the deployed functions ignore it the same way.
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let fixture = fixture();
    let db = crate::support::postgres().await;
    e2e::events::insert_fixture_user(&db.database).await.unwrap();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ("BCRYPT_COST", "4"),
    ];

    let mut checked = 0;
    let mut failures = Vec::new();
    for event in e2e::events::all() {
        let response = router(&event.function, &env)
            .await
            .oneshot(request(&event))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        if status != event.expected {
            failures.push(format!(
                "{}: got {status}: {}",
                event.name,
                String::from_utf8_lossy(&body)
            ));
        } else if status >= 400 {
            let errors: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
            assert_eq!(errors["errors"][0]["status"], status.to_string(), "{}", event.name);
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} events found");
}

/// With the database down, every event whose answer comes from the database (a success, a 404,
/// a 409, login's 401) is answered 503 with `Retry-After` and a JSON:API body, not 500, once the
/// connection attempt has timed out (`DATABASE_TIMEOUT_MS`); events refused before the database
/// is asked (a bad body, a bad token) keep their status.
#[tokio::test]
async fn with_the_database_down_every_answer_that_needs_it_is_a_503_with_retry_after() {
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let fixture = fixture();
    // A port nothing listens on: every connection is refused.
    let port = e2e::bench::free_port().unwrap();
    let url = format!("postgres://favorites@127.0.0.1:{port}/favorites");
    let timeout = std::time::Duration::from_millis(300);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_TIMEOUT_MS", "300"),
        ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ("BCRYPT_COST", "4"),
    ];
    // Every event at once: each waits out the connection timeout, none waits for another.
    let env = &env;
    let answers = futures::future::join_all(e2e::events::all().into_iter().map(|event| async move {
        let started = std::time::Instant::now();
        let response = router(&event.function, env)
            .await
            .oneshot(request(&event))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").cloned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (event, status, retry_after, body, elapsed)
    }))
    .await;
    let mut checked = 0;
    for (event, status, retry_after, body, elapsed) in answers {
        let needs_the_database = event.expected < 300 || event.expected == 404 || event.expected == 409;
        // A refusal that may come before the database or from it (a 401 of login) is either.
        if status == event.expected && !needs_the_database {
            continue;
        }
        assert_eq!(status, 503, "{}: {}", event.name, String::from_utf8_lossy(&body));
        assert!(retry_after.is_some(), "{}: no Retry-After", event.name);
        let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(document["errors"][0]["status"], "503", "{}", event.name);
        // The connection attempt's timeout, plus slack for a loaded machine: not minutes.
        assert!(
            elapsed < timeout + std::time::Duration::from_secs(3),
            "{}: {elapsed:?}",
            event.name
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} events need the database");
}
