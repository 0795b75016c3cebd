//! Authentication: the one place a bearer token is verified. [`authenticated`] puts a layer in
//! front of a function's routes that checks `Authorization: Bearer <token>` once and answers
//! 401 when it is missing, malformed, expired or forged, or names a user whose account has been
//! deleted since; behind it the user is known to every layer (the idempotency layer scopes keys
//! by user) and handler ([`AuthUser`]).
//!
//! That the account still exists is one primary-key lookup per request, and the only one the
//! layer makes: it reads the user's row, whose favorites version the list then takes from here
//! (its ETag and its cache check) instead of reading the row a second time. The writes cannot
//! stand in for it: an idempotent replay answers without writing, and an update or a removal of
//! a deleted user's favorite finds no favorite (a 404, not the 401 a refused token is).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::domain::UserId;
use crate::ports::{AccessTokens, Account, AccountLookup, TokenRejected};

/// The user a valid bearer token names, and what the authentication layer read of their account.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId, pub Account);

/// What the authentication layer checks a request with: the token's signature and claims, then
/// the token's user in the store.
#[derive(Clone)]
pub struct Authentication {
    pub tokens: Arc<dyn AccessTokens>,
    pub accounts: Arc<dyn AccountLookup>,
}

/// `router`'s routes behind the authentication layer. Only matched routes: an unknown path
/// is a 404 and a wrong method a 405, token or not, as before any route runs.
pub(crate) fn authenticated(router: Router, authentication: Authentication) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(authentication, authenticate))
}

async fn authenticate(State(authentication): State<Authentication>, mut request: Request, next: Next) -> Response {
    match verify(&authentication, request.headers()).await {
        Ok(user) => {
            super::observe::record_user(&user.0);
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn verify(authentication: &Authentication, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer <token> header is required"))?;
    let token = bearer_token(header).ok_or(TokenRejected::Invalid)?;
    let user = authentication.tokens.verify(token).await?;
    let account = authentication
        .accounts
        .account(user)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::account_gone)?;
    Ok(AuthUser(user, account))
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
    use crate::adapters::sql::Database;
    use crate::domain::{Email, PasswordHash, User};

    struct Setup {
        tokens: Arc<JwtAccessTokens>,
        database: Database,
    }

    impl Setup {
        async fn new() -> Self {
            Self {
                tokens: Arc::new(JwtAccessTokens::new(
                    &TokenPolicy::default(),
                    Arc::new(KeyRing::fixed("0123456789abcdef0123456789abcdef".to_string().into())),
                )),
                database: Database::in_memory().await,
            }
        }

        /// A stored user and a bearer token of theirs.
        async fn user(&self) -> (UserId, String) {
            let user = User {
                id: UserId::generate(),
                email: Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4())).unwrap(),
                password_hash: PasswordHash::new("$2b$04$hash".into()),
            };
            self.database.users().insert_user(&user).await.unwrap();
            (user.id, self.bearer(user.id).await)
        }

        async fn bearer(&self, user: UserId) -> String {
            format!("Bearer {}", self.tokens.issue(user).await.unwrap().token)
        }

        fn router(&self) -> Router {
            let routes =
                Router::new().route(
                    "/me",
                    get(|AuthUser(user, account): AuthUser| async move {
                        format!("{user} {}", account.favorites_version.0)
                    }),
                );
            let authentication = Authentication {
                tokens: self.tokens.clone(),
                accounts: self.database.users(),
            };
            authenticated(routes, authentication).fallback(|| async { ApiError::not_found("no such route") })
        }
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
    async fn a_valid_token_reaches_the_route_as_its_user_with_their_account() {
        let setup = Setup::new().await;
        let (user, bearer) = setup.user().await;
        let (code, body) = status(setup.router(), "/me", Some(&bearer)).await;
        assert_eq!((code, body), (200, format!("{user} 0")));
    }

    #[tokio::test]
    async fn a_missing_or_malformed_token_is_a_401_before_the_route() {
        let setup = Setup::new().await;
        for authorization in [None, Some("Bearer"), Some("Basic abc"), Some("Bearer not.a.token")] {
            let (code, body) = status(setup.router(), "/me", authorization).await;
            assert_eq!(code, 401, "{authorization:?}");
            assert!(body.contains("\"errors\""), "{body}");
        }
    }

    #[tokio::test]
    async fn a_valid_token_of_a_deleted_account_is_a_401_before_the_route() {
        let setup = Setup::new().await;
        let (user, bearer) = setup.user().await;
        assert!(setup.database.users().delete_user(user).await.unwrap());
        let (code, body) = status(setup.router(), "/me", Some(&bearer)).await;
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("no longer exists"), "{body}");
        let never_stored = setup.bearer(UserId::generate()).await;
        assert_eq!(status(setup.router(), "/me", Some(&never_stored)).await.0, 401);
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_without_a_token() {
        let setup = Setup::new().await;
        assert_eq!(status(setup.router(), "/elsewhere", None).await.0, 404);
    }
}
