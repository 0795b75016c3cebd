use anyhow::Context;

use crate::domain::{Email, Password};
use crate::ports::{AccessTokens, IssuedToken, PasswordHasher, UserByEmail};

pub struct LoginRequest {
    pub email: Email,
    pub password: Password,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// One variant for both an unknown email and a wrong password: callers must not be able
    /// to tell them apart, by the answer or by its timing.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

pub async fn login(
    users: &dyn UserByEmail,
    hasher: &dyn PasswordHasher,
    tokens: &dyn AccessTokens,
    request: LoginRequest,
) -> Result<IssuedToken, LoginError> {
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
        Some(user) if matches => Ok(tokens.issue(user.id).context("issuing the access token")?),
        _ => Err(LoginError::InvalidCredentials),
    }
}
