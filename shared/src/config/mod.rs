//! Settings: every environment variable the functions read, read here and nowhere else.
//!
//! One typed struct per concern (the database, token keys, passwords, idempotency, the login
//! throttle, the cache, enrichment), each parsed from the environment by its own
//! [`Settings::from_env`]. A function's settings are the tuple of the concerns it uses
//! (`functions.rs` names them), so a function reads and validates exactly the variables of its
//! concerns and never requires one it does not use. A bad value stops the cold start with a
//! message naming the variable, instead of failing the first request that needs it.
//!
//! Parsing only reads: it creates no directory and no key. The embedded default's data
//! directory and development key are made by [`crate::development`], at cold start.

mod cache;
mod database;
mod enrichment;
mod idempotency;
mod passwords;
mod throttle;
mod tokens;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

pub use cache::CacheSettings;
pub use database::{DatabaseSettings, DatabaseTarget, Endpoint};
pub use enrichment::EnrichmentSettings;
pub use idempotency::IdempotencySettings;
pub use passwords::PasswordSettings;
pub use throttle::ThrottleSettings;
pub use tokens::TokenSettings;

pub use crate::secrets::SecretSetting;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("{name} is required when {when}")]
    Missing { name: &'static str, when: &'static str },
}

/// The settings of one concern, or of a whole function (a tuple of concerns).
pub trait Settings: Sized {
    /// Reads and validates the variables of this concern; reads nothing else.
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError>;

    /// The AWS resources these settings make the function use, with what it does to each:
    /// what its IAM policy must allow.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// The embedded default's data directory, when these settings run on it.
    fn embedded_data_dir(&self) -> Option<&Path> {
        None
    }
}

/// An AWS resource a function reads or writes, named by the variable that points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The environment variable holding the resource's ARN (a secret) or name (a table).
    pub variable: &'static str,
    pub kind: ResourceKind,
    /// The variable's value: a secret's ARN or name, a table's name.
    pub id: String,
    /// The IAM actions the adapter calls on it.
    pub actions: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Secret,
    Table,
}

/// A function's settings are its concerns side by side.
macro_rules! settings_tuple {
    ($($concern:ident),+) => {
        impl<$($concern: Settings),+> Settings for ($($concern,)+) {
            fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
                Ok(($($concern::from_env(env)?,)+))
            }

            #[allow(non_snake_case)]
            fn resources(&self) -> Vec<Resource> {
                let ($($concern,)+) = self;
                [$($concern.resources()),+].concat()
            }

            #[allow(non_snake_case)]
            fn embedded_data_dir(&self) -> Option<&Path> {
                let ($($concern,)+) = self;
                None$(.or($concern.embedded_data_dir()))+
            }
        }
    };
}

settings_tuple!(A, B);
settings_tuple!(A, B, C);
settings_tuple!(A, B, C, D);
settings_tuple!(A, B, C, D, E);

/// Where environment values come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment; a variable set to blanks counts as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }
}

impl Env for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }
}

/// An environment that remembers which variables were asked for: how a check tells that a
/// variable given to a function is one it never reads.
pub struct Recording<'a> {
    inner: &'a dyn Env,
    read: Mutex<BTreeSet<String>>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn Env) -> Self {
        Self {
            inner,
            read: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every variable asked for so far, set or not.
    pub fn read(&self) -> BTreeSet<String> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Env for Recording<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        self.inner.get(name)
    }
}

/// A secret given by reference (`<NAME>_ARN`, read from Secrets Manager) or by value; the
/// reference wins when both are set.
fn secret_setting(env: &dyn Env, arn: &'static str, value: &'static str) -> Result<Option<SecretSetting>, ConfigError> {
    match stored_setting(env, arn)? {
        Some(stored) => Ok(Some(stored)),
        None => Ok(env.get(value).map(|value| SecretSetting::Value(value.into()))),
    }
}

