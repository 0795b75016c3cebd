//! The token key ring: the HS256 key that signs tokens, and after a rotation the previous key
//! while its grace period lasts, so that tokens issued just before the rotation stay valid
//! (docs/AWS.md). Keys for the service's other signed values (list cursors) are derived from
//! the same ring, so there is no second secret to provision or rotate.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::ports::{CursorKeys, SecretVersion};
use crate::secrets::Secret;

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

/// The key ring over one secret: fixed when the key was given, rotating when it is stored.
pub struct KeyRing {
    secret: Secret,
    grace: Duration,
    state: Mutex<RingState>,
}

struct RingState {
    set: Arc<KeySet>,
    version_id: String,
    /// When an unknown `kid` last made us look for a newer key; bounds how often a stream of
    /// forged ids can make us call the store.
    last_lookup: Option<Instant>,
}

/// How often an unknown key id may trigger a fresh read of the key.
const UNKNOWN_KID_LOOKUP_INTERVAL: Duration = Duration::from_secs(5);

impl KeyRing {
    /// Reads the key now (a cold start fails when the key cannot be read), and the previous
    /// key too when the current one is younger than the grace period.
    pub async fn new(secret: Secret, grace: Duration) -> anyhow::Result<Self> {
        let version = secret.get().await?;
        let set = key_set(&secret, &version, grace).await;
        Ok(Self {
            secret,
            grace,
            state: Mutex::new(RingState {
                set: Arc::new(set),
                version_id: version.version_id,
                last_lookup: None,
            }),
        })
    }

    /// A ring of one key that never rotates: for tests and tools.
    pub fn fixed(key: SecretString) -> Self {
        Self {
            secret: Secret::fixed(key.clone()),
            grace: Duration::ZERO,
            state: Mutex::new(RingState {
                set: Arc::new(KeySet::single(SigningKey::new(key))),
                version_id: "environment".into(),
                last_lookup: None,
            }),
        }
    }

    /// The keys now (refreshed when the TTL has passed).
    pub async fn keys(&self) -> Arc<KeySet> {
        self.keys_for(None).await
    }

    /// The keys to check a token whose header names `kid`: when no live key has that id, the
    /// key may have been rotated since we last looked, so look again (rate-limited).
    pub async fn keys_for(&self, kid: Option<&str>) -> Arc<KeySet> {
        let mut state = self.state.lock().await;
        let mut version = self.secret.get().await.ok();
        let unknown = kid.is_some_and(|kid| state.set.candidates(Some(kid)).is_empty());
        let may_look = state
            .last_lookup
            .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_LOOKUP_INTERVAL);
        if unknown && may_look && version.as_ref().is_some_and(|v| v.version_id == state.version_id) {
            state.last_lookup = Some(Instant::now());
            version = self.secret.refresh(&state.version_id).await.ok();
        }
        if let Some(version) = version
            && version.version_id != state.version_id
        {
            state.set = Arc::new(key_set(&self.secret, &version, self.grace).await);
            state.version_id = version.version_id;
        }
        state.set.clone()
    }
}

#[async_trait]
impl CursorKeys for KeyRing {
    async fn cursor_keys(&self) -> Vec<[u8; 32]> {
        let keys = self.keys().await;
        keys.live()
            .into_iter()
            .map(|key| derive(key, b"favorites/list-cursor/v1"))
            .collect()
    }
}

/// A key for one purpose, derived from a token key: knowing it tells nothing about the token
/// key, and a value signed for one purpose never checks as another.
fn derive(key: &SigningKey, purpose: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.secret.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

async fn key_set(secret: &Secret, current: &SecretVersion, grace: Duration) -> KeySet {
    let key = SigningKey::new(current.value.clone());
    // The grace period runs from the current key's creation; without a date, from now.
    let until = current.created.unwrap_or_else(SystemTime::now) + grace;
    if SystemTime::now() >= until {
        return KeySet::single(key);
    }
    let previous = match secret.previous().await {
        Ok(previous) => previous,
        Err(error) => {
            tracing::warn!(secret = %secret.name(), error = format!("{error:#}"), "could not read the previous JWT key; tokens signed with it are refused");
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
