use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::domain::UserId;
use crate::ports::{AccessTokens, IssuedToken, TokenRejected};

/// HS256 JSON Web Tokens. The algorithm is pinned on validation: a token that claims `none`,
/// RS256 or anything else is rejected before its signature is even considered.
pub struct JwtAccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
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
    pub fn new(config: &JwtConfig) -> Self {
        let secret = config.secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Clock skew between Lambda hosts is small; a minute of grace would outlive logouts.
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_seconds: config.ttl.as_secs(),
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl AccessTokens for JwtAccessTokens {
    fn issue(&self, user: UserId) -> anyhow::Result<IssuedToken> {
        let iat = now_seconds();
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + self.ttl_seconds,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("signing the access token")?;
        Ok(IssuedToken {
            token,
            expires_in_seconds: self.ttl_seconds,
        })
    }

    fn verify(&self, token: &str) -> Result<UserId, TokenRejected> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRejected::Expired,
                _ => TokenRejected::Invalid,
            })?;
        let id = uuid::Uuid::parse_str(&data.claims.sub).map_err(|_| TokenRejected::Invalid)?;
        Ok(UserId::from_uuid(id))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn config(secret: &str) -> JwtConfig {
        JwtConfig {
            secret: secret.to_string().into(),
            issuer: "favorites".into(),
            audience: "favorites-api".into(),
            ttl: Duration::from_secs(3600),
        }
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

    #[test]
    fn an_issued_token_names_its_user() {
        let tokens = JwtAccessTokens::new(&config(KEY));
        let user = UserId::generate();
        let issued = tokens.issue(user).unwrap();
        assert_eq!(tokens.verify(&issued.token), Ok(user));
        assert_eq!(issued.expires_in_seconds, 3600);
    }

    #[test]
    fn an_unsigned_alg_none_token_is_rejected() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string());
        let tokens = JwtAccessTokens::new(&config(KEY));
        assert_eq!(
            tokens.verify(&format!("{header}.{payload}.")),
            Err(TokenRejected::Invalid)
        );
        assert_eq!(
            tokens.verify(&format!("{header}.{payload}")),
            Err(TokenRejected::Invalid)
        );
    }

    #[test]
    fn another_algorithm_is_rejected_even_with_the_right_key() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(serde_json::json!({})),
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            JwtAccessTokens::new(&config(KEY)).verify(&token),
            Err(TokenRejected::Invalid)
        );
    }

    #[test]
    fn a_wrong_key_a_wrong_issuer_and_a_wrong_audience_are_rejected() {
        let tokens = JwtAccessTokens::new(&config(KEY));
        let other_key = sign(claims(serde_json::json!({})), "another key that is 32 bytes long!");
        let other_issuer = sign(claims(serde_json::json!({"iss": "someone-else"})), KEY);
        let other_audience = sign(claims(serde_json::json!({"aud": "another-api"})), KEY);
        for token in [other_key, other_issuer, other_audience] {
            assert_eq!(tokens.verify(&token), Err(TokenRejected::Invalid));
        }
    }

    #[test]
    fn an_expired_token_is_rejected_as_expired() {
        let now = now_seconds();
        let token = sign(claims(serde_json::json!({"iat": now - 600, "exp": now - 300})), KEY);
        assert_eq!(
            JwtAccessTokens::new(&config(KEY)).verify(&token),
            Err(TokenRejected::Expired)
        );
    }

    #[test]
    fn a_tampered_payload_is_rejected() {
        let tokens = JwtAccessTokens::new(&config(KEY));
        let token = tokens.issue(UserId::generate()).unwrap().token;
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string());
        parts[1] = &forged;
        assert_eq!(tokens.verify(&parts.join(".")), Err(TokenRejected::Invalid));
        assert_eq!(tokens.verify("garbage"), Err(TokenRejected::Invalid));
    }
}