/// A secret stored in Secrets Manager, named by the variable `arn`. How long its value is kept
/// before it is read again is `SECRETS_TTL_SECONDS` (default 300), read only when some secret
/// is stored; a value the other side refuses is read again at once, whatever the TTL.
fn stored_setting(env: &dyn Env, arn: &'static str) -> Result<Option<SecretSetting>, ConfigError> {
    let Some(id) = env.get(arn) else { return Ok(None) };
    let ttl = seconds(
        env,
        "SECRETS_TTL_SECONDS",
        std::time::Duration::from_secs(300),
        1..=86_400,
    )?;
    Ok(Some(SecretSetting::Stored { id, ttl }))
}

/// The resource of a stored secret, for [`Settings::resources`].
fn stored_secret(variable: &'static str, setting: &SecretSetting) -> Option<Resource> {
    match setting {
        SecretSetting::Stored { id, .. } => Some(Resource {
            variable,
            kind: ResourceKind::Secret,
            id: id.clone(),
            actions: crate::adapters::secrets_manager::ACTIONS,
        }),
        _ => None,
    }
}

/// The resource of a DynamoDB table, when one is configured.
fn table_resource(variable: &'static str, table: Option<&String>, actions: &'static [&'static str]) -> Vec<Resource> {
    table
        .map(|table| Resource {
            variable,
            kind: ResourceKind::Table,
            id: table.clone(),
            actions,
        })
        .into_iter()
        .collect()
}

/// `true`/`false` (also 1/0, yes/no); unset is false.
fn flag(env: &dyn Env, name: &'static str) -> Result<bool, ConfigError> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

/// A number within `range`, `default` when unset.
fn parse<T>(env: &dyn Env, name: &'static str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(raw) = env.get(name) else { return Ok(default) };
    let value: T = raw
        .trim()
        .parse()
        .map_err(|_| invalid(name, format!("{raw:?} is not a number")))?;
    if !range.contains(&value) {
        return Err(invalid(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// Milliseconds within `range`, `default` when unset.
fn millis(
    env: &dyn Env,
    name: &'static str,
    default: std::time::Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<std::time::Duration, ConfigError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    parse(env, name, default, range).map(std::time::Duration::from_millis)
}

/// Seconds within `range`, `default` when unset.
fn seconds(
    env: &dyn Env,
    name: &'static str,
    default: std::time::Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<std::time::Duration, ConfigError> {
    parse(env, name, default.as_secs(), range).map(std::time::Duration::from_secs)
}

/// A URL that must start with one of `schemes`.
fn url(env: &dyn Env, name: &'static str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
    let Some(url) = env.get(name) else { return Ok(None) };
    if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(invalid(name, format!("must start with {}", schemes.join(" or "))));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_reads_only_the_variables_of_its_concerns() {
        let env = [("DATABASE_URL", "postgres://h/db"), ("BCRYPT_COST", "5")];
        let recording = Recording::new(&env);
        <(DatabaseSettings, PasswordSettings)>::from_env(&recording).unwrap();
        let read = recording.read();
        assert!(read.contains("BCRYPT_COST"));
        assert!(!read.iter().any(|name| name.starts_with("JWT")), "{read:?}");
    }

    #[test]
    fn an_out_of_range_number_names_its_variable() {
        let err = PasswordSettings::from_env(&[("BCRYPT_COST", "40")]).unwrap_err();
        assert!(err.to_string().starts_with("BCRYPT_COST"), "{err}");
        let err = PasswordSettings::from_env(&[("BCRYPT_COST", "twelve")]).unwrap_err();
        assert!(err.to_string().starts_with("BCRYPT_COST"), "{err}");
    }

    #[test]
    fn a_stored_secret_is_a_resource_and_a_given_one_is_not() {
        let env = [
            ("DATABASE_URL", "postgres://h/db"),
            ("JWT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:secret:jwt"),
        ];
        let stored = TokenSettings::from_env(&env).unwrap();
        assert_eq!(stored.resources()[0].variable, "JWT_SECRET_ARN");
        let secret = "k".repeat(32);
        let given = TokenSettings::from_env(&[("DATABASE_URL", "postgres://h/db"), ("JWT_SECRET", &secret)]).unwrap();
        assert!(given.resources().is_empty());
    }
}
