//! Wiring: for each function, the adapters it needs, built once per cold start from the
//! configuration, and the router that serves it. Function binaries call [`run`] with one of
//! the builders below and contain nothing else.
//!
//! Every function also gets, here and only here: JSON logs, the EMF metrics recorder and its
//! `ColdStart`, the graceful-shutdown handler (`shutdown`), and around its router the request
//! layer (`http::observe`: request ids, the request span, the metrics flush per answer).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;

use crate::adapters::bcrypt::BcryptPasswordHasher;
use crate::adapters::dynamodb::{DynamoDbFailedLoginCounter, DynamoDbIdempotencyStore};
use crate::adapters::enrichment::HttpEnrichmentClient;
use crate::adapters::jwt::JwtAccessTokens;
use crate::adapters::memory::{MemoryFailedLoginCounter, MemoryIdempotencyStore};
use crate::adapters::redis::RedisFavoriteCache;
use crate::adapters::secrets_manager::SecretsManagerSource;
use crate::adapters::sql::Database;
use crate::config::{Config, DatabaseConfig, ProcessEnv};
use crate::http::idempotency::{IdempotencyLayer, idempotent};
use crate::http::observe::observed;
use crate::http::{
    ASSET_LIMIT, CREDENTIALS_LIMIT, FavoritesState, HealthState, ListState, LoginState, SignupState,
    add_favorite_router, get_favorite_router, health_router, list_favorites_router, login_router,
    remove_favorite_router, signup_router, update_favorite_router,
};
use crate::metrics::Counter;
use crate::ports::{AccessTokens, FailedLoginCounter, IdempotencyStore, SecretSource};
use crate::runtime::{ResponseMode, Runtime};
use crate::secrets::{CachedSecret, RotatingSecret, SecretSetting, SigningKeys};
use crate::usecases::cache::CacheGuard;
use crate::usecases::enrich::Enrichment;
use crate::usecases::idempotency::Idempotency;
use crate::usecases::login::LoginThrottle;

/// Runs a buffered-response function: logs, configuration, adapters, then the Lambda loop.
/// A configuration or wiring error ends the cold start with the reason in the log.
pub async fn run<F, Fut>(build: F) -> Result<(), lambda_http::Error>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    serve(build, ResponseMode::Buffered).await
}

/// Runs a streaming-response function. Every response of such a function must be a stream
/// (a buffered body would arrive empty), which axum's `Body` is in both cases.
pub async fn run_streaming<F, Fut>(build: F) -> Result<(), lambda_http::Error>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    serve(build, ResponseMode::Streaming).await
}

async fn serve<F, Fut>(build: F, mode: ResponseMode) -> Result<(), lambda_http::Error>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    let runtime = Runtime::from_env()?;
    let router = observed(runtime.init(cold_start(build)).await?);
    match runtime.serve(router, mode).await {}
}

async fn cold_start<F, Fut>(build: F) -> Result<Router, lambda_http::Error>
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    observability().await?;
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    config.warn_if_development();
    let router = build(config)
        .await
        .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "cold start failed"))?;
    // Last, so that what it closes (the pools) exists; before the runtime loop, which ends
    // the init phase.
    crate::shutdown::install().await;
    Ok(router)
}

/// Logs and metrics (counting this cold start), for a function running under a Lambda
/// runtime API.
async fn observability() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    crate::adapters::emf::install(&function_name())
        .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "cold start failed"))?;
    crate::metrics::increment(Counter::ColdStart);
    Ok(())
}

/// The `function` dimension of the metrics: Lambda's function name (the stack's, so that two
/// stacks in one account keep apart), else the binary's name.
fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            let binary = std::env::args_os().next()?;
            Some(
                std::path::Path::new(&binary)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The AWS SDK's shared configuration (region, credentials, `AWS_ENDPOINT_URL`), loaded once
/// per cold start and only by functions that call an AWS API.
pub async fn aws() -> &'static aws_config::SdkConfig {
    static AWS: tokio::sync::OnceCell<aws_config::SdkConfig> = tokio::sync::OnceCell::const_new();
    AWS.get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
        .await
}

