//! A small enrichment service for local runs, tests and benchmarks, speaking the contract of
//! infra/enrichment-openapi.yaml, whose latency and faults the caller controls: in process
//! through [`FakeEnrichment::set_mode`], or over HTTP with `PUT /control` (the
//! `enrichment-server` binary). It stands in for an external service we do not run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Answers every asset after `latency_ms`.
    Healthy { latency_ms: u64 },
    /// Answers this HTTP status with no body.
    Status { status: u16 },
    /// Answers 200 with a body that is not JSON.
    Malformed,
    /// Answers every other asset only.
    Partial,
    /// Sends the start of a body, then nothing, forever.
    HangMidBody,
}

/// The control handle of a running fake: its mode, and what it saw.
#[derive(Clone)]
pub struct FakeEnrichment {
    api_key: Arc<str>,
    mode: Arc<Mutex<Mode>>,
    pub calls: Arc<AtomicU64>,
    pub request_ids: Arc<Mutex<Vec<String>>>,
}

impl FakeEnrichment {
    pub fn new(api_key: &str, mode: Mode) -> Self {
        Self {
            api_key: api_key.into(),
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(AtomicU64::new(0)),
            request_ids: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/metadata:batchGet", post(batch_get))
            .route("/control", put(control))
            .with_state(self.clone())
    }
}

/// Starts a fake on a free port of 127.0.0.1; returns its base URL and control handle.
pub async fn spawn(api_key: &str, mode: Mode) -> (String, FakeEnrichment) {
    let fake = FakeEnrichment::new(api_key, mode);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = fake.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, fake)
}

async fn control(State(fake): State<FakeEnrichment>, body: String) -> Response {
    match serde_json::from_str::<Mode>(&body) {
        Ok(mode) => {
            fake.set_mode(mode);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

fn answer<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let metadata: serde_json::Map<String, Value> = ids
        .map(|id| {
            (
                id.clone(),
                json!({"owner": format!("owner of {id}"), "views_last_30_days": 7}),
            )
        })
        .collect();
    json!({ "metadata": metadata }).to_string()
}

async fn batch_get(State(fake): State<FakeEnrichment>, headers: HeaderMap, body: String) -> Response {
    fake.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(&*fake.api_key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        fake.request_ids.lock().unwrap().push(id.to_string());
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let ids: Vec<String> = request["assets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|asset| asset["id"].as_str().map(str::to_string))
        .collect();
    let mode = *fake.mode.lock().unwrap();
    match mode {
        Mode::Healthy { latency_ms } => {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
            answer(ids.iter()).into_response()
        }
        Mode::Status { status } => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Mode::Malformed => "{\"metadata\": [not json".into_response(),
        Mode::Partial => answer(ids.iter().step_by(2)).into_response(),
        Mode::HangMidBody => {
            let start = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from("{\"metadata\":{")) });
            let never = futures::stream::pending();
            Response::new(Body::from_stream(futures::StreamExt::chain(start, never)))
        }
    }
}
