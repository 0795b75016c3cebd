//! Enriching a list while it streams: listed favorites get an `enrichment` member (the API
//! contract's name, infra/openapi.yaml) with what the enrichment service knows of the asset,
//! fetched in batches, several batches in flight, order preserved.
//!
//! The service is outside our control, so every call is bounded: a per-call timeout, a
//! deadline for the whole request (past it, the rest of the list goes out as it is), retries
//! with exponential backoff and full jitter only for retriable failures and only while the
//! deadline allows, and a circuit breaker that opens after consecutive failures (a dead
//! service then costs nothing), lets one probe through after a while, and closes on success.
//! A failure never fails the list: the batch goes out without metadata.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;

use super::cache::CacheGuard;
use crate::domain::UserId;
use crate::metrics::{self, Distribution};
use crate::ports::{AssetRef, CachedEnrichment, EnrichmentClient, FavoriteStream, ListedFavorite, Metadata};

#[derive(Debug, Clone)]
pub struct EnrichmentPolicy {
    /// Favorites per call.
    pub batch: usize,
    /// Calls in flight per request: a slow service slows the stream, it never buffers it.
    pub in_flight: usize,
    /// Bound on one call, body included.
    pub call_timeout: Duration,
    /// Bound on all enrichment of one request, from its start.
    pub deadline: Duration,
    /// Attempts after the first, for retriable failures.
    pub retries: u32,
    /// First backoff; doubles per attempt, full jitter.
    pub backoff: Duration,
    /// Consecutive failed calls that open the circuit.
    pub breaker_failures: u32,
    /// How long the circuit stays open before one probe is let through.
    pub breaker_open_for: Duration,
}

/// The production defaults (each overridable by its `ENRICHMENT_*` variable).
impl Default for EnrichmentPolicy {
    fn default() -> Self {
        Self {
            batch: 50,
            in_flight: 4,
            call_timeout: Duration::from_millis(300),
            deadline: Duration::from_secs(1),
            retries: 2,
            backoff: Duration::from_millis(25),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(5),
        }
    }
}

/// What enrichment did in this instance, for logs and tests. Metrics are recorded per call
/// (`EnrichmentLatency`) and per request (`EnrichmentBreakerOpen`, see [`Request`]).
#[derive(Debug, Default)]
pub struct EnrichmentStats {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub retries: AtomicU64,
    /// Batches sent out without metadata because the circuit was open.
    pub short_circuited: AtomicU64,
    /// Batches sent out without metadata because the deadline had passed.
    pub past_deadline: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    failures: u32,
    opened_at: Option<Instant>,
    /// When the current half-open probe went out; a probe whose caller went away (the
    /// client hung up) counts as over once a call could have timed out.
    probe_started: Option<Instant>,
}

pub struct Enrichment {
    client: Box<dyn EnrichmentClient>,
    policy: EnrichmentPolicy,
    cache: Option<Arc<CacheGuard>>,
    breaker: Mutex<Breaker>,
    pub stats: EnrichmentStats,
}

