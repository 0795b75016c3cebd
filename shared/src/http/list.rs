//! `GET /favorites`: the list, streamed.
//!
//! Rows come from the store's stream and are written to the body as they arrive, in chunks of
//! about [`CHUNK_BYTES`]; the body is pulled by whoever sends it (the Lambda runtime, hyper in
//! tests), so a slow client slows the query instead of filling memory, and a client that goes
//! away drops the stream and with it the query.
//!
//! The answer carries a weak `ETag` made of the user's favorites version and the query
//! ([`super::conditional`]); with a matching `If-None-Match` it is a 304 that read one primary
//! key (the version) and no favorite.
//!
//! Formats: JSON `{"data":[…],"next_cursor":…}` by default; with `Accept: application/x-ndjson`
//! one favorite per line and a last line `{"next_cursor":…}`.
//!
//! A failure after the first byte cannot change the status any more. It is logged, and the
//! body is left visibly incomplete: JSON stops without its closing `]}` (a parse error for any
//! client), NDJSON ends with an `{"errors":[…]}` line instead of the `next_cursor` line. Either
//! way the response is also cut short at the transport level (Lambda reports the error in its
//! stream trailer; a chunked HTTP response ends without its last chunk).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;

use super::auth::{AuthUser, Authentication, authenticated};
use super::conditional::{Condition, EntityTag};
use super::error::ApiError;
use super::finish;
use super::observe::RequestId;
use super::paging::{CursorCodec, CursorScope, ListParams, Paging};
use crate::metrics::{self, Distribution};
use crate::ports::{CursorKeys, FavoriteLister, FavoriteStream, ListPosition};
use crate::usecases::cache::CacheGuard;
use crate::usecases::enrich::Enrichment;
use crate::usecases::list_favorites::list_favorites;

/// Body chunk size: big enough that per-chunk overhead (a frame through the Lambda runtime
/// API) is small, small enough to reach the client promptly and keep memory flat.
pub const CHUNK_BYTES: usize = 32 * 1024;

pub const NDJSON: &str = "application/x-ndjson";

#[derive(Clone)]
pub struct ListState {
    pub favorites: Arc<dyn FavoriteLister>,
    /// Sign the `next_cursor` of a page and check the `cursor` of a request.
    pub cursor_keys: Arc<dyn CursorKeys>,
    pub cache: Option<Arc<CacheGuard>>,
    pub enrichment: Option<Arc<Enrichment>>,
}

pub fn list_favorites_router(state: ListState, authentication: Authentication) -> Router {
    authenticated(
        finish(Router::new().route("/favorites", get(list_handler)), state),
        authentication,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    NdJson,
}

impl Format {
    fn from_accept(headers: &HeaderMap) -> Self {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let wants_ndjson = accept
            .split(',')
            .any(|part| part.split(';').next().unwrap_or("").trim() == NDJSON);
        if wants_ndjson { Self::NdJson } else { Self::Json }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::NdJson => NDJSON,
        }
    }
}

async fn list_handler(
    State(state): State<ListState>,
    AuthUser(user, account): AuthUser,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    let params = ListParams::from_query(raw_query.as_deref())?;
    let cursors = Arc::new(CursorCodec::new(state.cursor_keys.cursor_keys().await));
    let paging = Paging::parse(params, &cursors, user)?;
    let format = Format::from_accept(&headers);
    let has = Condition::if_none_match(&headers)?;
    // Read with the account by the authentication layer: one primary-key lookup in all.
    let version = account.favorites_version;
    let etag = EntityTag::of_list(
        user,
        version,
        &format!("{}\u{1f}{}", paging.key(), format.content_type()),
    );
    if has.is_some_and(|has| has.has(&etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag.header_value())]).into_response());
    }
    let rows = list_favorites(
        state.favorites.as_ref(),
        state.cache.as_ref(),
        user,
        paging.query,
        Some(version),
    )
    .await
    .map_err(ApiError::internal)?;
    let mut rows = match &state.enrichment {
        // Passed on to the service, so that its logs and ours can be joined.
        Some(enrichment) => enrichment.enrich(user, rows, request_id),
        None => rows,
    };
    // Wait for the first row before answering: a database that is down is still a clean
    // 500 here, with a JSON:API body, rather than a 200 that breaks off.
    let first = rows.next().await.transpose().map_err(ApiError::internal)?;
    let body = render(first, rows, format, paging.page_size, paging.scope, cursors);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response_headers.insert(header::ETAG, etag.header_value());
    Ok(response)
}

