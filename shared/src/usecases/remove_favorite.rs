use anyhow::Context;

use crate::domain::{FavoriteId, UserId};
use crate::ports::FavoriteRemover;

#[derive(Debug, thiserror::Error)]
pub enum RemoveFavoriteError {
    #[error("no such favorite")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

pub async fn remove_favorite(
    favorites: &dyn FavoriteRemover,
    user: UserId,
    id: &FavoriteId,
) -> Result<(), RemoveFavoriteError> {
    let removed = favorites
        .remove_favorite(user, id)
        .await
        .context("removing a favorite")?;
    if removed {
        Ok(())
    } else {
        Err(RemoveFavoriteError::NotFound)
    }
}
