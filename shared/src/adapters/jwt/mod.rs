//! Access tokens: HS256 JSON Web Tokens ([`JwtAccessTokens`]) signed by the key ring
//! ([`keys`]).

pub mod keys;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

pub use keys::KeyRing;

use crate::domain::UserId;
use crate::ports::{AccessTokens, IssuedToken, TokenRejected};

/// What a token says and how long it lives.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// `iss` (`JWT_ISSUER`, default `favorites`).
    pub issuer: String,
    /// `aud` (`JWT_AUDIENCE`, default `favorites-api`).
    pub audience: String,
    /// Lifetime (`JWT_TTL_SECONDS`, default 3600).
    pub ttl: Duration,
    /// How long after a key rotation tokens signed with the previous key are still accepted
    /// (`JWT_KEY_GRACE_SECONDS`, default: the token lifetime).
    pub grace: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: "favorites".into(),
            audience: "favorites-api".into(),
            ttl: Duration::from_secs(3_600),
            grace: Duration::from_secs(3_600),
        }
    }
}

/// HS256 JSON Web Tokens. The algorithm is pinned on validation: a token that claims `none`,
/// RS256 or anything else is rejected before its signature is even considered.
///
/// Tokens carry the signing key's id in `kid`; after a key rotation, tokens signed with the
/// previous key are accepted until its grace period ends (see [`KeyRing`]).
pub struct JwtAccessTokens {
    keys: Arc<KeyRing>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_seconds: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
}

impl JwtAccessTokens {
    pub fn new(policy: &TokenPolicy, keys: Arc<KeyRing>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&policy.issuer]);
        validation.set_audience(&[&policy.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Clock skew between Lambda hosts is small; a minute of grace would outlive logouts.
        validation.leeway = 5;
        Self {
            keys,
            validation,
            issuer: policy.issuer.clone(),
            audience: policy.audience.clone(),
            ttl_seconds: policy.ttl.as_secs(),
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[async_trait]
impl AccessTokens for JwtAccessTokens {
    async fn issue(&self, user: UserId) -> anyhow::Result<IssuedToken> {
        let keys = self.keys.keys().await;
        let iat = now_seconds();
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + self.ttl_seconds,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.current.id.clone());
        let encoding = EncodingKey::from_secret(keys.current.secret.expose_secret().as_bytes());
        let token = jsonwebtoken::encode(&header, &claims, &encoding).context("signing the access token")?;
        Ok(IssuedToken {
            token,
            expires_in_seconds: self.ttl_seconds,
        })
    }

    async fn verify(&self, token: &str) -> Result<UserId, TokenRejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejected::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenRejected::Invalid);
        }
        let keys = self.keys.keys_for(header.kid.as_deref()).await;
        let mut outcome = Err(TokenRejected::Invalid);
        for key in keys.candidates(header.kid.as_deref()) {
            let decoding = DecodingKey::from_secret(key.secret.expose_secret().as_bytes());
            outcome = jsonwebtoken::decode::<Claims>(token, &decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRejected::Expired,
                _ => TokenRejected::Invalid,
            });
            if outcome.is_ok() {
                break;
            }
        }
        let data = outcome?;
        let id = uuid::Uuid::parse_str(&data.claims.sub).map_err(|_| TokenRejected::Invalid)?;
        Ok(UserId::from_uuid(id))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn tokens(secret: &str) -> JwtAccessTokens {
        JwtAccessTokens::new(
            &TokenPolicy::default(),
            Arc::new(KeyRing::fixed(secret.to_string().into())),
        )
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn sign(claims: serde_json::Value, key: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let now = now_seconds();
        let mut claims = serde_json::json!({
            "sub": UserId::generate().to_string(), "iat": now, "exp": now + 60,
            "iss": "favorites", "aud": "favorites-api",
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    #[tokio::test]
    async fn an_issued_token_names_its_user() {
        let tokens = tokens(KEY);
        let user = UserId::generate();
        let issued = tokens.issue(user).await.unwrap();
        assert_eq!(tokens.verify(&issued.token).await, Ok(user));
        assert_eq!(issued.expires_in_seconds, 3600);
    }

    #[tokio::test]
    async fn an_unsigned_alg_none_token_is_rejected() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string());
        let tokens = tokens(KEY);
        assert_eq!(
            tokens.verify(&format!("{header}.{payload}.")).await,
            Err(TokenRejected::Invalid)
        );
        assert_eq!(
            tokens.verify(&format!("{header}.{payload}")).await,
            Err(TokenRejected::Invalid)
        );
    }

    #[tokio::test]
    async fn another_algorithm_is_rejected_even_with_the_right_key() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(serde_json::json!({})),
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(tokens(KEY).verify(&token).await, Err(TokenRejected::Invalid));
    }

    #[tokio::test]
    async fn a_wrong_key_a_wrong_issuer_and_a_wrong_audience_are_rejected() {
        let tokens = tokens(KEY);
        let other_key = sign(claims(serde_json::json!({})), "another key that is 32 bytes long!");
        let other_issuer = sign(claims(serde_json::json!({"iss": "someone-else"})), KEY);
        let other_audience = sign(claims(serde_json::json!({"aud": "another-api"})), KEY);
        for token in [other_key, other_issuer, other_audience] {
            assert_eq!(tokens.verify(&token).await, Err(TokenRejected::Invalid));
        }
    }

    #[tokio::test]
    async fn an_expired_token_is_rejected_as_expired() {
        let now = now_seconds();
        let token = sign(claims(serde_json::json!({"iat": now - 600, "exp": now - 300})), KEY);
        assert_eq!(tokens(KEY).verify(&token).await, Err(TokenRejected::Expired));
    }

    #[tokio::test]
    async fn a_tampered_payload_is_rejected() {
        let tokens = tokens(KEY);
        let token = tokens.issue(UserId::generate()).await.unwrap().token;
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string());
        parts[1] = &forged;
        assert_eq!(tokens.verify(&parts.join(".")).await, Err(TokenRejected::Invalid));
        assert_eq!(tokens.verify("garbage").await, Err(TokenRejected::Invalid));
    }
}
