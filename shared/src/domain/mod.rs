//! Domain types. A value of one of these types is valid: parsing happens at the edge, through
//! `parse`/`TryFrom`, and the core never re-checks. Imports no framework and no I/O crate.

mod favorite;
mod filter;
mod user;

pub use favorite::{
    Asset, AssetInput, AssetKind, Audience, AudienceRules, Chart, DESCRIPTION_MAX_CHARS, Description, Favorite,
    FavoriteId, Gender, Insight, NAME_MAX_CHARS, Point, PointX, Revision, RulesInput,
};
pub use filter::{AssetType, ListFilter, SEARCH_MAX_CHARS, SearchText};
pub use user::{Email, Password, PasswordHash, User, UserId};

/// Why a piece of input was refused: which field (a JSON pointer) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {detail}")]
pub struct Invalid {
    /// JSON pointer to the offending field, e.g. `/email`; empty for the whole body.
    pub pointer: String,
    pub detail: String,
}

impl Invalid {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}
