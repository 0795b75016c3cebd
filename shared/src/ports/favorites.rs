use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::domain::{Asset, Description, Favorite, FavoriteId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum InsertFavoriteError {
    #[error("this user already has a favorite with this id")]
    Duplicate,
    /// The token names a user the store does not know (deleted since the token was issued).
    #[error("the user does not exist")]
    UnknownUser,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait FavoriteInserter: Send + Sync {
    /// Stores `asset` as a favorite of `user`, with `created_at = updated_at =` the store's
    /// clock, and returns it as stored.
    ///
    /// MUST return [`InsertFavoriteError::Duplicate`] when `user` already has a favorite with
    /// this id, decided by the store's key (ids are unique per user, not globally).
    async fn insert_favorite(&self, user: UserId, asset: &Asset) -> Result<Favorite, InsertFavoriteError>;
}

#[async_trait]
pub trait FavoriteGetter: Send + Sync {
    /// `user`'s favorite with this id. Another user's favorite with the same id is `None`.
    async fn get_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<Favorite>>;
}

#[async_trait]
pub trait FavoriteDescriptionUpdater: Send + Sync {
    /// Replaces the description and moves `updated_at`; `None` when `user` has no such favorite.
    async fn update_description(
        &self,
        user: UserId,
        id: &FavoriteId,
        description: &Description,
    ) -> anyhow::Result<Option<Favorite>>;
}

#[async_trait]
pub trait FavoriteRemover: Send + Sync {
    /// Deletes `user`'s favorite; `false` when there was none.
    async fn remove_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<bool>;
}

/// The position of a favorite in the listing order (newest first, then id descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

/// Which slice of a user's favorites to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Start strictly after this position (keyset paging).
    pub after: Option<ListPosition>,
    /// Skip this many first (page-number paging, for compatibility).
    pub offset: u64,
    /// At most this many; `None` for all.
    pub limit: Option<u64>,
}

/// One listed favorite, already serialised: the list is the hot path and a favorite goes from
/// the database to the client without being parsed and re-serialised.
#[derive(Debug, Clone)]
pub struct ListedFavorite {
    pub position: ListPosition,
    /// The favorite as a JSON object, in the same shape [`Favorite`] serialises to.
    pub json: String,
}

pub type FavoriteStream = BoxStream<'static, anyhow::Result<ListedFavorite>>;

pub trait FavoriteLister: Send + Sync {
    /// `user`'s favorites in listing order, pulled from the store as the stream is polled.
    ///
    /// MUST hold a bounded number of rows in memory whatever the size of the list, and MUST
    /// stop the query when the stream is dropped.
    fn list_favorites(&self, user: UserId, query: ListQuery) -> FavoriteStream;
}
