use async_trait::async_trait;

use super::favorites::{FavoritesVersion, ListQuery, ListedFavorite};
use crate::domain::{FavoriteId, UserId};

/// What the cache holds for one user: a *prefix* of their listing (the first rows in listing
/// order, possibly all of them), labelled with the [`FavoritesVersion`] it reflects.
///
/// The invariant every method keeps: whatever a user's entry holds at version `v` is exactly
/// the first rows of the database's listing at version `v`. A change that cannot be applied
/// in order (the entry is not at `version - 1`) removes the entry instead. Readers take a
/// page only when the entry's version is the database's current one, so a cache that missed
/// changes (Redis was unreachable while they were made) is never served. See docs/CACHE.md.
///
/// Every method may fail (the cache is down, slow, or answers garbage); callers fail open.
#[async_trait]
pub trait FavoriteCache: Send + Sync {
    /// The rows `query` selects, when the entry holds all of them: either the selection lies
    /// inside the cached prefix (`limit` rows found), or the prefix is the whole list. `None`
    /// is a miss. The page comes with the version of the entry it was read from.
    async fn page(&self, user: UserId, query: &ListQuery) -> anyhow::Result<Option<CachedPage>>;

    /// Applies a committed change (write-through, after the database commit).
    async fn apply(&self, user: UserId, version: FavoritesVersion, change: CacheChange<'_>) -> anyhow::Result<()>;

    /// Starts filling the entry from the head of a listing at `version`; `None` when there is
    /// nothing to do (the entry is as new or newer and not itself being filled).
    async fn start_fill(&self, user: UserId, version: FavoritesVersion) -> anyhow::Result<Option<FillTicket>>;

    /// Appends the next rows of the listing the ticket was issued for. `end_of_list` says the
    /// listing ends with these rows. Returns `false` when filling must stop: the entry changed
    /// meanwhile, or the per-user cap is reached.
    async fn fill(
        &self,
        user: UserId,
        ticket: &FillTicket,
        rows: &[ListedFavorite],
        end_of_list: bool,
    ) -> anyhow::Result<bool>;

    /// Drops everything held for `user` (their entry and their enrichments): the account is
    /// gone. A fill that was under way stops at its next step (its entry is no longer there).
    async fn forget(&self, user: UserId) -> anyhow::Result<()>;

    /// The most rows one user's entry may hold (the fill reads no further).
    fn max_items(&self) -> usize;
}

/// What the enrichment service said of one asset, as cached: its metadata, or `None` when it
/// had nothing (also worth remembering: a warm list then makes no call at all).
pub type CachedEnrichment = Option<serde_json::Value>;

/// Enrichment results kept beside a user's favorites, each for a limited time (the metadata
/// belongs to another service and may change there).
#[async_trait]
pub trait EnrichmentCache: Send + Sync {
    /// The fresh entries among `ids`; ids without one are absent from the map.
    async fn enrichments(
        &self,
        user: UserId,
        ids: &[String],
    ) -> anyhow::Result<std::collections::HashMap<String, CachedEnrichment>>;

    /// Remembers what the service said of these assets.
    async fn remember_enrichments(&self, user: UserId, entries: &[(String, CachedEnrichment)]) -> anyhow::Result<()>;
}

/// A page read from the cache.
#[derive(Debug, Clone)]
pub struct CachedPage {
    pub version: FavoritesVersion,
    pub rows: Vec<ListedFavorite>,
}

/// A committed change to one favorite.
#[derive(Debug, Clone, Copy)]
pub enum CacheChange<'a> {
    Added(&'a ListedFavorite),
    Updated(&'a ListedFavorite),
    Removed(&'a FavoriteId),
}

/// Permission to fill one user's entry at one version; a later fill or change revokes it.
#[derive(Debug, Clone)]
pub struct FillTicket {
    pub version: FavoritesVersion,
    pub token: String,
}
