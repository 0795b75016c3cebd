use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

/// One asset to look up: what the enrichment service keys its metadata by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Metadata per asset id, for the assets the service knows (missing entries are normal).
pub type Metadata = HashMap<String, serde_json::Value>;

/// Why one call failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct FetchError {
    pub reason: String,
    /// Timeouts, connection failures, 429 and 5xx: another attempt may succeed. A 4xx or an
    /// answer we cannot read will be the same next time.
    pub retriable: bool,
}

#[async_trait]
pub trait EnrichmentClient: Send + Sync {
    /// One call to the enrichment service for `assets`, abandoned after `timeout` (the whole
    /// exchange, body included). `request_id` goes along as `X-Request-ID`.
    async fn fetch(&self, assets: &[AssetRef], request_id: &str, timeout: Duration) -> Result<Metadata, FetchError>;
}
