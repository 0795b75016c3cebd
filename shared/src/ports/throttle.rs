use std::time::SystemTime;

use async_trait::async_trait;

/// Counters of failed logins, one per key (an email's or a source address's, per time
/// window; the keys are made by the login use case).
#[async_trait]
pub trait FailedLoginCounter: Send + Sync {
    /// The count of each key, in order; 0 for a key never counted or expired.
    async fn counts(&self, keys: &[String]) -> anyhow::Result<Vec<u64>>;

    /// Adds one to each key, atomically per key (concurrent failures are all counted); a
    /// key's counter may be forgotten after `expires`.
    async fn add_failure(&self, keys: &[String], expires: SystemTime) -> anyhow::Result<()>;

    /// Forgets a key's count.
    async fn clear(&self, key: &str) -> anyhow::Result<()>;
}
