//! Paging parameters of `GET /favorites` and the opaque cursor.
//!
//! A cursor is `base64url(position) "." base64url(mac)`, where the MAC (HMAC-SHA256, truncated
//! to 128 bits) covers the user id and the position. A cursor edited by hand, made up, or
//! issued to another user fails the MAC and is a 400: it can never select another user's rows,
//! and the listing query is scoped by the token's user in any case.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::error::ApiError;
use crate::domain::UserId;
use crate::ports::{ListPosition, ListQuery};

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 10_000;
const MAC_BYTES: usize = 16;

/// Signs and checks cursors. The keys come from [`crate::ports::CursorKeys`]: a cursor is
/// signed with the current key and accepted with any live one, so paging through a list
/// survives a key rotation.
pub struct CursorCodec {
    /// The current key first.
    keys: Vec<[u8; 32]>,
}

impl CursorCodec {
    /// `keys`: the current key first; at least one.
    pub fn new(keys: Vec<[u8; 32]>) -> Self {
        assert!(!keys.is_empty(), "a cursor codec needs a key to sign with");
        Self { keys }
    }

    fn mac(key: &[u8; 32], user: UserId, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(user.as_uuid().as_bytes());
        mac.update(payload);
        mac
    }

    pub fn encode(&self, user: UserId, position: &ListPosition) -> String {
        let payload = format!("{}:{}", position.created_at.timestamp_micros(), position.id);
        let tag = Self::mac(&self.keys[0], user, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
        )
    }

    pub fn decode(&self, user: UserId, cursor: &str) -> Option<ListPosition> {
        let (payload, tag) = cursor.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.keys
            .iter()
            .any(|key| Self::mac(key, user, &payload).verify_truncated_left(&tag).is_ok())
            .then_some(())?;
        let payload = String::from_utf8(payload).ok()?;
        let (micros, id) = payload.split_once(':')?;
        let created_at = DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?;
        Some(ListPosition {
            created_at,
            id: id.to_string(),
        })
    }
}

/// The query string as sent; unknown parameters are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub page: Option<String>,
}

/// What to ask the store for, and how many of the rows to show: the store is asked for one
/// more than the page size, and the extra row, never shown, says whether a next page exists.
#[derive(Debug)]
pub struct Paging {
    pub query: ListQuery,
    pub page_size: Option<u64>,
}

impl Paging {
    pub fn parse(params: ListParams, cursors: &CursorCodec, user: UserId) -> Result<Self, ApiError> {
        let page_size = match params.limit.as_deref().map(str::trim) {
            None => Some(DEFAULT_LIMIT),
            Some("all") => None,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::bad_parameter(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}, or \"all\""),
                    ));
                }
            },
        };
        let page = match params.page.as_deref().map(str::trim) {
            None => None,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(ApiError::bad_parameter("page", "must be a whole number from 1")),
            },
        };
        let after = match params.cursor.as_deref() {
            None => None,
            Some(raw) => Some(cursors.decode(user, raw.trim()).ok_or_else(|| {
                ApiError::bad_parameter(
                    "cursor",
                    "is not a cursor this API issued to you; use next_cursor as given",
                )
            })?),
        };
        if after.is_some() && page.is_some() {
            return Err(ApiError::bad_parameter(
                "page",
                "cannot be combined with cursor; use one or the other",
            ));
        }
        let offset = match (page, page_size) {
            (None | Some(1), _) => 0,
            (Some(_), None) => return Err(ApiError::bad_parameter("page", "needs a numeric limit")),
            (Some(page), Some(size)) => (page - 1).saturating_mul(size),
        };
        Ok(Self {
            query: ListQuery {
                after,
                offset,
                limit: page_size.map(|n| n + 1),
            },
            page_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new(vec![[7; 32]])
    }

    fn position() -> ListPosition {
        ListPosition {
            created_at: DateTime::from_timestamp_micros(1_763_600_000_123_456).unwrap(),
            id: "a:b".into(),
        }
    }

    fn params(limit: Option<&str>, cursor: Option<&str>, page: Option<&str>) -> ListParams {
        ListParams {
            limit: limit.map(Into::into),
            cursor: cursor.map(Into::into),
            page: page.map(Into::into),
        }
    }

    #[test]
    fn a_cursor_round_trips_for_its_user_only() {
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let cursor = codec().encode(alice, &position());
        assert_eq!(codec().decode(alice, &cursor), Some(position()));
        assert_eq!(codec().decode(bob, &cursor), None);
    }

    #[test]
    fn an_edited_or_invented_cursor_is_refused() {
        let user = UserId::generate();
        let cursor = codec().encode(user, &position());
        let (payload, tag) = cursor.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("0:zzz");
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.AAAA"),
            "garbage".into(),
            String::new(),
        ] {
            assert_eq!(codec().decode(user, &bad), None, "{bad}");
        }
    }

    #[test]
    fn limits_default_to_100_and_accept_all() {
        let user = UserId::generate();
        let paging = Paging::parse(params(None, None, None), &codec(), user).unwrap();
        assert_eq!((paging.page_size, paging.query.limit), (Some(100), Some(101)));
        let all = Paging::parse(params(Some("all"), None, None), &codec(), user).unwrap();
        assert_eq!((all.page_size, all.query.limit), (None, None));
    }

    #[test]
    fn bad_paging_values_name_the_parameter() {
        let user = UserId::generate();
        for (p, name) in [
            (params(Some("0"), None, None), "limit"),
            (params(Some("abc"), None, None), "limit"),
            (params(Some("10001"), None, None), "limit"),
            (params(None, None, Some("0")), "page"),
            (params(None, None, Some("x")), "page"),
            (params(None, Some("garbage"), None), "cursor"),
            (params(Some("all"), None, Some("2")), "page"),
        ] {
            let error = Paging::parse(p, &codec(), user).unwrap_err();
            assert_eq!(error.body()["errors"][0]["source"]["parameter"], name);
        }
    }

    #[test]
    fn pages_become_offsets() {
        let paging = Paging::parse(params(Some("10"), None, Some("3")), &codec(), UserId::generate()).unwrap();
        assert_eq!(paging.query.offset, 20);
    }
}
