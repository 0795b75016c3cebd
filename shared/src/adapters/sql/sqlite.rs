use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::SqlitePool;
use uuid::Uuid;

use super::{
    FAVORITE_EXISTS, FilterDialect, INSERT_USER, SELECT_FAVORITE, SELECT_USER_BY_EMAIL, SELECT_USER_BY_ID,
    SELECT_VERSION, account_from_row, contains_pattern, favorite_from_row, favorite_inserted, filter_clauses,
    stored_asset, stored_version, timestamp_text, unchanged, user_from_columns, user_inserted, version_from_column,
};
use crate::domain::{Asset, Description, Email, Favorite, FavoriteId, Revision, User, UserId};
use crate::ports::{
    Account, AccountLookup, ChangeFavoriteError, Changed, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter,
    FavoriteLister, FavoriteRemover, FavoriteStream, FavoritesVersion, InsertFavoriteError, InsertUserError,
    ListPosition, ListQuery, ListedFavorite, Listing, UserByEmail, UserDeleter, UserInserter,
};

/// Ids are stored as hyphenated text: readable with the sqlite3 shell, and ordered like the
/// UUIDv7 bytes they spell.
pub struct SqliteUserRepository {
    pool: SqlitePool,
}

impl SqliteUserRepository {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserInserter for SqliteUserRepository {
    async fn insert_user(&self, user: &User) -> Result<(), InsertUserError> {
        let result = sqlx::query(INSERT_USER)
            .bind(user.id.to_string())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .execute(&self.pool)
            .await;
        user_inserted(result)
    }
}

impl SqliteUserRepository {
    /// The user `select` finds by its one parameter, `key`.
    async fn user_where(&self, select: &'static str, key: &str, doing: &'static str) -> anyhow::Result<Option<User>> {
        let row: Option<(String, String, String)> = sqlx::query_as(select)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .context(doing)?;
        row.map(|(id, email, hash)| {
            user_from_columns(
                Uuid::parse_str(&id).context("a stored user id is not a UUID")?,
                &email,
                hash,
            )
        })
        .transpose()
    }
}

#[async_trait]
impl UserByEmail for SqliteUserRepository {
    async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        self.user_where(SELECT_USER_BY_EMAIL, email.as_str(), "selecting a user by email")
            .await
    }
}

#[async_trait]
impl AccountLookup for SqliteUserRepository {
    async fn account(&self, user: UserId) -> anyhow::Result<Option<Account>> {
        let version: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await
            .context("looking up the account")?;
        account_from_row(version)
    }
}

#[async_trait]
impl UserDeleter for SqliteUserRepository {
    async fn user_by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.user_where(SELECT_USER_BY_ID, &id.to_string(), "selecting a user by id")
            .await
    }

    /// The favorites, then the user, in one transaction: all of it or (dropped before the
    /// commit) none. Without relying on the foreign key's cascade, which SQLite applies only on
    /// connections that turned foreign keys on.
    async fn delete_user(&self, id: UserId) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query("delete from favorites where user_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .context("deleting a user's favorites")?;
        let deleted = sqlx::query("delete from users where id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .context("deleting a user")?;
        tx.commit().await.context("committing a user's deletion")?;
        Ok(deleted.rows_affected() > 0)
    }
}

pub struct SqliteFavoriteRepository {
    pool: SqlitePool,
}

