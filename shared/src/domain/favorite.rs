//! A favorite: an analytics asset (chart, insight or audience) a user keeps. The asset is a
//! closed enum; every string, number and array in it is bounded, so a stored favorite has a
//! known maximum size.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Invalid;

pub const ID_MAX_CHARS: usize = 128;
pub const NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2_000;
pub const AXIS_MAX_CHARS: usize = 100;
pub const CHART_MAX_POINTS: usize = 5_000;
pub const LABEL_MAX_CHARS: usize = 100;
/// Chart values are bounded like everything else: ±10^15 is beyond any metric a chart shows
/// and within the integers an f64 (and every JSON client) holds exactly.
pub const CHART_VALUE_MAX: f64 = 1e15;
pub const CONTENT_MAX_CHARS: usize = 10_000;
pub const AGE_MAX: u16 = 150;
pub const HOURS_PER_DAY_MAX: f64 = 24.0;
pub const PURCHASES_MAX: u32 = 100_000;

/// A favorite's id, unique per user (not globally): the client's own asset id, or a generated
/// UUIDv7 (time-ordered). Restricted to URL-safe characters because it travels in the path of
/// `GET /favorites/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FavoriteId(String);

impl FavoriteId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = |detail: &str| Invalid::new("/id", detail);
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.chars().count() > ID_MAX_CHARS {
            return Err(invalid("must be at most 128 characters"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | ':');
        if !raw.chars().all(allowed) {
            return Err(invalid("may contain only letters, digits and - _ . ~ :"));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FavoriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A free-text description, at most 2 000 characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded_text("/description", raw, 0, DESCRIPTION_MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The asset a favorite points at. Serialised flat, as in the original service:
/// `{"id","type","name","description", …fields of the type}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Asset {
    pub id: FavoriteId,
    pub name: String,
    pub description: Description,
    #[serde(flatten)]
    pub kind: AssetKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AssetKind {
    Chart(Chart),
    Insight(Insight),
    Audience(Audience),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_axis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y_axis: Option<String>,
    pub data: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: PointX,
    pub y: serde_json::Number,
}

/// A chart's x value: a number, or a label such as `"2026-11"`. Numbers are kept as sent
/// (`12` stays `12`, not `12.0`); JSON cannot carry NaN or infinities, so every one is finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointX {
    Number(serde_json::Number),
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insight {
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audience {
    pub rules: AudienceRules,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudienceRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_min: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_max: Option<u16>,
    /// Hours per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub social_media_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchases_last_month: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Female,
    Male,
    Other,
}

/// A stored favorite: the asset and the server's timestamps (set by the database clock).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Favorite {
    #[serde(flatten)]
    pub asset: Asset,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub updated_at: DateTime<Utc>,
}

impl Favorite {
    pub fn revision(&self) -> Revision {
        Revision {
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A favorite's state as of its last change. The store moves `updated_at` strictly forward on
/// every change, and a favorite removed and added again has a later `created_at`: two reads
/// with the same revision read the same favorite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Timestamps always with six fractional digits, `2026-11-20T10:00:00.123456Z`: the shape both
/// SQL dialects print in listings, so a favorite reads the same from every route.
fn micros<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// An asset as a client sends it, before validation. Every field is optional here so that a
/// missing one is reported by its name; [`AssetInput::parse`] decides what is required.
#[derive(Debug, Default, Deserialize)]
pub struct AssetInput {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub x_axis: Option<String>,
    pub y_axis: Option<String>,
    pub data: Option<Vec<Point>>,
    pub content: Option<String>,
    pub rules: Option<RulesInput>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RulesInput {
    pub gender: Option<Gender>,
    pub country: Option<String>,
    /// Whole numbers, read as numbers: `18.0` is `18` (see [`whole_number`]).
    pub age_min: Option<serde_json::Number>,
    pub age_max: Option<serde_json::Number>,
    pub social_media_hours: Option<f64>,
    pub purchases_last_month: Option<serde_json::Number>,
}

impl AssetInput {
    pub fn parse(self) -> Result<Asset, Invalid> {
        let kind = match self.kind.as_deref() {
            None => return Err(Invalid::new("/type", "is required: chart, insight or audience")),
            Some("chart") => AssetKind::Chart(parse_chart(self.x_axis, self.y_axis, self.data)?),
            Some("insight") => AssetKind::Insight(Insight {
                content: bounded_text("/content", &required("/content", self.content)?, 1, CONTENT_MAX_CHARS)?,
            }),
            Some("audience") => AssetKind::Audience(Audience {
                rules: parse_rules(self.rules.ok_or_else(|| Invalid::new("/rules", "is required"))?)?,
            }),
            Some(_) => return Err(Invalid::new("/type", "must be one of chart, insight, audience")),
        };
        let id = match self.id {
            Some(id) => FavoriteId::parse(&id)?,
            None => FavoriteId::generate(),
        };
        let name = required("/name", self.name)?;
        Ok(Asset {
            id,
            name: bounded_text("/name", name.trim(), 1, NAME_MAX_CHARS)?,
            description: Description::parse(self.description.as_deref().unwrap_or(""))?,
            kind,
        })
    }
}

fn required(pointer: &str, value: Option<String>) -> Result<String, Invalid> {
    value.ok_or_else(|| Invalid::new(pointer, "is required"))
}

fn bounded_text(pointer: &str, raw: &str, min: usize, max: usize) -> Result<String, Invalid> {
    let chars = raw.chars().count();
    if chars < min {
        return Err(Invalid::new(pointer, "must not be empty"));
    }
    if chars > max {
        return Err(Invalid::new(pointer, format!("must be at most {max} characters")));
    }
    if raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(Invalid::new(pointer, "must not contain control characters"));
    }
    Ok(raw.to_string())
}

fn parse_chart(x_axis: Option<String>, y_axis: Option<String>, data: Option<Vec<Point>>) -> Result<Chart, Invalid> {
    let axis = |pointer: &str, value: Option<String>| {
        value
            .filter(|v| !v.trim().is_empty())
            .map(|v| bounded_text(pointer, v.trim(), 1, AXIS_MAX_CHARS))
            .transpose()
    };
    let x_axis = axis("/x_axis", x_axis)?;
    let y_axis = axis("/y_axis", y_axis)?;
    if x_axis.is_none() && y_axis.is_none() {
        return Err(Invalid::new(
            "/x_axis",
            "a chart needs at least one axis title (x_axis or y_axis)",
        ));
    }
    let data = data.unwrap_or_default();
    if data.len() > CHART_MAX_POINTS {
        return Err(Invalid::new(
            "/data",
            format!("must have at most {CHART_MAX_POINTS} points"),
        ));
    }
    let in_range = |n: &serde_json::Number, pointer: String| match n.as_f64() {
        Some(v) if v.abs() <= CHART_VALUE_MAX => Ok(()),
        _ => Err(Invalid::new(pointer, "must be a number between -1e15 and 1e15")),
    };
    for (i, point) in data.iter().enumerate() {
        match &point.x {
            PointX::Label(label) => {
                bounded_text(&format!("/data/{i}/x"), label, 0, LABEL_MAX_CHARS)?;
            }
            PointX::Number(x) => in_range(x, format!("/data/{i}/x"))?,
        }
        in_range(&point.y, format!("/data/{i}/y"))?;
    }
    Ok(Chart { x_axis, y_axis, data })
}

fn parse_rules(rules: RulesInput) -> Result<AudienceRules, Invalid> {
    let country = rules
        .country
        .ok_or_else(|| Invalid::new("/rules/country", "is required"))?
        .trim()
        .to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Invalid::new(
            "/rules/country",
            "must be an ISO 3166-1 alpha-2 code such as GR",
        ));
    }
    let age_min = whole_number("/rules/age_min", rules.age_min, AGE_MAX)?;
    let age_max = whole_number("/rules/age_max", rules.age_max, AGE_MAX)?;
    if let (Some(min), Some(max)) = (age_min, age_max)
        && min > max
    {
        return Err(Invalid::new("/rules/age_min", "must not be greater than age_max"));
    }
    if let Some(hours) = rules.social_media_hours
        && !(0.0..=HOURS_PER_DAY_MAX).contains(&hours)
    {
        return Err(Invalid::new(
            "/rules/social_media_hours",
            "must be between 0 and 24 (hours per day)",
        ));
    }
    let purchases_last_month = whole_number("/rules/purchases_last_month", rules.purchases_last_month, PURCHASES_MAX)?;
    Ok(AudienceRules {
        gender: rules.gender,
        country,
        age_min,
        age_max,
        social_media_hours: rules.social_media_hours,
        purchases_last_month,
    })
}

/// A whole number from 0 to `max`, however the JSON writes it: `18` and `18.0` are one number
/// to JSON, and the contract's `integer` (JSON Schema) accepts both.
fn whole_number<T>(pointer: &str, value: Option<serde_json::Number>, max: T) -> Result<Option<T>, Invalid>
where
    T: TryFrom<u64> + PartialOrd + fmt::Display,
{
    let Some(number) = value else { return Ok(None) };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    });
    match whole.and_then(|n| T::try_from(n).ok()) {
        Some(n) if n <= max => Ok(Some(n)),
        _ => Err(Invalid::new(pointer, format!("must be a whole number from 0 to {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: serde_json::Value) -> Result<Asset, Invalid> {
        serde_json::from_value::<AssetInput>(value).unwrap().parse()
    }

    fn pointer(value: serde_json::Value) -> String {
        parse(value).unwrap_err().pointer
    }

    #[test]
    fn each_asset_type_parses_and_serialises_flat() {
        let chart = parse(
            json!({"id": "c-1", "type": "chart", "name": "Revenue", "x_axis": "month",
            "data": [{"x": "2026-01", "y": 3.5}, {"x": 2, "y": 4}]}),
        )
        .unwrap();
        let out = serde_json::to_value(&chart).unwrap();
        assert_eq!(out["type"], "chart");
        assert_eq!(out["id"], "c-1");
        assert_eq!(out["data"][0]["x"], "2026-01");
        assert_eq!(out["description"], "");

        let insight = parse(json!({"type": "insight", "name": "Churn", "content": "40% churn"})).unwrap();
        assert_eq!(serde_json::to_value(&insight).unwrap()["content"], "40% churn");
        assert_eq!(insight.id.as_str().len(), 36, "a generated id is a UUID");

        let audience = parse(json!({"type": "audience", "name": "Young GR",
            "rules": {"country": "gr", "gender": "female", "age_min": 18, "age_max": 24}}))
        .unwrap();
        assert_eq!(serde_json::to_value(&audience).unwrap()["rules"]["country"], "GR");
    }

    #[test]
    fn the_type_is_required_and_closed() {
        assert_eq!(pointer(json!({"name": "x"})), "/type");
        assert_eq!(pointer(json!({"type": "video", "name": "x"})), "/type");
    }

    #[test]
    fn missing_required_fields_are_named() {
        assert_eq!(pointer(json!({"type": "insight", "content": "c"})), "/name");
        assert_eq!(pointer(json!({"type": "insight", "name": "n"})), "/content");
        assert_eq!(pointer(json!({"type": "audience", "name": "n"})), "/rules");
        assert_eq!(
            pointer(json!({"type": "audience", "name": "n", "rules": {}})),
            "/rules/country"
        );
        assert_eq!(pointer(json!({"type": "chart", "name": "n"})), "/x_axis");
        assert_eq!(
            pointer(json!({"type": "insight", "name": "   ", "content": "c"})),
            "/name"
        );
    }

    #[test]
    fn ages_must_be_in_range_and_ordered() {
        let rules = |r: serde_json::Value| json!({"type": "audience", "name": "n", "rules": r});
        assert_eq!(
            pointer(rules(json!({"country": "GR", "age_min": 151}))),
            "/rules/age_min"
        );
        assert_eq!(
            pointer(rules(json!({"country": "GR", "age_max": 200}))),
            "/rules/age_max"
        );
        assert_eq!(
            pointer(rules(json!({"country": "GR", "age_min": 30, "age_max": 20}))),
            "/rules/age_min"
        );
        assert!(parse(rules(json!({"country": "GR", "age_min": 0, "age_max": 150}))).is_ok());
        assert_eq!(pointer(rules(json!({"country": "Greece"}))), "/rules/country");
        assert_eq!(
            pointer(rules(json!({"country": "GR", "social_media_hours": 25}))),
            "/rules/social_media_hours"
        );
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction_and_nothing_else() {
        let rules = |r: serde_json::Value| json!({"type": "audience", "name": "n", "rules": r});
        let audience = parse(rules(
            json!({"country": "GR", "age_min": 18.0, "age_max": 24, "purchases_last_month": 3.0}),
        ))
        .unwrap();
        let out = serde_json::to_value(&audience).unwrap();
        assert_eq!(out["rules"]["age_min"], json!(18), "stored and answered as an integer");
        assert_eq!(out["rules"]["purchases_last_month"], json!(3));
        for (field, value) in [
            ("age_min", json!(18.5)),
            ("age_min", json!(-1)),
            ("age_max", json!(-0.5)),
            ("age_max", json!(1e300)),
            ("purchases_last_month", json!(100_001)),
            ("purchases_last_month", json!(2.25)),
        ] {
            let mut r = json!({"country": "GR"});
            r[field] = value.clone();
            let error = parse(rules(r)).unwrap_err();
            assert_eq!(error.pointer, format!("/rules/{field}"), "{field} = {value}");
            assert!(
                error.detail.contains("whole number"),
                "{field} = {value}: {}",
                error.detail
            );
        }
    }

    #[test]
    fn every_string_and_array_is_bounded() {
        let long = |n: usize| "x".repeat(n);
        assert_eq!(
            pointer(json!({"type": "insight", "name": long(201), "content": "c"})),
            "/name"
        );
        assert_eq!(
            pointer(json!({"type": "insight", "name": "n", "content": long(10_001)})),
            "/content"
        );
        assert_eq!(
            pointer(json!({"type": "insight", "name": "n", "content": "c", "description": long(2_001)})),
            "/description"
        );
        assert_eq!(
            pointer(json!({"type": "chart", "name": "n", "x_axis": long(101)})),
            "/x_axis"
        );
        let points: Vec<_> = (0..5_001).map(|i| json!({"x": i, "y": i})).collect();
        assert_eq!(
            pointer(json!({"type": "chart", "name": "n", "x_axis": "x", "data": points})),
            "/data"
        );
        assert_eq!(
            pointer(json!({"type": "insight", "id": long(129), "name": "n", "content": "c"})),
            "/id"
        );
        assert_eq!(
            pointer(json!({"type": "insight", "id": "a/b", "name": "n", "content": "c"})),
            "/id"
        );
    }

    #[test]
    fn chart_values_are_bounded_and_kept_as_sent() {
        let chart =
            |y: serde_json::Value| json!({"type": "chart", "name": "n", "x_axis": "x", "data": [{"x": 1, "y": y}]});
        assert_eq!(pointer(chart(json!(1.7976931348623157e308))), "/data/0/y");
        assert_eq!(pointer(chart(json!(-2e15))), "/data/0/y");
        let kept = serde_json::to_value(parse(chart(json!(12))).unwrap()).unwrap();
        assert_eq!(kept["data"][0]["y"], json!(12), "an integer is not turned into 12.0");
    }

    #[test]
    fn sql_looking_text_is_kept_verbatim() {
        let text = "'); drop table favorites; --";
        let asset = parse(json!({"type": "insight", "name": text, "content": text})).unwrap();
        assert_eq!(asset.name, text);
    }
}
