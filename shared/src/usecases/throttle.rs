//! The login throttle: failed password checks counted per email and per source address, for
//! every operation that checks a password (`POST /login`, `DELETE /me`), in the same counters,
//! so that guessing through one counts against the other.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::domain::Email;
use crate::metrics::{self, Counter};
use crate::ports::FailedLoginCounter;

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

/// Failed attempts are counted per email and per source address in fixed windows; once either
/// count reaches its limit, attempts are refused until the window ends, whether or not the
/// password would be right. A success clears the email's count.
///
/// A counter store that fails lets attempts through (bcrypt still makes guessing slow) and
/// logs why.
pub struct LoginThrottle {
    counter: Arc<dyn FailedLoginCounter>,
    policy: ThrottlePolicy,
}

/// One password check let through by the throttle: the caller reports how it went.
#[must_use = "report the check's outcome: failed() or succeeded()"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    email_key: String,
    source_key: String,
    window_ends: SystemTime,
}

impl LoginThrottle {
    pub fn new(counter: Arc<dyn FailedLoginCounter>, policy: ThrottlePolicy) -> Self {
        Self { counter, policy }
    }

    /// Starts a password check of `email` from `source` (the client's address), or refuses it
    /// with how long to wait, when either is over its limit (counted as `LoginThrottled`).
    pub async fn attempt(&self, email: &Email, source: &str) -> Result<Attempt<'_>, Duration> {
        let length = self.policy.window.as_secs().max(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let index = now / length;
        // Emails are kept only as hashes: the counter store holds no personal data.
        let email: String = Sha256::digest(email.as_str().to_lowercase().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let attempt = Attempt {
            throttle: self,
            email_key: format!("email#{email}#{index}"),
            source_key: format!("ip#{source}#{index}"),
            window_ends: UNIX_EPOCH + Duration::from_secs((index + 1) * length),
        };
        match self.counter.counts(&attempt.keys()).await {
            Ok(counts) if counts[0] >= self.policy.per_email || counts[1] >= self.policy.per_source => {
                metrics::increment(Counter::LoginThrottled);
                Err(attempt
                    .window_ends
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(Duration::from_secs(1)))
            }
            Ok(_) => Ok(attempt),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "login throttle unavailable; not throttling"
                );
                Ok(attempt)
            }
        }
    }
}

impl Attempt<'_> {
    fn keys(&self) -> [String; 2] {
        [self.email_key.clone(), self.source_key.clone()]
    }

    /// The password was wrong (or, for a login, the email unknown): counted against both, and
    /// as `LoginFailures`.
    pub async fn failed(self) {
        metrics::increment(Counter::LoginFailures);
        // Kept a minute past the window, for clocks that disagree a little.
        let expires = self.window_ends + Duration::from_secs(60);
        if let Err(error) = self.throttle.counter.add_failure(&self.keys(), expires).await {
            tracing::warn!(error = format!("{error:#}"), "could not count a failed login");
        }
    }

    /// The password was right: the email's failures are forgotten.
    pub async fn succeeded(self) {
        if let Err(error) = self.throttle.counter.clear(&self.email_key).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not reset the failed logins of an email"
            );
        }
    }
}
