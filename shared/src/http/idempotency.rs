//! The `Idempotency-Key` header on `POST /signup` and `POST /favorites`: a layer around the
//! route that hands the request to [`crate::usecases::idempotency`] and answers for it.
//!
//! - no header: the request is handled as if this layer were not there;
//! - a malformed key: 400 naming the header;
//! - a key first used with another body: 422; while the first is still handled: 409 with
//!   `Retry-After`; once it is done: its response again, with `Idempotent-Replayed: true`;
//! - the store unreachable: 503 with `Retry-After`; the request is not handled, since it
//!   could not be protected from running twice.
//!
//! On an authenticated route the layer sits behind the authentication layer: a request
//! without a valid token is a 401 before any key is looked at, and keys are scoped per user.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::AuthUser;
use super::error::ApiError;
use crate::ports::StoredResponse;
use crate::usecases::idempotency::{Decision, Idempotency, request_hash};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
const MAX_KEY_LENGTH: usize = 255;

/// What the layer needs: the use case, the operation's name, and the route's body bound.
#[derive(Clone)]
pub struct IdempotencyLayer {
    pub idempotency: Arc<Idempotency>,
    pub operation: &'static str,
    /// The most body bytes the route accepts; a longer body is a 413, and nothing is recorded.
    pub body_limit: usize,
}

/// Why the layer answered instead of the route (the answers are in `error.rs`).
#[derive(Debug)]
pub enum Rejection {
    MalformedKey {
        max_length: usize,
    },
    /// The key was first used with another body.
    Mismatch,
    /// The first request with this key is still being handled.
    InProgress,
    /// The store cannot be reached: the request could not be protected from running twice.
    StoreUnavailable(anyhow::Error),
}

/// `router`'s routes behind the layer. Behind the authentication layer, when the routes have
/// one, so that keys are scoped by the user it recorded.
pub(crate) fn idempotent<S: Clone + Send + Sync + 'static>(router: Router<S>, layer: IdempotencyLayer) -> Router<S> {
    router.route_layer(axum::middleware::from_fn_with_state(layer, handle))
}

async fn handle(State(layer): State<IdempotencyLayer>, request: Request, next: Next) -> Response {
    let Some(raw_key) = request.headers().get(IDEMPOTENCY_KEY) else {
        return next.run(request).await;
    };
    let Some(client_key) = raw_key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LENGTH && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
    else {
        return ApiError::from(Rejection::MalformedKey {
            max_length: MAX_KEY_LENGTH,
        })
        .into_response();
    };
    let caller = request
        .extensions()
        .get::<AuthUser>()
        .map(|AuthUser(user, _)| user.to_string());
    let deadline = deadline(&request);
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, layer.body_limit + 1).await {
        Ok(bytes) if bytes.len() <= layer.body_limit => bytes,
        _ => return ApiError::payload_too_large(layer.body_limit).into_response(),
    };
    let key = Idempotency::record_key(layer.operation, caller.as_deref(), &client_key);
    let hash = request_hash(&bytes);
    let rejection = match layer.idempotency.begin(&key, &hash, deadline).await {
        Ok(Decision::Replay(stored)) => return replay(stored),
        Ok(Decision::Proceed) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            return record(&layer, &key, response).await;
        }
        Ok(Decision::Mismatch) => Rejection::Mismatch,
        Ok(Decision::InProgress) => Rejection::InProgress,
        Err(error) => Rejection::StoreUnavailable(error),
    };
    ApiError::from(rejection).into_response()
}

/// Stores the route's answer under the key, then gives it: stored before answering, since
/// Lambda may freeze the instance once the answer is sent.
async fn record(layer: &IdempotencyLayer, key: &str, response: Response) -> Response {
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
    layer.idempotency.finish(key, stored).await;
    Response::from_parts(parts, Body::from(body))
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
