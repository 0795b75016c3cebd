use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::domain::{Asset, Description, Favorite, FavoriteId, ListFilter, Revision, UserId};

/// How many changes a user's favorites have seen. The store bumps it in the same transaction
/// as every insert, update and delete, so versions follow commit order and a snapshot that
/// reads version `v` holds exactly the changes `1..=v`. The cache labels what it holds with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FavoritesVersion(pub u64);

/// The result of a change together with the version it produced.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub value: T,
    pub version: FavoritesVersion,
}

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
    async fn insert_favorite(&self, user: UserId, asset: &Asset) -> Result<Changed<Favorite>, InsertFavoriteError>;
}

#[async_trait]
pub trait FavoriteGetter: Send + Sync {
    /// `user`'s favorite with this id. Another user's favorite with the same id is `None`.
    async fn get_favorite(&self, user: UserId, id: &FavoriteId) -> anyhow::Result<Option<Favorite>>;
}

/// Why a change of one favorite was not made (beside there being no such favorite).
#[derive(Debug, thiserror::Error)]
pub enum ChangeFavoriteError {
    /// The favorite exists, but is no longer in the revision the change expected.
    #[error("the favorite changed since the expected revision")]
    Stale,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait FavoriteDescriptionUpdater: Send + Sync {
    /// Replaces the description, moves `updated_at` strictly forward and bumps the version;
    /// `None` (and no new version) when `user` has no such favorite.
    ///
    /// With `expected`, MUST change nothing and return [`ChangeFavoriteError::Stale`] unless
    /// the favorite is in that revision when the change is made (decided by the store, not by
    /// a read before the write).
    async fn update_description(
        &self,
        user: UserId,
        id: &FavoriteId,
        description: &Description,
        expected: Option<Revision>,
    ) -> Result<Option<Changed<Favorite>>, ChangeFavoriteError>;
}

#[async_trait]
pub trait FavoriteRemover: Send + Sync {
    /// Deletes `user`'s favorite and returns the new version; `None` (and no new version) when
    /// there was none. `expected` as for [`FavoriteDescriptionUpdater::update_description`].
    async fn remove_favorite(
        &self,
        user: UserId,
        id: &FavoriteId,
        expected: Option<Revision>,
    ) -> Result<Option<FavoritesVersion>, ChangeFavoriteError>;
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
    /// Only the favorites this filter keeps; offset, limit and keyset count within them.
    pub filter: ListFilter,
}

/// One listed favorite, already serialised: the list is the hot path and a favorite goes from
/// the database to the client without being parsed and re-serialised.
#[derive(Debug, Clone)]
pub struct ListedFavorite {
    pub position: ListPosition,
    /// The favorite as a JSON object, in the same shape [`Favorite`] serialises to.
    pub json: String,
}

impl ListedFavorite {
    /// A favorite as the listing shows it (the write-through path has a [`Favorite`], the
    /// listing the store's JSON; both are the same object).
    pub fn from_favorite(favorite: &Favorite) -> anyhow::Result<Self> {
        Ok(Self {
            position: ListPosition {
                created_at: favorite.created_at,
                id: favorite.asset.id.as_str().to_string(),
            },
            json: serde_json::to_string(favorite)?,
        })
    }
}

pub type FavoriteStream = BoxStream<'static, anyhow::Result<ListedFavorite>>;

/// A listing: the rows of one consistent snapshot, and the version that snapshot is at.
pub struct Listing {
    pub version: FavoritesVersion,
    pub rows: FavoriteStream,
}

#[async_trait]
pub trait FavoriteLister: Send + Sync {
    /// `user`'s favorites in listing order, pulled from the store as the stream is polled,
    /// all from one snapshot.
    ///
    /// MUST hold a bounded number of rows in memory whatever the size of the list, and MUST
    /// stop the query when the stream is dropped.
    async fn list_favorites(&self, user: UserId, query: ListQuery) -> anyhow::Result<FavoriteStream>;

    /// The same listing together with the version its snapshot is at (what a cache fill
    /// labels the rows with); one statement more than [`Self::list_favorites`].
    async fn list_favorites_versioned(&self, user: UserId, query: ListQuery) -> anyhow::Result<Listing>;

    /// The current version of `user`'s favorites (0 for a user who never changed any, or
    /// who does not exist): what a cached list must be at to be served.
    async fn favorites_version(&self, user: UserId) -> anyhow::Result<FavoritesVersion>;
}
