//! The favorites cache (ElastiCache Redis): off unless `REDIS_URL` is set.

use std::path::PathBuf;

use secrecy::SecretString;

use super::{ConfigError, Env, Settings, millis, parse, seconds, url};
use crate::adapters::redis::CachePolicy;

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `redis://…` or `rediss://…` (TLS, as ElastiCache's in-transit encryption needs).
    pub url: SecretString,
    /// PEM file of the CAs a `rediss://` server certificate must chain to (`REDIS_CA_BUNDLE`);
    /// default: the web PKI roots built into the binary, which ElastiCache's chain to.
    pub ca_bundle: Option<PathBuf>,
    pub policy: CachePolicy,
}

/// `None`: the cache is off.
impl Settings for Option<CacheSettings> {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let Some(url) = url(env, "REDIS_URL", &["redis://", "rediss://"])? else {
            return Ok(None);
        };
        let defaults = CachePolicy::default();
        Ok(Some(CacheSettings {
            url: url.into(),
            ca_bundle: env.get("REDIS_CA_BUNDLE").map(PathBuf::from),
            policy: CachePolicy {
                timeout: millis(env, "REDIS_TIMEOUT_MS", defaults.timeout, 10..=5_000)?,
                ttl: seconds(env, "CACHE_TTL_SECONDS", defaults.ttl, 10..=7 * 86_400)?,
                max_items: parse(env, "CACHE_MAX_ITEMS", defaults.max_items, 1..=5_000)?,
                max_bytes: parse(env, "CACHE_MAX_BYTES", defaults.max_bytes, 4_096..=64 << 20)?,
                enrichment_ttl: seconds(env, "ENRICHMENT_CACHE_TTL_SECONDS", defaults.enrichment_ttl, 1..=86_400)?,
            },
        }))
    }
}

impl CacheSettings {
    /// A cache at `url` with the default policy: for tests and tools.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            ca_bundle: None,
            policy: CachePolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_off_without_redis_url_and_checked_with_it() {
        assert!(Option::<CacheSettings>::from_env(&[]).unwrap().is_none());
        let err = Option::<CacheSettings>::from_env(&[("REDIS_URL", "http://cache:6379")]).unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
        let env = [("REDIS_URL", "redis://cache:6379"), ("CACHE_MAX_ITEMS", "0")];
        let err = Option::<CacheSettings>::from_env(&env).unwrap_err();
        assert!(err.to_string().starts_with("CACHE_MAX_ITEMS"), "{err}");
    }
}
