//! HTTP glue: one axum router per function, extractors that turn requests into domain types,
//! and the one JSON:API error mapping. The same routers serve under the Lambda runtime
//! (`lambda_http::run`) and in tests (`tower::ServiceExt::oneshot`).

mod auth;
mod conditional;
pub mod error;
pub mod extract;
mod favorites;
mod health;
pub mod idempotency;
mod list;
pub mod observe;
pub mod paging;
mod users;

use axum::Router;

pub use auth::{AuthUser, Authentication};
pub use error::ApiError;
pub use favorites::{
    ASSET_LIMIT, FavoritesState, add_favorite_router, get_favorite_router, remove_favorite_router,
    update_favorite_router,
};
pub use health::{HealthState, health_router};
pub use list::{CHUNK_BYTES, ListState, NDJSON, list_favorites_router};
pub use users::{
    CREDENTIALS_LIMIT, DeleteAccountState, LoginState, SignupState, delete_account_router, login_router, signup_router,
};

/// What every router answers for a path or method it does not serve: JSON:API, never axum's
/// plain-text defaults.
pub(crate) fn finish<S: Clone + Send + Sync + 'static>(router: Router<S>, state: S) -> Router {
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
}
