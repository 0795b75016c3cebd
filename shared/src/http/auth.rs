//! Authentication: the one place a bearer token is verified. [`authenticated`] puts a layer in
//! front of a function's routes that checks `Authorization: Bearer <token>` once and answers
//! 401 when it is missing, malformed, expired or forged; behind it the user is known to every
//! layer (the idempotency layer scopes keys by user) and handler ([`AuthUser`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::domain::UserId;
use crate::ports::{AccessTokens, TokenRejected};

/// The user a valid bearer token names, as the authentication layer recorded it.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

/// `router`'s routes behind the authentication layer. Only matched routes: an unknown path
/// is a 404 and a wrong method a 405, token or not, as before any route runs.
pub(crate) fn authenticated(router: Router, tokens: Arc<dyn AccessTokens>) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(tokens, authenticate))
}

async fn authenticate(State(tokens): State<Arc<dyn AccessTokens>>, mut request: Request, next: Next) -> Response {
    match verify(tokens.as_ref(), request.headers()).await {
        Ok(user) => {
            super::observe::record_user(&user);
            request.extensions_mut().insert(AuthUser(user));
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn verify(tokens: &dyn AccessTokens, headers: &HeaderMap) -> Result<UserId, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer <token> header is required"))?;
    let token = bearer_token(header).ok_or(TokenRejected::Invalid)?;
    Ok(tokens.verify(token).await?)
}

/// The token of an `Authorization: Bearer <token>` header, when that is what the header holds.
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // A route that takes a user but is not behind the layer is a wiring mistake: fail
        // closed, never as if the request were someone's.
        parts.extensions.get::<AuthUser>().copied().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "a route that needs a user is not behind the authentication layer"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::adapters::jwt::{JwtAccessTokens, KeyRing, TokenPolicy};

    fn tokens() -> Arc<JwtAccessTokens> {
        Arc::new(JwtAccessTokens::new(
            &TokenPolicy::default(),
            Arc::new(KeyRing::fixed("0123456789abcdef0123456789abcdef".to_string().into())),
        ))
    }

    fn router(tokens: Arc<JwtAccessTokens>) -> Router {
        let routes = Router::new().route("/me", get(|AuthUser(user): AuthUser| async move { user.to_string() }));
        authenticated(routes, tokens).fallback(|| async { ApiError::not_found("no such route") })
    }

    async fn status(router: Router, path: &str, authorization: Option<&str>) -> (u16, String) {
        let mut request = axum::http::Request::builder().uri(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_valid_token_reaches_the_route_as_its_user() {
        let tokens = tokens();
        let user = UserId::generate();
        let token = tokens.issue(user).await.unwrap().token;
        let (code, body) = status(router(tokens), "/me", Some(&format!("Bearer {token}"))).await;
        assert_eq!((code, body), (200, user.to_string()));
    }

    #[tokio::test]
    async fn a_missing_or_malformed_token_is_a_401_before_the_route() {
        for authorization in [None, Some("Bearer"), Some("Basic abc"), Some("Bearer not.a.token")] {
            let (code, body) = status(router(tokens()), "/me", authorization).await;
            assert_eq!(code, 401, "{authorization:?}");
            assert!(body.contains("\"errors\""), "{body}");
        }
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_without_a_token() {
        assert_eq!(status(router(tokens()), "/elsewhere", None).await.0, 404);
    }
}
