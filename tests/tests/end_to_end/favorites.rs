//! Favorites over HTTP, against the API in process (`spawn_app`): every operation for every
//! asset type, isolation between users, paging, filters, conditional requests, NDJSON and the
//! streamed full list.

use e2e::app::spawn_app;
use e2e::{Api, error_source};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

fn chart(id: &str) -> Value {
    json!({"id": id, "type": "chart", "name": "Revenue", "description": "monthly", "x_axis": "month",
           "y_axis": "EUR", "data": [{"x": "2026-01", "y": 10.5}, {"x": "2026-02", "y": 12}]})
}

fn insight(id: &str) -> Value {
    json!({"id": id, "type": "insight", "name": "Churn", "content": "40% of trials churn in week one"})
}

fn audience(id: &str) -> Value {
    json!({"id": id, "type": "audience", "name": "Young Greeks", "rules": {"gender": "female", "country": "GR",
           "age_min": 18, "age_max": 24, "social_media_hours": 3.5, "purchases_last_month": 2}})
}

#[tokio::test]
async fn every_operation_works_for_every_asset_type() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let token = Some(me.token.as_str());
    for asset in [chart("c1"), insight("i1"), audience("a1")] {
        let id = asset["id"].as_str().unwrap();
        let added = api.send(Method::POST, "/favorites", token, Some(asset.clone())).await;
        assert_eq!(added.status(), 201);
        assert_eq!(added.headers()["location"], format!("/favorites/{id}"));
        let added: Value = added.json().await.unwrap();
        for (key, value) in asset.as_object().unwrap() {
            assert_eq!(&added[key], value, "{id}.{key}");
        }
        assert!(added["created_at"].is_string() && added["updated_at"].is_string());

        let fetched: Value = api
            .send(Method::GET, &format!("/favorites/{id}"), token, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(fetched, added);

        let edited = api
            .send(
                Method::PATCH,
                &format!("/favorites/{id}"),
                token,
                Some(json!({"description": "edited"})),
            )
            .await;
        assert_eq!(edited.status(), 200);
        let edited: Value = edited.json().await.unwrap();
        assert_eq!(edited["description"], "edited");
        assert_eq!(edited["name"], added["name"]);

        let listed: Value = api
            .send(Method::GET, "/favorites", token, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed["data"][0], edited,
            "the newest favorite is listed first, as stored"
        );

        assert_eq!(
            api.send(Method::DELETE, &format!("/favorites/{id}"), token, None)
                .await
                .status(),
            204
        );
        assert_eq!(
            api.send(Method::GET, &format!("/favorites/{id}"), token, None)
                .await
                .status(),
            404
        );
        assert_eq!(
            api.send(Method::DELETE, &format!("/favorites/{id}"), token, None)
                .await
                .status(),
            404
        );
    }
}

#[tokio::test]
async fn an_asset_without_an_id_gets_a_generated_one_and_a_duplicate_id_is_409() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let mut asset = insight("x");
    asset.as_object_mut().unwrap().remove("id");
    let added: Value = api
        .send(Method::POST, "/favorites", Some(&me.token), Some(asset))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(added["id"].as_str().unwrap().len(), 36);
    assert_eq!(
        api.send(Method::POST, "/favorites", Some(&me.token), Some(insight("dup")))
            .await
            .status(),
        201
    );
    let again = api
        .send(Method::POST, "/favorites", Some(&me.token), Some(insight("dup")))
        .await;
    assert_eq!(error_source(again).await, (409, "/id".into()));
}

