use std::time::Duration;

use anyhow::Context;

use super::throttle::LoginThrottle;
use crate::domain::{Email, Password, UserId};
use crate::ports::{AccessTokens, IssuedToken, PasswordHasher, UserByEmail};

pub struct LoginRequest {
    pub email: Email,
    pub password: Password,
    /// Where the attempt comes from (the client's IP address as API Gateway saw it).
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// One variant for both an unknown email and a wrong password: callers must not be able
    /// to tell them apart, by the answer or by its timing.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many failed attempts for this email or from this address.
    #[error("too many failed logins; retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// A successful login: who logged in, and their token.
pub struct LoggedIn {
    pub user: UserId,
    pub token: IssuedToken,
}

/// The throttle is asked before the user is looked up and counts unknown emails exactly like
/// known ones, so a 429 says nothing about whether an account exists.
pub async fn login(
    users: &dyn UserByEmail,
    hasher: &dyn PasswordHasher,
    tokens: &dyn AccessTokens,
    throttle: &LoginThrottle,
    request: LoginRequest,
) -> Result<LoggedIn, LoginError> {
    let attempt = throttle
        .attempt(&request.email, &request.source)
        .await
        .map_err(|retry_after| LoginError::Throttled { retry_after })?;
    let user = users
        .user_by_email(&request.email)
        .await
        .context("looking up the user")?;
    // Verify even when there is no user: the hasher spends the same time on a dummy hash.
    let matches = hasher
        .verify(&request.password, user.as_ref().map(|u| &u.password_hash))
        .await
        .context("verifying the password")?;
    match user {
        Some(user) if matches => {
            attempt.succeeded().await;
            let token = tokens.issue(user.id).await.context("issuing the access token")?;
            Ok(LoggedIn { user: user.id, token })
        }
        _ => {
            attempt.failed().await;
            Err(LoginError::InvalidCredentials)
        }
    }
}
