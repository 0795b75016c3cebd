//! Signup, login, leaving (`DELETE /me`) and health over HTTP, against the API in process
//! (`spawn_app`), the login throttle's counters in DynamoDB (moto).

use e2e::app::{App, spawn_app};
use e2e::{Api, error_source};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn signup_then_login_issues_a_bearer_token() {
    let app = spawn_app().await;
    let api = &app.api;
    let email = format!("Ada-{}@Example.com", uuid::Uuid::new_v4());
    let signup = api
        .send(
            Method::POST,
            "/signup",
            None,
            Some(json!({"email": email, "password": "s3cret-enough"})),
        )
        .await;
    assert_eq!(signup.status(), 201);
    let user: serde_json::Value = signup.json().await.unwrap();
    assert_eq!(user["email"], email.to_lowercase());
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    let login = api
        .send(
            Method::POST,
            "/login",
            None,
            Some(json!({"email": email, "password": "s3cret-enough"})),
        )
        .await;
    assert_eq!(login.status(), 200);
    let token: serde_json::Value = login.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 0);
    let listed = api.send(Method::GET, "/favorites", token["token"].as_str(), None).await;
    assert_eq!(listed.status(), 200, "the token is accepted by the other functions");
}

#[tokio::test]
async fn an_email_is_taken_whatever_its_case() {
    let app = spawn_app().await;
    let api = &app.api;
    let email = format!("grace-{}@example.com", uuid::Uuid::new_v4());
    let first = api
        .send(
            Method::POST,
            "/signup",
            None,
            Some(json!({"email": email, "password": "12345678"})),
        )
        .await;
    assert_eq!(first.status(), 201);
    let again = api
        .send(
            Method::POST,
            "/signup",
            None,
            Some(json!({"email": email.to_uppercase(), "password": "12345678"})),
        )
        .await;
    assert_eq!(error_source(again).await, (409, "/email".into()));
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let wrong = api
        .send(
            Method::POST,
            "/login",
            None,
            Some(json!({"email": session.email, "password": "wrong password"})),
        )
        .await;
    let unknown = api
        .send(
            Method::POST,
            "/login",
            None,
            Some(json!({"email": "nobody-at-all@example.com", "password": "wrong password"})),
        )
        .await;
    assert_eq!(
        (wrong.status(), unknown.status()),
        (reqwest::StatusCode::UNAUTHORIZED, reqwest::StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());
}

#[tokio::test]
async fn bad_credentials_bodies_are_4xx_naming_the_field() {
    let app = spawn_app().await;
    let api = &app.api;
    // One case per kind of refusal; domain/user.rs's unit tests hold the full matrix.
    let cases = [
        // A rule of the domain.
        (json!({"email": "a@example.com", "password": "short"}), 400, "/password"),
        // A missing field, and one of the wrong JSON type.
        (json!({"password": "long enough"}), 400, "/email"),
        (json!({"email": 42, "password": "long enough"}), 400, "/email"),
        // Not an object.
        (json!([1, 2]), 400, ""),
    ];
    for (body, status, pointer) in cases {
        let response = api.send(Method::POST, "/signup", None, Some(body.clone())).await;
        assert_eq!(error_source(response).await, (status, pointer.to_string()), "{body}");
    }
    let raw = |body: Vec<u8>, content_type: &'static str| async move {
        let request = api
            .http
            .post(api.url("/signup"))
            .header("content-type", content_type)
            .body(body);
        e2e::read_fully(request.send().await.unwrap()).await.status()
    };
    assert_eq!(raw(b"{\"email\":".to_vec(), "application/json").await, 400);
    // Not UTF-8 (no emulator in between here: its JSON event could not carry this body).
    assert_eq!(raw(vec![0xff, 0xfe, b'{'], "application/json").await, 400);
    assert_eq!(raw(b"email=a".to_vec(), "application/x-www-form-urlencoded").await, 415);
    assert_eq!(raw(vec![b' '; 100_000], "application/json").await, 413);
}

#[tokio::test]
async fn health_reports_the_database_up() {
    let app = spawn_app().await;
    let api = &app.api;
    let response = api.send(Method::GET, "/health", None, None).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["dependencies"]["database"]["status"], "up");
}

