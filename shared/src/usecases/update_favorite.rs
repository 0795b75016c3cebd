use anyhow::Context;

use super::cache::CacheGuard;
use crate::domain::{Description, Favorite, FavoriteId, UserId};
use crate::ports::FavoriteDescriptionUpdater;

#[derive(Debug, thiserror::Error)]
pub enum UpdateFavoriteError {
    #[error("no such favorite")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Updates the description, then writes the favorite through to the cache.
pub async fn update_description(
    favorites: &dyn FavoriteDescriptionUpdater,
    cache: Option<&CacheGuard>,
    user: UserId,
    id: &FavoriteId,
    description: &Description,
) -> Result<Favorite, UpdateFavoriteError> {
    let changed = favorites
        .update_description(user, id, description)
        .await
        .context("updating a favorite's description")?
        .ok_or(UpdateFavoriteError::NotFound)?;
    if let Some(cache) = cache {
        cache.updated(user, changed.version, &changed.value).await;
    }
    Ok(changed.value)
}
