use anyhow::Context;

use crate::domain::{Favorite, FavoriteId, UserId};
use crate::ports::FavoriteGetter;

#[derive(Debug, thiserror::Error)]
pub enum GetFavoriteError {
    /// Also when the id belongs to another user's favorite: nobody learns what others keep.
    #[error("no such favorite")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

pub async fn get_favorite(
    favorites: &dyn FavoriteGetter,
    user: UserId,
    id: &FavoriteId,
) -> Result<Favorite, GetFavoriteError> {
    favorites
        .get_favorite(user, id)
        .await
        .context("reading a favorite")?
        .ok_or(GetFavoriteError::NotFound)
}