async fn login(api: &Api, email: &str, password: &str) -> reqwest::Response {
    api.send(
        Method::POST,
        "/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn five_failed_logins_lock_the_email_even_for_the_right_password() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    for attempt in 1..=5 {
        let wrong = login(api, &session.email, "wrong password").await;
        assert_eq!(wrong.status(), 401, "attempt {attempt}");
    }
    let right = login(api, &session.email, "correct horse battery").await;
    assert_eq!(right.status(), 429);
    let retry_after: u64 = right.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test]
async fn the_lock_does_not_tell_whether_an_account_exists() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let unknown = format!("nobody-{}@example.com", uuid::Uuid::new_v4());
    for _ in 0..5 {
        assert_eq!(login(api, &session.email, "wrong password").await.status(), 401);
        assert_eq!(login(api, &unknown, "wrong password").await.status(), 401);
    }
    let known = login(api, &session.email, "wrong password").await;
    let nobody = login(api, &unknown, "wrong password").await;
    assert_eq!((known.status().as_u16(), nobody.status().as_u16()), (429, 429));
    assert_eq!(known.text().await.unwrap(), nobody.text().await.unwrap());
}

#[tokio::test]
async fn a_successful_login_clears_the_failures_of_its_email() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    for _ in 0..4 {
        assert_eq!(login(api, &session.email, "wrong password").await.status(), 401);
    }
    assert_eq!(login(api, &session.email, "correct horse battery").await.status(), 200);
    for attempt in 1..=4 {
        let wrong = login(api, &session.email, "wrong password").await;
        assert_eq!(wrong.status(), 401, "attempt {attempt} after the reset");
    }
}

/// `DELETE /me` with this password.
async fn leave(api: &Api, token: &str, password: &str) -> reqwest::Response {
    api.send(Method::DELETE, "/me", Some(token), Some(json!({"password": password})))
        .await
}

