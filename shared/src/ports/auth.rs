use async_trait::async_trait;

use crate::domain::{Password, PasswordHash, UserId};

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A salted, slow hash of the password. Runs off the async executor.
    async fn hash(&self, password: &Password) -> anyhow::Result<PasswordHash>;

    /// Whether `password` matches `hash`.
    ///
    /// With `hash: None` (no such user) it MUST still spend the same time as a real
    /// verification and return `false`, so that a login cannot tell unknown emails apart.
    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> anyhow::Result<bool>;
}

/// A signed access token and how long it stays valid.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

#[async_trait]
pub trait AccessTokens: Send + Sync {
    async fn issue(&self, user: UserId) -> anyhow::Result<IssuedToken>;

    /// The user a token was issued to.
    ///
    /// MUST reject unsigned tokens (`alg: none`), any algorithm other than the one configured,
    /// a wrong key, an expired token, and a wrong issuer or audience.
    /// A token signed with a key that has since been rotated out stays valid for the
    /// rotation's grace period.
    async fn verify(&self, token: &str) -> Result<UserId, TokenRejected>;
}

/// Keys for the values the service signs for itself (list cursors), derived from the token
/// keys so that there is no second secret to provision or rotate.
#[async_trait]
pub trait CursorKeys: Send + Sync {
    /// The keys live now, the current one (which signs) first; never empty.
    async fn cursor_keys(&self) -> Vec<[u8; 32]>;
}
