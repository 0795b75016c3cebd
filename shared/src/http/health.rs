//! `GET /health`: each dependency's state; 503 when the database, the one dependency the
//! service cannot work without, does not answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::finish;
use crate::ports::DatabaseHealth;

/// Health is asked by load balancers and humans in a hurry: answer within this, whatever.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HealthState {
    pub database: Arc<dyn DatabaseHealth>,
}

pub fn health_router(state: HealthState) -> Router {
    finish(Router::new().route("/health", get(health_handler)), state)
}

async fn health_handler(State(state): State<HealthState>) -> Response {
    let database = match tokio::time::timeout(PING_TIMEOUT, state.database.ping()).await {
        Ok(Ok(())) => json!({ "status": "up" }),
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "health: database is down");
            json!({ "status": "down" })
        }
        Err(_) => {
            tracing::warn!("health: database did not answer within {PING_TIMEOUT:?}");
            json!({ "status": "down", "detail": "timed out" })
        }
    };
    let up = database["status"] == "up";
    let dependencies = json!({ "database": database });
    if up {
        return (
            StatusCode::OK,
            Json(json!({ "status": "ok", "dependencies": dependencies })),
        )
            .into_response();
    }
    // A JSON:API error document (503, Retry-After), with the dependencies beside the error.
    ApiError::service_unavailable("the database is unreachable").into_response_with(|body| {
        body["status"] = json!("unavailable");
        body["dependencies"] = dependencies;
    })
}
