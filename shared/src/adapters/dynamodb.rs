//! The idempotency store and the failed-login counter on DynamoDB (production).
//!
//! Both tables: partition key `id` (string), TTL attribute `expires_at` (epoch seconds).
//! DynamoDB deletes expired items only eventually (typically within days), so every read
//! also checks `expires_at` itself: an expired item never counts.
//!
//! Idempotency items: `id`, `status` (`IN_PROGRESS` | `COMPLETED`), `request_hash`,
//! `in_progress_until` (epoch milliseconds), `expires_at`, and once completed
//! `response_status`, `response_content_type`, `response_body` (binary).
//! Counter items: `id`, `failures` (number, added to atomically), `expires_at`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure};

use crate::ports::{Claim, FailedLoginCounter, IdempotencyRecord, IdempotencyStore, RecordState, StoredResponse};

/// The DynamoDB actions [`DynamoDbIdempotencyStore`] calls: what its function's IAM policy must
/// allow on the table, and no more (checked against template.yaml by a test).
pub const IDEMPOTENCY_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
];

/// The DynamoDB actions [`DynamoDbFailedLoginCounter`] calls.
pub const THROTTLE_ACTIONS: &[&str] = &["dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"];

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

type Item = HashMap<String, AttributeValue>;

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn seconds(at: SystemTime) -> AttributeValue {
    AttributeValue::N(epoch(at).as_secs().to_string())
}

fn millis(at: SystemTime) -> AttributeValue {
    AttributeValue::N(epoch(at).as_millis().to_string())
}

fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn expired(item: &Item, now: SystemTime) -> bool {
    number(item, "expires_at").is_none_or(|at| at <= epoch(now).as_secs())
}

pub struct DynamoDbIdempotencyStore {
    client: Client,
    table: String,
}

impl DynamoDbIdempotencyStore {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            table: table.into(),
        }
    }

    /// The record an item holds.
    fn record(item: &Item) -> anyhow::Result<IdempotencyRecord> {
        let request_hash = text(item, "request_hash").context("an idempotency item without request_hash")?;
        let state = match text(item, "status") {
            Some(COMPLETED) => RecordState::Completed(StoredResponse {
                status: number(item, "response_status")
                    .and_then(|s| u16::try_from(s).ok())
                    .context("a completed idempotency item without response_status")?,
                content_type: text(item, "response_content_type").map(str::to_string),
                body: match item.get("response_body") {
                    Some(AttributeValue::B(blob)) => blob.as_ref().to_vec(),
                    _ => Vec::new(),
                },
            }),
            _ => RecordState::InProgress {
                until: UNIX_EPOCH + Duration::from_millis(number(item, "in_progress_until").unwrap_or(0)),
            },
        };
        Ok(IdempotencyRecord {
            request_hash: request_hash.to_string(),
            state,
        })
    }

    async fn read(&self, key: &str) -> anyhow::Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", string(key))
            .consistent_read(true)
            .send()
            .await
            .context("DynamoDB GetItem (idempotency)")?;
        Ok(output.item)
    }
}

#[async_trait]
impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn claim(
        &self,
        key: &str,
        request_hash: &str,
        in_progress_until: SystemTime,
        expires: SystemTime,
    ) -> anyhow::Result<Claim> {
        let now = SystemTime::now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", string(key))
            .item("status", string(IN_PROGRESS))
            .item("request_hash", string(request_hash))
            .item("in_progress_until", millis(in_progress_until))
            .item("expires_at", seconds(expires))
            // Free, expired (TTL deletion lags), or abandoned by a request that never finished.
            .condition_expression(
                "attribute_not_exists(id) OR expires_at <= :now OR (#status = :in_progress AND in_progress_until <= :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", seconds(now))
            .expression_attribute_values(":now_ms", millis(now))
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let taken = match result {
            Ok(_) => return Ok(Claim::Claimed),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                PutItemError::ConditionalCheckFailedException(failed) => failed.item,
                other => return Err(anyhow::Error::new(other).context("DynamoDB PutItem (idempotency claim)")),
            },
            Err(e) => return Err(anyhow::Error::new(e).context("DynamoDB PutItem (idempotency claim)")),
        };
        // Endpoints that do not return the item with the failure: read it.
        let item = match taken {
            Some(item) => item,
            None => match self.read(key).await? {
                Some(item) => item,
                // Deleted between the two calls (released): the caller may simply retry.
                None => anyhow::bail!("the idempotency record changed while it was claimed; retry"),
            },
        };
        Ok(Claim::Taken(Self::record(&item)?))
    }

    async fn complete(&self, key: &str, response: &StoredResponse, expires: SystemTime) -> anyhow::Result<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", string(key))
            .update_expression(
                "SET #status = :completed, response_status = :status, response_body = :body, expires_at = :expires \
                 REMOVE in_progress_until",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", string(COMPLETED))
            .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()))
            .expression_attribute_values(":body", AttributeValue::B(Blob::new(response.body.clone())))
            .expression_attribute_values(":expires", seconds(expires));
        if let Some(content_type) = &response.content_type {
            update = update
                .update_expression(
                    "SET #status = :completed, response_status = :status, response_body = :body, expires_at = :expires, \
                     response_content_type = :content_type REMOVE in_progress_until",
                )
                .expression_attribute_values(":content_type", string(content_type));
        }
        update
            .condition_expression("attribute_exists(id)")
            .send()
            .await
            .context("DynamoDB UpdateItem (idempotency complete)")?;
        Ok(())
    }

    async fn release(&self, key: &str) -> anyhow::Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", string(key))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context("DynamoDB DeleteItem (idempotency release)")),
        }
    }
}

pub struct DynamoDbFailedLoginCounter {
    client: Client,
    table: String,
}

impl DynamoDbFailedLoginCounter {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            table: table.into(),
        }
    }
}

#[async_trait]
impl FailedLoginCounter for DynamoDbFailedLoginCounter {
    async fn counts(&self, keys: &[String]) -> anyhow::Result<Vec<u64>> {
        let mut request = KeysAndAttributes::builder().consistent_read(true);
        for key in keys {
            request = request.keys(HashMap::from([("id".to_string(), string(key))]));
        }
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, request.build().context("building BatchGetItem")?)
            .send()
            .await
            .context("DynamoDB BatchGetItem (failed logins)")?;
        // Two small items never come back as unprocessed in practice; if they do, they count 0
        // for this one check, which the next attempt's check makes up for.
        let now = SystemTime::now();
        let items = output
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default();
        Ok(keys
            .iter()
            .map(|key| {
                items
                    .iter()
                    .find(|item| text(item, "id") == Some(key.as_str()))
                    .filter(|item| !expired(item, now))
                    .and_then(|item| number(item, "failures"))
                    .unwrap_or(0)
            })
            .collect())
    }

    async fn add_failure(&self, keys: &[String], expires: SystemTime) -> anyhow::Result<()> {
        let updates = keys.iter().map(|key| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("id", string(key))
                .update_expression("ADD failures :one SET expires_at = if_not_exists(expires_at, :expires)")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":expires", seconds(expires))
                .send()
        });
        for result in futures::future::join_all(updates).await {
            result.context("DynamoDB UpdateItem (failed logins)")?;
        }
        Ok(())
    }

    async fn clear(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", string(key))
            .send()
            .await
            .context("DynamoDB DeleteItem (failed logins)")?;
        Ok(())
    }
}
