//! The streaming baseline of `make bench-latency`: upstream `lambda_http`'s
//! `run_with_streaming_response` (lambda_runtime's own poll loop and client, which leave Nagle's
//! algorithm on), answering any API Gateway request with 200 and `bytes` bytes of JSON-ish text
//! (query string, default 4096) in `chunks` pieces (default 4), as a streamed page is written.
//! Nothing else: no database, no configuration, so what it costs is the runtime's streaming.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use lambda_http::{Error, Request, RequestExt, Response, run_with_streaming_response, service_fn};

type Chunks = futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_with_streaming_response(service_fn(stream)).await
}

async fn stream(request: Request) -> Result<Response<StreamBody<Chunks>>, Error> {
    let query = request.query_string_parameters();
    let number = |name: &str, default: usize| query.first(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (bytes, chunks) = (number("bytes", 4096), number("chunks", 4).max(1));
    let body = vec![b'x'; bytes];
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
        .chunks(bytes.div_ceil(chunks).max(1))
        .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
        .collect();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(futures::stream::iter(frames)))?)
}
