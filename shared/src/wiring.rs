//! The composition root's tools: builds each adapter a function needs from its settings, once
//! per cold start. [`Wiring`] owns what several adapters share (the AWS SDK configuration, the
//! Secrets Manager client), created on first need, so a function that calls no AWS API never
//! loads either. `functions.rs` decides which of these each function gets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::OnceCell;

use crate::adapters::bcrypt::BcryptPasswordHasher;
use crate::adapters::dynamodb::{DynamoDbFailedLoginCounter, DynamoDbIdempotencyStore};
use crate::adapters::enrichment::HttpEnrichmentClient;
use crate::adapters::jwt::{JwtAccessTokens, KeyRing};
use crate::adapters::memory::{MemoryFailedLoginCounter, MemoryIdempotencyStore};
use crate::adapters::redis::RedisFavoriteCache;
use crate::adapters::secrets_manager::SecretsManagerSource;
use crate::adapters::sql::Database;
use crate::config::{
    CacheSettings, DatabaseSettings, EnrichmentSettings, IdempotencySettings, PasswordSettings, SecretSetting,
    ThrottleSettings, TokenSettings,
};
use crate::http::idempotency::IdempotencyLayer;
use crate::ports::{FailedLoginCounter, IdempotencyStore, SecretSource};
use crate::secrets::Secret;
use crate::shutdown::Hooks;
use crate::usecases::cache::CacheGuard;
use crate::usecases::enrich::Enrichment;
use crate::usecases::idempotency::Idempotency;
use crate::usecases::throttle::LoginThrottle;

/// What the adapters of one function instance share. Built once per cold start and borrowed
/// by every builder; the builders may run concurrently (the cells initialise once).
#[derive(Default)]
pub struct Wiring {
    aws: OnceCell<aws_config::SdkConfig>,
    secrets: OnceCell<Arc<dyn SecretSource>>,
    /// What the built adapters need closed on shutdown. A std Mutex: never held across an await.
    shutdown: Mutex<Hooks>,
}

impl Wiring {
    /// What to close on shutdown, for the lifecycle to hand to [`crate::shutdown::install`].
    pub fn take_shutdown_hooks(&self) -> Hooks {
        std::mem::take(&mut *self.shutdown.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The AWS SDK's shared configuration (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn aws(&self) -> &aws_config::SdkConfig {
        self.aws
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await
    }

    /// Secrets Manager: one client per instance, shared by every secret the function reads.
    async fn secret_store(&self) -> &Arc<dyn SecretSource> {
        self.secrets
            .get_or_init(|| async { Arc::new(SecretsManagerSource::new(self.aws().await)) as Arc<dyn SecretSource> })
            .await
    }

    /// The secret a setting names (the store is reached only for a stored one).
    pub async fn secret(&self, setting: &SecretSetting) -> anyhow::Result<Secret> {
        let store = match setting {
            SecretSetting::Stored { .. } => Some(self.secret_store().await),
            _ => None,
        };
        Secret::from_setting(setting, store)
    }

    /// The database pool (reading its secret, when the credentials are stored) with its first
    /// connection open, closed on shutdown.
    pub async fn database(&self, settings: &DatabaseSettings) -> anyhow::Result<Database> {
        let database = self.connect(settings).await?;
        database.warm_up().await;
        let pool = database.clone();
        self.shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add("database pool", move || async move { pool.close().await });
        Ok(database)
    }

    /// A database pool for the caller to close (the `migrate` function's, once per invocation).
    pub async fn connect(&self, settings: &DatabaseSettings) -> anyhow::Result<Database> {
        let credentials = match settings.credentials() {
            Some(setting) => Some(self.secret(setting).await?),
            None => None,
        };
        Database::connect(settings, credentials)
            .await
            .context("connecting to the database")
    }

    /// The token key ring: the key is read now (from Secrets Manager when stored there).
    pub async fn key_ring(&self, settings: &TokenSettings) -> anyhow::Result<Arc<KeyRing>> {
        let secret = self.secret(&settings.key).await?;
        let ring = KeyRing::new(secret, settings.grace())
            .await
            .context("reading the JWT signing key")?;
        Ok(Arc::new(ring))
    }

    /// Access tokens, signed and checked with `keys`.
    pub fn tokens(&self, settings: &TokenSettings, keys: Arc<KeyRing>) -> Arc<JwtAccessTokens> {
        Arc::new(JwtAccessTokens::new(&settings.policy, keys))
    }

    pub fn password_hasher(&self, settings: &PasswordSettings) -> Arc<BcryptPasswordHasher> {
        Arc::new(BcryptPasswordHasher::new(settings.bcrypt_cost))
    }

    /// Idempotency for a write route: DynamoDB when `IDEMPOTENCY_TABLE` is set, else the
    /// embedded in-memory store (adapters::memory says why that is enough locally).
    pub async fn idempotency(
        &self,
        settings: &IdempotencySettings,
        operation: &'static str,
        body_limit: usize,
    ) -> IdempotencyLayer {
        let store: Arc<dyn IdempotencyStore> = match &settings.table {
            Some(table) => Arc::new(DynamoDbIdempotencyStore::new(self.aws().await, table)),
            None => Arc::new(MemoryIdempotencyStore::default()),
        };
        IdempotencyLayer {
            idempotency: Arc::new(Idempotency::new(store, settings.policy.clone())),
            operation,
            body_limit,
        }
    }

    /// The login throttle: its counters in DynamoDB when `LOGIN_THROTTLE_TABLE` is set, else
    /// in memory.
    pub async fn login_throttle(&self, settings: &ThrottleSettings) -> Arc<LoginThrottle> {
        let counter: Arc<dyn FailedLoginCounter> = match &settings.table {
            Some(table) => Arc::new(DynamoDbFailedLoginCounter::new(self.aws().await, table)),
            None => Arc::new(MemoryFailedLoginCounter::default()),
        };
        Arc::new(LoginThrottle::new(counter, settings.policy.clone()))
    }

    /// The favorites cache when it is configured. Nothing connects here: a Redis that is down
    /// at cold start makes cache misses, not a failed start.
    pub fn cache(&self, settings: Option<&CacheSettings>) -> anyhow::Result<Option<Arc<CacheGuard>>> {
        let Some(settings) = settings else { return Ok(None) };
        let redis = RedisFavoriteCache::new(settings)?;
        // A call may connect and then wait for its reply: bound both, and a little more.
        let bound = settings.policy.timeout * 2 + Duration::from_millis(50);
        Ok(Some(Arc::new(CacheGuard::new(Arc::new(redis), bound))))
    }

    /// The enrichment service client when it is configured (nothing connects here); its
    /// results are cached beside the favorites when the cache is on.
    pub async fn enrichment(
        &self,
        settings: Option<&EnrichmentSettings>,
        cache: Option<Arc<CacheGuard>>,
    ) -> anyhow::Result<Option<Arc<Enrichment>>> {
        let Some(settings) = settings else { return Ok(None) };
        let api_key = self.secret(&settings.api_key).await?;
        // Read now, so that a key that cannot be read fails the cold start, not the first list.
        api_key.get().await.context("reading the enrichment API key")?;
        let client = HttpEnrichmentClient::new(&settings.url, api_key)?;
        Ok(Some(Arc::new(Enrichment::new(
            Box::new(client),
            settings.policy.clone(),
            cache,
        ))))
    }
}
