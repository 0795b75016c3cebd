use async_trait::async_trait;

#[async_trait]
pub trait DatabaseHealth: Send + Sync {
    /// Succeeds when the database answers a trivial query within the adapter's timeout.
    async fn ping(&self) -> anyhow::Result<()>;
}
