//! The enrichment service: off unless `ENRICHMENT_URL` is set.

use super::{ConfigError, Env, Resource, SecretSetting, Settings, millis, parse, secret_setting, stored_secret, url};
use crate::usecases::enrich::EnrichmentPolicy;

#[derive(Debug, Clone)]
pub struct EnrichmentSettings {
    /// Base URL of the service (`ENRICHMENT_URL`, http:// or https://).
    pub url: String,
    /// `ENRICHMENT_API_KEY_SECRET_ARN` (Secrets Manager, production) or `ENRICHMENT_API_KEY`.
    pub api_key: SecretSetting,
    pub policy: EnrichmentPolicy,
}

/// `None`: enrichment is off.
impl Settings for Option<EnrichmentSettings> {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let Some(url) = url(env, "ENRICHMENT_URL", &["http://", "https://"])? else {
            return Ok(None);
        };
        let api_key = secret_setting(env, "ENRICHMENT_API_KEY_SECRET_ARN", "ENRICHMENT_API_KEY")?.ok_or(
            ConfigError::Missing {
                name: "ENRICHMENT_API_KEY_SECRET_ARN or ENRICHMENT_API_KEY",
                when: "ENRICHMENT_URL is set",
            },
        )?;
        let defaults = EnrichmentPolicy::default();
        Ok(Some(EnrichmentSettings {
            url,
            api_key,
            policy: EnrichmentPolicy {
                batch: parse(env, "ENRICHMENT_BATCH", defaults.batch, 1..=500)?,
                in_flight: parse(env, "ENRICHMENT_IN_FLIGHT", defaults.in_flight, 1..=32)?,
                call_timeout: millis(env, "ENRICHMENT_TIMEOUT_MS", defaults.call_timeout, 10..=10_000)?,
                deadline: millis(env, "ENRICHMENT_DEADLINE_MS", defaults.deadline, 10..=30_000)?,
                retries: parse(env, "ENRICHMENT_RETRIES", defaults.retries, 0..=10)?,
                backoff: millis(env, "ENRICHMENT_BACKOFF_MS", defaults.backoff, 1..=5_000)?,
                breaker_failures: parse(env, "ENRICHMENT_BREAKER_FAILURES", defaults.breaker_failures, 1..=1_000)?,
                breaker_open_for: millis(
                    env,
                    "ENRICHMENT_BREAKER_OPEN_MS",
                    defaults.breaker_open_for,
                    100..=600_000,
                )?,
            },
        }))
    }

    fn resources(&self) -> Vec<Resource> {
        self.iter()
            .filter_map(|e| stored_secret("ENRICHMENT_API_KEY_SECRET_ARN", &e.api_key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_key_is_refused_naming_both_variables() {
        let err = Option::<EnrichmentSettings>::from_env(&[("ENRICHMENT_URL", "http://e")]).unwrap_err();
        assert!(err.to_string().contains("ENRICHMENT_API_KEY"), "{err}");
    }
}
