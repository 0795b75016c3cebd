use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::sync::Arc;
use uuid::Uuid;

use super::{
    FAVORITE_EXISTS, FilterDialect, INSERT_USER, LIST_BATCH_ROWS, SELECT_FAVORITE, SELECT_USER_BY_EMAIL,
    SELECT_USER_BY_ID, SELECT_VERSION, account_from_row, contains_pattern, favorite_from_row, favorite_inserted,
    filter_clauses, stored_asset, stored_version, unchanged, user_from_columns, user_inserted, version_from_column,
};
use crate::config::Endpoint;
use crate::domain::{Asset, Description, Email, Favorite, FavoriteId, ListFilter, Revision, User, UserId};
use crate::ports::{
    Account, AccountLookup, ChangeFavoriteError, Changed, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter,
    FavoriteLister, FavoriteRemover, FavoriteStream, FavoritesVersion, InsertFavoriteError, InsertUserError,
    ListPosition, ListQuery, ListedFavorite, Listing, Unavailable, UserByEmail, UserDeleter, UserInserter,
};
use crate::secrets::Secret;

/// A Postgres pool and how to use it. Behind RDS Proxy (`named_statements: false`) every
/// statement is sent unnamed, so no session ever holds a prepared statement and the proxy can
/// hand the server connection to another client after each transaction. With credentials from
/// a secret, a connection the server refuses (the password was rotated) makes us read the
/// secret again and connect once more.
#[derive(Clone)]
pub struct Pg {
    pool: PgPool,
    named_statements: bool,
    credentials: Option<Arc<PgCredentials>>,
}

/// Credentials from a stored secret, and which version of it the pool connects with.
pub struct PgCredentials {
    secret: Secret,
    endpoint: Endpoint,
    ca_bundle: Vec<u8>,
    in_use: std::sync::Mutex<String>,
}

/// The JSON of an RDS secret (the shape RDS and its rotation functions write).
#[derive(serde::Deserialize)]
struct RdsSecret {
    username: String,
    password: String,
    host: Option<String>,
    #[serde(default, deserialize_with = "port_number_or_text")]
    port: Option<u16>,
    dbname: Option<String>,
}

fn port_number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom("port out of range")),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("port must be a number")),
    }
}

impl PgCredentials {
    pub fn new(secret: Secret, endpoint: Endpoint, ca_bundle: Vec<u8>) -> Self {
        Self {
            secret,
            endpoint,
            ca_bundle,
            in_use: std::sync::Mutex::new(String::new()),
        }
    }

    /// Connection options from the secret's current value: TLS required, the server's
    /// certificate verified against the CA bundle and its name against the host.
    pub async fn options(&self) -> anyhow::Result<PgConnectOptions> {
        let version = self.secret.get().await?;
        let options = self.options_of(&version)?;
        *self.in_use.lock().expect("not poisoned") = version.version_id;
        Ok(options)
    }

    fn options_of(&self, version: &crate::ports::SecretVersion) -> anyhow::Result<PgConnectOptions> {
        let secret: RdsSecret = serde_json::from_str(version.value.expose_secret())
            .map_err(|e| anyhow::anyhow!("the database secret is not the JSON of an RDS secret: {e}"))?;
        let host = self
            .endpoint
            .host
            .clone()
            .or(secret.host)
            .context("the database secret has no host and DATABASE_HOST is not set")?;
        let name = self
            .endpoint
            .name
            .clone()
            .or(secret.dbname)
            .unwrap_or_else(|| "postgres".into());
        let port = self.endpoint.port.or(secret.port).unwrap_or(5432);
        Ok(PgConnectOptions::new_without_pgpass()
            .host(&host)
            .port(port)
            .username(&secret.username)
            .password(&secret.password)
            .database(&name)
            .ssl_mode(PgSslMode::VerifyFull)
            .ssl_root_cert_from_pem(self.ca_bundle.clone()))
    }

