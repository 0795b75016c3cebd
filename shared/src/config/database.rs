//! The database: which one, with which credentials, and the pool's bounds. Every function
//! reads these; `migrate` reads nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    ConfigError, Env, Resource, SecretSetting, Settings, flag, invalid, millis, parse, stored_secret, stored_setting,
};

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub target: DatabaseTarget,
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
}

/// Which database to connect to, and with which credentials.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://…`, credentials inside (local runs, tests).
    Url(SecretString),
    /// `DATABASE_SECRET_ARN`: Postgres with the credentials of an RDS secret (JSON: username,
    /// password, host, port, dbname), always over TLS verified against the CA bundle.
    Rds {
        credentials: SecretSetting,
        endpoint: Endpoint,
    },
    /// Neither: the embedded default, SQLite in `FAVORITES_DATA_DIR` (default `.local`),
    /// migrated at cold start. A development setup: see [`crate::development`].
    Embedded { data_dir: PathBuf },
}

/// Where to connect instead of what the RDS secret says (`DATABASE_HOST`, the RDS Proxy
/// endpoint; `DATABASE_PORT`; `DATABASE_NAME`).
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
}

impl Settings for DatabaseSettings {
    fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            target: target(env)?,
            max_connections: parse(env, "DATABASE_MAX_CONNECTIONS", 2, 1..=100)?,
            timeout: millis(env, "DATABASE_TIMEOUT_MS", Duration::from_secs(5), 100..=60_000)?,
            proxy: flag(env, "DATABASE_PROXY")?,
            ca_bundle: env.get("DATABASE_CA_BUNDLE").map(PathBuf::from),
        })
    }

    fn resources(&self) -> Vec<Resource> {
        match &self.target {
            DatabaseTarget::Rds { credentials, .. } => {
                stored_secret("DATABASE_SECRET_ARN", credentials).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    fn embedded_data_dir(&self) -> Option<&Path> {
        match &self.target {
            DatabaseTarget::Embedded { data_dir } => Some(data_dir),
            _ => None,
        }
    }
}

fn target(env: &dyn Env) -> Result<DatabaseTarget, ConfigError> {
    match (env.get("DATABASE_URL"), env.get("DATABASE_SECRET_ARN")) {
        (Some(_), Some(_)) => Err(invalid(
            "DATABASE_URL",
            "set either DATABASE_URL or DATABASE_SECRET_ARN, not both",
        )),
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
            Ok(DatabaseTarget::Url(url.into()))
        }
        (None, Some(_)) => Ok(DatabaseTarget::Rds {
            credentials: stored_setting(env, "DATABASE_SECRET_ARN")?.expect("the ARN is set"),
            endpoint: Endpoint {
                host: env.get("DATABASE_HOST"),
                port: match env.get("DATABASE_PORT") {
                    Some(_) => Some(parse(env, "DATABASE_PORT", 5432, 1..=65_535)?),
                    None => None,
                },
                name: env.get("DATABASE_NAME"),
            },
        }),
        (None, None) => Ok(DatabaseTarget::Embedded {
            data_dir: embedded_data_dir(env).expect("no database is configured"),
        }),
    }
}

/// The embedded default's data directory when no database is configured: the one place that
/// decides what "the embedded default" means, for the database and for the keys that only
/// it may generate.
pub(super) fn embedded_data_dir(env: &dyn Env) -> Option<PathBuf> {
    let configured = env.get("DATABASE_URL").is_some() || env.get("DATABASE_SECRET_ARN").is_some();
    (!configured).then(|| PathBuf::from(env.get("FAVORITES_DATA_DIR").unwrap_or_else(|| ".local".into())))
}

impl DatabaseSettings {
    /// A database given by URL, everything else at its default: for tests and tools.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            target: DatabaseTarget::Url(SecretString::from(url.into())),
            max_connections: 4,
            timeout: Duration::from_secs(10),
            proxy: false,
            ca_bundle: None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        match &self.target {
            DatabaseTarget::Url(url) => {
                let url = url.expose_secret();
                url.starts_with("postgres://") || url.starts_with("postgresql://")
            }
            DatabaseTarget::Rds { .. } => true,
            DatabaseTarget::Embedded { .. } => false,
        }
    }

    /// The setting of the secret the credentials are in, for an RDS target.
    pub fn credentials(&self) -> Option<&SecretSetting> {
        match &self.target {
            DatabaseTarget::Rds { credentials, .. } => Some(credentials),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let err = DatabaseSettings::from_env(&[("DATABASE_URL", "mysql://h/db")]).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL"), "{err}");
    }

    #[test]
    fn no_database_is_the_embedded_default_and_parsing_it_creates_nothing() {
        let dir = std::env::temp_dir().join(format!("favorites-config-{}", uuid::Uuid::new_v4()));
        let dir_str = dir.display().to_string();
        let settings = DatabaseSettings::from_env(&[("FAVORITES_DATA_DIR", dir_str.as_str())]).unwrap();
        assert_eq!(settings.embedded_data_dir(), Some(dir.as_path()));
        assert!(!dir.exists(), "parsing has no side effects");
    }

    #[test]
    fn the_rds_secret_is_a_resource_read_with_the_endpoint_overrides() {
        let env = [
            ("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:1:secret:db"),
            ("DATABASE_HOST", "proxy.example"),
            ("DATABASE_PORT", "6432"),
        ];
        let settings = DatabaseSettings::from_env(&env).unwrap();
        let DatabaseTarget::Rds { endpoint, .. } = &settings.target else {
            panic!("an RDS target")
        };
        assert_eq!(
            (endpoint.host.as_deref(), endpoint.port),
            (Some("proxy.example"), Some(6432))
        );
        assert_eq!(settings.resources()[0].variable, "DATABASE_SECRET_ARN");
    }
}