/// The favorites the app's database holds for this user id, counted in the database itself (the
/// account's tokens can no longer ask).
async fn stored_favorites(app: &App, user_id: &str) -> i64 {
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database.url)
        .await
        .unwrap();
    sqlx::query_scalar("select count(*) from favorites where user_id = $1::text::uuid")
        .bind(user_id)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn leaving_deletes_the_account_and_its_favorites_and_refuses_its_tokens_everywhere() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let token = session.token.as_str();
    let credentials = json!({"email": session.email, "password": "correct horse battery"});
    let second: serde_json::Value = login(api, &session.email, "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        let favorite = json!({"id": id, "type": "insight", "name": id, "content": "c"});
        let added = api.send(Method::POST, "/favorites", Some(token), Some(favorite)).await;
        assert_eq!(added.status(), 201);
    }
    let listed: serde_json::Value = api
        .send(Method::GET, "/favorites", Some(token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let account = api.send(Method::POST, "/signup", None, Some(credentials.clone())).await;
    assert_eq!(account.status(), 409, "the email is taken while the account exists");

    let left = leave(api, token, "correct horse battery").await;
    assert_eq!(left.status(), 204, "{}", left.text().await.unwrap());

    let patch = Some(json!({"description": "d"}));
    let asset = Some(json!({"type": "insight", "name": "n", "content": "c"}));
    for bearer in [token, second["token"].as_str().unwrap()] {
        for (method, path, body) in [
            (Method::GET, "/favorites", None),
            (Method::POST, "/favorites", asset.clone()),
            (Method::GET, "/favorites/a", None),
            (Method::PATCH, "/favorites/a", patch.clone()),
            (Method::DELETE, "/favorites/a", None),
            (
                Method::DELETE,
                "/me",
                Some(json!({"password": "correct horse battery"})),
            ),
        ] {
            let refused = api.send(method.clone(), path, Some(bearer), body).await;
            assert_eq!(refused.status(), 401, "{method} {path}");
        }
    }
    assert_eq!(login(api, &session.email, "correct horse battery").await.status(), 401);

    // The email is free: a new account, which holds none of the old one's favorites.
    let again = api.send(Method::POST, "/signup", None, Some(credentials)).await;
    assert_eq!(again.status(), 201);
    let new_token: serde_json::Value = login(api, &session.email, "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    let new_token = new_token["token"].as_str().unwrap();
    let listed: serde_json::Value = api
        .send(Method::GET, "/favorites", Some(new_token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]));
    assert_eq!(
        api.send(Method::GET, "/favorites", Some(token), None).await.status(),
        401,
        "the old token does not become the new account's"
    );
}

#[tokio::test]
async fn the_deleted_accounts_favorites_are_gone_from_the_database() {
    let app = spawn_app().await;
    let api = &app.api;
    let email = format!("leaver-{}@example.com", uuid::Uuid::new_v4());
    let credentials = json!({"email": email, "password": "correct horse battery"});
    let signup: serde_json::Value = api
        .send(Method::POST, "/signup", None, Some(credentials))
        .await
        .json()
        .await
        .unwrap();
    let user_id = signup["id"].as_str().unwrap().to_string();
    let token: serde_json::Value = login(api, &email, "correct horse battery").await.json().await.unwrap();
    let token = token["token"].as_str().unwrap();
    for id in ["x", "y"] {
        let favorite = json!({"id": id, "type": "insight", "name": id, "content": "c"});
        assert_eq!(
            api.send(Method::POST, "/favorites", Some(token), Some(favorite))
                .await
                .status(),
            201
        );
    }
    assert_eq!(stored_favorites(&app, &user_id).await, 2);
    assert_eq!(leave(api, token, "correct horse battery").await.status(), 204);
    assert_eq!(stored_favorites(&app, &user_id).await, 0);
}

#[tokio::test]
async fn a_wrong_password_is_a_401_naming_it_and_deletes_nothing() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    let favorite = json!({"id": "kept", "type": "insight", "name": "kept", "content": "c"});
    let added = api
        .send(Method::POST, "/favorites", Some(&session.token), Some(favorite))
        .await;
    assert_eq!(added.status(), 201);

    let refused = leave(api, &session.token, "not my password").await;
    assert_eq!(error_source(refused).await, (401, "/password".into()));

    let kept = api
        .send(Method::GET, "/favorites/kept", Some(&session.token), None)
        .await;
    assert_eq!(kept.status(), 200, "the account and its favorites are still there");
    assert_eq!(login(api, &session.email, "correct horse battery").await.status(), 200);
}

#[tokio::test]
async fn a_missing_or_empty_password_is_a_400_naming_it() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    for body in [
        json!({}),
        json!({"password": ""}),
        json!({"password": null}),
        json!({"password": 12345678}),
    ] {
        let refused = api
            .send(Method::DELETE, "/me", Some(&session.token), Some(body.clone()))
            .await;
        assert_eq!(error_source(refused).await, (400, "/password".into()), "{body}");
    }
    let no_body = api.send(Method::DELETE, "/me", Some(&session.token), None).await;
    assert_eq!(no_body.status(), 415, "a body is required, as JSON");
    let kept = api.send(Method::GET, "/favorites", Some(&session.token), None).await;
    assert_eq!(kept.status(), 200, "nothing was deleted");
}

#[tokio::test]
async fn wrong_passwords_on_leaving_count_as_failed_logins() {
    let app = spawn_app().await;
    let api = &app.api;
    let session = api.new_user().await;
    for attempt in 1..=3 {
        let wrong = leave(api, &session.token, "wrong password").await;
        assert_eq!(wrong.status(), 401, "attempt {attempt}");
    }
    for attempt in 4..=5 {
        assert_eq!(
            login(api, &session.email, "wrong password").await.status(),
            401,
            "attempt {attempt}"
        );
    }
    // Five failures across the two: both refuse the right password until the window ends.
    let login_refused = login(api, &session.email, "correct horse battery").await;
    assert_eq!(login_refused.status(), 429);
    let leave_refused = leave(api, &session.token, "correct horse battery").await;
    assert_eq!(leave_refused.status(), 429);
    let retry_after: u64 = leave_refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
    let kept = api.send(Method::GET, "/favorites", Some(&session.token), None).await;
    assert_eq!(kept.status(), 200, "a throttled deletion deletes nothing");
}
