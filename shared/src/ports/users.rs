use async_trait::async_trait;

use crate::domain::{Email, User};

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
