//! Extractors: untrusted request parts become typed values here, or a JSON:API 4xx that names
//! what is wrong. Handlers never see raw bodies or headers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::error::ApiError;

/// Default bound on a request body. API Gateway allows 10 MB; nothing we accept needs more
/// than this, and a bound keeps a hostile client from making us parse megabytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// A JSON body deserialised into `T`, at most `LIMIT` bytes, with errors that point at the
/// field to blame (`/data/3/x`).
pub struct JsonBody<T, const LIMIT: usize = DEFAULT_BODY_LIMIT>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(request.headers())?;
        let bytes = axum::body::to_bytes(request.into_body(), LIMIT)
            .await
            .map_err(|_| ApiError::payload_too_large(LIMIT))?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn require_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type())
    }
}

/// Parses a JSON document into `T`, turning serde's complaints into a pointer and a sentence.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("", "the body is not valid UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request(
            "",
            "the body is empty; a JSON object is required",
        ));
    }
    // serde would happily read a struct from an array (`[email, password]`), which is not
    // what any client means: every body we accept is an object.
    if !trimmed.starts_with('{') {
        let kind = if trimmed.starts_with('[') {
            "an array"
        } else {
            "not a JSON object"
        };
        return Err(ApiError::bad_request(
            "",
            if kind.starts_with("an") {
                format!("the body must be a JSON object, not {kind}")
            } else {
                "the body must be a JSON object".to_string()
            },
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let pointer = json_pointer(e.path());
        let inner = e.into_inner();
        let detail = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("", format!("the body is not valid JSON: {detail}"))
        } else if pointer.is_empty() {
            ApiError::bad_request("", format!("the body must be a JSON object: {detail}"))
        } else {
            ApiError::bad_request(pointer, detail)
        }
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("", "the body has trailing characters after the JSON value"))?;
    Ok(value)
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// serde_json appends " at line 1 column 7", which means nothing to an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The client's IP address as API Gateway saw it (`requestContext.identity.sourceIp` for the
/// REST API, `requestContext.http.sourceIp` for HTTP APIs and the local emulator); `unknown`
/// when the request did not come through API Gateway.
#[derive(Debug, Clone)]
pub struct SourceIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SourceIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use lambda_http::request::RequestContext;
        let ip = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
            Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
            _ => None,
        };
        Ok(Self(ip.filter(|ip| !ip.is_empty()).unwrap_or_else(|| "unknown".into())))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use axum::http::StatusCode;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: Option<String>,
        points: Option<Vec<Point>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Point {
        x: f64,
    }

    fn pointer_of(error: ApiError) -> Option<String> {
        error.body()["errors"][0]["source"]["pointer"]
            .as_str()
            .map(str::to_string)
    }

    #[test]
    fn a_mistyped_field_is_named_by_its_pointer() {
        let error = parse_json::<Body>(br#"{"email": 5}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(pointer_of(error).as_deref(), Some("/email"));
    }

    #[test]
    fn a_nested_mistyped_field_is_named_by_its_full_pointer() {
        let error = parse_json::<Body>(br#"{"points": [{"x": 1}, {"x": "a"}]}"#).unwrap_err();
        assert_eq!(pointer_of(error).as_deref(), Some("/points/1/x"));
    }

    #[test]
    fn malformed_json_an_array_and_non_utf8_are_400s_on_the_whole_body() {
        for body in [&br#"{"email": "#[..], b"[1,2]", b"\xff\xfe", b"", b"{} {}"] {
            let error = parse_json::<Body>(body).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert_eq!(pointer_of(error).as_deref(), Some(""), "{body:?}");
        }
    }
}
