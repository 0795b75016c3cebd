use std::time::SystemTime;

use async_trait::async_trait;
use secrecy::SecretString;

/// One version of a secret, as the store holds it.
#[derive(Clone)]
pub struct SecretVersion {
    pub value: SecretString,
    /// The store's id of this version: changes exactly when the value is replaced.
    pub version_id: String,
    /// When this version was created, if the store says; the JWT key's grace period for the
    /// version before it runs from here.
    pub created: Option<SystemTime>,
}

impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("value", &"[redacted]")
            .field("version_id", &self.version_id)
            .field("created", &self.created)
            .finish()
    }
}

/// Where secrets live (Secrets Manager in production).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The version in use now (`AWSCURRENT`).
    async fn current(&self, id: &str) -> anyhow::Result<SecretVersion>;

    /// The version the last rotation replaced (`AWSPREVIOUS`), or `None` when the secret has
    /// never been rotated. Only the JWT key reads it, to accept tokens signed just before a
    /// rotation.
    async fn previous(&self, id: &str) -> anyhow::Result<Option<SecretVersion>>;
}
