use anyhow::Context;

use crate::domain::{Email, Password, User, UserId};
use crate::ports::{InsertUserError, PasswordHasher, UserInserter};

pub struct SignupRequest {
    pub email: Email,
    pub password: Password,
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

pub async fn signup(
    users: &dyn UserInserter,
    hasher: &dyn PasswordHasher,
    request: SignupRequest,
) -> Result<User, SignupError> {
    let password_hash = hasher.hash(&request.password).await.context("hashing the password")?;
    let user = User {
        id: UserId::generate(),
        email: request.email,
        password_hash,
    };
    match users.insert_user(&user).await {
        Ok(()) => Ok(user),
        Err(InsertUserError::EmailTaken) => Err(SignupError::EmailTaken),
        Err(InsertUserError::Unknown(e)) => Err(SignupError::Unknown(e.context("storing the new user"))),
    }
}
