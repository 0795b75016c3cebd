//! The enrichment service over HTTP (contract: infra/enrichment-openapi.yaml).
//!
//! `POST {ENRICHMENT_URL}/v1/metadata:batchGet` with `{"assets":[{"id","type"},…]}`, the API
//! key in `X-API-Key` and the request id in `X-Request-ID`; the answer is
//! `{"metadata":{"<id>":{…},…}}`, with no entry for an asset the service does not know.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::ports::{AssetRef, EnrichmentClient, FetchError, Metadata};
use crate::secrets::Secret;

pub struct HttpEnrichmentClient {
    client: reqwest::Client,
    url: String,
    api_key: Secret,
}

impl HttpEnrichmentClient {
    /// One client per cold start: its connection pool keeps connections to the service open
    /// across invocations of a warm instance.
    pub fn new(base_url: &str, api_key: Secret) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // reqwest's default too; said here because a Nagle stall would cost a batch up to
            // 40 ms of its deadline (shared/tests/nodelay.rs checks it).
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            client,
            url: format!("{}/v1/metadata:batchGet", base_url.trim_end_matches('/')),
            api_key,
        })
    }
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    assets: &'a [AssetRef],
}

#[derive(Deserialize)]
struct BatchResponse {
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn failed(reason: impl Into<String>, retriable: bool) -> FetchError {
    FetchError {
        reason: reason.into(),
        retriable,
    }
}

#[async_trait]
impl EnrichmentClient for HttpEnrichmentClient {
    async fn fetch(&self, assets: &[AssetRef], request_id: &str, timeout: Duration) -> Result<Metadata, FetchError> {
        let call = async {
            let key = self
                .api_key
                .get()
                .await
                .map_err(|e| failed(format!("reading the enrichment API key: {e:#}"), false))?;
            let response = self
                .client
                .post(&self.url)
                .header("x-api-key", key.value.expose_secret())
                .header("x-request-id", request_id)
                .json(&BatchRequest { assets })
                .send()
                .await
                .map_err(|e| failed(format!("calling the enrichment service: {e}"), true))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                // After a rotation of the key: worth one more attempt only with a newer key.
                let rotated = self.api_key.refused(&key.version_id).await;
                return Err(failed(
                    format!("the enrichment service refused the API key ({status})"),
                    rotated,
                ));
            }
            if !status.is_success() {
                let retriable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                return Err(failed(format!("the enrichment service answered {status}"), retriable));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| failed(format!("reading the enrichment answer: {e}"), true))?;
            let parsed: BatchResponse = serde_json::from_slice(&body)
                .map_err(|e| failed(format!("the enrichment answer is not the agreed JSON: {e}"), false))?;
            Ok(parsed
                .metadata
                .into_iter()
                .filter(|(_, value)| value.is_object())
                .collect())
        };
        // The whole exchange, a body that stops midway included.
        tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
            Err(failed(
                format!("no full answer within {} ms", timeout.as_millis()),
                true,
            ))
        })
    }
}
