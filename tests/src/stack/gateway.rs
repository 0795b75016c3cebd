//! The REST API in front of the functions, as API Gateway runs a REST API with Lambda proxy
//! integrations: the stage is the first segment of the path; a route's request becomes an API
//! Gateway (v1) proxy event; a buffered answer is the function's JSON, a streamed one
//! (`responseTransferMode: STREAM`) is passed on as it arrives, chunked. What API Gateway
//! answers by itself (no route, a body over 10 MB, a function that fails or does not answer in
//! the integration's time) is the template's gateway response for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::functions::{Busy, Function};
use super::transformed::{GatewayResponse, RestApi, Route};
use crate::rie::STREAM_SEPARATOR;
use crate::template::ACCOUNT;

/// API Gateway's payload limit.
const MAX_BODY: usize = 10 << 20;

pub struct Gateway {
    pub api: RestApi,
    /// By logical id.
    pub functions: BTreeMap<String, Arc<Function>>,
}

/// Serves `gateway` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Arc<Gateway>) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(handle).with_state(gateway);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

/// Why API Gateway answered by itself.
enum Refusal {
    NoRoute,
    TooLarge,
    FunctionFailed(String),
    TimedOut,
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut answer = match answer(&gateway, peer, request, &request_id).await {
        Ok(answer) => answer,
        Err(refusal) => gateway_response(&gateway.api.gateway_responses, refusal),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        answer.headers_mut().insert("x-amzn-requestid", value);
    }
    answer
}

async fn answer(gateway: &Gateway, peer: SocketAddr, request: Request, request_id: &str) -> Result<Response, Refusal> {
    let stage_prefix = format!("/{}", gateway.api.stage);
    let full_path = request.uri().path().to_string();
    let path = match full_path.strip_prefix(&stage_prefix) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => return Err(Refusal::NoRoute),
    };
    let method = request.method().as_str().to_ascii_uppercase();
    let (route, parameters) = gateway
        .api
        .routes
        .iter()
        .filter(|route| route.method == method)
        .find_map(|route| matches(&route.path, &path).map(|p| (route, p)))
        .ok_or(Refusal::NoRoute)?;
    let function = gateway
        .functions
        .get(&route.function)
        .ok_or_else(|| Refusal::FunctionFailed(format!("no function {}", route.function)))?
        .clone();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Refusal::TooLarge)?;
    let event = event(
        route,
        &path,
        &parts,
        &body,
        parameters,
        peer,
        &gateway.api.stage,
        request_id,
    );
    let invoked = tokio::time::timeout(route.timeout, async {
        let (busy, answer) = function
            .invoke(serde_json::to_vec(&event).unwrap_or_default())
            .await
            .map_err(|e| Refusal::FunctionFailed(format!("{e:#}")))?;
        let stream = answer.bytes_stream();
        if route.streamed {
            streamed(busy, stream.boxed()).await
        } else {
            buffered(busy, stream.boxed()).await
        }
    });
    invoked.await.map_err(|_| Refusal::TimedOut)?
}

type Chunks = futures::stream::BoxStream<'static, reqwest::Result<Bytes>>;

/// A buffered answer: the function's JSON (`statusCode`, `headers`, `multiValueHeaders`,
/// `body`, `isBase64Encoded`).
async fn buffered(mut busy: Busy, mut chunks: Chunks) -> Result<Response, Refusal> {
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.next().await {
        whole.extend_from_slice(&chunk.map_err(|e| Refusal::FunctionFailed(e.to_string()))?);
    }
    busy.finished();
    let document: Value = serde_json::from_slice(&whole).map_err(|_| failed(&busy, &whole))?;
    let mut response = head(&document).ok_or_else(|| failed(&busy, &whole))?;
    let body = document["body"].as_str().unwrap_or_default();
    let body = if document["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| failed(&busy, &whole))?
    } else {
        body.as_bytes().to_vec()
    };
    *response.body_mut() = Body::from(body);
    Ok(response)
}