    /// The server refused the password we connect with: read the secret again. The options
    /// to retry with, or `None` when the secret has not changed (retrying would not help).
    async fn refused(&self) -> Option<PgConnectOptions> {
        let refused = self.in_use.lock().expect("not poisoned").clone();
        if !self.secret.refused(&refused).await {
            return None;
        }
        match self.options().await {
            Ok(options) => Some(options),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "the rotated database secret is unusable");
                None
            }
        }
    }
}

impl Pg {
    pub fn new(pool: PgPool, named_statements: bool, credentials: Option<Arc<PgCredentials>>) -> Self {
        Self {
            pool,
            named_statements,
            credentials,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection from the pool. Authentication is checked only when a connection opens,
    /// so this is the one place a rotated password shows, and the one place it is handled.
    pub async fn connection(&self) -> Result<PoolConnection<sqlx::Postgres>, sqlx::Error> {
        match self.pool.acquire().await {
            Err(error) if is_auth_failure(&error) => {
                let Some(credentials) = &self.credentials else {
                    return Err(error);
                };
                let Some(options) = credentials.refused().await else {
                    return Err(error);
                };
                tracing::info!("database password refused; reconnecting with the rotated secret");
                self.pool.set_connect_options(options);
                self.pool.acquire().await
            }
            other => other,
        }
    }

    /// Whether statements may be prepared by name and cached on the connection.
    fn persistent(&self) -> bool {
        self.named_statements
    }
}

/// A connection that could not be had (refused, timed out, TLS or password refused): the
/// database is unavailable to this request, which may succeed later.
pub(super) fn unavailable(error: sqlx::Error) -> anyhow::Error {
    anyhow::Error::new(error)
        .context("connecting to the database")
        .context(DATABASE_UNAVAILABLE)
}

const DATABASE_UNAVAILABLE: Unavailable = Unavailable {
    dependency: "the database",
};

/// How long a read that lost its connection waits before it runs once more.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `read`, and once more when it failed because its connection was lost before it could
/// answer (the server ended the session: a failover, an RDS Proxy restart,
/// `pg_terminate_backend`). A read may run twice; nothing of the first attempt's result was
/// used (a listing fails this way only before its first row). The second attempt, after
/// [`RETRY_PAUSE`], gets a fresh connection: the pool checks an idle one before handing it out.
/// A connection lost twice is the database being unavailable (503).
pub(super) async fn retrying_read<T, Fut>(read: impl Fn() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    match read().await {
        Err(error) if lost_connection(&error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "a read lost its database connection; once more"
            );
            // What ends one session usually ends its siblings (a failover, a proxy restart, an
            // administrator's sweep), and an idle one may still pass the pool's check for a few
            // milliseconds: give them the time to be gone.
            tokio::time::sleep(RETRY_PAUSE).await;
            read().await.map_err(unavailable_if_lost)
        }
        other => other,
    }
}

/// Runs a write of one statement, and once more when the server answered it by ending the
/// session (an error response of SQLSTATE class 08 or 57P01-57P03: a failover, a restart,
/// `pg_terminate_backend` of a connection that sat idle in the pool). A statement the server
/// answered with an error ran in a transaction of its own that rolled back: it never took
/// effect, and running it again writes once. `write` gives the statement's own result inside
/// the result of getting a connection.
///
/// A write whose connection broke without the server's word (a reset, an end of stream) is
/// not run again: whether it committed cannot be told. See [`unavailable_if_lost`].
pub(super) async fn retrying_write<T, Fut>(write: impl Fn() -> Fut) -> anyhow::Result<Result<T, sqlx::Error>>
where
    Fut: std::future::Future<Output = anyhow::Result<Result<T, sqlx::Error>>>,
{
    match write().await? {
        Err(error)
            if error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| session_ended(&c)) =>
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "the database ended the session before a write ran; once more"
            );
            tokio::time::sleep(RETRY_PAUSE).await;
            write().await
        }
        other => Ok(other),
    }
}

