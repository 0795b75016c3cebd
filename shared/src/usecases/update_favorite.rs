use anyhow::Context;

use crate::domain::{Description, Favorite, FavoriteId, UserId};
use crate::ports::FavoriteDescriptionUpdater;

#[derive(Debug, thiserror::Error)]
pub enum UpdateFavoriteError {
    #[error("no such favorite")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

pub async fn update_description(
    favorites: &dyn FavoriteDescriptionUpdater,
    user: UserId,
    id: &FavoriteId,
    description: &Description,
) -> Result<Favorite, UpdateFavoriteError> {
    favorites
        .update_description(user, id, description)
        .await
        .context("updating a favorite's description")?
        .ok_or(UpdateFavoriteError::NotFound)
}
