//! Use cases: one module per operation, each with its own error enum. They speak only in
//! domain types and ports; HTTP status codes are decided in `http::error`, nowhere else.

pub mod add_favorite;
pub mod cache;
pub mod delete_account;
pub mod enrich;
pub mod get_favorite;
pub mod idempotency;
pub mod list_favorites;
pub mod login;
pub mod remove_favorite;
pub mod signup;
pub mod throttle;
pub mod update_favorite;
