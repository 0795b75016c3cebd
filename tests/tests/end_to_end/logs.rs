//! The functions' logs, as the emulator collects them (`E2E_LOG`, which `make test` sets): every
//! request leaves a line with its ids, and no secret ever reaches them. The secrets are fed
//! through every function (passwords, tokens, an Idempotency-Key) or configured by `make test`
//! (the JWT key, the AWS credentials, the database password), then looked for in the whole log.

use std::time::{Duration, Instant};

use e2e::Api;
use reqwest::Method;
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make test`"))
}

/// The log's lines from the functions (JSON), once it holds a `request finished` line for each
/// of `request_ids`: the emulator copies the functions' output on its own schedule.
async fn log_with(path: &str, request_ids: &[String]) -> (String, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let finished = |id: &String| {
            lines
                .iter()
                .any(|line| line["message"] == "request finished" && line["span"]["request_id"] == id.as_str())
        };
        let missing: Vec<&String> = request_ids.iter().filter(|id| !finished(id)).collect();
        if missing.is_empty() {
            return (text, lines);
        }
        assert!(
            Instant::now() < deadline,
            "no `request finished` line in {path} for {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A request of every function, each with a secret in it, each with its own `X-Request-ID`.
struct Run {
    api: Api,
    marker: String,
    sent: Vec<String>,
}

impl Run {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> reqwest::Response {
        let id = format!("{}-{}", self.marker, self.sent.len());
        self.sent.push(id.clone());
        let mut headers = vec![("x-request-id", id.as_str())];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        self.api.send_with(method, path, token, body, &headers).await
    }
}

#[tokio::test]
async fn every_request_is_logged_with_its_ids_and_no_secret_reaches_the_logs() {
    let log = env("E2E_LOG");
    let marker = format!("logs-{}", uuid::Uuid::new_v4());
    let mut run = Run {
        api: Api::from_env(),
        marker,
        sent: Vec::new(),
    };
    let email = format!("logs-{}@example.com", uuid::Uuid::new_v4());
    let password = format!("password-{}", uuid::Uuid::new_v4());
    let wrong_password = format!("wrong-{}", uuid::Uuid::new_v4());
    let rejected_password = format!("rejected-{}", uuid::Uuid::new_v4());
    let leaving_password = format!("leaving-{}", uuid::Uuid::new_v4());
    let key = format!("idempotency-{}", uuid::Uuid::new_v4());
    let credentials = json!({"email": email, "password": password});

    let signup = run
        .send(Method::POST, "/signup", None, Some(credentials.clone()), Some(&key))
        .await;
    assert_eq!(signup.status(), 201);
    let user: Value = signup.json().await.unwrap();
    let replay = run
        .send(Method::POST, "/signup", None, Some(credentials.clone()), Some(&key))
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let bad_signup = json!({"email": "not an email", "password": rejected_password});
    assert_eq!(
        run.send(Method::POST, "/signup", None, Some(bad_signup), None)
            .await
            .status(),
        400
    );
    let wrong = json!({"email": email, "password": wrong_password});
    assert_eq!(
        run.send(Method::POST, "/login", None, Some(wrong), None).await.status(),
        401
    );
    let login = run.send(Method::POST, "/login", None, Some(credentials), None).await;
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = format!(
        "{}{}",
        &token[..token.rfind('.').unwrap() + 1],
        uuid::Uuid::new_v4().simple()
    );
    let t = Some(token.as_str());

    assert_eq!(run.send(Method::GET, "/health", t, None, None).await.status(), 200);
    let asset = json!({"id": "logged", "type": "insight", "name": "n", "content": "c"});
    let add_key = format!("{key}-add");
    assert_eq!(
        run.send(Method::POST, "/favorites", t, Some(asset), Some(&add_key))
            .await
            .status(),
        201
    );
    assert_eq!(
        run.send(Method::GET, "/favorites/logged", t, None, None).await.status(),
        200
    );
    assert_eq!(
        run.send(Method::GET, "/favorites/logged", Some(&forged), None, None)
            .await
            .status(),
        401
    );
    let patch = json!({"description": "d"});
    assert_eq!(
        run.send(Method::PATCH, "/favorites/logged", t, Some(patch), None)
            .await
            .status(),
        200
    );
    assert_eq!(run.send(Method::GET, "/favorites", t, None, None).await.status(), 200);
    assert_eq!(
        run.send(Method::DELETE, "/favorites/logged", t, None, None)
            .await
            .status(),
        204
    );
    let leave = |password: &str| Some(json!({"password": password}));
    assert_eq!(
        run.send(Method::DELETE, "/me", t, leave(&leaving_password), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        run.send(Method::DELETE, "/me", t, leave(&password), None)
            .await
            .status(),
        204
    );

    let (text, lines) = log_with(&log, &run.sent).await;

    // Every request's line carries its ids; the authenticated ones their user.
    for (n, id) in run.sent.iter().enumerate() {
        let line = lines
            .iter()
            .find(|line| line["message"] == "request finished" && line["span"]["request_id"] == id.as_str())
            .unwrap();
        let span = &line["span"];
        assert!(
            span["lambda_request_id"].as_str().is_some_and(|v| !v.is_empty()),
            "{line}"
        );
        assert!(
            span["apigw_request_id"].as_str().is_some_and(|v| !v.is_empty()),
            "{line}"
        );
        // Signup and login name the user, and so does every call that checks the good token
        // (not health, which ignores it, nor a replayed signup, answered from its record).
        let authenticated = matches!(n, 0 | 4 | 6 | 7 | 9..=13);
        if authenticated {
            assert_eq!(span["user_id"], user["id"], "request {n}: {line}");
        } else {
            assert!(span.get("user_id").is_none(), "request {n}: {line}");
        }
    }

    let mut secrets = vec![
        ("a password", password),
        ("a wrong password", wrong_password),
        ("a password of a rejected signup", rejected_password),
        ("a wrong password confirming a deletion", leaving_password),
        (
            "an access token's signature",
            token[token.rfind('.').unwrap()..].to_string(),
        ),
        (
            "a forged token's signature",
            forged[forged.rfind('.').unwrap()..].to_string(),
        ),
        ("an Idempotency-Key", key),
        ("the JWT key", env("E2E_JWT_SECRET")),
        ("the AWS secret access key", env("E2E_AWS_SECRET_ACCESS_KEY")),
        ("the AWS session token", env("E2E_AWS_SESSION_TOKEN")),
    ];
    let database = reqwest::Url::parse(&env("E2E_EMULATOR_DATABASE_URL")).unwrap();
    match database.password() {
        Some(password) => secrets.push(("the database password", password.to_string())),
        None => eprintln!("the database URL has no password here; that secret is not checked"),
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to look for");
        assert!(!text.contains(secret.as_str()), "{what} is in {log}");
    }
    for (what, pattern) in [
        ("a bcrypt hash", "$2b$"),
        ("a bcrypt hash", "$2a$"),
        ("a bcrypt hash", "$2y$"),
    ] {
        assert!(!text.contains(pattern), "{what} ({pattern}…) is in {log}");
    }
    let jwt_shaped = text.match_indices("eyJ").any(|(at, _)| {
        let rest = &text[at..];
        let first = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        first.is_some_and(|end| rest[end..].starts_with(".eyJ"))
    });
    assert!(!jwt_shaped, "a JWT is in {log}");
}
