use super::cache::CacheGuard;
use crate::domain::{Description, Favorite, FavoriteId, Revision, UserId};
use crate::ports::{ChangeFavoriteError, FavoriteDescriptionUpdater};

#[derive(Debug, thiserror::Error)]
pub enum UpdateFavoriteError {
    #[error("no such favorite")]
    NotFound,
    /// `If-Match` named a revision the favorite is no longer in.
    #[error("the favorite changed since")]
    Stale,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Updates the description (only if the favorite is in the `expected` revision, when given),
/// then writes the favorite through to the cache.
pub async fn update_description(
    favorites: &dyn FavoriteDescriptionUpdater,
    cache: Option<&CacheGuard>,
    user: UserId,
    id: &FavoriteId,
    description: &Description,
    expected: Option<Revision>,
) -> Result<Favorite, UpdateFavoriteError> {
    let changed = match favorites.update_description(user, id, description, expected).await {
        Ok(Some(changed)) => changed,
        Ok(None) => return Err(UpdateFavoriteError::NotFound),
        Err(ChangeFavoriteError::Stale) => return Err(UpdateFavoriteError::Stale),
        Err(ChangeFavoriteError::Unknown(e)) => return Err(e.context("updating a favorite's description").into()),
    };
    if let Some(cache) = cache {
        cache.updated(user, changed.version, &changed.value).await;
    }
    Ok(changed.value)
}
