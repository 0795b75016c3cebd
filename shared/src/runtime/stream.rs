//! A streamed answer on the wire, as the Runtime API reads it: a chunked `POST …/response`
//! with `Lambda-Runtime-Function-Response-Mode: streaming`, whose body is the metadata prelude
//! (JSON: status, headers, cookies), 8 NUL bytes, then the HTTP body. A body that fails midway
//! ends with the trailers `Lambda-Runtime-Function-Error-Type` and `…-Error-Body`, which Lambda
//! turns into an invocation error (the client sees the stream break off).
//!
//! In as few writes as the body allows: the request is sent only once the body's first chunk
//! is there, so that hyper writes the request head, the prelude, its separator and that chunk
//! together (three chunks of the chunked encoding, one write); later chunks go out as they come, each with whatever else is ready then,
//! and the last one with the terminating chunk when the body ends right after it. (lambda_runtime
//! sends the prelude and the separator as separate chunks from a spawned task, so they leave
//! in separate writes, and then stall each other on a connection with Nagle's algorithm on.)

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request};
use http_body::Frame;
use lambda_http::Error;
use lambda_http::lambda_runtime::{Diagnostic, MetadataPrelude};
use lambda_runtime_api_client::body::Body;

use super::{header_value, panicked, post};

/// The HTTP body of a streamed answer.
pub(super) type BodyStream = BoxStream<'static, Result<Bytes, Error>>;

const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const ERROR_BODY: &str = "lambda-runtime-function-error-body";

/// The request that streams `body` to `path`. Waits for the body's first chunk (or its end).
pub(super) async fn request(
    path: &str,
    mut prelude: MetadataPrelude,
    mut body: BodyStream,
) -> Result<Request<Body>, Error> {
    prelude
        .headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/octet-stream"));
    // The prelude and the separator are chunks of their own: `cargo lambda watch` (`make run`)
    // reads the prelude as the first chunk and skips the second, where Lambda reads bytes.
    // Chunks that are ready together still leave in one write.
    let mut frames = vec![
        Frame::data(Bytes::from(serde_json::to_vec(&prelude)?)),
        Frame::data(Bytes::from_static(&[0; 8])),
    ];
    let first = AssertUnwindSafe(body.next())
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Some(Err(panicked(&panic).error_message.into())));
    let rest = match first {
        Some(Ok(chunk)) => {
            frames.push(Frame::data(chunk));
            Some(body)
        }
        Some(Err(error)) => {
            frames.push(Frame::trailers(failure(&error)));
            None
        }
        None => None,
    };
    let request = post(path)
        .header("lambda-runtime-function-response-mode", "streaming")
        .header("transfer-encoding", "chunked")
        .header("content-type", "application/vnd.awslambda.http-integration-response")
        .header("trailer", ERROR_TYPE)
        .header("trailer", ERROR_BODY)
        .body(Body::new(Streamed {
            ready: frames.into(),
            rest,
        }))?;
    Ok(request)
}

/// Frames ready to be written, then the rest of the body as it comes.
struct Streamed {
    ready: std::collections::VecDeque<Frame<Bytes>>,
    rest: Option<BodyStream>,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        // A panic while producing the body fails the invocation like any other error.
        let next = std::panic::catch_unwind(AssertUnwindSafe(|| rest.poll_next_unpin(cx)))
            .unwrap_or_else(|panic| Poll::Ready(Some(Err(panicked(&panic).error_message.into()))));
        match next {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(Some(Err(error))) => {
                self.rest = None;
                Poll::Ready(Some(Ok(Frame::trailers(failure(&error)))))
            }
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.is_none()
    }
}

/// The trailers that report a body broken off midway: the error type, and the error document
/// (`{"errorType","errorMessage"}`, as the `/error` endpoint takes it) in base64.
fn failure(error: &Error) -> HeaderMap {
    tracing::error!(error = %error, "the streamed answer broke off");
    let diagnostic = Diagnostic {
        error_type: "Runtime.StreamError".into(),
        error_message: error.to_string(),
    };
    let document = serde_json::to_vec(&diagnostic).unwrap_or_default();
    let mut trailers = HeaderMap::new();
    trailers.insert(ERROR_TYPE, HeaderValue::from_static("Runtime.StreamError"));
    trailers.insert(
        ERROR_BODY,
        header_value(&base64::engine::general_purpose::STANDARD.encode(document)),
    );
    trailers
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use futures::stream;
    use http::StatusCode;

    use super::*;

    fn prelude() -> MetadataPrelude {
        MetadataPrelude {
            status_code: StatusCode::OK,
            ..Default::default()
        }
    }

    /// Every frame the body has ready now, without waiting: what hyper writes in one go.
    fn ready_frames(body: &mut Body) -> (Vec<Frame<Bytes>>, bool) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut frames = Vec::new();
        loop {
            match http_body::Body::poll_frame(Pin::new(&mut *body), &mut cx) {
                Poll::Ready(Some(frame)) => frames.push(frame.unwrap()),
                Poll::Ready(None) => return (frames, true),
                Poll::Pending => return (frames, false),
            }
        }
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_leaves_with_the_prelude_and_the_end_in_one_write() {
        let body = stream::iter([Ok(Bytes::from_static(b"{\"data\":[]}"))]).boxed();
        let mut body = request("/answer", prelude(), body).await.unwrap().into_body();
        let (frames, ended) = ready_frames(&mut body);
        assert!(ended, "the end of the body was not ready with its last chunk");
        let data: Vec<&Bytes> = frames.iter().map(|f| f.data_ref().unwrap()).collect();
        assert_eq!(data.len(), 3, "the prelude, its separator, then the body");
        assert_eq!(data[1], &Bytes::from_static(&[0; 8]));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(data[0]).unwrap(),
            serde_json::json!({
                "statusCode": 200,
                "headers": {"content-type": "application/octet-stream"},
                "cookies": [],
            })
        );
        assert_eq!(data[2], &Bytes::from_static(b"{\"data\":[]}"));
    }

    #[tokio::test]
    async fn the_request_waits_for_the_first_chunk_and_later_chunks_go_as_they_come() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, Error>>();
        tx.unbounded_send(Ok(Bytes::from_static(b"first"))).unwrap();
        let mut body = request("/answer", prelude(), rx.boxed()).await.unwrap().into_body();
        let (frames, ended) = ready_frames(&mut body);
        assert_eq!(frames.len(), 3, "prelude, separator and first chunk");
        assert!(!ended);
        tx.unbounded_send(Ok(Bytes::from_static(b"second"))).unwrap();
        drop(tx);
        let (frames, ended) = ready_frames(&mut body);
        assert_eq!(frames[0].data_ref().unwrap(), &Bytes::from_static(b"second"));
        assert!(ended);
    }

    #[tokio::test]
    async fn a_body_that_fails_midway_ends_with_the_error_trailers() {
        let body = stream::iter([
            Ok(Bytes::from_static(b"part")),
            Err(Error::from("the database went away")),
        ])
        .boxed();
        let mut body = request("/answer", prelude(), body).await.unwrap().into_body();
        let (frames, ended) = ready_frames(&mut body);
        assert!(ended);
        let trailers = frames.last().unwrap().trailers_ref().unwrap();
        assert_eq!(trailers[ERROR_TYPE], "Runtime.StreamError");
        let document = base64::engine::general_purpose::STANDARD
            .decode(trailers[ERROR_BODY].as_bytes())
            .unwrap();
        let document: serde_json::Value = serde_json::from_slice(&document).unwrap();
        assert_eq!(document["errorType"], "Runtime.StreamError");
        assert_eq!(document["errorMessage"], "the database went away");
    }
}