/// A write whose connection was lost without the server's word is not retried: whether the
/// statement reached the database cannot be told. It is the database being unavailable (503,
/// `Retry-After`): a retry with the same Idempotency-Key is answered from the record or does
/// the write, and a retried add that did land the first time is a 409.
pub(super) fn unavailable_if_lost(error: anyhow::Error) -> anyhow::Error {
    match lost_connection(&error) && error.downcast_ref::<Unavailable>().is_none() {
        true => error.context(DATABASE_UNAVAILABLE),
        false => error,
    }
}

/// Whether an error is its connection's, not its statement's: the socket broke, or the server
/// ended the session (SQLSTATE class 08, or 57P01-57P03: terminated by an administrator, a
/// crash or a shutdown, or not accepting connections yet).
fn lost_connection(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<sqlx::Error>())
        .any(|e| match e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(e) => e.code().is_some_and(|code| session_ended(&code)),
            _ => false,
        })
}

/// SQLSTATE class 08 (connection exception), or 57P01-57P03 (the session was terminated by an
/// administrator, a crash or a shutdown, or the server does not accept connections yet).
fn session_ended(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// "password authentication failed" (28P01) or "no such role / not allowed" (28000).
fn is_auth_failure(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "28P01" || code == "28000")
}

pub struct PgUserRepository {
    db: Pg,
}

impl PgUserRepository {
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UserInserter for PgUserRepository {
    async fn insert_user(&self, user: &User) -> Result<(), InsertUserError> {
        let result = retrying_write(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            Ok(sqlx::query(INSERT_USER)
                .persistent(self.db.persistent())
                .bind(user.id.as_uuid())
                .bind(user.email.as_str())
                .bind(user.password_hash.as_str())
                .execute(&mut *conn)
                .await)
        })
        .await?;
        user_inserted(result)
    }
}

impl PgUserRepository {
    /// The user `select` finds by its one parameter, `key`.
    async fn user_where<K>(&self, select: &'static str, key: K, doing: &'static str) -> anyhow::Result<Option<User>>
    where
        K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Copy + Send + Sync,
    {
        let row: Option<(Uuid, String, String)> = retrying_read(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            sqlx::query_as(select)
                .persistent(self.db.persistent())
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .context(doing)
        })
        .await?;
        row.map(|(id, email, hash)| user_from_columns(id, &email, hash))
            .transpose()
    }
}

#[async_trait]
impl UserByEmail for PgUserRepository {
    async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        self.user_where(SELECT_USER_BY_EMAIL, email.as_str(), "selecting a user by email")
            .await
    }
}

#[async_trait]
impl AccountLookup for PgUserRepository {
    async fn account(&self, user: UserId) -> anyhow::Result<Option<Account>> {
        let version: Option<i64> = retrying_read(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            sqlx::query_scalar(SELECT_VERSION)
                .persistent(self.db.persistent())
                .bind(user.as_uuid())
                .fetch_optional(&mut *conn)
                .await
                .context("looking up the account")
        })
        .await?;
        account_from_row(version)
    }
}

/// The user's favorites first, then the user: the order every change of a favorite takes its
/// locks in (the favorite's row, then the user's; see [`INSERT_FAVORITE`]), so that a change
/// racing the deletion queues behind it instead of deadlocking with it. The user's row is
/// reached only once the subquery has run the deletion of the favorites to its end; the foreign
/// key's cascade then deletes what a change committed meanwhile. One statement: one transaction.
const DELETE_USER: &str = "
    with favorites_gone as (
        delete from favorites where user_id = $1 returning 1
    )
    delete from users where id = $1 and (select count(*) from favorites_gone) >= 0";

#[async_trait]
impl UserDeleter for PgUserRepository {
    async fn user_by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.user_where(SELECT_USER_BY_ID, id.as_uuid(), "selecting a user by id")
            .await
    }

    async fn delete_user(&self, id: UserId) -> anyhow::Result<bool> {
        let deleted = retrying_write(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            Ok(sqlx::query(DELETE_USER)
                .persistent(self.db.persistent())
                .bind(id.as_uuid())
                .execute(&mut *conn)
                .await)
        })
        .await?
        .context("deleting a user and their favorites")
        .map_err(unavailable_if_lost)?;
        Ok(deleted.rows_affected() > 0)
    }
}