impl Enrichment {
    /// With `cache`, results are kept beside the favorites (for `ENRICHMENT_CACHE_TTL_SECONDS`)
    /// and a warm list makes no call.
    pub fn new(client: Box<dyn EnrichmentClient>, policy: EnrichmentPolicy, cache: Option<Arc<CacheGuard>>) -> Self {
        Self {
            client,
            policy,
            cache,
            breaker: Mutex::new(Breaker {
                failures: 0,
                opened_at: None,
                probe_started: None,
            }),
            stats: EnrichmentStats::default(),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        let breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match breaker.opened_at {
            None => BreakerState::Closed,
            Some(at) if at.elapsed() >= self.policy.breaker_open_for => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// May a call go out now? Closed: yes. Open: no, until `breaker_open_for` has passed;
    /// then exactly one probe at a time.
    fn admit(&self) -> bool {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match breaker.opened_at {
            None => true,
            Some(at) if at.elapsed() >= self.policy.breaker_open_for => {
                let probe_over = breaker
                    .probe_started
                    .is_none_or(|started| started.elapsed() > self.policy.call_timeout);
                if probe_over {
                    breaker.probe_started = Some(Instant::now());
                }
                probe_over
            }
            Some(_) => false,
        }
    }

    fn record(&self, ok: bool) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let was_probe = breaker.probe_started.take().is_some();
        if ok {
            if breaker.opened_at.is_some() {
                tracing::info!("the enrichment service answered again; circuit closed");
            }
            breaker.failures = 0;
            breaker.opened_at = None;
            return;
        }
        breaker.failures = breaker.failures.saturating_add(1);
        if was_probe || (breaker.opened_at.is_none() && breaker.failures >= self.policy.breaker_failures) {
            if breaker.opened_at.is_none() {
                tracing::warn!(failures = breaker.failures, "enrichment circuit opened");
            }
            breaker.opened_at = Some(Instant::now());
        }
    }

    /// Metadata for one batch, or nothing: within the deadline, retrying what may succeed.
    async fn fetch(&self, assets: &[AssetRef], request: &Request) -> Option<Metadata> {
        let mut attempt = 0;
        loop {
            let left = request.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stats.past_deadline.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            if !self.admit() {
                self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
                request.short_circuited.store(true, Ordering::Relaxed);
                return None;
            }
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let answer = self
                .client
                .fetch(assets, &request.id, self.policy.call_timeout.min(left))
                .await;
            metrics::record(
                Distribution::EnrichmentLatency,
                started.elapsed().as_secs_f64() * 1000.0,
            );
            let error = match answer {
                Ok(metadata) => {
                    self.record(true);
                    return Some(metadata);
                }
                Err(error) => error,
            };
            self.record(false);
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            let backoff = {
                let ceiling = self.policy.backoff.saturating_mul(1 << attempt.min(16));
                ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
            };
            let retry = error.retriable && attempt < self.policy.retries && Instant::now() + backoff < request.deadline;
            tracing::warn!(
                error = %error.reason,
                attempt = attempt + 1,
                retry,
                "enrichment call failed; the batch goes out without metadata unless a retry succeeds"
            );
            if !retry {
                return None;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// The rows with metadata where the service had it, in the same order. At most
    /// `in_flight` batches are fetched at once, and only as the consumer pulls rows.
    pub fn enrich(self: &Arc<Self>, user: UserId, rows: FavoriteStream, request_id: String) -> FavoriteStream {
        let request = Arc::new(Request {
            id: request_id,
            deadline: Instant::now() + self.policy.deadline,
            short_circuited: AtomicBool::new(false),
        });
        if self.cache.is_none() && self.breaker_state() == BreakerState::Open {
            // The list goes out as it is, untouched: an open circuit costs nothing. (A circuit
            // that half-opens meanwhile is probed by the next request.)
            self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
            request.short_circuited.store(true, Ordering::Relaxed);
            return rows;
        }
        let this = self.clone();
        Box::pin(
            rows.chunks(self.policy.batch)
                .map(move |batch| {
                    let this = this.clone();
                    let request = request.clone();
                    async move { this.enrich_batch(user, batch, &request).await }
                })
                .buffered(self.policy.in_flight)
                .flat_map(futures::stream::iter),
        )
    }

    async fn enrich_batch(
        &self,
        user: UserId,
        batch: Vec<anyhow::Result<ListedFavorite>>,
        request: &Request,
    ) -> Vec<anyhow::Result<ListedFavorite>> {
        let assets: Vec<AssetRef> = batch.iter().flatten().filter_map(asset_ref).collect();
        if assets.is_empty() {
            return batch;
        }
        let metadata = self.metadata(user, assets, request).await;
        batch
            .into_iter()
            .map(|row| {
                row.map(|mut row| {
                    if let Some(meta) = metadata.get(&row.position.id) {
                        row.json = with_metadata(&row.json, meta);
                    }
                    row
                })
            })
            .collect()
    }
}

impl Enrichment {
    /// Metadata for the assets: from the cache where it holds a fresh answer, from the
    /// service for the rest (and then remembered, answers of "nothing" included).
    async fn metadata(&self, user: UserId, assets: Vec<AssetRef>, request: &Request) -> Metadata {
        let Some(cache) = &self.cache else {
            return self.fetch(&assets, request).await.unwrap_or_default();
        };
        let ids: Vec<String> = assets.iter().map(|asset| asset.id.clone()).collect();
        let cached = cache.enrichments(user, &ids).await;
        let mut metadata: Metadata = cached
            .iter()
            .filter_map(|(id, entry)| Some((id.clone(), entry.clone()?)))
            .collect();
        let missing: Vec<AssetRef> = assets
            .into_iter()
            .filter(|asset| !cached.contains_key(&asset.id))
            .collect();
        if missing.is_empty() {
            return metadata;
        }
        if let Some(fetched) = self.fetch(&missing, request).await {
            let entries: Vec<(String, CachedEnrichment)> = missing
                .iter()
                .map(|asset| (asset.id.clone(), fetched.get(&asset.id).cloned()))
                .collect();
            cache.remember_enrichments(user, &entries).await;
            metadata.extend(fetched);
        }
        metadata
    }
}

/// One list request's enrichment, shared by its batches.
struct Request {
    /// The request's id, sent with each call so that the service's logs and ours can be joined.
    id: String,
    /// All of this request's calls end by then.
    deadline: Instant,
    /// Whether some of the list went out without metadata because the circuit was open.
    short_circuited: AtomicBool,
}

impl Drop for Request {
    /// Dropped with the list's stream (sent whole, or abandoned): one `EnrichmentBreakerOpen`
    /// value per enriched list.
    fn drop(&mut self) {
        let open = self.short_circuited.load(Ordering::Relaxed);
        metrics::record(Distribution::EnrichmentBreakerOpen, if open { 1.0 } else { 0.0 });
    }
}

/// The id and type of a listed favorite, read from its JSON.
fn asset_ref(row: &ListedFavorite) -> Option<AssetRef> {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let kind: Kind = serde_json::from_str(&row.json).ok()?;
    Some(AssetRef {
        id: row.position.id.clone(),
        kind: kind.kind.into_owned(),
    })
}

/// `{…}` becomes `{…,"enrichment":{…}}`: the row is already JSON and is not re-serialised.
fn with_metadata(json: &str, metadata: &serde_json::Value) -> String {
    let body = json.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        return json.to_string();
    };
    let separator = if open.trim_end().ends_with('{') { "" } else { "," };
    format!("{open}{separator}\"enrichment\":{metadata}}}")
}

#[cfg(test)]
mod tests;
