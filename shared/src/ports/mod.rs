//! Ports: what the use cases need from the outside world, one narrow trait per role so that
//! each function depends only on what it uses (and its IAM policy can say the same).
//!
//! Contracts are written on each method; every adapter must honour them, and the contract
//! tests in `shared/tests/` check both SQL adapters against the same expectations.

mod auth;
mod cache;
mod enrichment;
mod favorites;
mod health;
mod idempotency;
mod secrets;
mod throttle;
mod users;

pub use auth::{AccessTokens, CursorKeys, IssuedToken, PasswordHasher, TokenRejected};
pub use cache::{CacheChange, CachedEnrichment, CachedPage, EnrichmentCache, FavoriteCache, FillTicket};
pub use enrichment::{AssetRef, EnrichmentClient, FetchError, Metadata};
pub use favorites::{
    ChangeFavoriteError, Changed, FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter, FavoriteLister,
    FavoriteRemover, FavoriteStream, FavoritesVersion, InsertFavoriteError, ListPosition, ListQuery, ListedFavorite,
    Listing,
};
pub use health::{DatabaseHealth, Unavailable};
pub use idempotency::{Claim, IdempotencyRecord, IdempotencyStore, RecordState, StoredResponse};
pub use secrets::{SecretSource, SecretVersion};
pub use throttle::FailedLoginCounter;
pub use users::{Account, AccountLookup, InsertUserError, UserByEmail, UserDeleter, UserInserter};
