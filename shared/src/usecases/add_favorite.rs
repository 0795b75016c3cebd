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

pub async fn add_favorite(
    favorites: &dyn FavoriteInserter,
    user: UserId,
    asset: Asset,
) -> Result<Favorite, AddFavoriteError> {
    favorites.insert_favorite(user, &asset).await.map_err(|e| match e {
        InsertFavoriteError::Duplicate => AddFavoriteError::Duplicate,
        InsertFavoriteError::UnknownUser => AddFavoriteError::UnknownUser,
        InsertFavoriteError::Unknown(e) => AddFavoriteError::Unknown(e.context("storing a favorite")),
    })
}
