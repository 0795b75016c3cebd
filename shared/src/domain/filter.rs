//! What a listing may be narrowed to: asset types and a text to find in name or description.

use super::Invalid;

/// The longest search text: longer than any useful search, short enough that a pattern stays
/// cheap to match against a 2 000-character description. Raising it takes a migration too:
/// Postgres stores the text a search looks in as parts that overlap by twice this
/// (migrations/postgres/20261208000001_favorite_search_parts.sql), so that any search text lies
/// whole in one part.
pub const SEARCH_MAX_CHARS: usize = 100;

/// The type of an asset, as a filter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssetType {
    Chart,
    Insight,
    Audience,
}

impl AssetType {
    pub const ALL: [Self; 3] = [Self::Chart, Self::Insight, Self::Audience];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| Invalid::new("/type", "must be one or more of chart, insight, audience"))
    }

    /// The name stored in the asset's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chart => "chart",
            Self::Insight => "insight",
            Self::Audience => "audience",
        }
    }
}

/// Text to find, case-insensitively, in a favorite's name or description: 1 to
/// [`SEARCH_MAX_CHARS`] characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(String);

impl SearchText {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = |detail: String| Invalid::new("/q", detail);
        let text = raw.trim();
        if text.is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        if text.chars().count() > SEARCH_MAX_CHARS {
            return Err(invalid(format!("must be at most {SEARCH_MAX_CHARS} characters")));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters".into()));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which favorites a listing shows: those of one of `types` (all types when empty) whose
/// name or description contains `text` (all when `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Sorted and without duplicates, so that one filter has one spelling ([`Self::key`]).
    types: Vec<AssetType>,
    text: Option<SearchText>,
}

impl ListFilter {
    pub fn new(types: impl IntoIterator<Item = AssetType>, text: Option<SearchText>) -> Self {
        let mut types: Vec<AssetType> = types.into_iter().collect();
        types.sort_unstable();
        types.dedup();
        // Every type named is no type filter at all.
        if types.len() == AssetType::ALL.len() {
            types.clear();
        }
        Self { types, text }
    }

    /// The types to keep; empty for every type.
    pub fn types(&self) -> &[AssetType] {
        &self.types
    }

    pub fn text(&self) -> Option<&SearchText> {
        self.text.as_ref()
    }

    /// True when the filter keeps every favorite.
    pub fn is_everything(&self) -> bool {
        self.types.is_empty() && self.text.is_none()
    }

    /// One spelling per filter: what a cursor and an ETag are bound to.
    pub fn key(&self) -> String {
        let types: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
        format!(
            "type={}\u{1f}q={}",
            types.join(","),
            self.text.as_ref().map_or("", |t| t.as_str())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_has_one_spelling_whatever_the_order_and_repetition_of_its_types() {
        let a = ListFilter::new([AssetType::Insight, AssetType::Chart, AssetType::Chart], None);
        let b = ListFilter::new([AssetType::Chart, AssetType::Insight], None);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), ListFilter::default().key());
    }

    #[test]
    fn every_type_named_is_no_filter() {
        assert!(ListFilter::new(AssetType::ALL, None).is_everything());
    }

    #[test]
    fn search_text_is_trimmed_and_bounded() {
        assert_eq!(SearchText::parse("  churn ").unwrap().as_str(), "churn");
        for bad in ["", "   ", "a\u{1f}b", &"x".repeat(SEARCH_MAX_CHARS + 1)] {
            assert!(SearchText::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SearchText::parse(&"é".repeat(SEARCH_MAX_CHARS)).is_ok());
    }

    #[test]
    fn unknown_types_are_refused() {
        assert_eq!(AssetType::parse("audience").unwrap(), AssetType::Audience);
        assert!(AssetType::parse("Chart").is_err());
        assert!(AssetType::parse("dashboard").is_err());
    }
}
