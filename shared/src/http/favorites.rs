//! `POST /favorites`, `GET|PATCH|DELETE /favorites/{id}`: one router per function, each
//! holding only the port its operation uses. A favorite is answered with its `ETag`; `GET`
//! honours `If-None-Match`, `PATCH` and `DELETE` honour `If-Match` (see [`super::conditional`]).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::{AuthUser, Authentication, authenticated};
use super::conditional::{Condition, EntityTag, expected_revision};
use super::error::ApiError;
use super::extract::JsonBody;
use super::finish;
use super::idempotency::{IdempotencyLayer, idempotent};
use crate::domain::{AssetInput, Description, Favorite, FavoriteId, Invalid};
use crate::ports::{FavoriteDescriptionUpdater, FavoriteGetter, FavoriteInserter, FavoriteRemover};
use crate::usecases::cache::CacheGuard;
use crate::usecases::{add_favorite, get_favorite, remove_favorite, update_favorite};

/// A chart of 5 000 points is about 150 KB of JSON; nothing valid needs more than this.
pub const ASSET_LIMIT: usize = 256 * 1024;
const PATCH_LIMIT: usize = 16 * 1024;

/// A function's state: the one port it uses, and the cache that changes are written through
/// to (`None` when the cache is off, and for reads).
pub struct FavoritesState<P: ?Sized> {
    pub favorites: Arc<P>,
    pub cache: Option<Arc<CacheGuard>>,
}

impl<P: ?Sized> Clone for FavoritesState<P> {
    fn clone(&self) -> Self {
        Self {
            favorites: self.favorites.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// A favorite as the answer's body, with its ETag.
fn with_etag(status: StatusCode, favorite: &Favorite) -> Response {
    let etag = EntityTag::of_favorite(&favorite.revision());
    (status, [(header::ETAG, etag.header_value())], Json(favorite)).into_response()
}

fn favorite_id(path: Result<Path<String>, PathRejection>) -> Result<FavoriteId, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::bad_parameter("id", "is not a valid path segment"))?;
    FavoriteId::parse(&raw).map_err(|e| ApiError::bad_parameter("id", e.detail))
}

/// Every route is behind the authentication layer, and adding behind the idempotency layer
/// too (inside it: keys are scoped by the authenticated user).
pub fn add_favorite_router(
    state: FavoritesState<dyn FavoriteInserter>,
    authentication: Authentication,
    idempotency: IdempotencyLayer,
) -> Router {
    let routes = idempotent(Router::new().route("/favorites", post(add_handler)), idempotency);
    authenticated(finish(routes, state), authentication)
}

async fn add_handler(
    State(state): State<FavoritesState<dyn FavoriteInserter>>,
    AuthUser(user, _): AuthUser,
    JsonBody(body): JsonBody<AssetInput, ASSET_LIMIT>,
) -> Result<impl IntoResponse, ApiError> {
    let asset = body.parse()?;
    let favorite = add_favorite::add_favorite(state.favorites.as_ref(), state.cache.as_deref(), user, asset).await?;
    let location = format!("/favorites/{}", favorite.asset.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(favorite)))
}

pub fn get_favorite_router(state: FavoritesState<dyn FavoriteGetter>, authentication: Authentication) -> Router {
    authenticated(
        finish(Router::new().route("/favorites/{id}", get(get_handler)), state),
        authentication,
    )
}

async fn get_handler(
    State(state): State<FavoritesState<dyn FavoriteGetter>>,
    AuthUser(user, _): AuthUser,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = favorite_id(path)?;
    let has = Condition::if_none_match(&headers)?;
    let favorite = get_favorite::get_favorite(state.favorites.as_ref(), user, &id).await?;
    let etag = EntityTag::of_favorite(&favorite.revision());
    if has.is_some_and(|has| has.has(&etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag.header_value())]).into_response());
    }
    Ok(with_etag(StatusCode::OK, &favorite))
}

/// `{description}`: the one editable field. Anything else is refused by name rather than
/// silently ignored, so a client that tries to rename learns that it cannot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    description: Option<String>,
}

impl PatchBody {
    fn parse(self) -> Result<Description, Invalid> {
        let description = self
            .description
            .ok_or_else(|| Invalid::new("/description", "is required"))?;
        Description::parse(&description)
    }
}

pub fn update_favorite_router(
    state: FavoritesState<dyn FavoriteDescriptionUpdater>,
    authentication: Authentication,
) -> Router {
    authenticated(
        finish(Router::new().route("/favorites/{id}", patch(update_handler)), state),
        authentication,
    )
}

async fn update_handler(
    State(state): State<FavoritesState<dyn FavoriteDescriptionUpdater>>,
    AuthUser(user, _): AuthUser,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PatchBody, PATCH_LIMIT>,
) -> Result<Response, ApiError> {
    let id = favorite_id(path)?;
    let expected = expected_revision(&headers)?;
    let description = body.parse()?;
    let favorite = update_favorite::update_description(
        state.favorites.as_ref(),
        state.cache.as_deref(),
        user,
        &id,
        &description,
        expected,
    )
    .await?;
    Ok(with_etag(StatusCode::OK, &favorite))
}

pub fn remove_favorite_router(state: FavoritesState<dyn FavoriteRemover>, authentication: Authentication) -> Router {
    authenticated(
        finish(Router::new().route("/favorites/{id}", delete(remove_handler)), state),
        authentication,
    )
}

async fn remove_handler(
    State(state): State<FavoritesState<dyn FavoriteRemover>>,
    AuthUser(user, _): AuthUser,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = favorite_id(path)?;
    let expected = expected_revision(&headers)?;
    remove_favorite::remove_favorite(state.favorites.as_ref(), state.cache.as_deref(), user, &id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}