impl SqliteFavoriteRepository {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

type FavoriteRow = (String, String, DateTime<Utc>, DateTime<Utc>);

fn from_row((id, asset, created_at, updated_at): FavoriteRow) -> anyhow::Result<Favorite> {
    let asset = serde_json::from_str(&asset).context("a stored asset is not JSON")?;
    favorite_from_row(id, asset, created_at, updated_at)
}

/// Bumps the user's version inside the transaction of a change (SQLite has no data-modifying
/// CTEs; its writers are serialised by the database lock, taken by the change itself).
const BUMP_VERSION: &str =
    "update users set favorites_version = favorites_version + 1 where id = $1 returning favorites_version";

async fn bump_version(tx: &mut sqlx::SqliteConnection, user: UserId) -> anyhow::Result<FavoritesVersion> {
    let version: Option<i64> = sqlx::query_scalar(BUMP_VERSION)
        .bind(user.to_string())
        .fetch_optional(tx)
        .await
        .context("bumping the favorites version")?;
    version_from_column(version)
}

#[async_trait]
impl FavoriteInserter for SqliteFavoriteRepository {
    async fn insert_favorite(&self, user: UserId, asset: &Asset) -> Result<Changed<Favorite>, InsertFavoriteError> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let inserted: Result<(DateTime<Utc>, DateTime<Utc>), _> = sqlx::query_as(
            "insert into favorites (user_id, id, asset) values ($1, $2, $3) returning created_at, updated_at",
        )
        .bind(user.to_string())
        .bind(asset.id.as_str())
        .bind(stored_asset(asset)?.to_string())
        .fetch_one(&mut *tx)
        .await;
        let (value, ()) = favorite_inserted(inserted.map(|(created, updated)| (created, updated, ())), asset)?;
        let version = bump_version(&mut tx, user).await?;
        tx.commit().await.context("committing a favorite")?;
        Ok(Changed { value, version })
    }
}

#[async_trait]
impl FavoriteGetter for SqliteFavoriteRepository {
    async fn get_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<Favorite>> {
        let row: Option<FavoriteRow> = sqlx::query_as(SELECT_FAVORITE)
            .bind(user.to_string())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("selecting a favorite")?;
        row.map(from_row).transpose()
    }
}

#[async_trait]
impl FavoriteDescriptionUpdater for SqliteFavoriteRepository {
    async fn update_description(
        &self,
        user: UserId,
        id: &FavoriteId,
        description: &Description,
        expected: Option<Revision>,
    ) -> Result<Option<Changed<Favorite>>, ChangeFavoriteError> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        // updated_at moves strictly forward, even within SQLite's millisecond: it is the
        // revision (fixed-width text, so max() compares times).
        let row: Option<FavoriteRow> = sqlx::query_as(
            "update favorites
                set asset = json_set(asset, '$.description', $3),
                    updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'),
                                     strftime('%Y-%m-%dT%H:%M:%f000Z', updated_at, '+0.001 seconds'))
              where user_id = $1 and id = $2
                and ($4 is null or (created_at = $4 and updated_at = $5))
          returning id, asset, created_at, updated_at",
        )
        .bind(user.to_string())
        .bind(id.as_str())
        .bind(description.as_str())
        .bind(expected.map(|r| timestamp_text(&r.created_at)))
        .bind(expected.map(|r| timestamp_text(&r.updated_at)))
        .fetch_optional(&mut *tx)
        .await
        .context("updating a favorite's description")?;
        let Some(row) = row else {
            return unchanged_in(&mut tx, user, id, expected).await;
        };
        let changed = Changed {
            value: from_row(row)?,
            version: bump_version(&mut tx, user).await?,
        };
        tx.commit().await.context("committing a description")?;
        Ok(Some(changed))
    }
}

#[async_trait]
impl FavoriteRemover for SqliteFavoriteRepository {
    async fn remove_favorite(
        &self,
        user: UserId,
        id: &FavoriteId,
        expected: Option<Revision>,
    ) -> Result<Option<FavoritesVersion>, ChangeFavoriteError> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let result = sqlx::query(
            "delete from favorites
              where user_id = $1 and id = $2
                and ($3 is null or (created_at = $3 and updated_at = $4))",
        )
        .bind(user.to_string())
        .bind(id.as_str())
        .bind(expected.map(|r| timestamp_text(&r.created_at)))
        .bind(expected.map(|r| timestamp_text(&r.updated_at)))
        .execute(&mut *tx)
        .await
        .context("deleting a favorite")?;
        if result.rows_affected() == 0 {
            return unchanged_in(&mut tx, user, id, expected).await;
        }
        let version = bump_version(&mut tx, user).await?;
        tx.commit().await.context("committing a removal")?;
        Ok(Some(version))
    }
}

