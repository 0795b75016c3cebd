//! Idempotent writes: a request that carries an idempotency key is handled once; a retry with
//! the same key and the same request gets the first response again, and nothing is written
//! twice. The semantics of Powertools for AWS Lambda's idempotency utility:
//!
//! - the first request claims the key (in progress), is handled, and its response is stored
//!   (completed) for `ttl`;
//! - a retry with the same key and request replays the stored response;
//! - the same key with another request is refused (the client reused a key by mistake);
//! - a retry while the first is still in progress is refused as a conflict, to be retried;
//! - a response that says "try again" (5xx) is not stored: the key is released instead;
//! - a claim whose request never finished (its instance timed out) is abandoned once its
//!   in-progress deadline (the function's own deadline) has passed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::metrics::{self, Counter};
use crate::ports::{Claim, IdempotencyStore, RecordState, StoredResponse};

#[derive(Debug, Clone)]
pub struct IdempotencyPolicy {
    /// How long a completed response is replayed (`IDEMPOTENCY_TTL_SECONDS`, default 3600).
    pub ttl: Duration,
    /// How long a claim may stay in progress when the function's deadline is unknown.
    pub in_progress_for: Duration,
}

impl Default for IdempotencyPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3_600),
            in_progress_for: Duration::from_secs(30),
        }
    }
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Decision {
    /// Handle it, then call [`Idempotency::finish`] with the response.
    Proceed,
    /// Answer with this stored response.
    Replay(StoredResponse),
    /// The key was first used with another request.
    Mismatch,
    /// The first request with this key is still being handled.
    InProgress,
}

pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    policy: IdempotencyPolicy,
}

impl Idempotency {
    pub fn new(store: Arc<dyn IdempotencyStore>, policy: IdempotencyPolicy) -> Self {
        Self { store, policy }
    }

    /// The store key: the operation, the caller (who may reuse another caller's key by
    /// chance), and a hash of the client's key so that any key length stores the same.
    pub fn record_key(operation: &str, caller: Option<&str>, client_key: &str) -> String {
        format!(
            "{operation}#{}#{}",
            caller.unwrap_or("-"),
            hex(&Sha256::digest(client_key.as_bytes()))
        )
    }

    /// Claims `key` for a request, or says why not. `deadline`: when the function will be
    /// stopped, if known; the claim is abandoned after it.
    pub async fn begin(&self, key: &str, request_hash: &str, deadline: Option<SystemTime>) -> anyhow::Result<Decision> {
        let now = SystemTime::now();
        let until = deadline.unwrap_or(now + self.policy.in_progress_for);
        let claim = self
            .store
            .claim(key, request_hash, until, now + self.policy.ttl)
            .await?;
        Ok(match claim {
            Claim::Claimed => Decision::Proceed,
            Claim::Taken(record) if record.request_hash != request_hash => Decision::Mismatch,
            Claim::Taken(record) => match record.state {
                RecordState::Completed(response) => {
                    metrics::increment(Counter::IdempotentReplays);
                    Decision::Replay(response)
                }
                RecordState::InProgress { .. } => Decision::InProgress,
            },
        })
    }

    /// Stores the response of a claimed request, or releases the key when the response asks
    /// for a retry (5xx). A failure to store is logged, not answered: the write has happened
    /// and the client must hear so; a retry then finds the key in progress until it expires.
    pub async fn finish(&self, key: &str, response: StoredResponse) {
        let result = if response.status >= 500 {
            self.store.release(key).await
        } else {
            self.store
                .complete(key, &response, SystemTime::now() + self.policy.ttl)
                .await
        };
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "could not record an idempotent response");
        }
    }
}

/// A hash of a request body: of its JSON value when it is JSON (so that key order and spacing
/// do not make "another request"), else of its bytes.
pub fn request_hash(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_vec(&value).ok());
    hex(&Sha256::digest(canonical.as_deref().unwrap_or(body)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_json_hashes_the_same_whatever_its_spacing_and_key_order() {
        assert_eq!(
            request_hash(br#"{"a":1,"b":[1,2]}"#),
            request_hash(b"{ \"b\": [1, 2],\n \"a\": 1 }")
        );
        assert_ne!(request_hash(br#"{"a":1}"#), request_hash(br#"{"a":2}"#));
        assert_ne!(request_hash(b"not json"), request_hash(b"not json!"));
    }

    #[test]
    fn record_keys_are_scoped_by_operation_and_caller() {
        let a = Idempotency::record_key("add-favorite", Some("u1"), "k");
        assert_ne!(a, Idempotency::record_key("add-favorite", Some("u2"), "k"));
        assert_ne!(a, Idempotency::record_key("signup", Some("u1"), "k"));
        assert_eq!(a, Idempotency::record_key("add-favorite", Some("u1"), "k"));
    }
}
