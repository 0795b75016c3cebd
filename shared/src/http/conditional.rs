//! Conditional requests: entity tags, `If-None-Match` (a 304 instead of a body the client
//! has) and `If-Match` (a 412 instead of changing a favorite the client saw in another state).
//!
//! A favorite's ETag is strong and spells its [`Revision`]: `"<created_at µs>.<updated_at µs>"`.
//! Every change moves `updated_at` strictly forward, and a favorite removed and added again has
//! a new `created_at`, so equal tags mean the same favorite in the same state.
//!
//! A list's ETag is weak: a digest of the user, the version of their favorites and everything
//! in the query that shapes the answer (filter, paging, format). The same query at the same
//! version lists the same favorites; weak because the enrichment beside them may differ.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::domain::{Revision, UserId};
use crate::ports::FavoritesVersion;

/// An entity tag as HTTP spells it: `"opaque"` or `W/"opaque"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    weak: bool,
    opaque: String,
}

impl EntityTag {
    /// The strong tag of a favorite in this revision.
    pub fn of_favorite(revision: &Revision) -> Self {
        Self {
            weak: false,
            opaque: format!(
                "{}.{}",
                revision.created_at.timestamp_micros(),
                revision.updated_at.timestamp_micros()
            ),
        }
    }

    /// The weak tag of a list: `query` is every parameter that shapes the answer, spelled one way.
    pub fn of_list(user: UserId, version: FavoritesVersion, query: &str) -> Self {
        let mut digest = Sha256::new();
        digest.update(user.as_uuid().as_bytes());
        digest.update(version.0.to_be_bytes());
        digest.update(query.as_bytes());
        let digest = digest.finalize();
        Self {
            weak: true,
            opaque: digest[..12].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The revision a strong favorite tag names; `None` for any other tag (which then matches
    /// no favorite).
    fn revision(&self) -> Option<Revision> {
        if self.weak {
            return None;
        }
        let (created, updated) = self.opaque.split_once('.')?;
        let micros = |raw: &str| DateTime::<Utc>::from_timestamp_micros(raw.parse().ok()?);
        Some(Revision {
            created_at: micros(created)?,
            updated_at: micros(updated)?,
        })
    }

    pub fn header_value(&self) -> HeaderValue {
        let text = match self.weak {
            true => format!("W/\"{}\"", self.opaque),
            false => format!("\"{}\"", self.opaque),
        };
        HeaderValue::from_str(&text).expect("an entity tag is visible ASCII")
    }

    /// One `entity-tag` (RFC 9110 §8.8.3): optional `W/`, then quoted `etagc` characters.
    fn parse(raw: &str) -> Option<Self> {
        let (weak, rest) = match raw.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let opaque = rest.strip_prefix('"')?.strip_suffix('"')?;
        let etagc = |c: char| c == '!' || ('\u{23}'..='\u{7e}').contains(&c) || !c.is_ascii();
        opaque.chars().all(etagc).then(|| Self {
            weak,
            opaque: opaque.to_string(),
        })
    }
}

/// The value of `If-None-Match` or `If-Match`: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Any,
    Tags(Vec<EntityTag>),
}

impl Condition {
    /// The header's condition; `None` when it is absent; a 400 naming it when it is malformed.
    fn from_headers(headers: &HeaderMap, name: HeaderName, display: &str) -> Result<Option<Self>, ApiError> {
        let values: Vec<&HeaderValue> = headers.get_all(&name).iter().collect();
        if values.is_empty() {
            return Ok(None);
        }
        let malformed = || {
            ApiError::bad_header(
                display,
                "must be * or a comma-separated list of entity tags, such as \"abc\" or W/\"abc\"",
            )
        };
        let mut tags = Vec::new();
        for value in values {
            let text = value.to_str().map_err(|_| malformed())?;
            if text.trim() == "*" {
                return Ok(Some(Self::Any));
            }
            for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                tags.push(EntityTag::parse(item).ok_or_else(malformed)?);
            }
        }
        if tags.is_empty() {
            return Err(malformed());
        }
        Ok(Some(Self::Tags(tags)))
    }

    /// `If-None-Match`: weak comparison (RFC 9110 §13.1.2).
    pub fn if_none_match(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        Self::from_headers(headers, header::IF_NONE_MATCH, "If-None-Match")
    }

    /// True when the client has `current` already: answer 304.
    pub fn has(&self, current: &EntityTag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|tag| tag.opaque == current.opaque),
        }
    }
}

