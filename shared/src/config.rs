//! Configuration: every environment variable the functions read, read here and nowhere else,
//! validated once per cold start. A bad value stops the cold start with a message naming the
//! variable, instead of failing the first request that happens to need it.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use crate::secrets::SecretSetting;

/// The shortest HS256 key we accept: RFC 7518 §3.2 asks for a key as long as the hash output.
const JWT_SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("{name} is required when {when}")]
    Missing { name: &'static str, when: &'static str },
    #[error("could not prepare the development data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// How long a value read from Secrets Manager is used before it is read again
    /// (`SECRETS_TTL_SECONDS`, default 300). A refused database password or API key is
    /// re-read at once, whatever the TTL.
    pub secrets_ttl: Duration,
    pub jwt: JwtConfig,
    /// bcrypt cost factor (`BCRYPT_COST`, 4–31, default 12).
    pub bcrypt_cost: u32,
    /// The favorites cache; `None` (off) when `REDIS_URL` is unset.
    pub cache: Option<CacheConfig>,
    /// The enrichment service; `None` (off) when `ENRICHMENT_URL` is unset.
    pub enrichment: Option<EnrichmentConfig>,
    pub idempotency: IdempotencyConfig,
    pub login_throttle: ThrottleConfig,
}

#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// The DynamoDB table (`IDEMPOTENCY_TABLE`); unset: the embedded in-memory store.
    pub table: Option<String>,
    pub policy: crate::usecases::idempotency::IdempotencyPolicy,
}

