//! Secrets that come from a store (Secrets Manager) and change under a running instance.
//!
//! - [`CachedSecret`]: one secret, read once per cold start and again at most once per TTL,
//!   plus a forced refresh for when the value in hand has just been refused (the database
//!   said "password authentication failed" after a rotation).
//! - [`SigningKeys`]: the JWT signing key with its rotation grace period: tokens are signed
//!   with the current key, and tokens signed with the previous key stay valid for a grace
//!   period after the current key was created (docs/AWS.md).
//!
//! A store that cannot be reached after a value was fetched once is not an outage: the value
//! in hand is kept, with a warning, until the store answers again.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::ports::{SecretSource, SecretVersion};

/// Where a secret's value comes from: the environment (local runs, tests) or a store.
#[derive(Clone)]
pub enum SecretSetting {
    Value(SecretString),
    Stored { id: String },
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value([redacted])"),
            Self::Stored { id } => f.debug_struct("Stored").field("id", id).finish(),
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
    async fn previous(&self) -> anyhow::Result<Option<SecretVersion>> {
        self.source.previous(&self.id).await
    }
}

/// A secret that may rotate: fixed when it came from the environment, cached when stored.
pub enum RotatingSecret {
    Fixed(SecretVersion),
    Stored(CachedSecret),
}

impl RotatingSecret {
    /// A value that never rotates.
    pub fn fixed(value: SecretString) -> Self {
        Self::Fixed(SecretVersion {
            value,
            version_id: "environment".into(),
            created: None,
        })
    }

    /// From a setting; `source` is used only for a stored one (and then it must be given).
    pub fn from_setting(
        setting: &SecretSetting,
        source: Option<&Arc<dyn SecretSource>>,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        Ok(match setting {
            SecretSetting::Value(value) => Self::fixed(value.clone()),
            SecretSetting::Stored { id } => {
                let source = source
                    .ok_or_else(|| anyhow::anyhow!("secret {id} is stored, but no secret store is configured"))?;
                Self::Stored(CachedSecret::new(source.clone(), id.clone(), ttl))
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
}

/// One HMAC key and the id that goes into the `kid` header of the tokens it signs.
#[derive(Clone)]
pub struct SigningKey {
    pub id: String,
    pub secret: SecretString,
}

impl SigningKey {
    /// The id is a truncated hash of the key: it tells keys apart without revealing anything
    /// about a 32-byte-or-longer random key.
    pub fn new(secret: SecretString) -> Self {
        let digest = Sha256::new()
            .chain_update(b"favorites/jwt-kid/v1:")
            .chain_update(secret.expose_secret().as_bytes())
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { id, secret }
    }
}

/// The keys a token may be checked with at one moment.
#[derive(Clone)]
pub struct KeySet {
    /// Signs every new token and cursor.
    pub current: SigningKey,
    /// The key the last rotation replaced, while its grace period lasts.
    previous: Option<(SigningKey, SystemTime)>,
}

impl KeySet {
    pub fn single(current: SigningKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// The keys to try for a token: the one its `kid` names, or every live key when it names
    /// none (tokens issued before key ids existed).
    pub fn candidates(&self, kid: Option<&str>) -> Vec<&SigningKey> {
        let now = SystemTime::now();
        let previous = self.previous.as_ref().filter(|(_, until)| now < *until).map(|(k, _)| k);
        std::iter::once(&self.current)
            .chain(previous)
            .filter(|k| kid.is_none_or(|kid| k.id == kid))
            .collect()
    }

    /// Every live key, the current one first.
    pub fn live(&self) -> Vec<&SigningKey> {
        self.candidates(None)
    }
}

/// The JWT signing keys: fixed (from the environment) or stored and rotated.
pub struct SigningKeys {
    inner: Keys,
}

enum Keys {
    Fixed(Arc<KeySet>),
    Stored(Box<StoredState>),
}

struct StoredState {
    secret: CachedSecret,
    grace: Duration,
    state: Mutex<StoredKeys>,
}

struct StoredKeys {
    set: Arc<KeySet>,
    version_id: String,
    /// When an unknown `kid` last made us look for a newer key; bounds how often a stream of
    /// forged ids can make us call the store.
    last_lookup: Option<Instant>,
}

/// How often an unknown key id may trigger a fresh read of the key.
const UNKNOWN_KID_LOOKUP_INTERVAL: Duration = Duration::from_secs(5);

impl SigningKeys {
    pub fn fixed(secret: SecretString) -> Self {
        Self {
            inner: Keys::Fixed(Arc::new(KeySet::single(SigningKey::new(secret)))),
        }
    }

    /// Reads the key now (a cold start fails when the key cannot be read), and the previous
    /// key too when the current one is younger than the grace period.
    pub async fn stored(secret: CachedSecret, grace: Duration) -> anyhow::Result<Self> {
        let version = secret.get().await?;
        let set = key_set(&secret, &version, grace).await;
        Ok(Self {
            inner: Keys::Stored(Box::new(StoredState {
                secret,
                grace,
                state: Mutex::new(StoredKeys {
                    set: Arc::new(set),
                    version_id: version.version_id,
                    last_lookup: None,
                }),
            })),
        })
    }

    /// The keys now (refreshed when the TTL has passed).
    pub async fn keys(&self) -> Arc<KeySet> {
        self.keys_for(None).await
    }

    /// The keys to check a token whose header names `kid`: when no live key has that id, the
    /// key may have been rotated since we last looked, so look again (rate-limited).
    pub async fn keys_for(&self, kid: Option<&str>) -> Arc<KeySet> {
        let (secret, grace, state) = match &self.inner {
            Keys::Fixed(set) => return set.clone(),
            Keys::Stored(stored) => (&stored.secret, &stored.grace, &stored.state),
        };
        let mut state = state.lock().await;
        let mut version = secret.get().await.ok();
        let unknown = kid.is_some_and(|kid| state.set.candidates(Some(kid)).is_empty());
        let may_look = state
            .last_lookup
            .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_LOOKUP_INTERVAL);
        if unknown && may_look && version.as_ref().is_some_and(|v| v.version_id == state.version_id) {
            state.last_lookup = Some(Instant::now());
            version = secret.refresh(&state.version_id).await.ok();
        }
        if let Some(version) = version
            && version.version_id != state.version_id
        {
            state.set = Arc::new(key_set(secret, &version, *grace).await);
            state.version_id = version.version_id;
        }
        state.set.clone()
    }
}

async fn key_set(secret: &CachedSecret, current: &SecretVersion, grace: Duration) -> KeySet {
    let key = SigningKey::new(current.value.clone());
    // The grace period runs from the current key's creation; without a date, from now.
    let until = current.created.unwrap_or_else(SystemTime::now) + grace;
    if SystemTime::now() >= until {
        return KeySet::single(key);
    }
    let previous = match secret.previous().await {
        Ok(previous) => previous,
        Err(error) => {
            tracing::warn!(secret = %secret.id(), error = format!("{error:#}"), "could not read the previous JWT key; tokens signed with it are refused");
            None
        }
    };
    KeySet {
        current: key,
        previous: previous
            .filter(|p| p.version_id != current.version_id)
            .map(|p| (SigningKey::new(p.value), until)),
    }
}
