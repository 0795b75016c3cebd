//! The query parameters of `GET /favorites` (paging and filters) and the opaque cursor.
//!
//! A cursor is `base64url(position) "." base64url(mac)`, where the MAC (HMAC-SHA256, truncated
//! to 128 bits) covers the user id, the listing's filter and the position. A cursor edited by
//! hand, made up, issued to another user or for another filter fails the MAC and is a 400: it
//! can never select another user's rows (the listing query is scoped by the token's user in any
//! case), and a position in one filtered list is never taken for a position in another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;
use crate::domain::{AssetType, ListFilter, SearchText, UserId};
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

    fn mac(key: &[u8; 32], scope: &CursorScope, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(scope.user.as_uuid().as_bytes());
        // Length-prefixed, so that no filter and payload can pass for another pair.
        mac.update(&(scope.filter.len() as u64).to_be_bytes());
        mac.update(scope.filter.as_bytes());
        mac.update(payload);
        mac
    }

    pub fn encode(&self, scope: &CursorScope, position: &ListPosition) -> String {
        let payload = format!("{}:{}", position.created_at.timestamp_micros(), position.id);
        let tag = Self::mac(&self.keys[0], scope, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
        )
    }

    pub fn decode(&self, scope: &CursorScope, cursor: &str) -> Option<ListPosition> {
        let (payload, tag) = cursor.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.keys
            .iter()
            .any(|key| Self::mac(key, scope, &payload).verify_truncated_left(&tag).is_ok())
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

/// What a cursor is bound to: the user it was issued to and the filter of its listing.
#[derive(Debug, Clone)]
pub struct CursorScope {
    user: UserId,
    filter: String,
}

impl CursorScope {
    pub fn new(user: UserId, filter: &ListFilter) -> Self {
        Self {
            user,
            filter: filter.key(),
        }
    }
}

/// The query string as sent; unknown parameters are ignored.
#[derive(Debug, Default)]
pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub page: Option<String>,
    /// Asset types, comma-separated: `type=chart,insight`.
    pub types: Option<String>,
    pub q: Option<String>,
}

impl ListParams {
    /// The parameters of a query string (decoded as forms are: `+` is a space). One given more
    /// than once is a 400 naming it (`type=chart&type=insight`: several types are
    /// comma-separated).
    pub fn from_query(raw_query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = Self::default();
        for (name, value) in form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
            let field = match name.as_ref() {
                "limit" => &mut params.limit,
                "cursor" => &mut params.cursor,
                "page" => &mut params.page,
                "type" => &mut params.types,
                "q" => &mut params.q,
                _ => continue,
            };
            if field.replace(value.into_owned()).is_some() {
                let detail = if name == "type" {
                    "is given more than once: name several types comma-separated"
                } else {
                    "is given more than once"
                };
                return Err(ApiError::bad_parameter(name, detail));
            }
        }
        Ok(params)
    }
}

/// What to ask the store for, and how many of the rows to show: the store is asked for one
/// more than the page size, and the extra row, never shown, says whether a next page exists.
#[derive(Debug)]
pub struct Paging {
    pub query: ListQuery,
    pub page_size: Option<u64>,
    /// What the page's `next_cursor` is bound to.
    pub scope: CursorScope,
}

impl Paging {
    /// Everything in the query that shapes the answer, one spelling per answer: what a list's
    /// ETag is made of (with the format and the version).
    pub fn key(&self) -> String {
        let after = self
            .query
            .after
            .as_ref()
            .map(|p| (p.created_at.timestamp_micros(), &p.id));
        format!(
            "size={:?}\u{1f}offset={}\u{1f}after={after:?}\u{1f}{}",
            self.page_size,
            self.query.offset,
            self.query.filter.key()
        )
    }
}

