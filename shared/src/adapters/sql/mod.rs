//! SQL storage through sqlx: Postgres in production, SQLite as the embedded default, chosen by
//! the `DATABASE_URL` scheme. Both implement the same ports and pass the same contract tests.
//! This is the only module that imports sqlx.

mod postgres;
mod sqlite;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::SqlitePool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use postgres::{LIST_COLUMNS, LIST_ORDER, Pg, PgCredentials, PgFavoriteRepository, PgUserRepository};
pub use sqlite::{SqliteFavoriteRepository, SqliteUserRepository};

use crate::config::{DatabaseSettings, DatabaseTarget, Settings};
use crate::secrets::Secret;
use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::domain::{Asset, AssetInput, Email, Favorite, ListFilter, PasswordHash, User, UserId};
use crate::ports::ChangeFavoriteError;
use crate::ports::{
    Account, AccountLookup, DatabaseHealth, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter,
    FavoriteLister, FavoriteRemover, FavoritesVersion, InsertFavoriteError, InsertUserError, UserByEmail, UserDeleter,
    UserInserter,
};

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Every user port at once, for wiring; each function then keeps only the ones it uses.
pub trait UserRepository: UserInserter + UserByEmail + AccountLookup + UserDeleter {}
impl<T: UserInserter + UserByEmail + AccountLookup + UserDeleter> UserRepository for T {}

/// A connection pool to one of the two dialects.
#[derive(Clone)]
pub enum Database {
    Postgres(Pg),
    Sqlite(SqlitePool),
}

/// The CAs of RDS and RDS Proxy (infra/certs/rds-ca-bundle.pem, from AWS's published bundles;
/// scripts/update-rds-ca-bundle.sh refreshes it), built in so a deployment carries no file.
const RDS_CA_BUNDLE: &[u8] = include_bytes!("../../../../infra/certs/rds-ca-bundle.pem");

impl Database {
    /// Builds the pool once per cold start. Postgres connections open on the first query, or
    /// at [`Database::warm_up`] (what the functions' wiring does). The embedded default is
    /// migrated here; Postgres only through the `migrate` function.
    ///
    /// `credentials` is the secret of an RDS target (required there, unused otherwise): it is
    /// read here, once per cold start (a cold start fails when it cannot be read), and again
    /// only when the server refuses it.
    pub async fn connect(settings: &DatabaseSettings, credentials: Option<Secret>) -> anyhow::Result<Self> {
        let url = match &settings.target {
            DatabaseTarget::Rds { endpoint, .. } => {
                let secret = credentials.context("the database's credentials are in a secret, but none was given")?;
                let credentials = Arc::new(PgCredentials::new(secret, endpoint.clone(), ca_bundle(settings)?));
                let options = credentials.options().await.context("reading the database secret")?;
                return Ok(Self::postgres(settings, options, Some(credentials)));
            }
            DatabaseTarget::Url(url) => url.expose_secret().to_string(),
            DatabaseTarget::Embedded { data_dir } => {
                format!(
                    "sqlite://{}?mode=rwc",
                    crate::development::database_path(data_dir).display()
                )
            }
        };
        if settings.is_postgres() {
            let mut options = PgConnectOptions::from_str(&url).context("parsing DATABASE_URL")?;
            if settings.ca_bundle.is_some() {
                options = options.ssl_root_cert_from_pem(ca_bundle(settings)?);
            }
            return Ok(Self::postgres(settings, options, None));
        }
        let options = SqliteConnectOptions::from_str(&url)
            .context("parsing DATABASE_URL")?
            .create_if_missing(true)
            // WAL lets the functions of `make run`, separate processes, read while one writes.
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(settings.timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            .connect_with(options)
            .await
            .context("opening the SQLite database")?;
        let database = Self::Sqlite(pool);
        if settings.embedded_data_dir().is_some() {
            database.migrate_racing_siblings().await?;
        }
        Ok(database)
    }

    /// A small pool per instance (one Lambda instance serves one request at a time), with no
    /// connection yet.
    fn postgres(
        settings: &DatabaseSettings,
        options: PgConnectOptions,
        credentials: Option<Arc<PgCredentials>>,
    ) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.timeout)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        Self::Postgres(Pg::new(pool, !settings.proxy, credentials))
    }

    /// Applies pending migrations of this dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(db) => PG_MIGRATIONS
                .run(db.pool())
                .await
                .context("applying Postgres migrations"),
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await.context("applying SQLite migrations"),
        }
    }

    /// Under `make run` every function is its own process and the first requests can start
    /// several at once; SQLite has no migration lock, so the loser of a race retries and then
    /// finds the winner's migrations applied.
    async fn migrate_racing_siblings(&self) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            match self.migrate().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = format!("{e:#}"), attempt, "migration raced a sibling; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn users(&self) -> Arc<dyn UserRepository> {
        match self {
            Self::Postgres(db) => Arc::new(PgUserRepository::new(db.clone())),
            Self::Sqlite(pool) => Arc::new(SqliteUserRepository::new(pool.clone())),
        }
    }

    /// Opens the pool's first connection now, during the cold start, so that the first request
    /// does not pay for it: TCP, TLS and SCRAM are most of a cold start's first answer
    /// otherwise, and Lambda's init runs at full CPU. Within [`WARM_UP_WITHIN`]; a database that
    /// cannot be reached now is the first request's concern (a 503 if it still cannot), not the
    /// cold start's.
    pub async fn warm_up(&self) {
        let Self::Postgres(db) = self else { return };
        match tokio::time::timeout(WARM_UP_WITHIN, db.connection()).await {
            Ok(Ok(_returned_to_the_pool)) => {}
            Ok(Err(error)) => tracing::warn!(
                error = format!("{error:#}"),
                "no database connection at cold start; the first request will try again"
            ),
            Err(_) => tracing::warn!(
                within_ms = WARM_UP_WITHIN.as_millis() as u64,
                "no database connection at cold start in time; the first request will try again"
            ),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(db) => db.pool().close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
impl Database {
    /// A migrated SQLite database in this process's memory, shared by the pool's connections
    /// and gone with them: for unit tests, one per call.
    pub(crate) async fn in_memory() -> Self {
        let database = Self::connect(&DatabaseSettings::for_url("sqlite::memory:"), None)
            .await
            .unwrap();
        database.migrate().await.unwrap();
        database
    }
}

#[async_trait]
impl DatabaseHealth for Database {
    async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(db) => match db.connection().await {
                Ok(mut conn) => sqlx::query("select 1")
                    .persistent(false)
                    .execute(&mut *conn)
                    .await
                    .map(drop),
                Err(e) => Err(e),
            },
            Self::Sqlite(pool) => sqlx::query("select 1").execute(pool).await.map(drop),
        }
        .context("pinging the database")
    }
}

