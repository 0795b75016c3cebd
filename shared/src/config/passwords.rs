//! Password hashing: read by the functions that hash or check passwords.

use super::{ConfigError, Env, Settings, parse};

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// bcrypt cost factor (`BCRYPT_COST`, 4–31, default 12).
    pub bcrypt_cost: u32,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self { bcrypt_cost: 12 }
    }
}

impl Settings for PasswordSettings {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            bcrypt_cost: parse(env, "BCRYPT_COST", Self::default().bcrypt_cost, 4..=31)?,
        })
    }
}