pub struct PgFavoriteRepository {
    db: Pg,
}

impl PgFavoriteRepository {
    pub fn new(db: Pg) -> Self {
        Self { db }
    }
}

type FavoriteRow = (String, serde_json::Value, DateTime<Utc>, DateTime<Utc>);

// Every change bumps the user's version in the same statement, and only when it changed a row.
// The favorite's row is locked first and the user's row second in all three, so concurrent
// changes of one user queue on the user's row in commit order and never deadlock.
const INSERT_FAVORITE: &str = "
    with inserted as (
        insert into favorites (user_id, id, asset) values ($1, $2, $3) returning created_at, updated_at
    ), bumped as (
        update users set favorites_version = favorites_version + 1
         where id = $1 and exists (select from inserted)
     returning favorites_version
    )
    select created_at, updated_at, (select favorites_version from bumped) from inserted";

#[async_trait]
impl FavoriteInserter for PgFavoriteRepository {
    async fn insert_favorite(&self, user: UserId, asset: &Asset) -> Result<Changed<Favorite>, InsertFavoriteError> {
        let stored = stored_asset(asset)?;
        let result: Result<(_, _, Option<i64>), _> = retrying_write(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            Ok(sqlx::query_as(INSERT_FAVORITE)
                .persistent(self.db.persistent())
                .bind(user.as_uuid())
                .bind(asset.id.as_str())
                .bind(&stored)
                .fetch_one(&mut *conn)
                .await)
        })
        .await?;
        let (value, version) = favorite_inserted(result, asset)?;
        Ok(Changed {
            value,
            version: version_from_column(version)?,
        })
    }
}

#[async_trait]
impl FavoriteGetter for PgFavoriteRepository {
    async fn get_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<Favorite>> {
        let row: Option<FavoriteRow> = retrying_read(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            sqlx::query_as(SELECT_FAVORITE)
                .persistent(self.db.persistent())
                .bind(user.as_uuid())
                .bind(id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .context("selecting a favorite")
        })
        .await?;
        row.map(|(id, asset, created, updated)| favorite_from_row(id, asset, created, updated))
            .transpose()
    }
}

#[async_trait]
impl FavoriteDescriptionUpdater for PgFavoriteRepository {
    async fn update_description(
        &self,
        user: UserId,
        id: &FavoriteId,
        description: &Description,
        expected: Option<Revision>,
    ) -> Result<Option<Changed<Favorite>>, ChangeFavoriteError> {
        type Updated = (String, serde_json::Value, DateTime<Utc>, DateTime<Utc>, Option<i64>);
        // updated_at moves strictly forward, even within one microsecond: it is the revision.
        let row: Option<Updated> = retrying_write(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            Ok(sqlx::query_as(
                "with updated as (
                 update favorites
                    set asset = jsonb_set(asset, '{description}', to_jsonb($3::text)),
                        updated_at = greatest(now(), updated_at + interval '1 microsecond')
                  where user_id = $1 and id = $2
                    and ($4::timestamptz is null or (created_at, updated_at) = ($4::timestamptz, $5::timestamptz))
              returning id, asset, created_at, updated_at
             ), bumped as (
                 update users set favorites_version = favorites_version + 1
                  where id = $1 and exists (select from updated)
              returning favorites_version
             )
             select id, asset, created_at, updated_at, (select favorites_version from bumped) from updated",
            )
            .bind(user.as_uuid())
            .bind(id.as_str())
            .persistent(self.db.persistent())
            .bind(description.as_str())
            .bind(expected.map(|r| r.created_at))
            .bind(expected.map(|r| r.updated_at))
            .fetch_optional(&mut *conn)
            .await)
        })
        .await?
        .context("updating a favorite's description")
        .map_err(unavailable_if_lost)?;
        let Some((id, asset, created, updated, version)) = row else {
            return self.unchanged(user, id, expected).await;
        };
        Ok(Some(Changed {
            value: favorite_from_row(id, asset, created, updated)?,
            version: version_from_column(version)?,
        }))
    }
}

