use anyhow::Context;

use super::cache::CacheGuard;
use crate::domain::{FavoriteId, UserId};
use crate::ports::FavoriteRemover;

#[derive(Debug, thiserror::Error)]
pub enum RemoveFavoriteError {
    #[error("no such favorite")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Deletes the favorite, then removes it from the cache.
pub async fn remove_favorite(
    favorites: &dyn FavoriteRemover,
    cache: Option<&CacheGuard>,
    user: UserId,
    id: &FavoriteId,
) -> Result<(), RemoveFavoriteError> {
    let version = favorites
        .remove_favorite(user, id)
        .await
        .context("removing a favorite")?
        .ok_or(RemoveFavoriteError::NotFound)?;
    if let Some(cache) = cache {
        cache.removed(user, version, id).await;
    }
    Ok(())
}
