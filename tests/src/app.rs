//! The API in this process (zero2prod's `spawn_app`): every function's router, routed as
//! template.yaml routes it, served on 127.0.0.1:0 against a fresh database, with the production
//! adapters on the test services: Postgres, the idempotency and login-throttle tables and the
//! JWT key in moto (`AWS_ENDPOINT_URL`), the cache in Redis when `TEST_REDIS_URL` is set.
//!
//! For HTTP behaviour. There is no runtime emulator here: what lambda_http's conversion, the
//! streaming runtime and API Gateway add is checked against the emulators (`smoke`,
//! `request_ids`: `cargo lambda watch`, then the deployed shape of `make stack`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::routing::any;
use http::Method;
use shared::wiring::Wiring;
use tower::ServiceExt;

use crate::Api;
use crate::database::{TestDatabase, admin_url};
use crate::stack::transformed::GatewayResponse;
use crate::stack::unknown_route;
use crate::template::{Template, repo_root};

/// The app while it runs: its client, its database. Dropping it stops the server.
pub struct App {
    pub api: Api,
    pub database: TestDatabase,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts the app, or panics saying what is missing (the services `make test` starts).
pub async fn spawn_app() -> App {
    spawn()
        .await
        .unwrap_or_else(|e| panic!("could not start the app in process: {e:#}"))
}

async fn spawn() -> anyhow::Result<App> {
    let database = TestDatabase::create(&admin_url()?, "favorites_app", None).await?;
    let prefix = format!("favorites-app-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let jwt_key = crate::bench::random_hex(64);
    let aws = crate::aws::create(&prefix, &jwt_key, None).await?;
    let mut env = BTreeMap::from([
        ("DATABASE_URL".to_string(), database.url.clone()),
        ("JWT_SECRET_ARN".to_string(), aws.jwt_secret_arn),
        ("IDEMPOTENCY_TABLE".to_string(), aws.idempotency_table),
        ("LOGIN_THROTTLE_TABLE".to_string(), aws.login_throttle_table),
        ("BCRYPT_COST".to_string(), "4".to_string()),
    ]);
    if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
        env.insert("REDIS_URL".to_string(), redis);
    }
    let template = Template::load(&repo_root().join("template.yaml"))?;
    let router = routed(&template, &env).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the in-process app's server failed");
    });
    Ok(App {
        api: Api::new(&format!("http://{address}")),
        database,
        server,
    })
}

/// One router for the whole API: each route of the template goes to the router of the function
/// it names, wrapped in the request layer every function has (`observed`); anything else gets
/// the template's answer for an unknown route.
async fn routed(template: &Template, env: &BTreeMap<String, String>) -> anyhow::Result<Router> {
    let wiring = Wiring::default();
    let mut functions: HashMap<String, Router> = HashMap::new();
    let mut paths: BTreeMap<String, HashMap<Method, Router>> = BTreeMap::new();
    for (binary, route) in template.routes() {
        if !functions.contains_key(&binary) {
            let router = shared::functions::router(&binary, env, &wiring).await?;
            functions.insert(binary.clone(), shared::http::observe::observed(router));
        }
        let method = Method::from_bytes(route.method.as_bytes()).with_context(|| format!("route {route}"))?;
        paths
            .entry(route.path)
            .or_default()
            .insert(method, functions[&binary].clone());
    }
    let responses = Arc::new(gateway_responses(template));
    let mut app = Router::new();
    for (path, methods) in paths {
        let methods = Arc::new(methods);
        let responses = responses.clone();
        app = app.route(
            &path,
            any(move |mut request: Request| {
                let function = methods.get(request.method()).cloned();
                // The function gets the request as API Gateway would pass it on: without what
                // this router noted (its path parameters would add to the function's own).
                request.extensions_mut().clear();
                let responses = responses.clone();
                async move {
                    match function {
                        Some(function) => function.oneshot(request).await.unwrap_or_else(|never| match never {}),
                        None => unknown_route(&responses),
                    }
                }
            }),
        );
    }
    Ok(app.fallback(move || std::future::ready(unknown_route(&responses))))
}

/// The template's own answers of API Gateway (`GatewayResponses` of its REST API), by kind.
fn gateway_responses(template: &Template) -> BTreeMap<String, GatewayResponse> {
    template
        .resources()
        .filter_map(|(_, resource)| resource["Properties"]["GatewayResponses"].as_object())
        .flatten()
        .map(|(kind, response)| {
            let response = GatewayResponse::read(&response["StatusCode"], &response["ResponseTemplates"]);
            (kind.clone(), response)
        })
        .collect()
}
