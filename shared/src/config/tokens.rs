//! The access tokens' signing key and claims: read by the functions that issue or check tokens.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{ConfigError, Env, Resource, SecretSetting, Settings, invalid, seconds, secret_setting, stored_secret};
use crate::adapters::jwt::TokenPolicy;

/// The shortest HS256 key we accept: RFC 7518 §3.2 asks for a key as long as the hash output.
const JWT_SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The HS256 key: `JWT_SECRET_ARN` (Secrets Manager, rotated) or `JWT_SECRET`; on the
    /// embedded default, when neither is set, a development key generated into its data
    /// directory.
    pub key: SecretSetting,
    pub policy: TokenPolicy,
}

impl Settings for TokenSettings {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let key = match secret_setting(env, "JWT_SECRET_ARN", "JWT_SECRET")? {
            Some(SecretSetting::Value(secret)) if secret.expose_secret().len() < JWT_SECRET_MIN_BYTES => {
                return Err(invalid("JWT_SECRET", "must be at least 32 bytes"));
            }
            Some(setting) => setting,
            None => match super::database::embedded_data_dir(env) {
                Some(data_dir) => SecretSetting::Generated {
                    path: crate::development::jwt_key_path(&data_dir),
                },
                None => {
                    return Err(ConfigError::Missing {
                        name: "JWT_SECRET_ARN or JWT_SECRET",
                        when: "a database is configured",
                    });
                }
            },
        };
        let defaults = TokenPolicy::default();
        let ttl = seconds(env, "JWT_TTL_SECONDS", defaults.ttl, 60..=86_400)?;
        Ok(Self {
            key,
            policy: TokenPolicy {
                issuer: env.get("JWT_ISSUER").unwrap_or(defaults.issuer),
                audience: env.get("JWT_AUDIENCE").unwrap_or(defaults.audience),
                ttl,
                // Default: the token lifetime, so that no token issued before a rotation dies early.
                grace: seconds(env, "JWT_KEY_GRACE_SECONDS", ttl, 0..=7 * 86_400)?,
            },
        })
    }

    fn resources(&self) -> Vec<Resource> {
        stored_secret("JWT_SECRET_ARN", &self.key).into_iter().collect()
    }
}

impl TokenSettings {
    /// A key given by value, the claims at their defaults: for tests and tools.
    pub fn for_key(key: impl Into<String>) -> Self {
        Self {
            key: SecretSetting::Value(key.into().into()),
            policy: TokenPolicy::default(),
        }
    }

    /// How long after a rotation tokens signed with the previous key stay valid.
    pub fn grace(&self) -> Duration {
        self.policy.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_database_without_a_key_is_refused() {
        let err = TokenSettings::from_env(&[("DATABASE_URL", "postgres://localhost/x")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn a_short_key_is_refused() {
        let env = [("DATABASE_URL", "postgres://localhost/x"), ("JWT_SECRET", "short")];
        let err = TokenSettings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn the_embedded_default_uses_a_development_key_in_its_data_directory() {
        let settings = TokenSettings::from_env(&[("FAVORITES_DATA_DIR", "/tmp/favorites-dev")]).unwrap();
        let SecretSetting::Generated { path } = &settings.key else {
            panic!("a generated key, not {:?}", settings.key)
        };
        assert!(path.starts_with("/tmp/favorites-dev"));
    }
}
