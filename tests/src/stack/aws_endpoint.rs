//! The AWS endpoint the functions are given: moto, passed through, but for one answer moto
//! gets wrong. When it refuses a call of a JSON-protocol service (DynamoDB, Secrets Manager:
//! the request names its operation in `X-Amz-Target`), moto answers in XML, which the SDK
//! cannot read ("unexpected token '<'"), where AWS answers JSON
//! (`{"__type": "…#AccessDeniedException", "message": "User … is not authorized to perform: …"}`);
//! such answers are rewritten to AWS's shape, so a function logs what it would log in AWS.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

struct Upstream {
    url: String,
    http: reqwest::Client,
}

/// Serves the pass-through to `upstream` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, upstream: String) -> std::io::Result<()> {
    let state = Arc::new(Upstream {
        url: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
    });
    let app = axum::Router::new().fallback(pass).with_state(state);
    axum::serve(listener, app).await
}

async fn pass(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let json_protocol = parts.headers.contains_key("x-amz-target");
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = upstream
        .http
        .request(parts.method.clone(), format!("{}{path}", upstream.url))
        .body(body);
    // Every header as signed, `Host` too: moto checks the signature against it.
    for (name, value) in &parts.headers {
        if name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap_or_default();
    if json_protocol && code.is_client_error() && body.starts_with(b"<") {
        return json_error(code, &String::from_utf8_lossy(&body));
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// An XML error (`<Code>…</Code>`, `<Message>…</Message>`) as a JSON-protocol service sends it.
fn json_error(code: StatusCode, xml: &str) -> Response {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        Some(xml[start..end].to_string())
    };
    let mut kind = element("Code").unwrap_or_else(|| "AccessDenied".into());
    if !kind.ends_with("Exception") {
        kind.push_str("Exception");
    }
    let body = json!({
        "__type": format!("com.amazonaws.coral.service#{kind}"),
        "message": element("Message").unwrap_or_default(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    if let Ok(value) = HeaderValue::from_str(&kind) {
        headers.insert("x-amzn-errortype", value);
    }
    response
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_xml_refusal_becomes_the_json_aws_sends() {
        let xml = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: x is not authorized to perform: dynamodb:GetItem</Message></Error></ErrorResponse>";
        let response = json_error(StatusCode::FORBIDDEN, xml);
        assert_eq!(response.headers()["x-amzn-errortype"], "AccessDeniedException");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["__type"], "com.amazonaws.coral.service#AccessDeniedException");
        assert_eq!(
            body["message"],
            "User: x is not authorized to perform: dynamodb:GetItem"
        );
    }
}
