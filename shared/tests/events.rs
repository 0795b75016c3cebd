//! Every API Gateway event in `events/` replayed through its function's handler, in process,
//! against a fresh Postgres database: the status must be the one the event's name promises
//! (`events/<function>/<case>-<status>.json`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use shared::adapters::bcrypt::BcryptPasswordHasher;
use shared::config::{Env, Settings};
use shared::domain::{Email, Password, User, UserId};
use shared::functions::{
    AddFavorite, Function, GetFavorite, Health, ListFavorites, Login, RemoveFavorite, Signup, UpdateFavorite,
};
use shared::ports::PasswordHasher;
use shared::wiring::Wiring;
use tower::ServiceExt;

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

#[derive(serde::Deserialize)]
struct Fixture {
    jwt_secret: String,
    user_id: uuid::Uuid,
    email: String,
    password: String,
}

/// The router function `name` serves with the settings it reads from `env`.
async fn router(name: &str, env: &dyn Env) -> Router {
    async fn build<F: Function>(env: &dyn Env) -> Router {
        let settings = F::Settings::from_env(env).unwrap();
        F::build(settings, &Wiring::default()).await.unwrap()
    }
    match name {
        Signup::NAME => build::<Signup>(env).await,
        Login::NAME => build::<Login>(env).await,
        Health::NAME => build::<Health>(env).await,
        AddFavorite::NAME => build::<AddFavorite>(env).await,
        GetFavorite::NAME => build::<GetFavorite>(env).await,
        UpdateFavorite::NAME => build::<UpdateFavorite>(env).await,
        RemoveFavorite::NAME => build::<RemoveFavorite>(env).await,
        ListFavorites::NAME => build::<ListFavorites>(env).await,
        other => panic!("events/{other}: no such function"),
    }
}

#[tokio::test]
async fn every_event_gets_the_status_its_name_promises() {
    // API Gateway REST events carry a stage; the deployed functions ignore it the same way.
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("fixture.json")).unwrap()).unwrap();
    let db = support::postgres().await;
    let hasher = Arc::new(BcryptPasswordHasher::new(4));
    let password_hash = hasher
        .hash(&Password::parse(fixture.password.clone()).unwrap())
        .await
        .unwrap();
    let user = User {
        id: UserId::from_uuid(fixture.user_id),
        email: Email::parse(&fixture.email).unwrap(),
        password_hash,
    };
    db.database.users().insert_user(&user).await.unwrap();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ("BCRYPT_COST", "4"),
    ];

    let mut checked = 0;
    let mut failures = Vec::new();
    let mut functions: Vec<_> = std::fs::read_dir(events_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    functions.sort_by_key(|e| e.file_name());
    for function in functions {
        let name = function.file_name().to_string_lossy().to_string();
        let mut events: Vec<_> = std::fs::read_dir(function.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        events.sort();
        for path in events {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let expected: u16 = stem
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .expect("event names end in -<status>");
            let request = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let response = router(&name, &env).await.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            if status != expected {
                failures.push(format!(
                    "{name}/{stem}: got {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            } else if status >= 400 {
                let errors: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
                assert_eq!(errors["errors"][0]["status"], status.to_string(), "{name}/{stem}");
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} events found");
}
