use async_trait::async_trait;

use crate::domain::{Password, PasswordHash};
use crate::ports::PasswordHasher;

/// bcrypt on tokio's blocking pool: one hash at cost 12 is a quarter of a second of CPU, which
/// on the async executor would stall every other task of the instance.
pub struct BcryptPasswordHasher {
    cost: u32,
    /// A well-formed hash at the configured cost that matches no password. Verifying against
    /// it costs exactly what verifying a real hash costs, because bcrypt's time depends only
    /// on the cost field; so a login for an unknown email takes as long as a wrong password.
    dummy: PasswordHash,
}

/// A real bcrypt hash (of a random password, at cost 4); only its cost field is replaced.
const DUMMY_HASH_TAIL: &str = "J9dJGyf0wv9Pd6A4kxW2a.9zSfZyFBXoDFHSkGnbhL0LxBbGrOdCm";

impl BcryptPasswordHasher {
    pub fn new(cost: u32) -> Self {
        Self {
            cost,
            dummy: PasswordHash::new(format!("$2b${cost:02}${DUMMY_HASH_TAIL}")),
        }
    }
}

#[async_trait]
impl PasswordHasher for BcryptPasswordHasher {
    async fn hash(&self, password: &Password) -> anyhow::Result<PasswordHash> {
        let password = password.expose().to_owned();
        let cost = self.cost;
        let hash = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??;
        Ok(PasswordHash::new(hash))
    }

    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> anyhow::Result<bool> {
        let known_user = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).as_str().to_owned();
        let password = password.expose().to_owned();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash)).await??;
        Ok(matches && known_user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(raw: &str) -> Password {
        Password::parse(raw.into()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = BcryptPasswordHasher::new(4);
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$2b$04$"));
        assert!(hasher.verify(&password("correct horse"), Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&password("wrong horse"), Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_is_well_formed_at_every_cost_and_matches_nothing() {
        for cost in [4, 5, 12] {
            let hasher = BcryptPasswordHasher::new(cost);
            assert!(hasher.dummy.as_str().starts_with(&format!("$2b${cost:02}$")));
            // A malformed dummy would make verify fail fast with an error: that is the leak
            // this test guards against.
            if cost < 12 {
                assert!(!hasher.verify(&password("anything at all"), None).await.unwrap());
            }
        }
    }
}