impl IdempotencyConfig {
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.get("IDEMPOTENCY_TABLE"),
            policy: crate::usecases::idempotency::IdempotencyPolicy {
                ttl: Duration::from_secs(parse(env, "IDEMPOTENCY_TTL_SECONDS", 3_600, 60..=7 * 86_400)?),
                in_progress_for: Duration::from_secs(30),
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// The DynamoDB table (`LOGIN_THROTTLE_TABLE`); unset: the embedded in-memory counter.
    pub table: Option<String>,
    pub policy: crate::usecases::login::ThrottlePolicy,
}

impl ThrottleConfig {
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.get("LOGIN_THROTTLE_TABLE"),
            policy: crate::usecases::login::ThrottlePolicy {
                per_email: parse(env, "LOGIN_MAX_FAILURES_PER_EMAIL", 5, 1..=1_000_000)?,
                per_source: parse(env, "LOGIN_MAX_FAILURES_PER_IP", 50, 1..=1_000_000)?,
                window: Duration::from_secs(parse(env, "LOGIN_THROTTLE_WINDOW_SECONDS", 900, 1..=86_400)?),
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct EnrichmentConfig {
    /// Base URL of the service (`ENRICHMENT_URL`, http:// or https://).
    pub url: String,
    /// `ENRICHMENT_API_KEY_SECRET_ARN` (Secrets Manager, production) or `ENRICHMENT_API_KEY`.
    pub api_key: SecretSetting,
    pub policy: crate::usecases::enrich::EnrichmentPolicy,
}

impl EnrichmentConfig {
    pub fn from(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("ENRICHMENT_URL") else {
            return Ok(None);
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(invalid("ENRICHMENT_URL", "must start with http:// or https://"));
        }
        let api_key =
            secret_setting(env, "ENRICHMENT_API_KEY_SECRET_ARN", "ENRICHMENT_API_KEY").ok_or(ConfigError::Missing {
                name: "ENRICHMENT_API_KEY_SECRET_ARN or ENRICHMENT_API_KEY",
                when: "ENRICHMENT_URL is set",
            })?;
        let ms = |name, default, range| parse(env, name, default, range).map(Duration::from_millis);
        Ok(Some(Self {
            url,
            api_key,
            policy: crate::usecases::enrich::EnrichmentPolicy {
                batch: parse(env, "ENRICHMENT_BATCH", 50, 1..=500)?,
                in_flight: parse(env, "ENRICHMENT_IN_FLIGHT", 4, 1..=32)?,
                call_timeout: ms("ENRICHMENT_TIMEOUT_MS", 300, 10..=10_000)?,
                deadline: ms("ENRICHMENT_DEADLINE_MS", 1_000, 10..=30_000)?,
                retries: parse(env, "ENRICHMENT_RETRIES", 2, 0..=10)?,
                backoff: ms("ENRICHMENT_BACKOFF_MS", 25, 1..=5_000)?,
                breaker_failures: parse(env, "ENRICHMENT_BREAKER_FAILURES", 5, 1..=1_000)?,
                breaker_open_for: ms("ENRICHMENT_BREAKER_OPEN_MS", 5_000, 100..=600_000)?,
            },
        }))
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `redis://…` or `rediss://…` (TLS, as ElastiCache's in-transit encryption needs).
    pub url: SecretString,
    /// Bound on connecting and on each reply (`REDIS_TIMEOUT_MS`, default 200): well under
    /// any function timeout, so a slow Redis costs a bounded delay before the database answers.
    pub timeout: Duration,
    /// Lifetime of a user's entry after its last write (`CACHE_TTL_SECONDS`, default 3600).
    pub ttl: Duration,
    /// The most favorites one user's entry holds (`CACHE_MAX_ITEMS`, default 1000, at most
    /// 5000): the first ones in listing order; the rest of a longer list is read from the database.
    pub max_items: usize,
    /// The most bytes of favorites one user's entry holds (`CACHE_MAX_BYTES`, default 1 MiB).
    pub max_bytes: usize,
    /// How long an enrichment result is used (`ENRICHMENT_CACHE_TTL_SECONDS`, default 300):
    /// the metadata belongs to another service and changes there.
    pub enrichment_ttl: Duration,
}

impl CacheConfig {
    pub fn from(env: &dyn Env) -> Result<Option<Self>, ConfigError> {
        let Some(url) = env.get("REDIS_URL") else {
            return Ok(None);
        };
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(invalid("REDIS_URL", "must start with redis:// or rediss://"));
        }
        Ok(Some(Self {
            url: url.into(),
            timeout: Duration::from_millis(parse(env, "REDIS_TIMEOUT_MS", 200, 10..=5_000)?),
            ttl: Duration::from_secs(parse(env, "CACHE_TTL_SECONDS", 3_600, 10..=7 * 86_400)?),
            max_items: parse(env, "CACHE_MAX_ITEMS", 1_000, 1..=5_000)?,
            max_bytes: parse(env, "CACHE_MAX_BYTES", 1 << 20, 4_096..=64 << 20)?,
            enrichment_ttl: Duration::from_secs(parse(env, "ENRICHMENT_CACHE_TTL_SECONDS", 300, 1..=86_400)?),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub target: DatabaseTarget,
    /// True for the embedded default (no `DATABASE_URL`): SQLite in the data directory,
    /// migrated automatically at cold start.
    pub embedded: bool,
    /// Connections per function instance (`DATABASE_MAX_CONNECTIONS`, default 2): one Lambda
    /// instance serves one request at a time, and RDS Proxy does the pooling across instances.
    pub max_connections: u32,
    /// How long to wait for a connection or a query (`DATABASE_TIMEOUT_MS`, default 5000).
    pub timeout: Duration,
    /// `DATABASE_PROXY=true`: connected through RDS Proxy, so nothing may pin a proxy
    /// session: statements are sent unnamed (no server-side prepared statements).
    pub proxy: bool,
    /// PEM file of the CAs a TLS server certificate must chain to (`DATABASE_CA_BUNDLE`);
    /// default: the RDS and RDS Proxy CAs built into the binary (infra/certs/).
    pub ca_bundle: Option<PathBuf>,
    /// See [`Config::secrets_ttl`]; the `migrate` function reads only this part.
    pub secrets_ttl: Duration,
}

/// Which database to connect to, and with which credentials.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://…`, credentials inside (local runs, tests).
    Url(SecretString),
    /// `DATABASE_SECRET_ARN`: Postgres with the credentials of an RDS secret (JSON: username,
    /// password, host, port, dbname), always over TLS verified against the CA bundle.
    /// `DATABASE_HOST` (the RDS Proxy endpoint), `DATABASE_PORT` and `DATABASE_NAME` take
    /// precedence over the secret's own host, port and dbname.
    Secret {
        id: String,
        host: Option<String>,
        port: Option<u16>,
        name: Option<String>,
    },
}

impl DatabaseConfig {
    /// The database settings alone: all that the `migrate` function needs.
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let max_connections = parse(env, "DATABASE_MAX_CONNECTIONS", 2, 1..=100)?;
        let timeout = Duration::from_millis(parse(env, "DATABASE_TIMEOUT_MS", 5_000, 100..=60_000)?);
        let secret = env.get("DATABASE_SECRET_ARN");
        let (target, embedded) = match (env.get("DATABASE_URL"), secret) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "DATABASE_URL",
                    "set either DATABASE_URL or DATABASE_SECRET_ARN, not both",
                ));
            }
            (Some(url), None) => {
                let known = ["postgres://", "postgresql://", "sqlite:"]
                    .iter()
                    .any(|p| url.starts_with(p));
                if !known {
                    return Err(invalid(
                        "DATABASE_URL",
                        "must start with postgres://, postgresql:// or sqlite:",
                    ));
                }
                (DatabaseTarget::Url(url.into()), false)
            }
            (None, Some(id)) => {
                let port = match env.get("DATABASE_PORT") {
                    Some(_) => Some(parse(env, "DATABASE_PORT", 5432, 1..=65_535)?),
                    None => None,
                };
                let target = DatabaseTarget::Secret {
                    id,
                    host: env.get("DATABASE_HOST"),
                    port,
                    name: env.get("DATABASE_NAME"),
                };
                (target, false)
            }
            (None, None) => {
                let path = ensure_dir(&data_dir(env))?.join("favorites.sqlite");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (DatabaseTarget::Url(url.into()), true)
            }
        };
        Ok(Self {
            target,
            embedded,
            max_connections,
            timeout,
            proxy: flag(env, "DATABASE_PROXY")?,
            ca_bundle: env.get("DATABASE_CA_BUNDLE").map(PathBuf::from),
            secrets_ttl: secrets_ttl(env)?,
        })
    }

    /// A database given by URL, everything else at its default: for tests and tools.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            target: DatabaseTarget::Url(SecretString::from(url.into())),
            embedded: false,
            max_connections: 4,
            timeout: Duration::from_secs(10),
            proxy: false,
            ca_bundle: None,
            secrets_ttl: Duration::from_secs(300),
        }
    }

