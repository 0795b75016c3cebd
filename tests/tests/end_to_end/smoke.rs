//! Every function once through a Lambda runtime emulator (`E2E_BASE_URL`): what the in-process
//! app (`spawn_app`) leaves out. lambda_http's conversion of the event (API Gateway v2 under
//! `cargo lambda watch`, REST v1 with its stage under `make stack`) and of the answer (status,
//! headers, bodies, 304s without one), query strings, path parameters, a `DELETE` with a body, the streamed list arriving whole in both formats,
//! and the gateway's own 404. The behaviour behind each answer is `favorites`, `users` and
//! `idempotency`'s, in process.

use e2e::{Api, error_source};
use reqwest::Method;
use serde_json::{Value, json};

fn insight(id: &str, name: &str) -> Value {
    json!({"id": id, "type": "insight", "name": name, "content": "40% of trials churn in week one"})
}

/// The whole (streamed) answer to a list request in the format `accept` asks for.
async fn list_as(api: &Api, path: &str, token: &str, accept: &str) -> (reqwest::header::HeaderMap, String) {
    let response = api
        .send_with(Method::GET, path, Some(token), None, &[("accept", accept)])
        .await;
    assert_eq!(response.status(), 200, "{path} as {accept}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

#[tokio::test]
async fn every_function_answers_through_the_emulator() {
    let api = Api::from_env();
    assert_eq!(api.send(Method::GET, "/health", None, None).await.status(), 200);
    let me = api.new_user().await;
    let token = Some(me.token.as_str());

    // add-favorite: 201 with its Location; the same Idempotency-Key replays the answer.
    let first = api
        .send_idempotent("/favorites", token, "smoke-key", &insight("s0", "Churn"))
        .await;
    assert_eq!(first.status(), 201);
    assert_eq!(first.headers()["location"], "/favorites/s0");
    let replay = api
        .send_idempotent("/favorites", token, "smoke-key", &insight("s0", "Churn"))
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    for i in 1..40 {
        let name = if i % 2 == 0 { "Churn" } else { "Revenue" };
        let added = api
            .send(Method::POST, "/favorites", token, Some(insight(&format!("s{i}"), name)))
            .await;
        assert_eq!(added.status(), 201);
    }
    let added = api
        .send(
            Method::POST,
            "/favorites",
            token,
            Some(
                json!({"type": "chart", "name": "Churn by week", "x_axis": "week", "y_axis": "users",
                        "data": [{"x": "w1", "y": 3}]}),
            ),
        )
        .await;
    assert_eq!(added.status(), 201);
    let chart: Value = added.json().await.unwrap();

    // get-favorite: a path parameter; a 304 carries no body.
    let read = api.send(Method::GET, "/favorites/s0", token, None).await;
    assert_eq!(read.status(), 200);
    let etag = read.headers()["etag"].to_str().unwrap().to_string();
    let unchanged = api
        .send_with(Method::GET, "/favorites/s0", token, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(unchanged.status(), 304);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    // update-favorite: If-Match, then a stale one.
    let edit = Some(json!({"description": "edited"}));
    let edited = api
        .send_with(
            Method::PATCH,
            "/favorites/s0",
            token,
            edit.clone(),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(edited.status(), 200);
    let stale = api
        .send_with(Method::PATCH, "/favorites/s0", token, edit, &[("if-match", &etag)])
        .await;
    assert_eq!(error_source(stale).await, (412, "If-Match".to_string()));

    // list-favorites, streamed, with a query string.
    let (headers, body) = list_as(
        &api,
        "/favorites?type=chart,insight,audience&q=churn&limit=all",
        &me.token,
        "application/json",
    )
    .await;
    let listed: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|favorite| favorite["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 21, "the chart and the 20 insights named Churn: {ids:?}");
    assert_eq!(ids[0], chart["id"].as_str().unwrap(), "newest first");
    let etag = headers["etag"].to_str().unwrap().to_string();
    let unchanged = api
        .send_with(
            Method::GET,
            "/favorites?type=chart,insight,audience&q=churn&limit=all",
            token,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(unchanged.status(), 304);
    let (headers, body) = list_as(&api, "/favorites?limit=all", &me.token, "application/x-ndjson").await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 42, "41 favorites and the closing line");
    assert_eq!(lines[41], json!({"next_cursor": null}));
    let refused = api.send(Method::GET, "/favorites?type=video", token, None).await;
    assert_eq!(error_source(refused).await, (400, "type".to_string()));

    // remove-favorite.
    assert_eq!(
        api.send(Method::DELETE, "/favorites/s1", token, None).await.status(),
        204
    );
    assert_eq!(api.send(Method::GET, "/favorites/s1", token, None).await.status(), 404);

    // delete-account: a DELETE with a body; the token is refused from then on.
    let left = api
        .send(
            Method::DELETE,
            "/me",
            token,
            Some(json!({"password": "correct horse battery"})),
        )
        .await;
    assert_eq!(left.status(), 204);
    assert_eq!(api.send(Method::GET, "/favorites", token, None).await.status(), 401);

    // A route the API does not have: the gateway's own 404 (its body is the template's under
    // the stack, cargo lambda's own under `cargo lambda watch`; stack/gateway.rs tests the first).
    let unknown = api.send(Method::GET, "/no-such-route", None, None).await;
    assert_eq!(unknown.status(), 404);
}
