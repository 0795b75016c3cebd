use async_trait::async_trait;

/// A dependency a request cannot do without does not answer (refused, timed out, reset): the
/// request may succeed later. Adapters attach it (as context) to such errors; the HTTP layer
/// answers 503 with `Retry-After` instead of 500.
#[derive(Debug, thiserror::Error)]
#[error("{dependency} is unavailable")]
pub struct Unavailable {
    /// What did not answer, for the client: "the database".
    pub dependency: &'static str,
}

#[async_trait]
pub trait DatabaseHealth: Send + Sync {
    /// Succeeds when the database answers a trivial query within the adapter's timeout.
    async fn ping(&self) -> anyhow::Result<()>;
}