/// `If-Match` on a change of one favorite (strong comparison, RFC 9110 §13.1.1): the revision
/// the favorite must still be in, or `None` when any will do (no header, or `*`). Tags that name
/// no revision (weak ones, or not ours) can match no favorite: 412 without trying.
pub fn expected_revision(headers: &HeaderMap) -> Result<Option<Revision>, ApiError> {
    let tags = match Condition::from_headers(headers, header::IF_MATCH, "If-Match")? {
        None | Some(Condition::Any) => return Ok(None),
        Some(Condition::Tags(tags)) => tags,
    };
    let mut revisions: Vec<Revision> = tags.iter().filter_map(EntityTag::revision).collect();
    revisions.dedup();
    match revisions.as_slice() {
        [] => Err(ApiError::precondition_failed()),
        [one] => Ok(Some(*one)),
        _ => Err(ApiError::bad_header(
            "If-Match",
            "must name one revision of the favorite (its ETag), or be *",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn revision() -> Revision {
        Revision {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_000_001).unwrap(),
            updated_at: DateTime::from_timestamp_micros(1_764_000_000_500_002).unwrap(),
        }
    }

    #[test]
    fn a_favorite_tag_round_trips_through_if_match() {
        let tag = EntityTag::of_favorite(&revision());
        let value = tag.header_value();
        let expected = expected_revision(&headers(header::IF_MATCH, value.to_str().unwrap())).unwrap();
        assert_eq!(expected, Some(revision()));
    }

    #[test]
    fn if_match_with_a_weak_or_foreign_tag_fails_the_precondition() {
        for value in [r#"W/"1764000000000001.1764000000500002""#, r#""abc""#] {
            let error = expected_revision(&headers(header::IF_MATCH, value)).unwrap_err();
            assert_eq!(error.status(), 412, "{value}");
        }
        assert_eq!(expected_revision(&HeaderMap::new()).unwrap(), None);
        assert_eq!(expected_revision(&headers(header::IF_MATCH, "*")).unwrap(), None);
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let user = UserId::generate();
        let tag = EntityTag::of_list(user, FavoritesVersion(3), "q");
        let listed = format!(r#""other", {}"#, tag.header_value().to_str().unwrap());
        let condition = Condition::if_none_match(&headers(header::IF_NONE_MATCH, &listed))
            .unwrap()
            .unwrap();
        assert!(condition.has(&tag));
        assert!(!condition.has(&EntityTag::of_list(user, FavoritesVersion(4), "q")));
        assert!(!condition.has(&EntityTag::of_list(user, FavoritesVersion(3), "r")));
        let any = Condition::if_none_match(&headers(header::IF_NONE_MATCH, "*"))
            .unwrap()
            .unwrap();
        assert!(any.has(&tag));
    }

    #[test]
    fn a_malformed_condition_is_a_400_naming_its_header() {
        for value in ["abc", r#""unterminated"#, r#"W/abc"#, ",", r#""a b""#] {
            let error = Condition::if_none_match(&headers(header::IF_NONE_MATCH, value)).unwrap_err();
            assert_eq!(
                error.body()["errors"][0]["source"]["header"],
                "If-None-Match",
                "{value}"
            );
            let error = expected_revision(&headers(header::IF_MATCH, value)).unwrap_err();
            assert_eq!(error.body()["errors"][0]["source"]["header"], "If-Match", "{value}");
        }
    }
}
