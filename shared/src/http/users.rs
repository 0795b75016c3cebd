//! `POST /signup`, `POST /login` and `DELETE /me`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::{AuthUser, Authentication, authenticated};
use super::error::ApiError;
use super::extract::{JsonBody, SourceIp};
use super::finish;
use super::idempotency::{IdempotencyLayer, idempotent};
use crate::domain::{Email, Invalid, Password};
use crate::ports::{AccessTokens, PasswordHasher, UserByEmail, UserDeleter, UserInserter};
use crate::usecases::cache::CacheGuard;
use crate::usecases::delete_account::{DeleteAccountRequest, delete_account};
use crate::usecases::login::{LoggedIn, LoginRequest, login};
use crate::usecases::signup::{SignupRequest, signup};
use crate::usecases::throttle::LoginThrottle;

/// Credentials are small: 4 KiB leaves room for any legal email and password many times over.
pub const CREDENTIALS_LIMIT: usize = 4 * 1024;

/// `{email, password}` as sent. Fields are optional here so that a missing one is reported by
/// name, like a mistyped one, instead of by serde's generic message.
#[derive(Deserialize)]
struct CredentialsBody {
    email: Option<String>,
    password: Option<String>,
}

impl CredentialsBody {
    fn parse(self) -> Result<(Email, Password), Invalid> {
        let email = self.email.ok_or_else(|| Invalid::new("/email", "is required"))?;
        let password = self.password.ok_or_else(|| Invalid::new("/password", "is required"))?;
        Ok((Email::parse(&email)?, Password::parse(password)?))
    }
}

#[derive(Clone)]
pub struct SignupState {
    pub users: Arc<dyn UserInserter>,
    pub hasher: Arc<dyn PasswordHasher>,
}

/// Behind the idempotency layer: a retried signup gets the first answer, not a 409.
pub fn signup_router(state: SignupState, idempotency: IdempotencyLayer) -> Router {
    finish(
        idempotent(Router::new().route("/signup", post(signup_handler)), idempotency),
        state,
    )
}

async fn signup_handler(
    State(state): State<SignupState>,
    JsonBody(body): JsonBody<CredentialsBody, CREDENTIALS_LIMIT>,
) -> Result<impl IntoResponse, ApiError> {
    let (email, password) = body.parse()?;
    let user = signup(
        state.users.as_ref(),
        state.hasher.as_ref(),
        SignupRequest { email, password },
    )
    .await?;
    super::observe::record_user(&user.id);
    tracing::info!("user signed up");
    Ok((StatusCode::CREATED, Json(json!({ "id": user.id, "email": user.email }))))
}

#[derive(Clone)]
pub struct LoginState {
    pub users: Arc<dyn UserByEmail>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn AccessTokens>,
    pub throttle: Arc<LoginThrottle>,
}

pub fn login_router(state: LoginState) -> Router {
    finish(Router::new().route("/login", post(login_handler)), state)
}

async fn login_handler(
    State(state): State<LoginState>,
    SourceIp(source): SourceIp,
    JsonBody(body): JsonBody<CredentialsBody, CREDENTIALS_LIMIT>,
) -> Result<impl IntoResponse, ApiError> {
    let (email, password) = body.parse()?;
    let request = LoginRequest {
        email,
        password,
        source,
    };
    let LoggedIn { user, token } = login(
        state.users.as_ref(),
        state.hasher.as_ref(),
        state.tokens.as_ref(),
        &state.throttle,
        request,
    )
    .await?;
    super::observe::record_user(&user);
    Ok(Json(json!({
        "token": token.token,
        "token_type": "Bearer",
        "expires_in": token.expires_in_seconds,
    })))
}

/// `{password}`: the account's password again, to confirm its deletion.
#[derive(Deserialize)]
struct ConfirmationBody {
    password: Option<String>,
}

impl ConfirmationBody {
    fn parse(self) -> Result<Password, Invalid> {
        Password::parse(self.password.ok_or_else(|| Invalid::new("/password", "is required"))?)
    }
}

#[derive(Clone)]
pub struct DeleteAccountState {
    pub users: Arc<dyn UserDeleter>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttle: Arc<LoginThrottle>,
    /// The user's cache entry goes with the account.
    pub cache: Option<Arc<CacheGuard>>,
}

/// Behind the authentication layer; no idempotency layer: a retry after the account went has
/// no token left to be let in with (401), and one before is the same deletion again.
pub fn delete_account_router(state: DeleteAccountState, authentication: Authentication) -> Router {
    authenticated(
        finish(Router::new().route("/me", delete(delete_account_handler)), state),
        authentication,
    )
}

async fn delete_account_handler(
    State(state): State<DeleteAccountState>,
    AuthUser(user, _): AuthUser,
    SourceIp(source): SourceIp,
    JsonBody(body): JsonBody<ConfirmationBody, CREDENTIALS_LIMIT>,
) -> Result<StatusCode, ApiError> {
    let password = body.parse()?;
    let request = DeleteAccountRequest { user, password, source };
    delete_account(
        state.users.as_ref(),
        state.hasher.as_ref(),
        &state.throttle,
        state.cache.as_deref(),
        request,
    )
    .await?;
    tracing::info!("account deleted");
    Ok(StatusCode::NO_CONTENT)
}