    pub fn is_postgres(&self) -> bool {
        match &self.target {
            DatabaseTarget::Url(url) => {
                let url = url.expose_secret();
                url.starts_with("postgres://") || url.starts_with("postgresql://")
            }
            DatabaseTarget::Secret { .. } => true,
        }
    }

    /// Whether some setting is read from Secrets Manager.
    pub fn uses_stored_secrets(&self) -> bool {
        matches!(self.target, DatabaseTarget::Secret { .. })
    }
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The HS256 key: `JWT_SECRET_ARN` (Secrets Manager, rotated) or `JWT_SECRET`.
    pub key: SecretSetting,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    /// How long after a key rotation tokens signed with the previous key are still accepted
    /// (`JWT_KEY_GRACE_SECONDS`, default: the token lifetime, so that no token issued before
    /// a rotation dies early).
    pub grace: Duration,
}

/// Where environment values come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

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

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let database = DatabaseConfig::from(env)?;
        let data_dir = data_dir(env);
        let key = match secret_setting(env, "JWT_SECRET_ARN", "JWT_SECRET") {
            Some(SecretSetting::Value(secret)) if secret.expose_secret().len() < JWT_SECRET_MIN_BYTES => {
                return Err(invalid("JWT_SECRET", "must be at least 32 bytes"));
            }
            Some(setting) => setting,
            None if database.embedded => SecretSetting::Value(development_jwt_secret(&data_dir)?),
            None => {
                return Err(ConfigError::Missing {
                    name: "JWT_SECRET_ARN or JWT_SECRET",
                    when: "a database is configured",
                });
            }
        };
        let ttl = parse(env, "JWT_TTL_SECONDS", 3_600, 60..=86_400)?;
        Ok(Config {
            secrets_ttl: database.secrets_ttl,
            database,
            jwt: JwtConfig {
                key,
                issuer: env.get("JWT_ISSUER").unwrap_or_else(|| "favorites".into()),
                audience: env.get("JWT_AUDIENCE").unwrap_or_else(|| "favorites-api".into()),
                ttl: Duration::from_secs(ttl),
                grace: Duration::from_secs(parse(env, "JWT_KEY_GRACE_SECONDS", ttl, 0..=7 * 86_400)?),
            },
            bcrypt_cost: parse(env, "BCRYPT_COST", 12, 4..=31)?,
            cache: CacheConfig::from(env)?,
            enrichment: EnrichmentConfig::from(env)?,
            idempotency: IdempotencyConfig::from(env)?,
            login_throttle: ThrottleConfig::from(env)?,
        })
    }

    /// Whether any secret is read from Secrets Manager (and so a client for it is needed).
    pub fn uses_stored_secrets(&self) -> bool {
        let stored = |s: &SecretSetting| matches!(s, SecretSetting::Stored { .. });
        self.database.uses_stored_secrets()
            || stored(&self.jwt.key)
            || self.enrichment.as_ref().is_some_and(|e| stored(&e.api_key))
    }

    /// The embedded default is a development setup and says so loudly, once per cold start.
    pub fn warn_if_development(&self) {
        if self.database.embedded {
            tracing::warn!(
                "DEVELOPMENT SETUP: embedded SQLite database and a generated JWT key in the local data \
                 directory; set DATABASE_URL and JWT_SECRET for anything else"
            );
        }
    }
}

