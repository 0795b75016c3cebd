use super::cache::CacheGuard;
use crate::domain::{FavoriteId, Revision, UserId};
use crate::ports::{ChangeFavoriteError, FavoriteRemover};

#[derive(Debug, thiserror::Error)]
pub enum RemoveFavoriteError {
    #[error("no such favorite")]
    NotFound,
    /// `If-Match` named a revision the favorite is no longer in.
    #[error("the favorite changed since")]
    Stale,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Deletes the favorite (only if it is in the `expected` revision, when given), then removes
/// it from the cache.
pub async fn remove_favorite(
    favorites: &dyn FavoriteRemover,
    cache: Option<&CacheGuard>,
    user: UserId,
    id: &FavoriteId,
    expected: Option<Revision>,
) -> Result<(), RemoveFavoriteError> {
    let version = match favorites.remove_favorite(user, id, expected).await {
        Ok(Some(version)) => version,
        Ok(None) => return Err(RemoveFavoriteError::NotFound),
        Err(ChangeFavoriteError::Stale) => return Err(RemoveFavoriteError::Stale),
        Err(ChangeFavoriteError::Unknown(e)) => return Err(e.context("removing a favorite").into()),
    };
    if let Some(cache) = cache {
        cache.removed(user, version, id).await;
    }
    Ok(())
}
