use super::cache::CacheGuard;
use crate::domain::{Asset, Favorite, UserId};
use crate::ports::{FavoriteInserter, InsertFavoriteError};

#[derive(Debug, thiserror::Error)]
pub enum AddFavoriteError {
    #[error("a favorite with this id already exists")]
    Duplicate,
    #[error("the user no longer exists")]
    UnknownUser,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores the favorite, then writes it through to the cache (after the commit, and before
/// returning: Lambda freezes the process once the response is sent).
pub async fn add_favorite(
    favorites: &dyn FavoriteInserter,
    cache: Option<&CacheGuard>,
    user: UserId,
    asset: Asset,
) -> Result<Favorite, AddFavoriteError> {
    let changed = favorites.insert_favorite(user, &asset).await.map_err(|e| match e {
        InsertFavoriteError::Duplicate => AddFavoriteError::Duplicate,
        InsertFavoriteError::UnknownUser => AddFavoriteError::UnknownUser,
        InsertFavoriteError::Unknown(e) => AddFavoriteError::Unknown(e.context("storing a favorite")),
    })?;
    if let Some(cache) = cache {
        cache.added(user, changed.version, &changed.value).await;
    }
    Ok(changed.value)
}