/// A streamed answer: the JSON prelude, eight NUL bytes, then the body, passed on as it comes.
async fn streamed(mut busy: Busy, mut chunks: Chunks) -> Result<Response, Refusal> {
    let mut start = Vec::new();
    let at = loop {
        if let Some(at) = start
            .windows(STREAM_SEPARATOR.len())
            .position(|w| w == STREAM_SEPARATOR)
        {
            break at;
        }
        match chunks.next().await {
            Some(Ok(chunk)) => start.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(Refusal::FunctionFailed(e.to_string())),
            None => {
                busy.finished();
                return Err(failed(&busy, &start));
            }
        }
    };
    let prelude: Value = serde_json::from_slice(&start[..at]).map_err(|_| failed(&busy, &start))?;
    let mut response = head(&prelude).ok_or_else(|| failed(&busy, &start))?;
    let first = Bytes::copy_from_slice(&start[at + STREAM_SEPARATOR.len()..]);
    let rest = futures::stream::unfold((chunks, Some(busy)), |(mut chunks, mut busy)| async move {
        match chunks.next().await {
            Some(chunk) => Some((chunk, (chunks, busy))),
            None => {
                if let Some(busy) = busy.as_mut() {
                    busy.finished();
                }
                None
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, reqwest::Error>(first) }).chain(rest);
    *response.body_mut() = Body::from_stream(body);
    Ok(response)
}

/// A response with the status and headers of a proxy answer or a stream's prelude; `None`
/// when it has no status (a function error, or not a proxy answer).
fn head(document: &Value) -> Option<Response> {
    let status = StatusCode::from_u16(u16::try_from(document["statusCode"].as_u64()?).ok()?).ok()?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in document["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(name.as_str()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    for (name, values) in document["multiValueHeaders"].as_object().into_iter().flatten() {
        let Ok(name) = HeaderName::try_from(name.as_str()) else {
            continue;
        };
        headers.remove(&name);
        for value in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(name.clone(), value);
            }
        }
    }
    Some(response)
}

/// The function answered with an error (or not with a proxy answer): API Gateway's 502.
fn failed(busy: &Busy, answer: &[u8]) -> Refusal {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(500)]);
    Refusal::FunctionFailed(format!("{text} (see {})", busy.log().display()))
}

/// The path parameters when `path` matches the route's `{name}` pattern.
fn matches(pattern: &str, path: &str) -> Option<Map<String, Value>> {
    let (pattern, path): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if pattern.len() != path.len() {
        return None;
    }
    let mut parameters = Map::new();
    for (want, got) in pattern.iter().zip(&path) {
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) if !got.is_empty() => {
                parameters.insert(name.to_string(), json!(got));
            }
            Some(_) => return None,
            None if want == got => {}
            None => return None,
        }
    }
    Some(parameters)
}

/// A REST event's two views of repeated names (headers, query parameters): the last value of
/// each, and all of them in order.
fn single_and_multi(pairs: impl Iterator<Item = (String, String)>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut single, mut multi) = (Map::new(), Map::new());
    for (name, value) in pairs {
        single.insert(name.clone(), json!(value));
        if let Some(values) = multi.entry(name).or_insert_with(|| json!([])).as_array_mut() {
            values.push(json!(value));
        }
    }
    (single, multi)
}

/// The API Gateway REST (v1) proxy event of a request.
#[allow(clippy::too_many_arguments)]
fn event(
    route: &Route,
    path: &str,
    parts: &axum::http::request::Parts,
    body: &[u8],
    parameters: Map<String, Value>,
    peer: SocketAddr,
    stage: &str,
    request_id: &str,
) -> Value {
    let (single, multi) = single_and_multi(
        parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).to_string())),
    );
    let url = parts
        .uri
        .query()
        .and_then(|raw| reqwest::Url::parse(&format!("http://local/?{raw}")).ok());
    let (query, multi_query) = single_and_multi(
        url.iter()
            .flat_map(|url| url.query_pairs())
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    let or_null = |map: Map<String, Value>| {
        if map.is_empty() {
            Value::Null
        } else {
            Value::Object(map)
        }
    };
    let (body, encoded) = match (body.is_empty(), std::str::from_utf8(body)) {
        (true, _) => (Value::Null, false),
        (false, Ok(text)) => (json!(text), false),
        (false, Err(_)) => (json!(base64::engine::general_purpose::STANDARD.encode(body)), true),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    json!({
        "resource": route.path,
        "path": path,
        "httpMethod": route.method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": or_null(query),
        "multiValueQueryStringParameters": or_null(multi_query),
        "pathParameters": or_null(parameters),
        "stageVariables": null,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": format!("/{stage}{path}"),
            "stage": stage,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": now.as_millis() as u64,
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "identity": {
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()),
            },
        },
        "body": body,
        "isBase64Encoded": encoded,
    })
}

