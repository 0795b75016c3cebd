use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    INSERT_USER, LIST_BATCH_ROWS, SELECT_FAVORITE, SELECT_USER_BY_EMAIL, SELECT_VERSION, favorite_from_row,
    favorite_inserted, stored_asset, stored_version, user_from_columns, user_inserted, version_from_column,
};
use crate::domain::{Asset, Description, Email, Favorite, FavoriteId, User, UserId};
use crate::ports::{
    Changed, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter, FavoriteLister, FavoriteRemover,
    FavoriteStream, FavoritesVersion, InsertFavoriteError, InsertUserError, ListPosition, ListQuery, ListedFavorite,
    Listing, UserByEmail, UserInserter,
};

pub struct PgUserRepository {
    pool: PgPool,
}

impl PgUserRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserInserter for PgUserRepository {
    async fn insert_user(&self, user: &User) -> Result<(), InsertUserError> {
        let result = sqlx::query(INSERT_USER)
            .bind(user.id.as_uuid())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .execute(&self.pool)
            .await;
        user_inserted(result)
    }
}

#[async_trait]
impl UserByEmail for PgUserRepository {
    async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        let row: Option<(Uuid, String, String)> = sqlx::query_as(SELECT_USER_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("selecting a user by email")?;
        row.map(|(id, email, hash)| user_from_columns(id, &email, hash))
            .transpose()
    }
}

pub struct PgFavoriteRepository {
    pool: PgPool,
}

impl PgFavoriteRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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
        let result: Result<(_, _, Option<i64>), _> = sqlx::query_as(INSERT_FAVORITE)
            .bind(user.as_uuid())
            .bind(asset.id.as_str())
            .bind(stored_asset(asset)?)
            .fetch_one(&self.pool)
            .await;
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
        let row: Option<FavoriteRow> = sqlx::query_as(SELECT_FAVORITE)
            .bind(user.as_uuid())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("selecting a favorite")?;
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
    ) -> anyhow::Result<Option<Changed<Favorite>>> {
        let row: Option<(String, serde_json::Value, DateTime<Utc>, DateTime<Utc>, Option<i64>)> = sqlx::query_as(
            "with updated as (
                 update favorites
                    set asset = jsonb_set(asset, '{description}', to_jsonb($3::text)), updated_at = now()
                  where user_id = $1 and id = $2
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
        .bind(description.as_str())
        .fetch_optional(&self.pool)
        .await
        .context("updating a favorite's description")?;
        row.map(|(id, asset, created, updated, version)| {
            Ok(Changed {
                value: favorite_from_row(id, asset, created, updated)?,
                version: version_from_column(version)?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl FavoriteRemover for PgFavoriteRepository {
    async fn remove_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<FavoritesVersion>> {
        let version: Option<Option<i64>> = sqlx::query_scalar(
            "with deleted as (
                 delete from favorites where user_id = $1 and id = $2 returning id
             ), bumped as (
                 update users set favorites_version = favorites_version + 1
                  where id = $1 and exists (select from deleted)
              returning favorites_version
             )
             select (select favorites_version from bumped) from deleted",
        )
        .bind(user.as_uuid())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .context("deleting a favorite")?;
        version.map(version_from_column).transpose()
    }
}

/// The listing's select: the favorite's JSON is assembled by Postgres itself, in the shape
/// `Favorite` serialises to, so rows go to the client without being parsed here.
const LIST_SELECT: &str = r#"
    select id, created_at,
           (asset || jsonb_build_object(
               'id', id,
               'created_at', to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'updated_at', to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text
      from favorites
     where user_id = $1"#;

async fn read_version<'e>(executor: impl sqlx::PgExecutor<'e>, user: UserId) -> anyhow::Result<FavoritesVersion> {
    let version: Option<i64> = sqlx::query_scalar(SELECT_VERSION)
        .bind(user.as_uuid())
        .fetch_optional(executor)
        .await
        .context("reading the favorites version")?;
    stored_version(version)
}

impl PgFavoriteRepository {
    /// The listing's transaction: read-only and repeatable-read, so that a version read in it
    /// and every row of the cursor belong to one snapshot.
    async fn listing_transaction(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin_with("begin isolation level repeatable read read only")
            .await
            .context("starting the listing transaction")
    }
}

/// A server-side cursor in the listing transaction, read `LIST_BATCH_ROWS` at a time: the rows
/// in memory are one batch at most, and when the stream is dropped (the client went away) no
/// further batch is fetched and the transaction's rollback closes the cursor.
async fn cursor(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    user: UserId,
    query: ListQuery,
) -> anyhow::Result<FavoriteStream> {
    let declare = match query.after {
        Some(_) => format!(
            "declare listing no scroll cursor for {LIST_SELECT} and (created_at, id) < ($4, $5)
              order by created_at desc, id desc offset $2 limit $3"
        ),
        None => format!(
            "declare listing no scroll cursor for {LIST_SELECT}
              order by created_at desc, id desc offset $2 limit $3"
        ),
    };
    let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    // Only constant SQL is spliced in (the keyset clause); every value is a bind parameter.
    let mut declare = sqlx::query(sqlx::AssertSqlSafe(declare))
        .bind(user.as_uuid())
        .bind(offset)
        .bind(limit);
    if let Some(after) = &query.after {
        declare = declare.bind(after.created_at).bind(after.id.clone());
    }
    declare.execute(&mut *tx).await.context("opening the listing cursor")?;
    Ok(Box::pin(async_stream::try_stream! {
        let fetch = format!("fetch forward {LIST_BATCH_ROWS} from listing");
        loop {
            let mut rows = sqlx::query_as::<_, (String, DateTime<Utc>, String)>(sqlx::AssertSqlSafe(fetch.as_str())).fetch(&mut *tx);
            let mut fetched = 0;
            while let Some((id, created_at, json)) = rows.try_next().await.context("reading the listing cursor")? {
                fetched += 1;
                yield ListedFavorite { position: ListPosition { created_at, id }, json };
            }
            drop(rows);
            if fetched < LIST_BATCH_ROWS {
                break;
            }
        }
        tx.rollback().await.context("closing the listing transaction")?;
    }))
}

#[async_trait]
impl FavoriteLister for PgFavoriteRepository {
    async fn list_favorites(&self, user: UserId, query: ListQuery) -> anyhow::Result<FavoriteStream> {
        cursor(self.listing_transaction().await?, user, query).await
    }

    async fn list_favorites_versioned(&self, user: UserId, query: ListQuery) -> anyhow::Result<Listing> {
        let mut tx = self.listing_transaction().await?;
        let version = read_version(&mut *tx, user).await?;
        Ok(Listing {
            version,
            rows: cursor(tx, user, query).await?,
        })
    }

    async fn favorites_version(&self, user: UserId) -> anyhow::Result<FavoritesVersion> {
        read_version(&self.pool, user).await
    }
}
