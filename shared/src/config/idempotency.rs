//! Idempotency records of the write routes that take an `Idempotency-Key`.

use super::{ConfigError, Env, Resource, Settings, seconds, table_resource};
use crate::usecases::idempotency::IdempotencyPolicy;

#[derive(Debug, Clone, Default)]
pub struct IdempotencySettings {
    /// The DynamoDB table (`IDEMPOTENCY_TABLE`); unset: the embedded in-memory store.
    pub table: Option<String>,
    pub policy: IdempotencyPolicy,
}

impl Settings for IdempotencySettings {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let defaults = IdempotencyPolicy::default();
        Ok(Self {
            table: env.get("IDEMPOTENCY_TABLE"),
            policy: IdempotencyPolicy {
                ttl: seconds(env, "IDEMPOTENCY_TTL_SECONDS", defaults.ttl, 60..=7 * 86_400)?,
                ..defaults
            },
        })
    }

    fn resources(&self) -> Vec<Resource> {
        table_resource(
            "IDEMPOTENCY_TABLE",
            self.table.as_ref(),
            crate::adapters::dynamodb::IDEMPOTENCY_ACTIONS,
        )
    }
}