/// The filter parameters: `type` (one or more types, comma-separated) and `q`.
fn parse_filter(types: Option<&str>, q: Option<&str>) -> Result<ListFilter, ApiError> {
    let types = match types {
        None => Vec::new(),
        Some(raw) => raw
            .split(',')
            .map(|name| AssetType::parse(name.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::bad_parameter("type", e.detail))?,
    };
    let text = q
        .map(SearchText::parse)
        .transpose()
        .map_err(|e| ApiError::bad_parameter("q", e.detail))?;
    Ok(ListFilter::new(types, text))
}

impl Paging {
    pub fn parse(params: ListParams, cursors: &CursorCodec, user: UserId) -> Result<Self, ApiError> {
        let filter = parse_filter(params.types.as_deref(), params.q.as_deref())?;
        let scope = CursorScope::new(user, &filter);
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
            Some(raw) => Some(cursors.decode(&scope, raw.trim()).ok_or_else(|| {
                ApiError::bad_parameter(
                    "cursor",
                    "is not a cursor this API issued to you for this filter; use next_cursor as given, \
                     with the type and q it came with",
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
                filter,
            },
            page_size,
            scope,
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
            ..ListParams::default()
        }
    }

    fn filtered(types: Option<&str>, q: Option<&str>, cursor: Option<String>) -> ListParams {
        ListParams {
            types: types.map(Into::into),
            q: q.map(Into::into),
            cursor,
            ..ListParams::default()
        }
    }

    fn unfiltered(user: UserId) -> CursorScope {
        CursorScope::new(user, &ListFilter::default())
    }

    #[test]
    fn a_cursor_round_trips_for_its_user_only() {
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let cursor = codec().encode(&unfiltered(alice), &position());
        assert_eq!(codec().decode(&unfiltered(alice), &cursor), Some(position()));
        assert_eq!(codec().decode(&unfiltered(bob), &cursor), None);
    }

    #[test]
    fn a_cursor_is_refused_with_another_filter_than_its_own() {
        let user = UserId::generate();
        let charts = Paging::parse(filtered(Some("chart"), Some("churn"), None), &codec(), user).unwrap();
        let cursor = codec().encode(&charts.scope, &position());
        let same = filtered(Some(" chart"), Some("churn "), Some(cursor.clone()));
        assert_eq!(
            Paging::parse(same, &codec(), user).unwrap().query.after,
            Some(position())
        );
        for other in [
            filtered(None, Some("churn"), Some(cursor.clone())),
            filtered(Some("chart,insight"), Some("churn"), Some(cursor.clone())),
            filtered(Some("chart"), None, Some(cursor.clone())),
            filtered(Some("chart"), Some("churned"), Some(cursor.clone())),
        ] {
            let error = Paging::parse(other, &codec(), user).unwrap_err();
            assert_eq!(error.body()["errors"][0]["source"]["parameter"], "cursor");
        }
    }

    #[test]
    fn filters_are_parsed_into_the_query() {
        let paging = Paging::parse(
            filtered(Some("insight,chart"), Some(" Churn "), None),
            &codec(),
            UserId::generate(),
        )
        .unwrap();
        let expected = ListFilter::new(
            [AssetType::Chart, AssetType::Insight],
            Some(SearchText::parse("Churn").unwrap()),
        );
        assert_eq!(paging.query.filter, expected);
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        let user = UserId::generate();
        let long = "x".repeat(crate::domain::SEARCH_MAX_CHARS + 1);
        for (p, name) in [
            (filtered(Some("dashboard"), None, None), "type"),
            (filtered(Some(""), None, None), "type"),
            (filtered(Some("chart,"), None, None), "type"),
            (filtered(None, Some(""), None), "q"),
            (filtered(None, Some("  "), None), "q"),
            (filtered(None, Some(&long), None), "q"),
        ] {
            let error = Paging::parse(p, &codec(), user).unwrap_err();
            assert_eq!(error.body()["errors"][0]["source"]["parameter"], name);
        }
    }

    #[test]
    fn a_parameter_given_twice_is_named() {
        for (query, name) in [
            ("type=chart&type=insight", "type"),
            ("limit=5&q=x&limit=6", "limit"),
            ("q=a&q=b", "q"),
        ] {
            let error = ListParams::from_query(Some(query)).unwrap_err();
            assert_eq!(error.body()["errors"][0]["source"]["parameter"], name, "{query}");
            assert_eq!(error.body()["errors"][0]["status"], "400");
        }
    }

    #[test]
    fn a_query_string_reads_as_sent_and_unknown_parameters_are_ignored() {
        let params = ListParams::from_query(Some("other=1&other=2&type=chart%2Cinsight&q=big+churn&limit=5")).unwrap();
        assert_eq!(params.types.as_deref(), Some("chart,insight"));
        assert_eq!(params.q.as_deref(), Some("big churn"));
        assert_eq!(params.limit.as_deref(), Some("5"));
        assert!(params.cursor.is_none() && params.page.is_none());
        assert!(ListParams::from_query(None).unwrap().limit.is_none());
    }

    #[test]
    fn an_edited_or_invented_cursor_is_refused() {
        let user = unfiltered(UserId::generate());
        let cursor = codec().encode(&user, &position());
        let (payload, tag) = cursor.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("0:zzz");
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.AAAA"),
            "garbage".into(),
            String::new(),
        ] {
            assert_eq!(codec().decode(&user, &bad), None, "{bad}");
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
