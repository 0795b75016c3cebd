//! The favorites cache as the use cases see it: optional, bounded in time, and failing open.
//!
//! Every call goes through [`CacheGuard`]: a failure (Redis down, slow, or answering
//! something we cannot read) is logged as a warning, counted, and turned into "no answer",
//! so the request goes on against the database. After a failure the cache is left alone for
//! [`COOL_DOWN`], so a Redis that hangs costs one timeout per instance per cool-down, not one
//! per call. Skipping writes is safe: a change that did not reach the cache leaves its entry
//! at an older version, which no reader will take (see `ports::FavoriteCache`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::{Favorite, FavoriteId, UserId};
use crate::metrics::{self, Counter};
use crate::ports::{
    CacheChange, CachedEnrichment, CachedPage, EnrichmentCache, FavoriteCache, FavoritesVersion, FillTicket, ListQuery,
    ListedFavorite,
};

/// How long the cache is bypassed after a failure.
pub const COOL_DOWN: Duration = Duration::from_secs(1);

/// What the cache did in this instance, for logs and tests. The same events are recorded as
/// metrics where they are counted: `CacheHit`, `CacheMiss`, and `CacheFailOpen` for both a
/// failure and a bypass (either way the request went on without the cache).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Calls that failed (error or timeout) and were answered from the database instead.
    pub failures: AtomicU64,
    /// Calls not made because the cache was cooling down after a failure.
    pub bypassed: AtomicU64,
}

impl CacheStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct CacheGuard {
    cache: Arc<dyn FavoriteCache>,
    enrichments: Arc<dyn EnrichmentCache>,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` until which the cache is bypassed.
    cool_until_ms: AtomicU64,
    pub stats: CacheStats,
}

impl CacheGuard {
    /// `timeout` bounds each call as a whole (connecting included).
    pub fn new<C: FavoriteCache + EnrichmentCache + 'static>(cache: Arc<C>, timeout: Duration) -> Self {
        Self {
            cache: cache.clone(),
            enrichments: cache,
            timeout,
            started: Instant::now(),
            cool_until_ms: AtomicU64::new(0),
            stats: CacheStats::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn call<T>(&self, what: &'static str, call: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
        if self.now_ms() < self.cool_until_ms.load(Ordering::Relaxed) {
            self.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            metrics::increment(Counter::CacheFailOpen);
            return None;
        }
        let error = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => format!("{error:#}"),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        metrics::increment(Counter::CacheFailOpen);
        let cool_down = u64::try_from(COOL_DOWN.as_millis()).unwrap_or(u64::MAX);
        self.cool_until_ms
            .store(self.now_ms().saturating_add(cool_down), Ordering::Relaxed);
        tracing::warn!(
            cache_call = what,
            error,
            "the favorites cache failed; answering from the database"
        );
        None
    }

    /// Reads the page `query` selects, whatever version the entry is at (the caller reads the
    /// database's version at the same time and passes both to [`Self::page_if_current`]).
    pub async fn peek(&self, user: UserId, query: &ListQuery) -> Option<CachedPage> {
        self.call("page", self.cache.page(user, query)).await.flatten()
    }

    /// The page's rows when the entry was at `current` (the database's version) or later, and
    /// counts the hit or miss.
    pub fn page_if_current(&self, page: Option<CachedPage>, current: FavoritesVersion) -> Option<Vec<ListedFavorite>> {
        match page {
            Some(page) if page.version >= current => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                metrics::increment(Counter::CacheHit);
                Some(page.rows)
            }
            _ => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                metrics::increment(Counter::CacheMiss);
                None
            }
        }
    }

    pub async fn added(&self, user: UserId, version: FavoritesVersion, favorite: &Favorite) {
        self.write(user, version, favorite, true).await;
    }

    pub async fn updated(&self, user: UserId, version: FavoritesVersion, favorite: &Favorite) {
        self.write(user, version, favorite, false).await;
    }

    pub async fn removed(&self, user: UserId, version: FavoritesVersion, id: &FavoriteId) {
        self.call("remove", self.cache.apply(user, version, CacheChange::Removed(id)))
            .await;
    }

    /// Drops the user's entry: their account was deleted (after the commit). When Redis fails,
    /// the entry stays until it expires, read by nobody: the user's tokens are refused, and a
    /// user id is never given again.
    pub async fn forget(&self, user: UserId) {
        self.call("forget", self.cache.forget(user)).await;
    }

    async fn write(&self, user: UserId, version: FavoritesVersion, favorite: &Favorite, added: bool) {
        let row = match ListedFavorite::from_favorite(favorite) {
            Ok(row) => row,
            Err(error) => {
                // Cannot happen for a valid favorite; if it did, no reader may trust the entry.
                tracing::error!(
                    error = format!("{error:#}"),
                    "a favorite did not serialise for the cache"
                );
                return;
            }
        };
        let change = if added {
            CacheChange::Added(&row)
        } else {
            CacheChange::Updated(&row)
        };
        self.call("write", self.cache.apply(user, version, change)).await;
    }

    pub async fn start_fill(&self, user: UserId, version: FavoritesVersion) -> Option<FillTicket> {
        self.call("start_fill", self.cache.start_fill(user, version))
            .await
            .flatten()
    }

    /// Appends rows; `false` when filling must stop (including after a failure).
    pub async fn fill(&self, user: UserId, ticket: &FillTicket, rows: &[ListedFavorite], end_of_list: bool) -> bool {
        self.call("fill", self.cache.fill(user, ticket, rows, end_of_list))
            .await
            .unwrap_or(false)
    }

    /// Fresh cached enrichments of these assets (none when the cache fails).
    pub async fn enrichments(&self, user: UserId, ids: &[String]) -> HashMap<String, CachedEnrichment> {
        self.call("enrichments", self.enrichments.enrichments(user, ids))
            .await
            .unwrap_or_default()
    }

    pub async fn remember_enrichments(&self, user: UserId, entries: &[(String, CachedEnrichment)]) {
        self.call(
            "remember_enrichments",
            self.enrichments.remember_enrichments(user, entries),
        )
        .await;
    }

    pub fn max_items(&self) -> usize {
        self.cache.max_items()
    }
}
