use async_trait::async_trait;

use super::favorites::FavoritesVersion;
use crate::domain::{Email, User, UserId};

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait UserInserter: Send + Sync {
    /// Stores a new user.
    ///
    /// MUST return [`InsertUserError::EmailTaken`] when a user with the same email, compared
    /// case-insensitively, exists — decided by the store's unique constraint in the same
    /// statement, never by a read before the write (two racing signups: one wins).
    async fn insert_user(&self, user: &User) -> Result<(), InsertUserError>;
}

#[async_trait]
pub trait UserByEmail: Send + Sync {
    /// The user with this email (case-insensitive), or `None`.
    async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>>;
}

/// What the authentication layer read of a token's user: that the account exists, and what
/// else its row holds that a route would otherwise read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// The version of the user's favorites: what a list's ETag and its cache check are made of.
    pub favorites_version: FavoritesVersion,
}

#[async_trait]
pub trait AccountLookup: Send + Sync {
    /// `user`'s account, or `None` when there is no such user (deleted since its token was
    /// issued: its tokens are refused from then on).
    ///
    /// MUST be one primary-key lookup: it runs on every authenticated request.
    async fn account(&self, user: UserId) -> anyhow::Result<Option<Account>>;
}

/// What deleting an account (`DELETE /me`) needs of the store.
#[async_trait]
pub trait UserDeleter: Send + Sync {
    /// The user with this id, or `None`: its password hash confirms a deletion.
    async fn user_by_id(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// Deletes the user and every favorite of theirs, and returns whether there was such a user.
    ///
    /// MUST be one transaction: afterwards either nothing of the user is stored, or (on any
    /// failure) everything still is. Their email is then free for a new signup.
    async fn delete_user(&self, id: UserId) -> anyhow::Result<bool>;
}