/// A secret given by reference (`<NAME>_ARN`, read from Secrets Manager) or by value; the
/// reference wins when both are set.
fn secret_setting(env: &dyn Env, arn: &str, value: &str) -> Option<SecretSetting> {
    match (env.get(arn), env.get(value)) {
        (Some(id), _) => Some(SecretSetting::Stored { id }),
        (None, Some(value)) => Some(SecretSetting::Value(value.into())),
        (None, None) => None,
    }
}

fn secrets_ttl(env: &dyn Env) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(parse(env, "SECRETS_TTL_SECONDS", 300, 1..=86_400)?))
}

/// `true`/`false` (also 1/0, yes/no); unset is false.
fn flag(env: &dyn Env, name: &'static str) -> Result<bool, ConfigError> {
    match env.get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn data_dir(env: &dyn Env) -> PathBuf {
    PathBuf::from(env.get("FAVORITES_DATA_DIR").unwrap_or_else(|| ".local".into()))
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

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

fn ensure_dir(dir: &PathBuf) -> Result<PathBuf, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::DataDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir.clone())
}

/// A random key generated on first use and kept in the data directory, so that tokens survive
/// a restart of `make run`. Written with `create_new` so two functions starting at once agree
/// on one key: the loser of the race reads the winner's file.
fn development_jwt_secret(data_dir: &PathBuf) -> Result<SecretString, ConfigError> {
    use std::io::Write;

    let path = ensure_dir(data_dir)?.join("dev-jwt.key");
    let io_error = |source| ConfigError::DataDir {
        path: path.clone(),
        source,
    };
    let key: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut file) => {
            file.write_all(key.as_bytes()).map_err(io_error)?;
            Ok(key.into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The winner may not have finished writing yet: wait for a whole key.
            for _ in 0..50 {
                let existing = std::fs::read_to_string(&path).map_err(io_error)?;
                if existing.trim().len() >= JWT_SECRET_MIN_BYTES {
                    return Ok(existing.trim().to_string().into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(invalid(
                "FAVORITES_DATA_DIR",
                format!("{} holds no usable key; delete it", path.display()),
            ))
        }
        Err(e) => Err(io_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_without_a_jwt_secret_is_refused_at_cold_start() {
        let err = Config::from(&[("DATABASE_URL", "postgres://localhost/x")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let err = Config::from(&[("DATABASE_URL", "postgres://localhost/x"), ("JWT_SECRET", "short")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }

    #[test]
    fn an_out_of_range_bcrypt_cost_names_the_variable() {
        let secret = "k".repeat(32);
        let env = [
            ("DATABASE_URL", "postgres://h/db"),
            ("JWT_SECRET", secret.as_str()),
            ("BCRYPT_COST", "40"),
        ];
        let err = Config::from(&env).unwrap_err();
        assert!(err.to_string().starts_with("BCRYPT_COST"), "{err}");
    }

    #[test]
    fn the_cache_is_off_without_redis_url_and_checked_with_it() {
        let secret = "k".repeat(32);
        let base = [("DATABASE_URL", "postgres://h/db"), ("JWT_SECRET", secret.as_str())];
        assert!(Config::from(&base).unwrap().cache.is_none());
        let err = Config::from(&[base[0], base[1], ("REDIS_URL", "http://cache:6379")]).unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
        let env = [
            base[0],
            base[1],
            ("REDIS_URL", "redis://cache:6379"),
            ("CACHE_MAX_ITEMS", "0"),
        ];
        let err = Config::from(&env).unwrap_err();
        assert!(err.to_string().starts_with("CACHE_MAX_ITEMS"), "{err}");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let err = Config::from(&[("DATABASE_URL", "mysql://h/db")]).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_embedded_default_generates_one_development_key_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("favorites-config-{}", uuid::Uuid::new_v4()));
        let dir_str = dir.display().to_string();
        let first = Config::from(&[("FAVORITES_DATA_DIR", dir_str.as_str())]).unwrap();
        let second = Config::from(&[("FAVORITES_DATA_DIR", dir_str.as_str())]).unwrap();
        assert!(first.database.embedded);
        let key = |c: &Config| match &c.jwt.key {
            SecretSetting::Value(v) => v.expose_secret().to_string(),
            SecretSetting::Stored { .. } => panic!("the development key is a value"),
        };
        assert_eq!(key(&first), key(&second));
        assert!(key(&first).len() >= 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
