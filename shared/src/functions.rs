//! The functions: for each Lambda, the settings it reads (the concerns it uses, side by side,
//! and nothing else) and the router it serves, built from them through one [`Wiring`]. A
//! function binary names one of these and hands it to [`crate::lambda::run`].
//!
//! Where a function needs both the database and the token keys, both are read concurrently:
//! each is a Secrets Manager call at cold start.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use futures::future::BoxFuture;

use crate::adapters::jwt::{JwtAccessTokens, KeyRing};
use crate::adapters::sql::Database;
use crate::config::{
    CacheSettings, ConfigError, DatabaseSettings, EnrichmentSettings, Env, IdempotencySettings, PasswordSettings,
    Resource, Settings, ThrottleSettings, TokenSettings,
};
use crate::http::{
    ASSET_LIMIT, Authentication, CREDENTIALS_LIMIT, DeleteAccountState, FavoritesState, HealthState, ListState,
    LoginState, SignupState, add_favorite_router, delete_account_router, get_favorite_router, health_router,
    list_favorites_router, login_router, remove_favorite_router, signup_router, update_favorite_router,
};
use crate::ports::{FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter, FavoriteRemover};
pub use crate::runtime::ResponseMode;
use crate::wiring::Wiring;

/// One Lambda function.
pub trait Function {
    /// The binary's name (template.yaml's `BuildProperties.Binary`).
    const NAME: &'static str;
    /// How it answers: a streaming function must stream every answer, errors included.
    const RESPONSE: ResponseMode = ResponseMode::Buffered;
    /// The concerns it reads.
    type Settings: Settings + Send + 'static;

    fn build(settings: Self::Settings, wiring: &Wiring) -> impl Future<Output = anyhow::Result<Router>> + Send;
}

/// A function as checks see it: its name, the resources its settings make it use when read
/// from an environment, and how it serves the API.
pub struct Described {
    pub name: &'static str,
    pub resources: fn(&dyn Env) -> Result<Vec<Resource>, ConfigError>,
    /// `None`: not behind the API, invoked directly with an event of its own (`migrate`).
    pub api: Option<Served>,
}

/// How a function behind the API serves it.
pub struct Served {
    /// How it answers.
    pub response: ResponseMode,
    /// Its router, built from the settings it reads from an environment.
    pub router: BuildRouter,
}

/// Builds a function's router from the settings it reads from an environment.
pub type BuildRouter = for<'a> fn(&dyn Env, &'a Wiring) -> BoxFuture<'a, anyhow::Result<Router>>;

/// Every function in functions/, for the checks that hold them against template.yaml.
pub const ALL: &[Described] = &[
    described::<Signup>(),
    described::<Login>(),
    described::<Health>(),
    described::<AddFavorite>(),
    described::<GetFavorite>(),
    described::<UpdateFavorite>(),
    described::<RemoveFavorite>(),
    described::<ListFavorites>(),
    described::<DeleteAccount>(),
    Described {
        name: MIGRATE,
        resources: |env| DatabaseSettings::from_env(env).map(|settings| settings.resources()),
        api: None,
    },
];

/// The `migrate` function's name: it reads only [`DatabaseSettings`] (`crate::lambda::run_migrate`).
pub const MIGRATE: &str = "migrate";

const fn described<F: Function>() -> Described {
    Described {
        name: F::NAME,
        resources: |env| F::Settings::from_env(env).map(|settings| settings.resources()),
        api: Some(Served {
            response: F::RESPONSE,
            router: |env, wiring| {
                let settings = F::Settings::from_env(env);
                Box::pin(async move { F::build(settings?, wiring).await })
            },
        }),
    }
}

/// The router of the function called `name`, built from the settings it reads from `env`:
/// what its binary serves, for checks that run functions in process (no runtime loop, no
/// development bootstrap, no shutdown hooks installed).
pub async fn router(name: &str, env: &dyn Env, wiring: &Wiring) -> anyhow::Result<Router> {
    let build = ALL
        .iter()
        .find(|function| function.name == name)
        .and_then(|function| function.api.as_ref())
        .map(|api| api.router)
        .with_context(|| format!("no function {name:?} serves HTTP"))?;
    build(env, wiring).await.with_context(|| format!("building {name}"))
}

/// `POST /signup`.
pub struct Signup;

impl Function for Signup {
    const NAME: &'static str = "signup";
    type Settings = (DatabaseSettings, PasswordSettings, IdempotencySettings);

    async fn build((database, passwords, idempotency): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let state = SignupState {
            users: wiring.database(&database).await?.users(),
            hasher: wiring.password_hasher(&passwords),
        };
        let idempotency = wiring.idempotency(&idempotency, "signup", CREDENTIALS_LIMIT).await;
        Ok(signup_router(state, idempotency))
    }
}

/// `POST /login`.
pub struct Login;

impl Function for Login {
    const NAME: &'static str = "login";
    type Settings = (DatabaseSettings, TokenSettings, PasswordSettings, ThrottleSettings);

    async fn build((database, tokens, passwords, throttle): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        Ok(login_router(LoginState {
            users: database.users(),
            hasher: wiring.password_hasher(&passwords),
            tokens,
            throttle: wiring.login_throttle(&throttle).await,
        }))
    }
}

/// `GET /health`.
pub struct Health;

impl Function for Health {
    const NAME: &'static str = "health";
    type Settings = DatabaseSettings;

    async fn build(database: Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let database = wiring.database(&database).await?;
        Ok(health_router(HealthState {
            database: Arc::new(database),
        }))
    }
}