/// What a change that matched no row means: no such favorite, or (with `expected`) one in
/// another revision; read in the change's transaction.
async fn unchanged_in<T>(
    tx: &mut sqlx::SqliteConnection,
    user: UserId,
    id: &FavoriteId,
    expected: Option<Revision>,
) -> Result<Option<T>, ChangeFavoriteError> {
    if expected.is_none() {
        return Ok(None);
    }
    let exists: Option<i32> = sqlx::query_scalar(FAVORITE_EXISTS)
        .bind(user.to_string())
        .bind(id.as_str())
        .fetch_optional(tx)
        .await
        .context("checking whether a favorite exists")?;
    unchanged(exists)
}

async fn read_version(conn: &mut sqlx::SqliteConnection, user: UserId) -> anyhow::Result<FavoritesVersion> {
    let version: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
        .bind(user.to_string())
        .fetch_optional(conn)
        .await
        .context("reading the favorites version")?;
    stored_version(version)
}

/// The filter's expressions, as migrations/sqlite indexes the type (favorites_type_idx).
/// SQLite's LIKE folds ASCII letters only: `q` matches other letters in their exact case.
const SQLITE_FILTER: FilterDialect = FilterDialect {
    type_expr: "json_extract(asset, '$.type')",
    contains: |n, text| {
        let clause = format!(
            "(json_extract(asset, '$.name') || char(31) || json_extract(asset, '$.description')) like ${n} escape '\\'"
        );
        (clause, vec![contains_pattern(text)])
    },
};

/// The rows of a listing, in its read transaction. SQLite steps its statement row by row as
/// the stream is polled (sqlx runs it on a worker thread behind a bounded channel), so memory
/// stays flat; dropping the stream finalises the statement. The JSON is assembled by SQLite,
/// as Postgres does in its dialect. In WAL mode a read transaction sees one snapshot from its
/// first read on.
fn rows(mut tx: sqlx::Transaction<'static, sqlx::Sqlite>, user: UserId, query: ListQuery) -> FavoriteStream {
    Box::pin(async_stream::try_stream! {
        let keyset = if query.after.is_some() { "and (created_at, id) < ($4, $5)" } else { "" };
        let filter = filter_clauses(&query.filter, &SQLITE_FILTER, if query.after.is_some() { 6 } else { 4 });
        let sql = format!(
            "select id, created_at,
                    json_set(asset, '$.id', id, '$.created_at', created_at, '$.updated_at', updated_at)
               from favorites
              where user_id = $1 {keyset}{}
              order by created_at desc, id desc
              limit $3 offset $2",
            filter.sql
        );
        // SQLite spells "no limit" as a negative limit.
        let limit = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let mut select = sqlx::query_as::<_, (String, String, String)>(&sql)
            .bind(user.to_string())
            .bind(offset)
            .bind(limit);
        if let Some(after) = &query.after {
            select = select.bind(timestamp_text(&after.created_at)).bind(after.id.clone());
        }
        for value in filter.values {
            select = select.bind(value);
        }
        let mut rows = select.fetch(&mut *tx);
        while let Some((id, created_at, json)) = rows.try_next().await.context("reading the listing")? {
            let created_at = DateTime::parse_from_rfc3339(&created_at)
                .context("a stored created_at is not RFC 3339")?
                .with_timezone(&Utc);
            yield ListedFavorite { position: ListPosition { created_at, id }, json };
        }
        drop(rows);
        tx.rollback().await.context("closing the listing transaction")?;
    })
}

#[async_trait]
impl FavoriteLister for SqliteFavoriteRepository {
    async fn list_favorites(&self, user: UserId, query: ListQuery) -> anyhow::Result<FavoriteStream> {
        let tx = self.pool.begin().await.context("starting the listing transaction")?;
        Ok(rows(tx, user, query))
    }

    async fn list_favorites_versioned(&self, user: UserId, query: ListQuery) -> anyhow::Result<Listing> {
        let mut tx = self.pool.begin().await.context("starting the listing transaction")?;
        let version = read_version(&mut tx, user).await?;
        Ok(Listing {
            version,
            rows: rows(tx, user, query),
        })
    }

    async fn favorites_version(&self, user: UserId) -> anyhow::Result<FavoritesVersion> {
        let mut conn = self.pool.acquire().await.context("acquiring a connection")?;
        read_version(&mut conn, user).await
    }
}