#[async_trait]
impl FavoriteRemover for PgFavoriteRepository {
    async fn remove_favorite(
        &self,
        user: UserId,
        id: &FavoriteId,
        expected: Option<Revision>,
    ) -> Result<Option<FavoritesVersion>, ChangeFavoriteError> {
        let version: Option<Option<i64>> = retrying_write(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            Ok(sqlx::query_scalar(
                "with deleted as (
                 delete from favorites
                  where user_id = $1 and id = $2
                    and ($3::timestamptz is null or (created_at, updated_at) = ($3::timestamptz, $4::timestamptz))
              returning id
             ), bumped as (
                 update users set favorites_version = favorites_version + 1
                  where id = $1 and exists (select from deleted)
              returning favorites_version
             )
             select (select favorites_version from bumped) from deleted",
            )
            .bind(user.as_uuid())
            .persistent(self.db.persistent())
            .bind(id.as_str())
            .bind(expected.map(|r| r.created_at))
            .bind(expected.map(|r| r.updated_at))
            .fetch_optional(&mut *conn)
            .await)
        })
        .await?
        .context("deleting a favorite")
        .map_err(unavailable_if_lost)?;
        match version {
            Some(version) => Ok(Some(version_from_column(version)?)),
            None => self.unchanged(user, id, expected).await,
        }
    }
}

impl PgFavoriteRepository {
    /// What a change that matched no row means: no such favorite, or (with `expected`) one in
    /// another revision.
    async fn unchanged<T>(
        &self,
        user: UserId,
        id: &FavoriteId,
        expected: Option<Revision>,
    ) -> Result<Option<T>, ChangeFavoriteError> {
        if expected.is_none() {
            return Ok(None);
        }
        let exists: Option<i32> = retrying_read(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            sqlx::query_scalar(FAVORITE_EXISTS)
                .persistent(self.db.persistent())
                .bind(user.as_uuid())
                .bind(id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .context("checking whether a favorite exists")
        })
        .await?;
        unchanged(exists)
    }
}

