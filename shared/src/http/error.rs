//! The one place where failures become HTTP responses: JSON:API error objects, a status per
//! use-case error, and 500s that are logged with their whole cause chain but never shown.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::idempotency::Rejection as IdempotencyRejection;
use crate::domain::Invalid;
use crate::ports::{TokenRejected, Unavailable};
use crate::usecases::add_favorite::AddFavoriteError;
use crate::usecases::delete_account::DeleteAccountError;
use crate::usecases::get_favorite::GetFavoriteError;
use crate::usecases::login::LoginError;
use crate::usecases::remove_favorite::RemoveFavoriteError;
use crate::usecases::signup::SignupError;
use crate::usecases::update_favorite::UpdateFavoriteError;

/// An error answer: `{"errors":[{"status","title","detail","source":{"pointer"}}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    source: Option<Source>,
    retry_after_seconds: Option<u64>,
}

/// What JSON:API calls the error's source: a pointer into the body, or a query/path parameter.
#[derive(Debug)]
enum Source {
    Pointer(String),
    Parameter(String),
    Header(String),
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            source: None,
            retry_after_seconds: None,
        }
    }

    /// Blames the body field at this JSON pointer (`""` for the whole body).
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.source = Some(Source::Pointer(pointer.into()));
        self
    }

    /// A 400 blaming a query or path parameter.
    pub fn bad_parameter(name: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, detail);
        error.source = Some(Source::Parameter(name.into()));
        error
    }

    /// A 400 blaming a request header.
    pub fn bad_header(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail).in_header(name)
    }

    /// `If-Match` named a state the favorite is no longer in.
    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "the favorite changed since the ETag given in If-Match; read it again and retry with its new ETag",
        )
        .in_header("If-Match")
    }

    /// Blames a request header (JSON:API 1.1 `source.header`).
    pub fn in_header(mut self, name: impl Into<String>) -> Self {
        self.source = Some(Source::Header(name.into()));
        self
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    pub fn bad_request(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail).at(pointer)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// A valid token of a user whose account has been deleted since.
    pub fn account_gone() -> Self {
        Self::unauthorized("the account this token was issued to no longer exists")
    }

    /// The login throttle refused a password check (a login's or a `DELETE /me`'s).
    fn too_many_failures(retry_after: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed password checks for this account or from this address; retry later",
        )
        .retry_after(retry_after.as_secs_f64().ceil() as u64)
    }

    /// A body over the route's bound, blamed on the whole body.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body must be at most {limit} bytes"),
        )
        .at("")
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this method is not allowed on this route",
        )
    }

    /// A dependency the request cannot do without is down: retry later.
    pub fn service_unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail).retry_after(1)
    }

    /// A failure the client cannot fix. The cause chain goes to the log; the client gets a
    /// generic sentence, never SQL, a stack trace or a hostname.
    ///
    /// A dependency that did not answer ([`Unavailable`] in the chain) is a 503 with
    /// `Retry-After` instead: the same request may succeed later.
    pub fn internal(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed");
        match error.downcast_ref::<Unavailable>() {
            Some(unavailable) => Self::service_unavailable(format!("{unavailable}; retry later")),
            None => Self::internal_quiet(),
        }
    }

    /// The client's side of a 500 whose cause was logged already.
    pub fn internal_quiet() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be completed; it is safe to retry",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body, for places that write it themselves (a stream that fails midway).
    pub fn body(&self) -> serde_json::Value {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let source = self.source.as_ref().map(|source| match source {
            Source::Pointer(pointer) => serde_json::json!({ "pointer": pointer }),
            Source::Parameter(name) => serde_json::json!({ "parameter": name }),
            Source::Header(name) => serde_json::json!({ "header": name }),
        });
        let mut object = serde_json::json!({
            "status": self.status.as_str(),
            "title": title,
            "detail": self.detail,
        });
        if let Some(source) = source {
            object["source"] = source;
        }
        serde_json::json!({ "errors": [object] })
    }
}

