//! The embedded defaults of the DynamoDB-backed ports: in the memory of the function's process.
//!
//! Why memory and not the embedded SQLite database: under `make run` every function is one
//! process that serves all of its requests, so one process sees every retry of a key (signup's
//! and add-favorite's) and every login attempt; what memory loses is state across restarts and
//! across instances, which only production has, and production uses DynamoDB. Memory needs no
//! schema beside the favorites' own, and the same contract tests run against both adapters
//! (shared/tests/dynamodb.rs).
//!
//! Both are bounded: expired entries are swept, and past `MAX_ENTRIES` the oldest go first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::ports::{Claim, FailedLoginCounter, IdempotencyRecord, IdempotencyStore, RecordState, StoredResponse};

const MAX_ENTRIES: usize = 10_000;

struct Entry<T> {
    value: T,
    expires: SystemTime,
}

/// A map whose entries expire, swept when it grows past its bound.
struct Expiring<T> {
    entries: HashMap<String, Entry<T>>,
}

impl<T> Expiring<T> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn live(&mut self, key: &str, now: SystemTime) -> Option<&mut T> {
        match self.entries.get(key) {
            Some(entry) if entry.expires <= now => {
                self.entries.remove(key);
                None
            }
            _ => self.entries.get_mut(key).map(|e| &mut e.value),
        }
    }

    fn insert(&mut self, key: &str, value: T, expires: SystemTime, now: SystemTime) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(key) {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.to_string(), Entry { value, expires });
    }
}

pub struct MemoryIdempotencyStore {
    records: Mutex<Expiring<IdempotencyRecord>>,
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        Self {
            records: Mutex::new(Expiring::new()),
        }
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(
        &self,
        key: &str,
        request_hash: &str,
        in_progress_until: SystemTime,
        expires: SystemTime,
    ) -> anyhow::Result<Claim> {
        let now = SystemTime::now();
        let mut records = self.records.lock().expect("not poisoned");
        if let Some(record) = records.live(key, now) {
            let abandoned = matches!(record.state, RecordState::InProgress { until } if until <= now);
            if !abandoned {
                return Ok(Claim::Taken(record.clone()));
            }
        }
        let record = IdempotencyRecord {
            request_hash: request_hash.to_string(),
            state: RecordState::InProgress {
                until: in_progress_until,
            },
        };
        records.insert(key, record, expires, now);
        Ok(Claim::Claimed)
    }

    async fn complete(&self, key: &str, response: &StoredResponse, expires: SystemTime) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let mut records = self.records.lock().expect("not poisoned");
        if let Some(record) = records.live(key, now) {
            let record = IdempotencyRecord {
                request_hash: record.request_hash.clone(),
                state: RecordState::Completed(response.clone()),
            };
            records.insert(key, record, expires, now);
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> anyhow::Result<()> {
        let mut records = self.records.lock().expect("not poisoned");
        if let Some(entry) = records.entries.get(key)
            && matches!(entry.value.state, RecordState::InProgress { .. })
        {
            records.entries.remove(key);
        }
        Ok(())
    }
}

pub struct MemoryFailedLoginCounter {
    counts: Mutex<Expiring<u64>>,
}

impl Default for MemoryFailedLoginCounter {
    fn default() -> Self {
        Self {
            counts: Mutex::new(Expiring::new()),
        }
    }
}

#[async_trait]
impl FailedLoginCounter for MemoryFailedLoginCounter {
    async fn counts(&self, keys: &[String]) -> anyhow::Result<Vec<u64>> {
        let now = SystemTime::now();
        let mut counts = self.counts.lock().expect("not poisoned");
        Ok(keys.iter().map(|k| counts.live(k, now).map_or(0, |c| *c)).collect())
    }

    async fn add_failure(&self, keys: &[String], expires: SystemTime) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let mut counts = self.counts.lock().expect("not poisoned");
        for key in keys {
            let count = counts.live(key, now).map_or(0, |c| *c) + 1;
            counts.insert(key, count, expires, now);
        }
        Ok(())
    }

    async fn clear(&self, key: &str) -> anyhow::Result<()> {
        self.counts.lock().expect("not poisoned").entries.remove(key);
        Ok(())
    }
}