/// Secrets Manager, when some setting is stored there: one client per instance, shared by
/// every secret the function reads.
async fn secret_source(stored: bool) -> Option<Arc<dyn SecretSource>> {
    static SOURCE: tokio::sync::OnceCell<Arc<dyn SecretSource>> = tokio::sync::OnceCell::const_new();
    if !stored {
        return None;
    }
    let source = SOURCE
        .get_or_init(|| async { Arc::new(SecretsManagerSource::new(aws().await)) as Arc<dyn SecretSource> })
        .await;
    Some(source.clone())
}

async fn database(config: &Config) -> anyhow::Result<Database> {
    let secrets = secret_source(config.database.uses_stored_secrets()).await;
    let database = Database::connect(&config.database, secrets.as_ref())
        .await
        .context("connecting to the database")?;
    let pool = database.clone();
    crate::shutdown::on_shutdown("database pool", move || async move { pool.close().await });
    Ok(database)
}

/// The JWT keys: read once per cold start (from Secrets Manager when stored there).
async fn signing_keys(config: &Config) -> anyhow::Result<Arc<SigningKeys>> {
    let keys = match &config.jwt.key {
        SecretSetting::Value(secret) => SigningKeys::fixed(secret.clone()),
        SecretSetting::Stored { id } => {
            let source = secret_source(true).await.expect("a store was asked for");
            let secret = CachedSecret::new(source, id.clone(), config.secrets_ttl);
            SigningKeys::stored(secret, config.jwt.grace)
                .await
                .context("reading the JWT signing key")?
        }
    };
    Ok(Arc::new(keys))
}

async fn tokens(config: &Config) -> anyhow::Result<Arc<JwtAccessTokens>> {
    Ok(Arc::new(JwtAccessTokens::new(&config.jwt, signing_keys(config).await?)))
}

/// Idempotency for a write route: DynamoDB when `IDEMPOTENCY_TABLE` is set, else the
/// embedded in-memory store (adapters::memory says why that is enough locally).
async fn idempotency(
    config: &Config,
    operation: &'static str,
    tokens: Option<Arc<dyn AccessTokens>>,
    body_limit: usize,
) -> IdempotencyLayer {
    let store: Arc<dyn IdempotencyStore> = match &config.idempotency.table {
        Some(table) => Arc::new(DynamoDbIdempotencyStore::new(aws().await, table)),
        None => Arc::new(MemoryIdempotencyStore::default()),
    };
    IdempotencyLayer {
        idempotency: Arc::new(Idempotency::new(store, config.idempotency.policy.clone())),
        operation,
        tokens,
        body_limit,
    }
}

pub async fn signup(config: Config) -> anyhow::Result<Router> {
    let users = database(&config).await?.users();
    let router = signup_router(SignupState {
        users,
        hasher: Arc::new(BcryptPasswordHasher::new(config.bcrypt_cost)),
    });
    Ok(idempotent(
        router,
        Some(idempotency(&config, "signup", None, CREDENTIALS_LIMIT).await),
    ))
}

pub async fn login(config: Config) -> anyhow::Result<Router> {
    let users = database(&config).await?.users();
    let counter: Arc<dyn FailedLoginCounter> = match &config.login_throttle.table {
        Some(table) => Arc::new(DynamoDbFailedLoginCounter::new(aws().await, table)),
        None => Arc::new(MemoryFailedLoginCounter::default()),
    };
    Ok(login_router(LoginState {
        users,
        hasher: Arc::new(BcryptPasswordHasher::new(config.bcrypt_cost)),
        tokens: tokens(&config).await?,
        throttle: Arc::new(LoginThrottle::new(counter, config.login_throttle.policy.clone())),
    }))
}

/// The favorites cache when `REDIS_URL` is set. Nothing connects here: a Redis that is down at
/// cold start makes cache misses, not a failed start.
pub fn cache(config: &Config) -> anyhow::Result<Option<Arc<CacheGuard>>> {
    let Some(cache) = &config.cache else { return Ok(None) };
    let redis = RedisFavoriteCache::new(cache)?;
    // A call may connect and then wait for its reply: bound both, and a little more.
    let bound = cache.timeout * 2 + std::time::Duration::from_millis(50);
    Ok(Some(Arc::new(CacheGuard::new(Arc::new(redis), bound))))
}

