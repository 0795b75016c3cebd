//! The baseline of `make bench-coldstart`: a bare `lambda_http` function that answers 200
//! "hello" to any API Gateway request. It has the runtime, tokio and the HTTP event types the
//! real functions have, and nothing else (no logging set-up, no configuration, no clients), so
//! what a function costs beyond it is what `shared` adds.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(hello)).await
}

async fn hello(_: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from("hello"))?)
}
