//! The `Idempotency-Key` header on `POST /signup` and `POST /favorites`: a layer around the
//! route that hands the request to [`crate::usecases::idempotency`] and answers for it.
//!
//! - no header: the request is handled as if this layer were not there;
//! - a malformed key: 400 naming the header;
//! - a key first used with another body: 422; while the first is still handled: 409 with
//!   `Retry-After`; once it is done: its response again, with `Idempotent-Replayed: true`;
//! - the store unreachable: 503 with `Retry-After`; the request is not handled, since it
//!   could not be protected from running twice.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{AuthUser, bearer_token};
use crate::ports::{AccessTokens, StoredResponse};
use crate::usecases::idempotency::{Decision, Idempotency, request_hash};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
const MAX_KEY_LENGTH: usize = 255;

/// What the layer needs: the use case, the operation's name, and for an authenticated
/// operation the token verifier, so that keys are scoped per user.
#[derive(Clone)]
pub struct IdempotencyLayer {
    pub idempotency: Arc<Idempotency>,
    pub operation: &'static str,
    pub tokens: Option<Arc<dyn AccessTokens>>,
    /// The most body bytes the route accepts; a longer body is the route's 413 to give.
    pub body_limit: usize,
}

/// Wraps `router` (one function's routes) in the layer, when the function has one.
pub fn idempotent(router: Router, layer: Option<IdempotencyLayer>) -> Router {
    match layer {
        Some(layer) => router.layer(axum::middleware::from_fn_with_state(layer, handle)),
        None => router,
    }
}

async fn handle(State(layer): State<IdempotencyLayer>, mut request: Request, next: Next) -> Response {
    let Some(raw_key) = request.headers().get(IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let Some(client_key) = raw_key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LENGTH && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
    else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"),
        )
        .in_header("Idempotency-Key")
        .into_response();
    };
    let caller = match &layer.tokens {
        None => None,
        Some(tokens) => {
            let token = request.headers().get(header::AUTHORIZATION).and_then(bearer_token);
            // Not authenticated: the route answers 401, and there is nothing to protect.
            let Some(token) = token else {
                return next.run(request).await;
            };
            let Ok(user) = tokens.verify(token).await else {
                return next.run(request).await;
            };
            super::observe::record_user(&user);
            // The route's `AuthUser` takes it from here instead of verifying the token again.
            request.extensions_mut().insert(AuthUser(user));
            Some(user.to_string())
        }
    };
    let deadline = deadline(&request);
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, layer.body_limit + 1).await {
        Ok(bytes) if bytes.len() <= layer.body_limit => bytes,
        // Too large: the route says so, and nothing is recorded.
        _ => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large").into_response();
        }
    };
    let key = Idempotency::record_key(layer.operation, caller.as_deref(), &client_key);
    let hash = request_hash(&bytes);
    match layer.idempotency.begin(&key, &hash, deadline).await {
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "the idempotency store failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotent requests cannot be handled right now; retry with the same key",
            )
            .retry_after(1)
            .into_response()
        }
        Ok(Decision::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used with a different request body; use a new key for a new request",
        )
        .in_header("Idempotency-Key")
        .into_response(),
        Ok(Decision::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "a request with this Idempotency-Key is still being handled; retry shortly with the same key",
        )
        .in_header("Idempotency-Key")
        .retry_after(1)
        .into_response(),
        Ok(Decision::Replay(stored)) => replay(stored),
        Ok(Decision::Proceed) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (parts, body) = response.into_parts();
            // Responses of these routes are small JSON documents.
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let stored = StoredResponse {
                status: parts.status.as_u16(),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: body.to_vec(),
            };
            // Stored before answering: Lambda may freeze the instance once the answer is sent.
            layer.idempotency.finish(&key, stored).await;
            Response::from_parts(parts, Body::from(body))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(content_type) = stored.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// When Lambda will stop this invocation, from the runtime's context (absent in tests).
fn deadline(request: &Request) -> Option<SystemTime> {
    let context = request.extensions().get::<lambda_http::Context>()?;
    Some(UNIX_EPOCH + Duration::from_millis(context.deadline))
}
