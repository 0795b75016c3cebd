//! `X-Request-ID` over HTTP, through the Lambda runtime emulator: every answer of every
//! function (successes, errors, idempotent replays, streamed lists) carries exactly one, the
//! caller's when it is usable, else a new UUID.

use e2e::Api;
use reqwest::{Method, Response};
use serde_json::{Value, json};

fn request_ids(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("x-request-id")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// What to send: a name, the method, path, token, body and headers.
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    Option<&'a str>,
    Option<Value>,
    &'a [(&'a str, &'a str)],
);

/// One request of each function, and an error of each, with the given `X-Request-ID` (or none).
async fn every_kind_of_answer(api: &Api, request_id: Option<&str>) -> Vec<(String, Response)> {
    let session = api.new_user().await;
    let token = Some(session.token.as_str());
    let headers: Vec<(&str, &str)> = request_id.map(|id| ("x-request-id", id)).into_iter().collect();
    let credentials = json!({"email": session.email, "password": "correct horse battery"});
    let new_account = json!({"email": format!("rid-{}@example.com", uuid::Uuid::new_v4()), "password": "12345678"});
    let id = format!("rid-{}", uuid::Uuid::new_v4());
    let asset = json!({"id": id, "type": "insight", "name": "n", "content": "c"});
    let one = format!("/favorites/{id}");
    let key = format!("rid-key-{}", uuid::Uuid::new_v4());
    let replay_headers: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .chain([("idempotency-key", key.as_str())])
        .collect();
    let ndjson_headers: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .chain([("accept", "application/x-ndjson")])
        .collect();
    let cases: Vec<Case> = vec![
        ("signup 201", Method::POST, "/signup", None, Some(new_account), &headers),
        (
            "signup 400",
            Method::POST,
            "/signup",
            None,
            Some(json!({"email": "x"})),
            &headers,
        ),
        ("login 200", Method::POST, "/login", None, Some(credentials), &headers),
        ("login 400", Method::POST, "/login", None, Some(json!([])), &headers),
        ("health 200", Method::GET, "/health", None, None, &headers),
        (
            "add 201",
            Method::POST,
            "/favorites",
            token,
            Some(asset.clone()),
            &replay_headers,
        ),
        (
            "add replayed",
            Method::POST,
            "/favorites",
            token,
            Some(asset),
            &replay_headers,
        ),
        ("add 401", Method::POST, "/favorites", None, Some(json!({})), &headers),
        ("get 200", Method::GET, &one, token, None, &headers),
        ("get 404", Method::GET, "/favorites/none", token, None, &headers),
        (
            "update 200",
            Method::PATCH,
            &one,
            token,
            Some(json!({"description": "d"})),
            &headers,
        ),
        ("update 400", Method::PATCH, &one, token, Some(json!({})), &headers),
        ("list 200", Method::GET, "/favorites", token, None, &headers),
        (
            "list ndjson 200",
            Method::GET,
            "/favorites?limit=all",
            token,
            None,
            &ndjson_headers,
        ),
        ("list 400", Method::GET, "/favorites?limit=0", token, None, &headers),
        ("list 401", Method::GET, "/favorites", None, None, &headers),
        ("remove 204", Method::DELETE, &one, token, None, &headers),
        ("remove 404", Method::DELETE, &one, token, None, &headers),
        (
            "delete account 401",
            Method::DELETE,
            "/me",
            token,
            Some(json!({"password": "not the password"})),
            &headers,
        ),
        (
            "delete account 204",
            Method::DELETE,
            "/me",
            token,
            Some(json!({"password": "correct horse battery"})),
            &headers,
        ),
    ];
    let mut answers = Vec::new();
    for (case, method, path, token, body, headers) in cases {
        let response = api.send_with(method, path, token, body, headers).await;
        answers.push((format!("{case} (HTTP {})", response.status()), response));
    }
    assert_eq!(answers[6].1.headers()["idempotent-replayed"], "true");
    answers
}

#[tokio::test]
async fn every_answer_of_every_function_echoes_the_callers_request_id_once() {
    let api = Api::from_env();
    let mine = format!("caller-{}", uuid::Uuid::new_v4());
    for (case, response) in every_kind_of_answer(&api, Some(&mine)).await {
        assert_eq!(request_ids(&response), [mine.as_str()], "{case}");
    }
}

#[tokio::test]
async fn every_answer_without_a_usable_request_id_gets_a_new_uuid() {
    let api = Api::from_env();
    let too_long = "x".repeat(129);
    for given in [None, Some(too_long.as_str())] {
        let mut seen = std::collections::HashSet::new();
        for (case, response) in every_kind_of_answer(&api, given).await {
            let ids = request_ids(&response);
            assert_eq!(ids.len(), 1, "{case}: {ids:?}");
            assert!(uuid::Uuid::parse_str(&ids[0]).is_ok(), "{case}: {ids:?}");
            assert!(seen.insert(ids[0].clone()), "{case}: one id per request");
        }
    }
}