#[tokio::test]
async fn two_users_cannot_see_or_touch_each_others_favorites() {
    let app = spawn_app().await;
    let api = &app.api;
    let (alice, bob) = (api.new_user().await, api.new_user().await);
    assert_eq!(
        api.send(Method::POST, "/favorites", Some(&alice.token), Some(chart("shared-id")))
            .await
            .status(),
        201
    );
    let bob_token = Some(bob.token.as_str());
    assert_eq!(
        api.send(Method::GET, "/favorites/shared-id", bob_token, None)
            .await
            .status(),
        404
    );
    let patch = Some(json!({"description": "mine now"}));
    assert_eq!(
        api.send(Method::PATCH, "/favorites/shared-id", bob_token, patch)
            .await
            .status(),
        404
    );
    assert_eq!(
        api.send(Method::DELETE, "/favorites/shared-id", bob_token, None)
            .await
            .status(),
        404
    );
    let bobs: Value = api
        .send(Method::GET, "/favorites", bob_token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["data"], json!([]));
    // The same id is Bob's to use: ids are unique per user.
    assert_eq!(
        api.send(Method::POST, "/favorites", bob_token, Some(insight("shared-id")))
            .await
            .status(),
        201
    );
    let alices: Value = api
        .send(Method::GET, "/favorites/shared-id", Some(&alice.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alices["type"], "chart");
    assert_eq!(alices["description"], "monthly");
}

#[tokio::test]
async fn cursor_paging_walks_57_favorites_in_pages_of_10_in_order() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    for i in 0..57 {
        let status = api
            .send(
                Method::POST,
                "/favorites",
                Some(&me.token),
                Some(insight(&format!("fav-{i:02}"))),
            )
            .await
            .status();
        assert_eq!(status, 201);
    }
    let mut walked = Vec::new();
    let mut pages = 0;
    let mut path = "/favorites?limit=10".to_string();
    loop {
        let page: Value = api
            .send(Method::GET, &path, Some(&me.token), None)
            .await
            .json()
            .await
            .unwrap();
        pages += 1;
        let data = page["data"].as_array().unwrap();
        walked.extend(data.iter().map(|f| f["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/favorites?limit=10&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..57).rev().map(|i| format!("fav-{i:02}")).collect();
    assert_eq!(pages, 6);
    assert_eq!(walked, expected, "newest first, no gaps, no repeats");

    let page3: Value = api
        .send(Method::GET, "/favorites?limit=10&page=3", Some(&me.token), None)
        .await
        .json()
        .await
        .unwrap();
    let page3: Vec<_> = page3["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page3, expected[20..30]);
}

#[tokio::test]
async fn ndjson_and_limit_all_stream_every_favorite() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    for i in 0..150 {
        api.send(
            Method::POST,
            "/favorites",
            Some(&me.token),
            Some(audience(&format!("aud-{i:03}"))),
        )
        .await;
    }
    let all: Value = api
        .send(Method::GET, "/favorites?limit=all", Some(&me.token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 150);
    assert_eq!(all["next_cursor"], Value::Null);

    let response = api
        .http
        .get(api.url("/favorites?limit=all"))
        .bearer_auth(&me.token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let lines: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 151);
    assert_eq!(lines[0]["id"], "aud-149");
    assert_eq!(
        lines[150],
        json!({"next_cursor": null}),
        "the last line closes the stream"
    );
}

/// The ids of a page, and its `next_cursor`.
async fn page_of(api: &Api, path: &str, token: &str) -> (Vec<String>, Option<String>) {
    let response = api.send(Method::GET, path, Some(token), None).await;
    assert_eq!(response.status(), 200, "{path}");
    let page: Value = response.json().await.unwrap();
    let ids = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    (ids, page["next_cursor"].as_str().map(str::to_string))
}

#[tokio::test]
async fn type_and_q_filter_the_list_through_paging_and_ndjson() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    // Oldest first: c0 i1 a2 c3 i4 a5 … ; every insight is named "Churn", every chart "Revenue".
    for i in 0..12 {
        let id = format!("f{i:02}");
        let asset = match i % 3 {
            0 => chart(&id),
            1 => insight(&id),
            _ => audience(&id),
        };
        let added = api.send(Method::POST, "/favorites", Some(&me.token), Some(asset)).await;
        assert_eq!(added.status(), 201);
    }
    let token = me.token.as_str();
    let (charts, _) = page_of(api, "/favorites?type=chart", token).await;
    assert_eq!(charts, ["f09", "f06", "f03", "f00"]);
    let (two, _) = page_of(api, "/favorites?type=audience,chart", token).await;
    assert_eq!(two, ["f11", "f09", "f08", "f06", "f05", "f03", "f02", "f00"]);
    let (churn, _) = page_of(api, "/favorites?q=cHURN", token).await;
    assert_eq!(churn, ["f10", "f07", "f04", "f01"], "insights are named Churn");
    // "monthly" is the charts' description.
    let (monthly, _) = page_of(api, "/favorites?q=MONTH&type=chart,insight", token).await;
    assert_eq!(monthly, charts);
    let (none, _) = page_of(api, "/favorites?q=churn&type=audience", token).await;
    assert!(none.is_empty());

    // Paging by cursor and by page number within the filter.
    let (first, cursor) = page_of(api, "/favorites?type=chart&limit=3", token).await;
    let cursor = cursor.expect("a fourth chart exists");
    let (rest, end) = page_of(api, &format!("/favorites?type=chart&limit=3&cursor={cursor}"), token).await;
    assert_eq!([first, rest].concat(), charts);
    assert_eq!(end, None);
    let (second, _) = page_of(api, "/favorites?type=chart&limit=2&page=2", token).await;
    assert_eq!(second, charts[2..]);

    // The cursor is bound to its filter.
    for other in ["", "&type=insight", "&type=chart&q=revenue"] {
        let response = api
            .send(
                Method::GET,
                &format!("/favorites?limit=3&cursor={cursor}{other}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(error_source(response).await, (400, "cursor".to_string()), "{other}");
    }

    let response = api
        .send_with(
            Method::GET,
            "/favorites?type=insight&q=churn&limit=all",
            Some(token),
            None,
            &[("accept", "application/x-ndjson")],
        )
        .await;
    let lines: Vec<Value> = response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(ids, churn);
    assert_eq!(lines.last().unwrap(), &json!({"next_cursor": null}));
}

fn etag_of(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn an_unchanged_list_is_a_304_until_a_favorite_is_added() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let token = Some(me.token.as_str());
    assert_eq!(
        api.send(Method::POST, "/favorites", token, Some(insight("e1")))
            .await
            .status(),
        201
    );
    let path = "/favorites?type=insight&limit=10";
    let first = api.send(Method::GET, path, token, None).await;
    assert_eq!(first.status(), 200);
    let etag = etag_of(&first);
    let again = api
        .send_with(Method::GET, path, token, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status(), 304);
    assert_eq!(etag_of(&again), etag);
    assert!(again.bytes().await.unwrap().is_empty(), "a 304 has no body");

    for (other, accept) in [
        ("/favorites?limit=10", "application/json"),
        (path, "application/x-ndjson"),
    ] {
        let response = api
            .send_with(
                Method::GET,
                other,
                token,
                None,
                &[("if-none-match", &etag), ("accept", accept)],
            )
            .await;
        assert_eq!(
            response.status(),
            200,
            "another query or format is another answer: {other} {accept}"
        );
    }

    assert_eq!(
        api.send(Method::POST, "/favorites", token, Some(chart("e2")))
            .await
            .status(),
        201
    );
    let after = api
        .send_with(Method::GET, path, token, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(
        after.status(),
        200,
        "any change to the user's favorites changes every list's tag"
    );
    assert_ne!(etag_of(&after), etag);

    let other_user = api.new_user().await;
    let theirs = api
        .send_with(
            Method::GET,
            path,
            Some(&other_user.token),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(theirs.status(), 200);
}

#[tokio::test]
async fn a_favorite_is_a_304_when_unchanged_and_a_stale_change_is_a_412() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let token = Some(me.token.as_str());
    api.send(Method::POST, "/favorites", token, Some(insight("p1"))).await;
    let read = api.send(Method::GET, "/favorites/p1", token, None).await;
    let seen = etag_of(&read);
    let unchanged = api
        .send_with(Method::GET, "/favorites/p1", token, None, &[("if-none-match", &seen)])
        .await;
    assert_eq!(unchanged.status(), 304);

    let edit = Some(json!({"description": "edited"}));
    let edited = api
        .send_with(
            Method::PATCH,
            "/favorites/p1",
            token,
            edit.clone(),
            &[("if-match", &seen)],
        )
        .await;
    assert_eq!(edited.status(), 200);
    let current = etag_of(&edited);
    assert_ne!(current, seen);
    let changed = api
        .send_with(Method::GET, "/favorites/p1", token, None, &[("if-none-match", &seen)])
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(etag_of(&changed), current);

    let stale = api
        .send_with(
            Method::PATCH,
            "/favorites/p1",
            token,
            Some(json!({"description": "lost"})),
            &[("if-match", &seen)],
        )
        .await;
    assert_eq!(error_source(stale).await, (412, "If-Match".to_string()));
    let stale = api
        .send_with(Method::DELETE, "/favorites/p1", token, None, &[("if-match", &seen)])
        .await;
    assert_eq!(stale.status(), 412);
    let kept: Value = api
        .send(Method::GET, "/favorites/p1", token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kept["description"], "edited", "a stale change changes nothing");

    let removed = api
        .send_with(Method::DELETE, "/favorites/p1", token, None, &[("if-match", &current)])
        .await;
    assert_eq!(removed.status(), 204);
    let gone = api
        .send_with(
            Method::GET,
            "/favorites/p1",
            token,
            None,
            &[("if-none-match", &current)],
        )
        .await;
    assert_eq!(gone.status(), 404);

    for (method, path, header) in [
        (Method::GET, "/favorites", "If-None-Match"),
        (Method::GET, "/favorites/p1", "If-None-Match"),
        (Method::PATCH, "/favorites/p1", "If-Match"),
        (Method::DELETE, "/favorites/p1", "If-Match"),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"description": "x"}));
        let response = api
            .send_with(method.clone(), path, token, body, &[(header, "not-quoted")])
            .await;
        assert_eq!(
            error_source(response).await,
            (400, header.to_string()),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let token = Some(me.token.as_str());
    // One case per kind of refusal; the domain's and the extractors' unit tests hold the full
    // matrix (every field and bound: domain/favorite.rs, domain/filter.rs, http/paging.rs).
    let cases = [
        // A rule of the domain, named by its JSON pointer.
        (
            json!({"type": "audience", "name": "x", "rules": {"country": "GR", "age_min": 40, "age_max": 30}}),
            "/rules/age_min",
        ),
        // A value of the wrong JSON type, deep in the body.
        (
            json!({"type": "chart", "name": "x", "x_axis": "t", "data": [{"x": 1, "y": "high"}]}),
            "/data/0/y",
        ),
        // Not an object at all.
        (json!([{"type": "insight"}]), ""),
    ];
    for (body, pointer) in cases {
        let response = api.send(Method::POST, "/favorites", token, Some(body.clone())).await;
        assert_eq!(error_source(response).await, (400, pointer.to_string()), "{body}");
    }
    // A paging parameter, a filter, a cursor that is not ours, a parameter given twice.
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("type=video", "type"),
        ("cursor=garbage", "cursor"),
        ("type=chart&type=insight", "type"),
    ] {
        let response = api.send(Method::GET, &format!("/favorites?{query}"), token, None).await;
        assert_eq!(error_source(response).await, (400, parameter.to_string()), "{query}");
    }
    let huge = json!({"type": "insight", "name": "x", "content": "c".repeat(300 * 1024)});
    assert_eq!(
        api.send(Method::POST, "/favorites", token, Some(huge)).await.status(),
        413
    );
    let sql = "x'); drop table favorites; --";
    let stored = api
        .send(
            Method::POST,
            "/favorites",
            token,
            Some(json!({"type": "insight", "name": sql, "content": sql})),
        )
        .await;
    let stored: Value = stored.json().await.unwrap();
    assert_eq!(stored["name"], sql, "SQL-looking text is stored verbatim");
}

#[tokio::test]
async fn a_missing_forged_or_alg_none_token_is_401() {
    let app = spawn_app().await;
    let api = &app.api;
    let me = api.new_user().await;
    let mut forged = me.token.clone();
    forged.pop();
    forged.push(if me.token.ends_with('A') { 'B' } else { 'A' });
    let parts: Vec<&str> = me.token.split('.').collect();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let alg_none = format!("{none_header}.{}.", parts[1]);
    for token in [None, Some(forged.as_str()), Some(alg_none.as_str()), Some("not-a-jwt")] {
        for (method, path) in [
            (Method::GET, "/favorites"),
            (Method::GET, "/favorites/x"),
            (Method::POST, "/favorites"),
        ] {
            let response = api.send(method.clone(), path, token, Some(insight("x"))).await;
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
        }
    }
}