/// The enrichment service client when `ENRICHMENT_URL` is set (nothing connects here); its
/// results are cached beside the favorites when the cache is on.
pub async fn enrichment(config: &Config, cache: Option<Arc<CacheGuard>>) -> anyhow::Result<Option<Arc<Enrichment>>> {
    let Some(enrichment) = &config.enrichment else {
        return Ok(None);
    };
    let stored = matches!(enrichment.api_key, SecretSetting::Stored { .. });
    let api_key = RotatingSecret::from_setting(
        &enrichment.api_key,
        secret_source(stored).await.as_ref(),
        config.secrets_ttl,
    )?;
    // Read now, so that a key that cannot be read fails the cold start, not the first list.
    api_key.get().await.context("reading the enrichment API key")?;
    let client = HttpEnrichmentClient::new(&enrichment.url, api_key)?;
    Ok(Some(Arc::new(Enrichment::new(
        Box::new(client),
        enrichment.policy.clone(),
        cache,
    ))))
}

pub async fn add_favorite(config: Config) -> anyhow::Result<Router> {
    let favorites = database(&config).await?.favorites();
    let tokens = tokens(&config).await?;
    let layer = idempotency(&config, "add-favorite", Some(tokens.clone()), ASSET_LIMIT).await;
    let router = add_favorite_router(FavoritesState {
        favorites,
        tokens,
        cache: cache(&config)?,
    });
    Ok(idempotent(router, Some(layer)))
}

pub async fn get_favorite(config: Config) -> anyhow::Result<Router> {
    let favorites = database(&config).await?.favorites();
    Ok(get_favorite_router(FavoritesState {
        favorites,
        tokens: tokens(&config).await?,
        // One favorite is one primary-key lookup: the cache would not save a round trip.
        cache: None,
    }))
}

pub async fn update_favorite(config: Config) -> anyhow::Result<Router> {
    let favorites = database(&config).await?.favorites();
    Ok(update_favorite_router(FavoritesState {
        favorites,
        tokens: tokens(&config).await?,
        cache: cache(&config)?,
    }))
}

pub async fn remove_favorite(config: Config) -> anyhow::Result<Router> {
    let favorites = database(&config).await?.favorites();
    Ok(remove_favorite_router(FavoritesState {
        favorites,
        tokens: tokens(&config).await?,
        cache: cache(&config)?,
    }))
}

pub async fn list_favorites(config: Config) -> anyhow::Result<Router> {
    let favorites = database(&config).await?.favorites();
    let tokens = tokens(&config).await?;
    let cache = cache(&config)?;
    Ok(list_favorites_router(ListState {
        favorites,
        keys: tokens.keys().clone(),
        tokens,
        cache: cache.clone(),
        enrichment: enrichment(&config, cache).await?,
    }))
}

pub async fn health(config: Config) -> anyhow::Result<Router> {
    let database = database(&config).await?;
    Ok(health_router(HealthState {
        database: Arc::new(database),
    }))
}

/// Applies the database migrations and reports how many ran. Postgres is migrated only through
/// this deliberate step (the `migrate` function, run by the deploy or by hand), never as a
/// side effect of a cold start: two versions of the code may be live during a deploy.
pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let secrets = secret_source(config.uses_stored_secrets()).await;
    let database = Database::connect(config, secrets.as_ref())
        .await
        .context("connecting to the database")?;
    database.migrate().await?;
    database.close().await;
    Ok(())
}

/// The `migrate` function: a Lambda handler when started by the Lambda runtime (the deploy
/// invokes it), a one-shot command otherwise (`cargo run -p migrate`).
pub async fn run_migrate() -> Result<(), lambda_http::Error> {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if in_lambda {
        observability().await?;
    } else {
        crate::telemetry::init();
    }
    let config =
        DatabaseConfig::from(&ProcessEnv).inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    if !in_lambda {
        migrate(&config)
            .await
            .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "migration failed"))?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    crate::shutdown::install().await;
    let config = &config;
    let runtime = Runtime::from_env()?;
    match runtime
        .serve_events(move |_| async move {
            let migrated = migrate(config).await;
            // No HTTP layer here to flush at the end of the answer.
            crate::metrics::flush();
            migrated.map_err(|e| {
                tracing::error!(error = format!("{e:#}"), "migration failed");
                lambda_http::Error::from(format!("{e:#}"))
            })?;
            Ok::<_, lambda_http::Error>(serde_json::json!({ "status": "migrated" }))
        })
        .await {}
}