/// The listing's columns, of `favorites`: the favorite's JSON is assembled by Postgres itself,
/// in the shape `Favorite` serialises to, so rows go to the client without being parsed here.
/// Public for `bench list`, which compares the list with Postgres emitting these rows.
pub const LIST_COLUMNS: &str = r#"
    select id, created_at,
           (asset || jsonb_build_object(
               'id', id,
               'created_at', to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'updated_at', to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text"#;

/// What a filtered listing compares: the columns of `favorite_search` (migrations
/// 20261207000001 and 20261208000001), the narrow rows a trigger keeps for each favorite, its
/// text lower-cased and in parts. A search is `strpos` first, a byte search that rejects most
/// rows cheaply, then the LIKE, on the few rows strpos kept; the trigram index serves the LIKE,
/// on `lower(text)` (the text itself), so that the planner prices it as high as the strpos and
/// keeps this order. `like lower($n)` is `ILIKE $n` on the asset: Postgres folds both sides with
/// lower() for ILIKE.
const PG_FILTER: FilterDialect = FilterDialect {
    type_expr: "type",
    contains: |n, text| {
        let clause = format!(
            "strpos(text, lower(${n})) > 0 and lower(text) like lower(${}) escape '\\'",
            n + 1
        );
        (clause, vec![text.to_string(), contains_pattern(text)])
    },
};

/// The listing's order, newest first; `(created_at, id)` is also its keyset.
pub const LIST_ORDER: &str = "order by created_at desc, id desc";

async fn read_version<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    persistent: bool,
    user: UserId,
) -> anyhow::Result<FavoritesVersion> {
    let version: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
        .persistent(persistent)
        .bind(user.as_uuid())
        .fetch_optional(executor)
        .await
        .context("reading the favorites version")?;
    stored_version(version)
}

impl PgFavoriteRepository {
    /// The listing's transaction: read-only and repeatable-read, so that a version read in it
    /// and every row of the listing belong to one snapshot.
    async fn listing_transaction(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let conn = self.db.connection().await.map_err(unavailable)?;
        // A transaction, not `SET TRANSACTION`: its settings end with it and pin nothing.
        sqlx::Transaction::begin(conn, Some("begin isolation level repeatable read read only".into()))
            .await
            .context("starting the listing transaction")
    }
}

/// One batch of the listing: its SQL, constant per shape (a keyset clause or not, the filter's),
/// and the filter's values, bound after `$1` user, `$2` offset, `$3` batch size and, `after` a
/// position, `$4`, `$5` its created_at and id. Every shape returns rows in listing order.
/// - Unfiltered: `favorites` along its listing index.
/// - A search without a type: `favorites_search_idx` (migration 20261209000001), a GiST index
///   of user, created_at and the text's trigrams, scanned in order of distance from
///   `SEARCH_ORIGIN` (or from the position the batch resumes after), which is newest first and
///   skips the subtrees that cannot hold the text. That order ties favorites created at the
///   same instant, so the scan takes the ties of its last row too (`with ties`) and the batch
///   is sorted by id among them: the keyset's order, so that no favorite is skipped or repeated
///   across batches.
/// - Any other filter walks favorite_search in listing order, each favorite once however many
///   of its parts match, and reads each favorite it keeps by primary key as it goes (a nested
///   loop, which keeps the walk's order: no sort, so the first row leaves before the walk
///   ends). A text with a type cannot use the GiST index: a subtree holding both types passes
///   both conditions separately, so a common text of a rare type would visit the whole list.
fn batch_sql(filter: &ListFilter, after: bool) -> (String, Vec<String>) {
    let keyset = if after { " and (created_at, id) < ($4, $5)" } else { "" };
    let first = if after { 6 } else { 4 };
    if filter.is_everything() {
        let sql = format!("{LIST_COLUMNS} from favorites where user_id = $1{keyset} {LIST_ORDER} offset $2 limit $3");
        return (sql, Vec::new());
    }
    if let (Some(text), []) = (filter.text(), filter.types()) {
        let origin = if after { "$4" } else { SEARCH_ORIGIN };
        let sql = format!(
            "{LIST_COLUMNS} \
               from (select id, created_at, updated_at, asset from favorites \
                      where user_id = $1 and created_at <= {origin}{keyset} \
                        and favorite_search_text(asset) like lower(${first}) escape '\\' \
                      order by created_at <-> {origin} \
                      fetch first ($2 + $3) rows with ties) favorites \
              {LIST_ORDER} offset $2 limit $3"
        );
        return (sql, vec![contains_pattern(text.as_str())]);
    }
    let filter = filter_clauses(filter, &PG_FILTER, first);
    let sql = format!(
        "{LIST_COLUMNS} \
           from (select distinct on (created_at, id) id as page_id, created_at as page_at \
                   from favorite_search \
                  where user_id = $1{keyset}{} {LIST_ORDER} offset $2 limit $3) page \
           join favorites on user_id = $1 and id = page_id \
          order by page_at desc, page_id desc",
        filter.sql
    );
    (sql, filter.values)
}

/// Where a search without a type measures distance from when a listing starts (`batch_sql`):
/// later than any favorite is created, so that nearer is newer.
const SEARCH_ORIGIN: &str = "timestamptz '9999-12-31 00:00:00+00'";

/// The listing in keyset batches of `LIST_BATCH_ROWS` inside the listing transaction: each batch
/// one plain statement that resumes after the last row of the batch before, all of them in the
/// transaction's one snapshot. No cursor: a `DECLARE`d cursor pins an RDS Proxy session to its
/// database connection. Rows stream as they arrive, so what is in memory is one row and the
/// socket's buffers; when the stream is dropped (the client went away) no further batch is read
/// and the transaction ends with the connection. The first row is read before this returns, so
/// a failure to start the listing is an error, not a stream that breaks before its first byte.
async fn batches(
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    persistent: bool,
    user: UserId,
    query: ListQuery,
) -> anyhow::Result<FavoriteStream> {
    let mut rows: FavoriteStream = Box::pin(async_stream::try_stream! {
        let mut tx = tx;
        let mut after = query.after;
        // Past any list, and short enough that a search may add a batch to it (`batch_sql`).
        let mut offset = i64::try_from(query.offset).unwrap_or(i64::MAX).min(i64::MAX - LIST_BATCH_ROWS);
        let mut remaining = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        loop {
            let batch = remaining.map_or(LIST_BATCH_ROWS, |r| r.min(LIST_BATCH_ROWS));
            if batch == 0 {
                break;
            }
            let (sql, values) = batch_sql(&query.filter, after.is_some());
            // A search is planned for its own text (a rare one by a bitmap of its matches, a
            // common one by a scan that stops when the batch is full), never with a generic
            // plan that guesses.
            let mut statement = sqlx::query_as::<_, (String, DateTime<Utc>, String)>(&sql)
                .persistent(persistent && query.filter.text().is_none())
                .bind(user.as_uuid())
                .bind(offset)
                .bind(batch);
            if let Some(after) = &after {
                statement = statement.bind(after.created_at).bind(after.id.clone());
            }
            for value in values {
                statement = statement.bind(value);
            }
            let mut fetched = 0;
            let mut stream = statement.fetch(&mut *tx);
            while let Some((id, created_at, json)) = stream.try_next().await.context("reading the listing")? {
                fetched += 1;
                let position = ListPosition { created_at, id };
                after = Some(position.clone());
                yield ListedFavorite { position, json };
            }
            drop(stream);
            offset = 0;
            if let Some(remaining) = &mut remaining {
                *remaining -= fetched;
            }
            if fetched < batch {
                break;
            }
        }
        tx.rollback().await.context("closing the listing transaction")?;
    });
    let first = rows.try_next().await?;
    Ok(Box::pin(futures::stream::iter(first.map(Ok)).chain(rows)))
}

#[async_trait]
impl FavoriteLister for PgFavoriteRepository {
    async fn list_favorites(&self, user: UserId, query: ListQuery) -> anyhow::Result<FavoriteStream> {
        retrying_read(|| async {
            batches(
                self.listing_transaction().await?,
                self.db.persistent(),
                user,
                query.clone(),
            )
            .await
        })
        .await
    }

    async fn list_favorites_versioned(&self, user: UserId, query: ListQuery) -> anyhow::Result<Listing> {
        retrying_read(|| async {
            let mut tx = self.listing_transaction().await?;
            let version = read_version(&mut *tx, self.db.persistent(), user).await?;
            Ok(Listing {
                version,
                rows: batches(tx, self.db.persistent(), user, query.clone()).await?,
            })
        })
        .await
    }

    async fn favorites_version(&self, user: UserId) -> anyhow::Result<FavoritesVersion> {
        retrying_read(|| async {
            let mut conn = self.db.connection().await.map_err(unavailable)?;
            read_version(&mut *conn, self.db.persistent(), user).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn lost() -> anyhow::Error {
        anyhow::Error::new(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())).context("reading")
    }

    #[tokio::test]
    async fn a_read_that_lost_its_connection_runs_once_more() {
        let calls = AtomicUsize::new(0);
        let answer = retrying_read(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(lost()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_lost_twice_is_the_database_unavailable() {
        let calls = AtomicUsize::new(0);
        let error = retrying_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(lost())
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(error.downcast_ref::<Unavailable>().is_some(), "{error:#}");
    }

    #[tokio::test]
    async fn a_statement_error_is_not_retried() {
        let calls = AtomicUsize::new(0);
        let error = retrying_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(anyhow::Error::new(sqlx::Error::RowNotFound))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(error.downcast_ref::<Unavailable>().is_none());
    }
}