impl ApiError {
    /// The answer, its JSON body first given to `extend` (members beside `errors`).
    pub fn into_response_with(self, extend: impl FnOnce(&mut serde_json::Value)) -> Response {
        let mut document = self.body();
        extend(&mut document);
        let body = serde_json::to_vec(&document).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_with(|_| {})
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::bad_request(invalid.pointer, invalid.detail)
    }
}

impl From<TokenRejected> for ApiError {
    fn from(rejected: TokenRejected) -> Self {
        Self::unauthorized(match rejected {
            TokenRejected::Expired => "the access token has expired; log in again",
            TokenRejected::Invalid => "the access token is missing or not valid",
        })
    }
}

impl From<SignupError> for ApiError {
    fn from(error: SignupError) -> Self {
        match error {
            SignupError::EmailTaken => {
                Self::new(StatusCode::CONFLICT, "an account with this email already exists").at("/email")
            }
            SignupError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::unauthorized("invalid email or password"),
            LoginError::Throttled { retry_after } => Self::too_many_failures(retry_after),
            LoginError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<DeleteAccountError> for ApiError {
    fn from(error: DeleteAccountError) -> Self {
        match error {
            DeleteAccountError::WrongPassword => {
                Self::unauthorized("the password is not this account's; nothing was deleted").at("/password")
            }
            DeleteAccountError::Throttled { retry_after } => Self::too_many_failures(retry_after),
            DeleteAccountError::UnknownUser => Self::account_gone(),
            DeleteAccountError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<AddFavoriteError> for ApiError {
    fn from(error: AddFavoriteError) -> Self {
        match error {
            AddFavoriteError::Duplicate => {
                Self::new(StatusCode::CONFLICT, "you already have a favorite with this id").at("/id")
            }
            AddFavoriteError::UnknownUser => Self::account_gone(),
            AddFavoriteError::Unknown(e) => Self::internal(e),
        }
    }
}

const NO_SUCH_FAVORITE: &str = "you have no favorite with this id";

impl From<GetFavoriteError> for ApiError {
    fn from(error: GetFavoriteError) -> Self {
        match error {
            GetFavoriteError::NotFound => Self::not_found(NO_SUCH_FAVORITE),
            GetFavoriteError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<UpdateFavoriteError> for ApiError {
    fn from(error: UpdateFavoriteError) -> Self {
        match error {
            UpdateFavoriteError::NotFound => Self::not_found(NO_SUCH_FAVORITE),
            UpdateFavoriteError::Stale => Self::precondition_failed(),
            UpdateFavoriteError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<RemoveFavoriteError> for ApiError {
    fn from(error: RemoveFavoriteError) -> Self {
        match error {
            RemoveFavoriteError::NotFound => Self::not_found(NO_SUCH_FAVORITE),
            RemoveFavoriteError::Stale => Self::precondition_failed(),
            RemoveFavoriteError::Unknown(e) => Self::internal(e),
        }
    }
}

impl From<IdempotencyRejection> for ApiError {
    fn from(rejection: IdempotencyRejection) -> Self {
        match rejection {
            IdempotencyRejection::MalformedKey { max_length } => Self::new(
                StatusCode::BAD_REQUEST,
                format!("must be 1 to {max_length} visible ASCII characters"),
            )
            .in_header("Idempotency-Key"),
            IdempotencyRejection::Mismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used with a different request body; use a new key for a new request",
            )
            .in_header("Idempotency-Key"),
            IdempotencyRejection::InProgress => Self::new(
                StatusCode::CONFLICT,
                "a request with this Idempotency-Key is still being handled; retry shortly with the same key",
            )
            .in_header("Idempotency-Key")
            .retry_after(1),
            IdempotencyRejection::StoreUnavailable(error) => {
                tracing::error!(error = format!("{error:#}"), "the idempotency store failed");
                Self::service_unavailable("idempotent requests cannot be handled right now; retry with the same key")
            }
        }
    }
}
