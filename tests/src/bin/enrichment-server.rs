//! The fake enrichment service as a process, for `make run` and the benchmarks:
//!
//!     enrichment-server [PORT]        (default 9200; API key from ENRICHMENT_API_KEY)
//!
//! Starts healthy with ENRICHMENT_LATENCY_MS (default 0) of latency; change its behaviour at
//! run time with e.g. `curl -X PUT localhost:9200/control -d '{"mode":"status","status":503}'`
//! (modes: healthy {latency_ms}, status {status}, malformed, partial, hang_mid_body).

use e2e::enrichment_server::{FakeEnrichment, Mode};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(9200), |p| p.parse())?;
    let api_key = std::env::var("ENRICHMENT_API_KEY").unwrap_or_else(|_| "local-enrichment-key".into());
    let latency_ms = std::env::var("ENRICHMENT_LATENCY_MS").map_or(Ok(0), |v| v.parse())?;
    let fake = FakeEnrichment::new(&api_key, Mode::Healthy { latency_ms });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("enrichment-server: http://127.0.0.1:{port} (healthy, {latency_ms} ms latency)");
    axum::serve(listener, fake.router()).await?;
    Ok(())
}