/// `POST /favorites`.
pub struct AddFavorite;

impl Function for AddFavorite {
    const NAME: &'static str = "add-favorite";
    type Settings = (
        DatabaseSettings,
        TokenSettings,
        Option<CacheSettings>,
        IdempotencySettings,
    );

    async fn build((database, tokens, cache, idempotency): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        let state: FavoritesState<dyn FavoriteInserter> = FavoritesState {
            favorites: database.favorites(),
            cache: wiring.cache(cache.as_ref())?,
        };
        let idempotency = wiring.idempotency(&idempotency, "add-favorite", ASSET_LIMIT).await;
        Ok(add_favorite_router(
            state,
            authentication(&database, tokens),
            idempotency,
        ))
    }
}

/// `GET /favorites/{id}`.
pub struct GetFavorite;

impl Function for GetFavorite {
    const NAME: &'static str = "get-favorite";
    // No cache: one favorite is one primary-key lookup, the cache would not save a round trip.
    type Settings = (DatabaseSettings, TokenSettings);

    async fn build((database, tokens): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        let state: FavoritesState<dyn FavoriteGetter> = FavoritesState {
            favorites: database.favorites(),
            cache: None,
        };
        Ok(get_favorite_router(state, authentication(&database, tokens)))
    }
}

/// `PATCH /favorites/{id}`.
pub struct UpdateFavorite;

impl Function for UpdateFavorite {
    const NAME: &'static str = "update-favorite";
    type Settings = (DatabaseSettings, TokenSettings, Option<CacheSettings>);

    async fn build((database, tokens, cache): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        let cache = wiring.cache(cache.as_ref())?;
        let state: FavoritesState<dyn FavoriteDescriptionUpdater> = FavoritesState {
            favorites: database.favorites(),
            cache,
        };
        Ok(update_favorite_router(state, authentication(&database, tokens)))
    }
}

/// `DELETE /favorites/{id}`.
pub struct RemoveFavorite;

impl Function for RemoveFavorite {
    const NAME: &'static str = "remove-favorite";
    type Settings = (DatabaseSettings, TokenSettings, Option<CacheSettings>);

    async fn build((database, tokens, cache): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        let cache = wiring.cache(cache.as_ref())?;
        let state: FavoritesState<dyn FavoriteRemover> = FavoritesState {
            favorites: database.favorites(),
            cache,
        };
        Ok(remove_favorite_router(state, authentication(&database, tokens)))
    }
}

/// `GET /favorites`, streamed.
pub struct ListFavorites;

impl Function for ListFavorites {
    const NAME: &'static str = "list-favorites";
    const RESPONSE: ResponseMode = ResponseMode::Streaming;
    type Settings = (
        DatabaseSettings,
        TokenSettings,
        Option<CacheSettings>,
        Option<EnrichmentSettings>,
    );

    async fn build((database, tokens, cache, enrichment): Self::Settings, wiring: &Wiring) -> anyhow::Result<Router> {
        let (database, tokens, keys) = database_and_tokens(&database, &tokens, wiring).await?;
        let cache = wiring.cache(cache.as_ref())?;
        let state = ListState {
            favorites: database.favorites(),
            cursor_keys: keys,
            enrichment: wiring.enrichment(enrichment.as_ref(), cache.clone()).await?,
            cache,
        };
        Ok(list_favorites_router(state, authentication(&database, tokens)))
    }
}

/// `DELETE /me`. A function of its own rather than a route on one that exists: it is the only
/// operation that needs the token check, the password hasher, the throttle's counters and the
/// cache together. As a route on login, login would be given the cache (and the token check);
/// on remove-favorite, that function would be given bcrypt's CPU (1769 MB, for every removal)
/// and the throttle's table; either way a function would get an environment variable, an IAM
/// permission and a memory size it does not need for its own operation. Its own function keeps
/// each function's permissions exactly what its operation uses (shared/tests/template.rs).
pub struct DeleteAccount;

impl Function for DeleteAccount {
    const NAME: &'static str = "delete-account";
    type Settings = (
        DatabaseSettings,
        TokenSettings,
        PasswordSettings,
        ThrottleSettings,
        Option<CacheSettings>,
    );

    async fn build(
        (database, tokens, passwords, throttle, cache): Self::Settings,
        wiring: &Wiring,
    ) -> anyhow::Result<Router> {
        let (database, tokens, _) = database_and_tokens(&database, &tokens, wiring).await?;
        let state = DeleteAccountState {
            users: database.users(),
            hasher: wiring.password_hasher(&passwords),
            throttle: wiring.login_throttle(&throttle).await,
            cache: wiring.cache(cache.as_ref())?,
        };
        Ok(delete_account_router(state, authentication(&database, tokens)))
    }
}

/// What an authenticated function checks its requests with: the tokens, and the users of its
/// database (a valid token of a deleted account is refused).
fn authentication(database: &Database, tokens: Arc<JwtAccessTokens>) -> Authentication {
    Authentication {
        tokens,
        accounts: database.users(),
    }
}

/// The database and the access tokens, their secrets read concurrently; and the key ring the
/// tokens are signed with, which also signs list cursors.
async fn database_and_tokens(
    database: &DatabaseSettings,
    tokens: &TokenSettings,
    wiring: &Wiring,
) -> anyhow::Result<(Database, Arc<JwtAccessTokens>, Arc<KeyRing>)> {
    let (database, keys) = tokio::try_join!(wiring.database(database), wiring.key_ring(tokens))?;
    Ok((database, wiring.tokens(tokens, keys.clone()), keys))
}
