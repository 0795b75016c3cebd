use crate::domain::UserId;
use crate::ports::{FavoriteLister, FavoriteStream, ListQuery};

/// The user's favorites in listing order, as a stream: nothing here collects rows. The cache
/// and enrichment steps hook in around this stream.
pub fn list_favorites(favorites: &dyn FavoriteLister, user: UserId, query: ListQuery) -> FavoriteStream {
    favorites.list_favorites(user, query)
}
