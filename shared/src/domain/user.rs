use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use super::Invalid;

/// The longest address SMTP can carry (RFC 5321 path limit minus the angle brackets).
const EMAIL_MAX_BYTES: usize = 254;
const EMAIL_LOCAL_MAX_BYTES: usize = 64;
/// bcrypt reads at most 72 bytes and silently ignores the rest, so a longer password would
/// give a false sense of strength: it is refused instead.
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const PASSWORD_MIN_BYTES: usize = 8;

/// A user's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lower-cased, so that uniqueness is case-insensitive by
/// construction (the database enforces it again with a unique index on `lower(email)`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = |detail: &str| Invalid::new("/email", detail);
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if email.len() > EMAIL_MAX_BYTES {
            return Err(invalid("must be at most 254 bytes"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(invalid("must be an address like name@example.com"));
        };
        if local.is_empty() || local.len() > EMAIL_LOCAL_MAX_BYTES || local.contains('@') {
            return Err(invalid("must be an address like name@example.com"));
        }
        let labels_ok = domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if !domain.contains('.') || !labels_ok {
            return Err(invalid("must be an address like name@example.com"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as the user typed it: 8 to 72 bytes. Kept secret so it cannot be logged by
/// accident (`Debug` prints a redaction marker).
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let len = raw.len();
        let secret = SecretString::from(raw);
        if len < PASSWORD_MIN_BYTES {
            return Err(Invalid::new("/password", "must be at least 8 bytes"));
        }
        if len > PASSWORD_MAX_BYTES {
            return Err(Invalid::new(
                "/password",
                "must be at most 72 bytes (bcrypt ignores the rest)",
            ));
        }
        if secret.expose_secret().contains('\0') {
            return Err(Invalid::new("/password", "must not contain NUL characters"));
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A registered user as stored: the password only as a bcrypt hash.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
}

/// A bcrypt hash string (`$2b$12$…`). Not secret in the cryptographic sense, but never logged.
#[derive(Clone)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(hash: String) -> Self {
        Self(hash)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn email_without_at_or_dot_is_refused_naming_the_field() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@-x.com",
        ] {
            let err = Email::parse(raw).unwrap_err();
            assert_eq!(err.pointer, "/email", "{raw:?}");
        }
    }

    #[test]
    fn email_longer_than_254_bytes_is_refused() {
        let raw = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        assert!(Email::parse(&raw).is_err());
    }

    #[test]
    fn password_must_be_8_to_72_bytes() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(72)).is_ok());
        let err = Password::parse("x".repeat(73)).unwrap_err();
        assert_eq!(err.pointer, "/password");
    }

    #[test]
    fn password_length_counts_bytes_not_characters() {
        // 36 two-byte characters are 72 bytes: accepted; one more is 74 bytes: refused.
        assert!(Password::parse("é".repeat(36)).is_ok());
        assert!(Password::parse("é".repeat(37)).is_err());
    }

    #[test]
    fn password_debug_output_hides_the_secret() {
        let password = Password::parse("correct horse battery".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
