//! The login throttle's counters and limits (read by the functions that check a password).

use super::{ConfigError, Env, Resource, Settings, parse, seconds, table_resource};
use crate::usecases::throttle::ThrottlePolicy;

#[derive(Debug, Clone, Default)]
pub struct ThrottleSettings {
    /// The DynamoDB table (`LOGIN_THROTTLE_TABLE`); unset: the embedded in-memory counter.
    pub table: Option<String>,
    pub policy: ThrottlePolicy,
}

impl Settings for ThrottleSettings {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let defaults = ThrottlePolicy::default();
        Ok(Self {
            table: env.get("LOGIN_THROTTLE_TABLE"),
            policy: ThrottlePolicy {
                per_email: parse(env, "LOGIN_MAX_FAILURES_PER_EMAIL", defaults.per_email, 1..=1_000_000)?,
                per_source: parse(env, "LOGIN_MAX_FAILURES_PER_IP", defaults.per_source, 1..=1_000_000)?,
                window: seconds(env, "LOGIN_THROTTLE_WINDOW_SECONDS", defaults.window, 1..=86_400)?,
            },
        })
    }

    fn resources(&self) -> Vec<Resource> {
        table_resource(
            "LOGIN_THROTTLE_TABLE",
            self.table.as_ref(),
            crate::adapters::dynamodb::THROTTLE_ACTIONS,
        )
    }
}
