//! Per-request observability, put around every function's router in one place (`app::run`,
//! `app::run_streaming`), outside everything else, so that it sees every answer: handlers',
//! extractors' rejections, the fallbacks and idempotent replays.
//!
//! - The request id: the caller's `X-Request-ID` when it is sane (1 to 128 visible ASCII
//!   characters), else a new UUID. Handlers get it as [`RequestId`] (the list passes it on to
//!   the enrichment service), and every answer carries it back in one `X-Request-ID` header.
//! - A `request` span around the whole request, its body included: every log line written
//!   meanwhile carries the request id, the Lambda request id, the API Gateway request id and,
//!   once the caller is known, the user id ([`record_user`]). Never a header value other than
//!   the request id: tokens and keys travel in headers.
//! - One `request finished` line when the body has been sent (status, duration, whether it was
//!   sent whole), and the metrics flush at the same moment. For a streamed list that is after
//!   its last byte is handed over and before the stream ends, so before the function's answer
//!   is complete and Lambda may freeze the instance.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::domain::UserId;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-ID` taken from a caller.
const MAX_REQUEST_ID: usize = 128;

/// This request's id: the caller's `X-Request-ID` when usable, else a new UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    fn from_headers(headers: &HeaderMap) -> Self {
        let given = headers
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()));
        Self(given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string))
    }
}

/// The id [`observed`] gave the request; outside it (in-process tests), the same rules.
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<RequestId>() {
            Some(id) => id.clone(),
            None => Self::from_headers(&parts.headers),
        })
    }
}

/// `router` with the request id, span, access line and metrics flush of this module.
pub fn observed(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(observe))
}

/// Adds the authenticated user to the current request's span (and so to its log lines).
pub fn record_user(user: &UserId) {
    tracing::Span::current().record("user_id", display(user));
}

async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::from_headers(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        lambda_request_id = Empty,
        apigw_request_id = Empty,
        user_id = Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    if let Some(context) = request.lambda_context_ref() {
        span.record("lambda_request_id", context.request_id.as_str());
    }
    let apigw_request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.as_deref(),
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.as_deref(),
        _ => None,
    };
    if let Some(apigw_request_id) = apigw_request_id {
        span.record("apigw_request_id", apigw_request_id);
    }
    let header = HeaderValue::from_str(&id.0).expect("a request id is visible ASCII");
    request.extensions_mut().insert(id);

    let response = next.run(request).instrument(span.clone()).await;
    let (mut parts, body) = response.into_parts();
    // `insert`, not `append`: exactly one, whatever a handler may have set.
    parts.headers.insert(X_REQUEST_ID, header);
    let body = ObservedBody {
        inner: body,
        span,
        started,
        status: parts.status.as_u16(),
        finished: false,
    };
    Response::from_parts(parts, Body::new(body))
}

/// The answer's body, watched for its end: sent whole, broken off, or dropped unsent (the
/// client went away). Each frame is produced inside the request's span, so log lines written
/// while a list streams carry its ids too.
struct ObservedBody {
    inner: Body,
    span: tracing::Span,
    started: Instant,
    status: u16,
    finished: bool,
}

impl ObservedBody {
    fn finish(&mut self, complete: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let _entered = self.span.enter();
        tracing::info!(
            status = self.status,
            duration_ms = self.started.elapsed().as_millis() as u64,
            complete,
            "request finished"
        );
        crate::metrics::flush();
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = {
            let _entered = this.span.enter();
            ready!(Pin::new(&mut this.inner).poll_frame(cx))
        };
        match &frame {
            None => this.finish(true),
            Some(Err(_)) => this.finish(false),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        let complete = http_body::Body::is_end_stream(&self.inner);
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn router() -> Router {
        observed(
            Router::new()
                .route("/id", get(|RequestId(id): RequestId| async move { id }))
                .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "none") }),
        )
    }

    async fn call(path: &str, request_id: Option<&str>) -> (Response, String) {
        let mut request = axum::http::Request::builder().uri(path);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = router().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (Response::from_parts(parts, Body::empty()), body)
    }

    fn ids(response: &Response) -> Vec<&str> {
        response
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_sane_request_id_is_handed_to_the_handler_and_echoed_once() {
        let (response, seen) = call("/id", Some("abc-123")).await;
        assert_eq!(seen, "abc-123");
        assert_eq!(ids(&response), ["abc-123"]);
    }

    #[tokio::test]
    async fn an_absent_or_unusable_request_id_is_replaced_by_a_new_one() {
        let too_long = "x".repeat(MAX_REQUEST_ID + 1);
        for given in [None, Some(""), Some("has space"), Some(too_long.as_str())] {
            let (response, seen) = call("/id", given).await;
            assert!(uuid::Uuid::parse_str(&seen).is_ok(), "{given:?} gave {seen}");
            assert_eq!(ids(&response), [seen.as_str()]);
        }
    }

    #[tokio::test]
    async fn answers_the_router_makes_itself_carry_the_request_id_too() {
        let (response, _) = call("/nowhere", Some("r-1")).await;
        assert_eq!(response.status(), 404);
        assert_eq!(ids(&response), ["r-1"]);
    }
}
