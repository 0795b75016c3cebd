//! `Idempotency-Key` on `POST /favorites` and `POST /signup`, against the API in process
//! (`spawn_app`) with the records in DynamoDB (the moto server `make test` starts).

use e2e::app::spawn_app;
use e2e::{Api, error_source};
use reqwest::Method;
use serde_json::{Value, json};

fn key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

async fn favorites_of(api: &Api, token: &str) -> Vec<Value> {
    let listed = api.send(Method::GET, "/favorites?limit=all", Some(token), None).await;
    assert_eq!(listed.status(), 200);
    let body: Value = listed.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_retried_add_replays_the_first_answer_and_adds_once() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let key = key();
    let body = json!({"type": "insight", "name": "Churn", "content": "40% churn in week one"});

    let first = api
        .send_idempotent("/favorites", Some(&session.token), &key, &body)
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    // The same request again, with the keys in another order: the same request.
    let again = json!({"content": "40% churn in week one", "name": "Churn", "type": "insight"});
    let retry = api
        .send_idempotent("/favorites", Some(&session.token), &key, &again)
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "the stored answer, id and timestamps included");

    let listed = favorites_of(api, &session.token).await;
    assert_eq!(listed.len(), 1, "added once: {listed:?}");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_422_and_writes_nothing() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let key = key();
    let body = json!({"type": "insight", "name": "A", "content": "a"});
    let first = api
        .send_idempotent("/favorites", Some(&session.token), &key, &body)
        .await;
    assert_eq!(first.status(), 201);

    let other = json!({"type": "insight", "name": "B", "content": "b"});
    let reused = api
        .send_idempotent("/favorites", Some(&session.token), &key, &other)
        .await;
    assert_eq!(error_source(reused).await, (422, "Idempotency-Key".to_string()));
    assert_eq!(favorites_of(api, &session.token).await.len(), 1);
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = spawn_app().await;
    let api = &app.api;
    let (alice, bob) = (api.new_user().await, api.new_user().await);
    let key = key();
    let body = json!({"type": "insight", "name": "Mine", "content": "x"});
    for session in [&alice, &bob] {
        let added = api
            .send_idempotent("/favorites", Some(&session.token), &key, &body)
            .await;
        assert_eq!(added.status(), 201);
        assert!(added.headers().get("idempotent-replayed").is_none());
        assert_eq!(favorites_of(api, &session.token).await.len(), 1);
    }
}

#[tokio::test]
async fn concurrent_duplicates_write_once_and_never_answer_differently() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let key = key();
    let body = json!({"id": "dup", "type": "insight", "name": "Once", "content": "only once"});
    let attempts = (0..8).map(|_| api.send_idempotent("/favorites", Some(&session.token), &key, &body));
    let answers = futures::future::join_all(attempts).await;
    let mut created = 0;
    for answer in answers {
        match answer.status().as_u16() {
            201 => created += 1,
            // Still in progress when it arrived: the client retries after Retry-After.
            409 => {
                assert!(answer.headers().contains_key("retry-after"));
                assert_eq!(error_source(answer).await, (409, "Idempotency-Key".to_string()));
            }
            other => panic!("unexpected status {other}: {}", answer.text().await.unwrap()),
        }
    }
    assert!(created >= 1, "one request was handled");
    let listed = favorites_of(api, &session.token).await;
    assert_eq!(listed.len(), 1, "written once: {listed:?}");

    // Once the first is done, every retry gets its answer.
    let retry = api
        .send_idempotent("/favorites", Some(&session.token), &key, &body)
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_retried_signup_replays_the_account_and_signs_up_once() {
    let app = spawn_app().await;
    let api = &app.api;
    let key = key();
    let email = format!("idem-{}@example.com", uuid::Uuid::new_v4());
    let body = json!({"email": email, "password": "correct horse battery"});
    let first = api.send_idempotent("/signup", None, &key, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let retry = api.send_idempotent("/signup", None, &key, &body).await;
    assert_eq!(retry.status(), 201, "a replay, not a 409 'email taken'");
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    // Without the key the same signup is a conflict: the account exists once.
    let plain = api.send(Method::POST, "/signup", None, Some(body)).await;
    assert_eq!(plain.status(), 409);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header() {
    let app = spawn_app().await;
    let api = &app.api;
    let body = json!({"email": "x@example.com", "password": "correct horse battery"});
    let long = "k".repeat(256);
    for bad in [long.as_str(), "has space"] {
        let answer = api.send_idempotent("/signup", None, bad, &body).await;
        assert_eq!(
            error_source(answer).await,
            (400, "Idempotency-Key".to_string()),
            "{bad:?}"
        );
    }
}
