//! Secrets: where each one comes from, and a running instance's handle on it.
//!
//! - [`SecretSetting`]: what the configuration says about a secret: given in the environment,
//!   stored in Secrets Manager, or generated for the embedded development setup.
//! - [`Secret`]: the handle the adapters hold. A given or generated value never changes; a
//!   stored one is read once per cold start and again at most once per TTL, and at once when
//!   the other side has just refused the value in hand (the database said "password
//!   authentication failed" after a rotation).
//!
//! A store that cannot be reached after a value was fetched once is not an outage: the value
//! in hand is kept, with a warning, until the store answers again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::ports::{SecretSource, SecretVersion};

/// Where a secret comes from.
#[derive(Clone)]
pub enum SecretSetting {
    /// The value itself, from the environment (local runs, tests).
    Value(SecretString),
    /// Secrets Manager's secret `id` (ARN or name), read again after `ttl`.
    Stored { id: String, ttl: Duration },
    /// A file of the embedded development setup, made by its bootstrap
    /// ([`crate::development::bootstrap`]) before anything reads it.
    Generated { path: PathBuf },
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value([redacted])"),
            Self::Stored { id, ttl } => f.debug_struct("Stored").field("id", id).field("ttl", ttl).finish(),
            Self::Generated { path } => f.debug_struct("Generated").field("path", path).finish(),
        }
    }
}

/// A secret as an instance holds it: fixed when given or generated, cached when stored.
pub enum Secret {
    Fixed(SecretVersion),
    Stored(CachedSecret),
}

impl Secret {
    /// A value that never changes.
    pub fn fixed(value: SecretString) -> Self {
        Self::Fixed(SecretVersion {
            value,
            version_id: "environment".into(),
            created: None,
        })
    }

    /// The secret a setting names; `store` is asked only for a stored one (and then it must
    /// be there).
    pub fn from_setting(setting: &SecretSetting, store: Option<&Arc<dyn SecretSource>>) -> anyhow::Result<Self> {
        Ok(match setting {
            SecretSetting::Value(value) => Self::fixed(value.clone()),
            SecretSetting::Stored { id, ttl } => {
                let store =
                    store.ok_or_else(|| anyhow::anyhow!("secret {id} is stored, but no secret store is configured"))?;
                Self::Stored(CachedSecret::new(store.clone(), id.clone(), *ttl))
            }
            SecretSetting::Generated { path } => {
                let value = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the development key {}", path.display()))?;
                Self::fixed(value.trim().to_string().into())
            }
        })
    }

    pub async fn get(&self) -> anyhow::Result<SecretVersion> {
        match self {
            Self::Fixed(version) => Ok(version.clone()),
            Self::Stored(secret) => secret.get().await,
        }
    }

    /// The other side refused version `version_id`: fetch again. True when a different
    /// version is now in hand, so that one more attempt with it makes sense.
    pub async fn refused(&self, version_id: &str) -> bool {
        match self {
            Self::Fixed(_) => false,
            Self::Stored(secret) => secret
                .refresh(version_id)
                .await
                .is_ok_and(|fresh| fresh.version_id != version_id),
        }
    }

    /// Fetches again because `version_id` was refused; the version now in hand (for a fixed
    /// secret, the one value there is).
    pub async fn refresh(&self, version_id: &str) -> anyhow::Result<SecretVersion> {
        match self {
            Self::Fixed(version) => Ok(version.clone()),
            Self::Stored(secret) => secret.refresh(version_id).await,
        }
    }

    /// The version the last rotation replaced; `None` for a fixed secret or one never rotated.
    pub async fn previous(&self) -> anyhow::Result<Option<SecretVersion>> {
        match self {
            Self::Fixed(_) => Ok(None),
            Self::Stored(secret) => secret.previous().await,
        }
    }

    /// How the secret is named in logs: its id in the store, or where it came from.
    pub fn name(&self) -> &str {
        match self {
            Self::Fixed(_) => "environment",
            Self::Stored(secret) => secret.id(),
        }
    }
}

/// One stored secret, cached.
pub struct CachedSecret {
    source: Arc<dyn SecretSource>,
    id: String,
    ttl: Duration,
    /// Also the single flight: concurrent callers wait for one fetch instead of each making one.
    held: Mutex<Option<Held>>,
}

#[derive(Clone)]
struct Held {
    version: SecretVersion,
    /// When to read the store again: a TTL after a read, or shortly after a failed one.
    read_again: Instant,
}

impl CachedSecret {
    pub fn new(source: Arc<dyn SecretSource>, id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            source,
            id: id.into(),
            ttl,
            held: Mutex::new(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The value, fetched when none is held or the held one is older than the TTL.
    pub async fn get(&self) -> anyhow::Result<SecretVersion> {
        let mut held = self.held.lock().await;
        match held.as_ref() {
            Some(h) if Instant::now() < h.read_again => Ok(h.version.clone()),
            _ => self.fetch(&mut held).await,
        }
    }

    /// Fetches again because `refused` (a version id) was refused: unless another caller has
    /// already replaced that version meanwhile, in which case its value is returned.
    pub async fn refresh(&self, refused: &str) -> anyhow::Result<SecretVersion> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && h.version.version_id != refused
        {
            return Ok(h.version.clone());
        }
        self.fetch(&mut held).await
    }

    async fn fetch(&self, held: &mut Option<Held>) -> anyhow::Result<SecretVersion> {
        match self.source.current(&self.id).await {
            Ok(version) => {
                if let Some(old) = held.as_ref()
                    && old.version.version_id != version.version_id
                {
                    tracing::info!(secret = %self.id, version = %version.version_id, "secret rotated; using the new version");
                }
                *held = Some(Held {
                    version: version.clone(),
                    read_again: Instant::now() + self.ttl,
                });
                Ok(version)
            }
            Err(error) => match held.as_mut() {
                Some(h) => {
                    tracing::warn!(secret = %self.id, error = format!("{error:#}"), "could not refresh a secret; keeping the value in hand");
                    // Try again after a short pause rather than on every call.
                    h.read_again = Instant::now() + self.ttl.min(Duration::from_secs(5));
                    Ok(h.version.clone())
                }
                None => Err(error.context(format!("reading secret {}", self.id))),
            },
        }
    }

    /// The version the last rotation replaced, straight from the store.
    pub async fn previous(&self) -> anyhow::Result<Option<SecretVersion>> {
        self.source.previous(&self.id).await
    }
}