/// The CA bundle TLS connections verify the server with: `DATABASE_CA_BUNDLE` or the built-in one.
fn ca_bundle(settings: &DatabaseSettings) -> anyhow::Result<Vec<u8>> {
    match &settings.ca_bundle {
        Some(path) => std::fs::read(path).with_context(|| format!("reading DATABASE_CA_BUNDLE {}", path.display())),
        None => Ok(RDS_CA_BUNDLE.to_vec()),
    }
}

// Statements both dialects run as they are (SQLite reads `$1` as a numbered parameter too).
const INSERT_USER: &str = "insert into users (id, email, password_hash) values ($1, $2, $3)";
const SELECT_USER_BY_EMAIL: &str = "select id, email, password_hash from users where lower(email) = lower($1)";
const SELECT_USER_BY_ID: &str = "select id, email, password_hash from users where id = $1";
const SELECT_FAVORITE: &str = "select id, asset, created_at, updated_at from favorites where user_id = $1 and id = $2";
const SELECT_VERSION: &str = "select favorites_version from users where id = $1";
const FAVORITE_EXISTS: &str = "select 1 from favorites where user_id = $1 and id = $2";

/// A conditional change that changed nothing: stale when the favorite is there (so in another
/// revision than expected), no such favorite otherwise. `exists` is a read of
/// [`FAVORITE_EXISTS`] made after the change, so the answer is true at that moment.
fn unchanged<T>(exists: Option<i32>) -> Result<Option<T>, ChangeFavoriteError> {
    match exists {
        Some(_) => Err(ChangeFavoriteError::Stale),
        None => Ok(None),
    }
}

/// What inserting a user came to, in either dialect: the unique index on lower(email) decides.
fn user_inserted<T>(result: Result<T, sqlx::Error>) -> Result<(), InsertUserError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(InsertUserError::EmailTaken),
        Err(e) => Err(postgres::unavailable_if_lost(anyhow::Error::new(e).context("inserting a user")).into()),
    }
}

fn user_from_columns(id: Uuid, email: &str, password_hash: String) -> anyhow::Result<User> {
    Ok(User {
        id: UserId::from_uuid(id),
        email: Email::parse(email).context("a stored email no longer parses")?,
        password_hash: PasswordHash::new(password_hash),
    })
}

/// What inserting a favorite came to, in either dialect: the key decides duplicates, the
/// foreign key a user that no longer exists. `extra` is whatever else the insert returned
/// (Postgres: the bumped version), handed back beside the favorite.
fn favorite_inserted<X>(
    result: Result<(DateTime<Utc>, DateTime<Utc>, X), sqlx::Error>,
    asset: &Asset,
) -> Result<(Favorite, X), InsertFavoriteError> {
    match result {
        Ok((created_at, updated_at, extra)) => Ok((
            Favorite {
                asset: asset.clone(),
                created_at,
                updated_at,
            },
            extra,
        )),
        Err(e) if is_unique_violation(&e) => Err(InsertFavoriteError::Duplicate),
        Err(e) if is_foreign_key_violation(&e) => Err(InsertFavoriteError::UnknownUser),
        Err(e) => Err(postgres::unavailable_if_lost(anyhow::Error::new(e).context("inserting a favorite")).into()),
    }
}

