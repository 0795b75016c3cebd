use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::domain::{Email, Password, UserId};
use crate::metrics::{self, Counter};
use crate::ports::{AccessTokens, FailedLoginCounter, IssuedToken, PasswordHasher, UserByEmail};

pub struct LoginRequest {
    pub email: Email,
    pub password: Password,
    /// Where the attempt comes from (the client's IP address as API Gateway saw it).
    pub source: String,
}

/// Failed attempts allowed per email and per source address in one window.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// `LOGIN_MAX_FAILURES_PER_EMAIL`, default 5: guessing one account's password.
    pub per_email: u64,
    /// `LOGIN_MAX_FAILURES_PER_IP`, default 50: one address trying many accounts (higher,
    /// since many people may share an address behind a NAT).
    pub per_source: u64,
    /// `LOGIN_THROTTLE_WINDOW_SECONDS`, default 900.
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_source: 50,
            window: Duration::from_secs(900),
        }
    }
}

/// Login throttling: failed attempts are counted per email and per source address in fixed
/// windows; once either count reaches its limit, attempts are refused until the window ends,
/// whether or not the password would be right. A success clears the email's count.
///
/// The check happens before the user is looked up and counts unknown emails exactly like
/// known ones, so a 429 says nothing about whether an account exists. A counter store that
/// fails lets logins through (bcrypt still makes guessing slow) and logs why.
pub struct LoginThrottle {
    counter: Arc<dyn FailedLoginCounter>,
    policy: ThrottlePolicy,
}

struct Window {
    email_key: String,
    source_key: String,
    ends: SystemTime,
}

impl LoginThrottle {
    pub fn new(counter: Arc<dyn FailedLoginCounter>, policy: ThrottlePolicy) -> Self {
        Self { counter, policy }
    }

    fn window(&self, request: &LoginRequest) -> Window {
        let length = self.policy.window.as_secs().max(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let index = now / length;
        // Emails are kept only as hashes: the counter store holds no personal data.
        let email: String = Sha256::digest(request.email.as_str().to_lowercase().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Window {
            email_key: format!("email#{email}#{index}"),
            source_key: format!("ip#{}#{index}", request.source),
            ends: UNIX_EPOCH + Duration::from_secs((index + 1) * length),
        }
    }

    /// How long the caller must wait, when over a limit.
    async fn blocked(&self, window: &Window) -> Option<Duration> {
        let keys = [window.email_key.clone(), window.source_key.clone()];
        match self.counter.counts(&keys).await {
            Ok(counts) if counts[0] >= self.policy.per_email || counts[1] >= self.policy.per_source => Some(
                window
                    .ends
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(Duration::from_secs(1)),
            ),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "login throttle unavailable; not throttling"
                );
                None
            }
        }
    }

    async fn failed(&self, window: &Window) {
        let keys = [window.email_key.clone(), window.source_key.clone()];
        // Kept a minute past the window, for clocks that disagree a little.
        let expires = window.ends + Duration::from_secs(60);
        if let Err(error) = self.counter.add_failure(&keys, expires).await {
            tracing::warn!(error = format!("{error:#}"), "could not count a failed login");
        }
    }

    async fn succeeded(&self, window: &Window) {
        if let Err(error) = self.counter.clear(&window.email_key).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not reset the failed logins of an email"
            );
        }
    }
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

pub async fn login(
    users: &dyn UserByEmail,
    hasher: &dyn PasswordHasher,
    tokens: &dyn AccessTokens,
    throttle: &LoginThrottle,
    request: LoginRequest,
) -> Result<LoggedIn, LoginError> {
    let window = throttle.window(&request);
    if let Some(retry_after) = throttle.blocked(&window).await {
        metrics::increment(Counter::LoginThrottled);
        return Err(LoginError::Throttled { retry_after });
    }
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
            throttle.succeeded(&window).await;
            let token = tokens.issue(user.id).await.context("issuing the access token")?;
            Ok(LoggedIn { user: user.id, token })
        }
        _ => {
            throttle.failed(&window).await;
            metrics::increment(Counter::LoginFailures);
            Err(LoginError::InvalidCredentials)
        }
    }
}
