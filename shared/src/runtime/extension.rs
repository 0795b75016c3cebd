//! An internal extension, registered through the Extensions API on the same kind of connection
//! as the runtime loop (`TCP_NODELAY`). The lambda-extension crate would open its own, with
//! Nagle's algorithm on and no way to change it; what it would do for us is two requests.

use http::Method;
use lambda_http::Error;
use lambda_runtime_api_client::PooledClient;
use lambda_runtime_api_client::body::Body;

const NAME: &str = "lambda-extension-name";
const IDENTIFIER: &str = "lambda-extension-identifier";

/// An extension Lambda knows about; it must then ask for its next event ([`Self::run`]) for
/// the init phase to end.
pub struct RegisteredExtension {
    api: PooledClient,
    id: String,
}

/// Registers an internal extension named `name` that subscribes to `events` (`INVOKE`,
/// `SHUTDOWN`; an internal extension may subscribe to neither) with the Extensions API of
/// `AWS_LAMBDA_RUNTIME_API`.
pub async fn register_extension(name: &str, events: &[&str]) -> Result<RegisteredExtension, Error> {
    let endpoint = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set")?;
    let api = super::api_client(&endpoint)?;
    let request = lambda_runtime_api_client::build_request()
        .method(Method::POST)
        .uri("/2020-01-01/extension/register")
        .header(NAME, name)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(
            &serde_json::json!({ "events": events }),
        )?))?;
    let reply = super::call(&api, request)
        .await?
        .success(&format!("registering {name}"))?;
    let id = reply
        .headers
        .get(IDENTIFIER)
        .and_then(|id| id.to_str().ok())
        .ok_or("the registration answered no extension identifier")?
        .to_owned();
    Ok(RegisteredExtension { api, id })
}

impl RegisteredExtension {
    /// Asks for events until the Extensions API refuses; each event is read and dropped (the
    /// function's own handling of SIGTERM does the work, see `shutdown`).
    pub async fn run(self) -> Result<(), Error> {
        loop {
            let request = lambda_runtime_api_client::build_request()
                .method(Method::GET)
                .uri("/2020-01-01/extension/event/next")
                .header(IDENTIFIER, &self.id)
                .body(Body::empty())?;
            super::call(&self.api, request).await?.success("GET event/next")?;
        }
    }
}
