use std::time::Duration;

use anyhow::Context;

use super::cache::CacheGuard;
use super::throttle::LoginThrottle;
use crate::domain::{Password, UserId};
use crate::ports::{PasswordHasher, UserDeleter};

pub struct DeleteAccountRequest {
    /// The authenticated user, whose account goes.
    pub user: UserId,
    /// Their password again: a token alone (a stolen one, a forgotten session) cannot delete.
    pub password: Password,
    /// Where the request comes from (the client's IP address as API Gateway saw it).
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    #[error("the password is wrong")]
    WrongPassword,
    /// Too many failed password checks for this email or from this address (logins included).
    #[error("too many failed password checks; retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
    /// The account went meanwhile (a concurrent `DELETE /me`).
    #[error("the account no longer exists")]
    UnknownUser,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Deletes the account and all its favorites (one transaction) once the password is confirmed,
/// then drops the user's cache entry (after the commit, and before returning: Lambda freezes
/// the process once the response is sent). A wrong password counts against the login throttle
/// like a failed login, and a throttled email or address is refused before any check.
pub async fn delete_account(
    users: &dyn UserDeleter,
    hasher: &dyn PasswordHasher,
    throttle: &LoginThrottle,
    cache: Option<&CacheGuard>,
    request: DeleteAccountRequest,
) -> Result<(), DeleteAccountError> {
    // The row again, after the authentication layer's check: that check reads no password
    // hash, so that no other request carries one.
    let user = users
        .user_by_id(request.user)
        .await
        .context("looking up the account")?
        .ok_or(DeleteAccountError::UnknownUser)?;
    let attempt = throttle
        .attempt(&user.email, &request.source)
        .await
        .map_err(|retry_after| DeleteAccountError::Throttled { retry_after })?;
    let matches = hasher
        .verify(&request.password, Some(&user.password_hash))
        .await
        .context("verifying the password")?;
    if !matches {
        attempt.failed().await;
        return Err(DeleteAccountError::WrongPassword);
    }
    attempt.succeeded().await;
    if !users.delete_user(user.id).await.context("deleting the account")? {
        return Err(DeleteAccountError::UnknownUser);
    }
    if let Some(cache) = cache {
        cache.forget(user.id).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::bcrypt::BcryptPasswordHasher;
    use crate::adapters::jwt::{JwtAccessTokens, KeyRing, TokenPolicy};
    use crate::adapters::memory::MemoryFailedLoginCounter;
    use crate::adapters::sql::Database;
    use crate::domain::{AssetInput, Email, FavoriteId, User};
    use crate::usecases::login::{LoginError, LoginRequest, login};
    use crate::usecases::throttle::ThrottlePolicy;

    const PASSWORD: &str = "correct horse battery";

    /// An embedded database holding one user with two favorites, and the throttle both
    /// password checks share.
    struct Setup {
        database: Database,
        hasher: BcryptPasswordHasher,
        throttle: LoginThrottle,
        user: User,
    }

    impl Setup {
        async fn new() -> Self {
            let database = Database::in_memory().await;
            let hasher = BcryptPasswordHasher::new(4);
            let user = User {
                id: UserId::generate(),
                email: Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4())).unwrap(),
                password_hash: hasher.hash(&password(PASSWORD)).await.unwrap(),
            };
            database.users().insert_user(&user).await.unwrap();
            for id in ["a", "b"] {
                let asset: AssetInput = serde_json::from_value(
                    serde_json::json!({"id": id, "type": "insight", "name": id, "content": "c"}),
                )
                .unwrap();
                database
                    .favorites()
                    .insert_favorite(user.id, &asset.parse().unwrap())
                    .await
                    .unwrap();
            }
            let throttle = LoginThrottle::new(Arc::new(MemoryFailedLoginCounter::default()), ThrottlePolicy::default());
            Self {
                database,
                hasher,
                throttle,
                user,
            }
        }

        async fn delete(&self, password_typed: &str) -> Result<(), DeleteAccountError> {
            let request = DeleteAccountRequest {
                user: self.user.id,
                password: password(password_typed),
                source: "203.0.113.7".into(),
            };
            delete_account(
                self.database.users().as_ref(),
                &self.hasher,
                &self.throttle,
                None,
                request,
            )
            .await
        }

        async fn login(&self, password_typed: &str) -> Result<(), LoginError> {
            let tokens = JwtAccessTokens::new(
                &TokenPolicy::default(),
                Arc::new(KeyRing::fixed("0123456789abcdef0123456789abcdef".to_string().into())),
            );
            let request = LoginRequest {
                email: self.user.email.clone(),
                password: password(password_typed),
                source: "203.0.113.7".into(),
            };
            login(
                self.database.users().as_ref(),
                &self.hasher,
                &tokens,
                &self.throttle,
                request,
            )
            .await
            .map(drop)
        }

        async fn exists(&self) -> bool {
            self.database.users().account(self.user.id).await.unwrap().is_some()
        }

        /// How many of the user's two favorites are still stored.
        async fn favorites_left(&self) -> usize {
            let favorites = self.database.favorites();
            let mut left = 0;
            for id in ["a", "b"] {
                let id = FavoriteId::parse(id).unwrap();
                left += usize::from(favorites.get_favorite(self.user.id, &id).await.unwrap().is_some());
            }
            left
        }
    }

    fn password(raw: &str) -> Password {
        Password::parse(raw.into()).unwrap()
    }

    #[tokio::test]
    async fn the_right_password_deletes_the_account_with_its_favorites() {
        let setup = Setup::new().await;
        setup.delete(PASSWORD).await.unwrap();
        assert!(!setup.exists().await);
        assert_eq!(setup.favorites_left().await, 0);
        assert!(matches!(
            setup.delete(PASSWORD).await,
            Err(DeleteAccountError::UnknownUser)
        ));
    }

    #[tokio::test]
    async fn a_wrong_password_deletes_nothing() {
        let setup = Setup::new().await;
        let refused = setup.delete("not the password").await;
        assert!(matches!(refused, Err(DeleteAccountError::WrongPassword)), "{refused:?}");
        assert!(setup.exists().await);
        assert_eq!(setup.favorites_left().await, 2);
    }

    #[tokio::test]
    async fn wrong_passwords_here_lock_the_email_for_logins_too_and_the_other_way_round() {
        let setup = Setup::new().await;
        for _ in 0..3 {
            assert!(setup.delete("not the password").await.is_err());
        }
        for _ in 0..2 {
            assert!(matches!(
                setup.login("not the password").await,
                Err(LoginError::InvalidCredentials)
            ));
        }
        // Five failures across both: the right password is refused by both until the window ends.
        assert!(matches!(setup.login(PASSWORD).await, Err(LoginError::Throttled { .. })));
        let refused = setup.delete(PASSWORD).await;
        assert!(
            matches!(refused, Err(DeleteAccountError::Throttled { .. })),
            "{refused:?}"
        );
        assert!(setup.exists().await, "a throttled deletion deletes nothing");
    }

    #[tokio::test]
    async fn the_right_password_clears_the_failures_of_the_email() {
        let setup = Setup::new().await;
        for _ in 0..4 {
            assert!(setup.delete("not the password").await.is_err());
        }
        assert!(setup.login(PASSWORD).await.is_ok());
        for attempt in 1..=4 {
            let refused = setup.delete("not the password").await;
            assert!(
                matches!(refused, Err(DeleteAccountError::WrongPassword)),
                "attempt {attempt}: {refused:?}"
            );
        }
        setup.delete(PASSWORD).await.unwrap();
        assert!(!setup.exists().await);
    }
}
