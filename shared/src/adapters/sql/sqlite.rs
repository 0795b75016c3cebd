use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::SqlitePool;
use uuid::Uuid;

use super::{
    INSERT_USER, SELECT_FAVORITE, SELECT_USER_BY_EMAIL, SELECT_VERSION, favorite_from_row, favorite_inserted,
    stored_asset, stored_version, timestamp_text, user_from_columns, user_inserted, version_from_column,
};
use crate::domain::{Asset, Description, Email, Favorite, FavoriteId, User, UserId};
use crate::ports::{
    Changed, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter, FavoriteLister, FavoriteRemover,
    FavoriteStream, FavoritesVersion, InsertFavoriteError, InsertUserError, ListPosition, ListQuery, ListedFavorite,
    Listing, UserByEmail, UserInserter,
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

#[async_trait]
impl UserByEmail for SqliteUserRepository {
    async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        let row: Option<(String, String, String)> = sqlx::query_as(SELECT_USER_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("selecting a user by email")?;
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
    ) -> anyhow::Result<Option<Changed<Favorite>>> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let row: Option<FavoriteRow> = sqlx::query_as(
            "update favorites
                set asset = json_set(asset, '$.description', $3),
                    updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
              where user_id = $1 and id = $2
          returning id, asset, created_at, updated_at",
        )
        .bind(user.to_string())
        .bind(id.as_str())
        .bind(description.as_str())
        .fetch_optional(&mut *tx)
        .await
        .context("updating a favorite's description")?;
        let Some(row) = row else { return Ok(None) };
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
    async fn remove_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<FavoritesVersion>> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let result = sqlx::query("delete from favorites where user_id = $1 and id = $2")
            .bind(user.to_string())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .context("deleting a favorite")?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        let version = bump_version(&mut tx, user).await?;
        tx.commit().await.context("committing a removal")?;
        Ok(Some(version))
    }
}

async fn read_version(conn: &mut sqlx::SqliteConnection, user: UserId) -> anyhow::Result<FavoritesVersion> {
    let version: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
        .bind(user.to_string())
        .fetch_optional(conn)
        .await
        .context("reading the favorites version")?;
    stored_version(version)
}

/// The rows of a listing, in its read transaction. SQLite steps its statement row by row as
/// the stream is polled (sqlx runs it on a worker thread behind a bounded channel), so memory
/// stays flat; dropping the stream finalises the statement. The JSON is assembled by SQLite,
/// as Postgres does in its dialect. In WAL mode a read transaction sees one snapshot from its
/// first read on.
fn rows(mut tx: sqlx::Transaction<'static, sqlx::Sqlite>, user: UserId, query: ListQuery) -> FavoriteStream {
    Box::pin(async_stream::try_stream! {
        let keyset = if query.after.is_some() { "and (created_at, id) < ($4, $5)" } else { "" };
        let sql = format!(
            "select id, created_at,
                    json_set(asset, '$.id', id, '$.created_at', created_at, '$.updated_at', updated_at)
               from favorites
              where user_id = $1 {keyset}
              order by created_at desc, id desc
              limit $3 offset $2"
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
