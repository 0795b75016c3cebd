use std::time::SystemTime;

use async_trait::async_trait;

/// A response kept to be replayed to a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Where a request with an idempotency key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// Being handled now, by the request that claimed the key, until `until` at the latest
    /// (after that the claim is abandoned: its instance died or timed out).
    InProgress {
        until: SystemTime,
    },
    Completed(StoredResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// A hash of the request the key was first used with.
    pub request_hash: String,
    pub state: RecordState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: handle the request, then `complete` or `release` it.
    Claimed,
    /// The key has a live record: another request got there first.
    Taken(IdempotencyRecord),
}

/// Records of idempotency keys (Powertools' idempotency semantics): a key is claimed by one
/// request, which later stores its response or gives the key up.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for the request hashed as `request_hash`, in progress until
    /// `in_progress_until`, the record expiring at `expires`. Atomic: of any number of
    /// concurrent claims of one key, exactly one is `Claimed`. A record that has expired, or
    /// is in progress past its `until`, does not count: claiming replaces it.
    async fn claim(
        &self,
        key: &str,
        request_hash: &str,
        in_progress_until: SystemTime,
        expires: SystemTime,
    ) -> anyhow::Result<Claim>;

    /// Stores the response of the request that claimed `key`.
    async fn complete(&self, key: &str, response: &StoredResponse, expires: SystemTime) -> anyhow::Result<()>;

    /// Gives up a claim (the request failed in a way a retry may fix): the next request with
    /// the key is handled afresh.
    async fn release(&self, key: &str) -> anyhow::Result<()>;
}