/// The version a change produced. `None` means the change found no user row to bump, which
/// the foreign key rules out for a change that touched a favorite.
fn version_from_column(version: Option<i64>) -> anyhow::Result<FavoritesVersion> {
    stored_version(Some(
        version.context("a favorite changed but its user's version was not bumped")?,
    ))
}

/// The version stored for a user, read outside a change: a user without a row (deleted since
/// the token was issued) has no favorites and is at 0.
fn stored_version(version: Option<i64>) -> anyhow::Result<FavoritesVersion> {
    let version = u64::try_from(version.unwrap_or(0)).context("a negative favorites version")?;
    Ok(FavoritesVersion(version))
}

/// A user's account from their row's [`SELECT_VERSION`] (the authentication layer's one read):
/// no row, no account.
fn account_from_row(version: Option<i64>) -> anyhow::Result<Option<Account>> {
    version
        .map(|version| {
            Ok(Account {
                favorites_version: stored_version(Some(version))?,
            })
        })
        .transpose()
}

/// True when `error` is a unique-constraint violation (Postgres 23505, SQLite 2067/1555).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}

/// True when `error` is a foreign-key violation: a token naming a user who no longer exists.
fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_foreign_key_violation())
}

/// Every favorite port at once, for wiring; each function keeps only the one it uses.
pub trait FavoriteRepository:
    FavoriteInserter + FavoriteGetter + FavoriteDescriptionUpdater + FavoriteRemover + FavoriteLister
{
}
impl<T> FavoriteRepository for T where
    T: FavoriteInserter + FavoriteGetter + FavoriteDescriptionUpdater + FavoriteRemover + FavoriteLister
{
}

impl Database {
    pub fn favorites(&self) -> Arc<dyn FavoriteRepository> {
        match self {
            Self::Postgres(db) => Arc::new(PgFavoriteRepository::new(db.clone())),
            Self::Sqlite(pool) => Arc::new(SqliteFavoriteRepository::new(pool.clone())),
        }
    }
}

/// How many rows one round trip of the listing brings: large enough that round trips do not
/// dominate, small enough that the rows in flight stay small (a chart is at most ~200 KB).
const LIST_BATCH_ROWS: i64 = 256;

/// The longest a cold start waits for its first database connection ([`Database::warm_up`]).
const WARM_UP_WITHIN: Duration = Duration::from_secs(1);

/// How a dialect spells what a listing's filter compares: the asset's type, and "the text a
/// search looks in contains this search text", case-insensitively (the text: name and
/// description, joined by U+001F, which neither may contain, so that no match spans the two).
/// `contains` gives the clause, its parameters numbered from `$n`, and the values to bind to
/// them. The migrations index these very expressions: a query names them as the index does, or
/// the index is not used.
pub(super) struct FilterDialect {
    pub type_expr: &'static str,
    pub contains: fn(param: usize, text: &str) -> (String, Vec<String>),
}

/// A listing filter as SQL: `and …` clauses with parameters numbered from `first`, and the
/// values to bind to them, in order. The SQL depends only on the filter's shape; every value
/// is bound.
pub(super) struct FilterClauses {
    pub sql: String,
    pub values: Vec<String>,
}

pub(super) fn filter_clauses(filter: &ListFilter, dialect: &FilterDialect, first: usize) -> FilterClauses {
    let mut sql = String::new();
    let mut values = Vec::new();
    let types = filter.types();
    if !types.is_empty() {
        // One type as `=`, so that the type index delivers rows in listing order by itself.
        let params: Vec<String> = (first..first + types.len()).map(|n| format!("${n}")).collect();
        sql += &match params.as_slice() {
            [one] => format!(" and {} = {one}", dialect.type_expr),
            many => format!(" and {} in ({})", dialect.type_expr, many.join(", ")),
        };
        values.extend(types.iter().map(|t| t.as_str().to_string()));
    }
    if let Some(text) = filter.text() {
        let (clause, text_values) = (dialect.contains)(first + values.len(), text.as_str());
        sql += &format!(" and {clause}");
        values.extend(text_values);
    }
    FilterClauses { sql, values }
}

/// A LIKE pattern that matches strings containing `text` literally.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// What is stored in the `asset` column: the asset without its id, which has its own column.
fn stored_asset(asset: &Asset) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(asset).context("serialising the asset")?;
    if let Some(object) = value.as_object_mut() {
        object.remove("id");
    }
    Ok(value)
}

/// Rebuilds a favorite from its columns. The stored asset was valid when written and is parsed
/// again on the way out, so a row edited by hand cannot smuggle an invalid favorite out.
fn favorite_from_row(
    id: String,
    asset: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
) -> anyhow::Result<Favorite> {
    let mut input: AssetInput = serde_json::from_value(asset).context("decoding a stored asset")?;
    input.id = Some(id);
    let asset = input
        .parse()
        .map_err(|e| anyhow::anyhow!("a stored asset no longer validates: {e}"))?;
    Ok(Favorite {
        asset,
        created_at,
        updated_at,
    })
}

/// Timestamps as both dialects print them: RFC 3339, UTC, microseconds.
fn timestamp_text(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
