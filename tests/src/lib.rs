//! Helpers for the end-to-end tests: a client for the API, whether in this process (`app`) or
//! under a Lambda runtime emulator that `make test` starts (`cargo lambda watch`, the stack),
//! whose address it passes in `E2E_BASE_URL`.
//!
//! - `app`: the whole API in this process (`spawn_app`), for HTTP behaviour
//! - `aws`: the tables and secrets of the production wiring, in a local moto server
//! - `runtime_api`: a stand-in for Lambda's runtime API, to drive and time one function binary
//! - `database`: throwaway Postgres databases, created, migrated and dropped
//! - `enrichment_server`: a fake enrichment service
//! - `events`: the sample events of `events/`, listed or patched into a request
//! - `template`: template.yaml resolved for a deployment target, offline
//! - `rie`: one function binary under AWS's runtime interface emulator
//! - `stack`: the deployed shape on 127.0.0.1 (`make stack`): template, stand-ins, gateway
//! - `bench`: the benchmarks of `make bench-*` (the `bench` binary)

pub mod app;
pub mod aws;
pub mod bench;
pub mod database;
pub mod enrichment_server;
pub mod events;
pub mod rie;
pub mod runtime_api;
pub mod stack;
pub mod template;

use reqwest::{Method, Response};
use serde_json::{Value, json};

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Session {
    pub email: String,
    pub token: String,
}

impl Api {
    pub fn from_env() -> Self {
        let base = std::env::var("E2E_BASE_URL").unwrap_or_else(|_| {
            panic!("E2E_BASE_URL is not set: run `make test`, which starts the API under the Lambda emulator")
        });
        Self::new(&base)
    }

    /// A client of the API at `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap();
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and reads the whole answer before returning it. Tests never leave a
    /// body unread: a client hanging up early makes the local emulator lose the invocation now
    /// and then, after which that function no longer answers (docs/local-emulator.md).
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        self.send_with(method, path, token, body, &[]).await
    }

    /// Like [`Api::send`], with these headers too.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.http.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read_fully(request.send().await.unwrap()).await
    }

    /// Like [`Api::send`], with an `Idempotency-Key` header.
    pub async fn send_idempotent(&self, path: &str, token: Option<&str>, key: &str, body: &Value) -> Response {
        let mut request = self.http.post(self.url(path)).header("idempotency-key", key).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read_fully(request.send().await.unwrap()).await
    }

    /// Signs up a new user with a unique email and logs in.
    pub async fn new_user(&self) -> Session {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4());
        let credentials = json!({"email": email, "password": "correct horse battery"});
        let signup = self
            .send(Method::POST, "/signup", None, Some(credentials.clone()))
            .await;
        assert_eq!(signup.status(), 201, "signup: {}", signup.text().await.unwrap());
        let login = self.send(Method::POST, "/login", None, Some(credentials)).await;
        assert_eq!(login.status(), 200);
        let body: Value = login.json().await.unwrap();
        Session {
            email,
            token: body["token"].as_str().unwrap().to_string(),
        }
    }
}

/// The JSON:API error's `source` (pointer, parameter or header) of an error response.
pub async fn error_source(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let source = &body["errors"][0]["source"];
    let named = source["pointer"]
        .as_str()
        .or(source["parameter"].as_str())
        .or(source["header"].as_str())
        .unwrap_or("<none>")
        .to_string();
    (status, named)
}

/// The same response with its body already read to the end.
pub async fn read_fully(response: Response) -> Response {
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await.unwrap();
    Response::from(builder.body(body).unwrap())
}