/// The response body as a stream of chunks. Holds one chunk and one row at a time.
fn render(
    first: Option<crate::ports::ListedFavorite>,
    mut rows: FavoriteStream,
    format: Format,
    page_size: Option<u64>,
    scope: CursorScope,
    cursors: Arc<CursorCodec>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    async_stream::try_stream! {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        if format == Format::Json {
            chunk.extend_from_slice(b"{\"data\":[");
        }
        let mut shown: u64 = 0;
        let mut last: Option<ListPosition> = None;
        let mut more = false;
        let mut next = first.map(Ok);
        loop {
            let row = match next.take() {
                Some(row) => Some(row),
                None => rows.next().await,
            };
            let row = match row {
                None => break,
                Some(Ok(row)) => row,
                Some(Err(error)) => {
                    tracing::error!(error = format!("{error:#}"), rows_sent = shown, "the list broke off mid-stream");
                    metrics::record(Distribution::StreamedItems, shown as f64);
                    if format == Format::NdJson {
                        let body = ApiError::internal_quiet().body();
                        chunk.extend_from_slice(body.to_string().as_bytes());
                        chunk.push(b'\n');
                        yield Bytes::from(std::mem::take(&mut chunk));
                    } else if !chunk.is_empty() {
                        yield Bytes::from(std::mem::take(&mut chunk));
                    }
                    Err(std::io::Error::other("the list broke off mid-stream"))?;
                    unreachable!();
                }
            };
            if page_size == Some(shown) {
                // The extra row asked for: it exists, so there is a next page.
                more = true;
                break;
            }
            if format == Format::Json && shown > 0 {
                chunk.push(b',');
            }
            chunk.extend_from_slice(row.json.as_bytes());
            if format == Format::NdJson {
                chunk.push(b'\n');
            }
            shown += 1;
            last = Some(row.position);
            if chunk.len() >= CHUNK_BYTES {
                yield Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096)));
            }
        }
        let next_cursor = match (more, last) {
            (true, Some(position)) => serde_json::Value::String(cursors.encode(&scope, &position)),
            _ => serde_json::Value::Null,
        };
        match format {
            Format::Json => chunk.extend_from_slice(format!("],\"next_cursor\":{next_cursor}}}").as_bytes()),
            Format::NdJson => chunk.extend_from_slice(format!("{{\"next_cursor\":{next_cursor}}}\n").as_bytes()),
        }
        tracing::info!(rows_sent = shown, more, "list streamed");
        metrics::record(Distribution::StreamedItems, shown as f64);
        // What is left of the stream is work that must finish before the function returns:
        // the listing's closing round trip, and the cache fill that reads on past the page. It
        // runs before the last chunk is handed over, so that this chunk and the end of the body
        // leave in one write: the answer is complete at the end of the body either way.
        while rows.next().await.is_some() {}
        yield Bytes::from(chunk);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures::TryStreamExt;

    use super::*;
    use crate::domain::{ListFilter, UserId};
    use crate::ports::ListedFavorite;

    fn row(id: &str) -> ListedFavorite {
        ListedFavorite {
            position: ListPosition {
                created_at: Utc::now(),
                id: id.into(),
            },
            json: format!(r#"{{"id":"{id}"}}"#),
        }
    }

    fn scope() -> CursorScope {
        CursorScope::new(UserId::generate(), &ListFilter::default())
    }

    /// Rows `a` and `b`, then the database goes away.
    fn breaking_rows() -> FavoriteStream {
        Box::pin(futures::stream::iter(vec![
            Ok(row("b")),
            Err(anyhow::anyhow!("connection reset")),
        ]))
    }

    async fn body(format: Format, rows: FavoriteStream, page_size: Option<u64>) -> (Vec<u8>, bool) {
        let cursors = Arc::new(CursorCodec::new(vec![[7; 32]]));
        let stream = render(Some(row("a")), rows, format, page_size, scope(), cursors);
        let mut stream = std::pin::pin!(stream);
        let mut bytes = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => return (bytes, false),
                Err(_) => return (bytes, true),
            }
        }
    }

    #[tokio::test]
    async fn a_complete_json_list_parses_and_says_whether_there_is_more() {
        let rows: FavoriteStream = Box::pin(futures::stream::iter(vec![Ok(row("b")), Ok(row("c"))]));
        let (bytes, failed) = body(Format::Json, rows, Some(2)).await;
        let page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(!failed);
        assert_eq!(page["data"], serde_json::json!([{"id": "a"}, {"id": "b"}]));
        assert!(
            page["next_cursor"].is_string(),
            "a third row exists, so there is a next page"
        );
    }

    #[tokio::test]
    async fn a_json_list_that_breaks_off_does_not_parse_and_ends_the_stream_with_an_error() {
        let (bytes, failed) = body(Format::Json, breaking_rows(), None).await;
        assert!(failed, "the transport sees the failure");
        assert!(
            bytes.starts_with(br#"{"data":[{"id":"a"},{"id":"b"}"#),
            "rows before the failure are sent"
        );
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_err(),
            "the body is visibly incomplete"
        );
    }

    #[tokio::test]
    async fn an_ndjson_list_that_breaks_off_ends_with_an_error_line_instead_of_next_cursor() {
        let (bytes, failed) = body(Format::NdJson, breaking_rows(), None).await;
        let lines: Vec<serde_json::Value> = String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(failed);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["errors"][0]["status"], "500");
        assert!(lines.iter().all(|line| line.get("next_cursor").is_none()));
    }

    #[tokio::test]
    async fn the_last_chunk_is_the_end_of_the_body_even_when_the_listing_ends_later() {
        // The rows past the page end a moment later, as a listing's closing round trip or a
        // cache fill does.
        let rows: FavoriteStream = Box::pin(futures::stream::iter(vec![Ok(row("b")), Ok(row("c"))]).chain(
            futures::stream::once(async {
                tokio::task::yield_now().await;
                Ok(row("d"))
            }),
        ));
        let cursors = Arc::new(CursorCodec::new(vec![[7; 32]]));
        let stream = render(Some(row("a")), rows, Format::Json, Some(2), scope(), cursors);
        let mut stream = std::pin::pin!(stream);
        let last = stream.try_next().await.unwrap().unwrap();
        assert!(last.ends_with(b"}"), "the whole page in its one chunk");
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            matches!(
                futures::Stream::poll_next(stream.as_mut(), &mut cx),
                std::task::Poll::Ready(None)
            ),
            "the end of the body must be ready with the last chunk, so that both leave in one write"
        );
    }
}