/// What API Gateway answers for a route the API does not have, given the template's gateway
/// responses (the in-process app, `crate::app`, answers the same).
pub(crate) fn unknown_route(responses: &BTreeMap<String, GatewayResponse>) -> Response {
    gateway_response(responses, Refusal::NoRoute)
}

/// API Gateway's own answer: the template's gateway response for the case, or API Gateway's
/// default.
fn gateway_response(responses: &BTreeMap<String, GatewayResponse>, refusal: Refusal) -> Response {
    let (kind, default_status, message) = match &refusal {
        Refusal::NoRoute => (
            "MISSING_AUTHENTICATION_TOKEN",
            403,
            "Missing Authentication Token".to_string(),
        ),
        Refusal::TooLarge => ("REQUEST_TOO_LARGE", 413, "Request Too Long".to_string()),
        Refusal::FunctionFailed(why) => {
            eprintln!("stack: a function failed: {why}");
            ("INTEGRATION_FAILURE", 502, "Internal server error".to_string())
        }
        Refusal::TimedOut => ("INTEGRATION_TIMEOUT", 504, "Endpoint request timed out".to_string()),
    };
    let configured = responses.get(kind);
    let fallback = responses.get(if default_status >= 500 {
        "DEFAULT_5XX"
    } else {
        "DEFAULT_4XX"
    });
    let status = configured.and_then(|r| r.status).unwrap_or(default_status);
    let body = configured
        .or(fallback)
        .and_then(|r| r.template.clone())
        .map(|template| {
            template
                .replace("$context.error.messageString", &json!(message).to_string())
                .replace("$context.error.responseType", kind)
        })
        .unwrap_or_else(|| json!({"message": message}).to_string());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind_header(kind)));
    response
}

fn kind_header(kind: &str) -> &'static str {
    match kind {
        "MISSING_AUTHENTICATION_TOKEN" => "MissingAuthenticationTokenException",
        "REQUEST_TOO_LARGE" => "RequestTooLargeException",
        "INTEGRATION_TIMEOUT" => "IntegrationTimeoutException",
        _ => "InternalServerErrorException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_gateway_answers_by_itself_is_the_templates_gateway_response() {
        let mut api = RestApi::default();
        api.gateway_responses.insert(
            "INTEGRATION_TIMEOUT".into(),
            GatewayResponse {
                status: Some(504),
                template: Some(r#"{"errors":[{"status":"504","detail":$context.error.messageString}]}"#.into()),
            },
        );
        api.gateway_responses.insert(
            "DEFAULT_4XX".into(),
            GatewayResponse {
                status: None,
                template: Some(r#"{"errors":[{"title":"$context.error.responseType"}]}"#.into()),
            },
        );
        let timed_out = gateway_response(&api.gateway_responses, Refusal::TimedOut);
        assert_eq!(timed_out.status(), 504);
        let body = axum::body::to_bytes(timed_out.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["detail"], "Endpoint request timed out");

        // No response of its own: API Gateway's status, the DEFAULT_4XX template.
        let too_large = gateway_response(&api.gateway_responses, Refusal::TooLarge);
        assert_eq!(too_large.status(), 413);
        let body = axum::body::to_bytes(too_large.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["title"], "REQUEST_TOO_LARGE");

        // Nothing in the template: API Gateway's own `{"message": …}`.
        let failed = gateway_response(&BTreeMap::new(), Refusal::FunctionFailed("boom".into()));
        assert_eq!(failed.status(), 502);
        let body = axum::body::to_bytes(failed.into_body(), 1 << 20).await.unwrap();
        assert_eq!(body, r#"{"message":"Internal server error"}"#);
    }

    #[test]
    fn a_route_pattern_matches_its_paths_only() {
        assert_eq!(matches("/favorites/{id}", "/favorites/abc").unwrap()["id"], "abc");
        assert!(matches("/favorites/{id}", "/favorites/").is_none());
        assert!(matches("/favorites/{id}", "/favorites").is_none());
        assert!(matches("/favorites", "/favorites").unwrap().is_empty());
        assert!(matches("/favorites", "/signup").is_none());
    }
}
