//! Custom metrics: the name, unit and meaning of every metric the functions emit, in one
//! place, and the calls the rest of the code records them with.
//!
//! Recording goes through the `metrics` facade, which does nothing until a recorder is
//! installed: use cases, in-process tests and tools pay nothing and depend on no metrics
//! technology. Each function installs the CloudWatch Embedded Metric Format recorder at cold
//! start ([`crate::adapters::emf`]), which prints metrics as JSON lines on stdout; CloudWatch
//! Logs turns them into metrics in [`NAMESPACE`] with one dimension, [`DIMENSION`]: the
//! function's name. Never a dimension per user or per request: each distinct value is a metric
//! of its own, billed monthly.
//!
//! Metrics leave the process only when [`flush`]ed: the request layer (`http::observe`) does
//! it when a response body ends, before Lambda may freeze the instance, and the shutdown hook
//! (`shutdown`) does it once more on SIGTERM.
//!
//! `template.yaml`'s dashboard and alarms use these names; `tests/tests/lifecycle.rs` checks
//! that every one they use is printed by its function, and that every printed one is shown.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The CloudWatch namespace of every custom metric.
pub const NAMESPACE: &str = "Favorites";
/// The one dimension: the function's name (`AWS_LAMBDA_FUNCTION_NAME`).
pub const DIMENSION: &str = "function";

/// Declares a metric enum whose variants are the metric names: `ALL` lists every variant and
/// `name()` is the variant's identifier, so neither can drift from the enum.
macro_rules! metric_names {
    ($(#[doc = $what:literal])* pub enum $enum:ident { $($(#[doc = $doc:literal])+ $variant:ident,)+ }) => {
        $(#[doc = $what])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $enum {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];

            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => stringify!($variant),)+
                }
            }
        }
    };
}

metric_names! {
    /// Metrics summed over a flush: one number per function instance and invocation.
    pub enum Counter {
        /// 1 when a function instance starts (counted at cold start, sent with its first answer).
        ColdStart,
        /// A list page served from the cache.
        CacheHit,
        /// A list page the cache did not hold at the current version (or could not be asked
        /// for), so the database served it.
        CacheMiss,
        /// A cache call that failed (an error or no answer in time) or was skipped while the
        /// cache cools down after a failure: the request went on without the cache.
        CacheFailOpen,
        /// A password check failed: a login with a wrong password or an unknown email, or a
        /// `DELETE /me` with a wrong password (throttled ones not counted).
        LoginFailures,
        /// A login or a `DELETE /me` refused with 429 because its email or address had too many
        /// failures.
        LoginThrottled,
        /// A write answered with the stored answer to an earlier request with the same
        /// Idempotency-Key.
        IdempotentReplays,
    }
}

metric_names! {
    /// Metrics with one value per event, kept individually (so that CloudWatch can give
    /// percentiles and averages), at most [`MAX_VALUES`] per flush each.
    pub enum Distribution {
        /// Milliseconds one call to the enrichment service took, failed and timed-out calls
        /// included.
        EnrichmentLatency,
        /// One value per enriched list: 1 when the enrichment circuit was open for it (some or
        /// all of the list went out without enrichment because the service had been failing),
        /// else 0. Its average is the share of lists that found the circuit open.
        EnrichmentBreakerOpen,
        /// One value per streamed list: the favorites it sent.
        StreamedItems,
    }
}

/// The most values of one metric one EMF document may carry.
pub const MAX_VALUES: usize = 100;

/// A metric's unit, as CloudWatch knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Distribution {
    pub const fn unit(self) -> Unit {
        match self {
            Self::EnrichmentLatency => Unit::Milliseconds,
            Self::EnrichmentBreakerOpen | Self::StreamedItems => Unit::Count,
        }
    }
}

/// Counts one event.
pub fn increment(counter: Counter) {
    metrics::counter!(counter.name()).increment(1);
}

/// Records one value. A metric that already holds [`MAX_VALUES`] values since the last flush
/// is flushed first (a list with many enrichment calls), so that no value is dropped.
pub fn record(distribution: Distribution, value: f64) {
    let pending = &PENDING[distribution as usize];
    if pending.fetch_add(1, Ordering::Relaxed) >= MAX_VALUES {
        flush();
        pending.store(1, Ordering::Relaxed);
    }
    metrics::histogram!(distribution.name()).record(value);
}

/// Values recorded per distribution since the last flush.
static PENDING: [AtomicUsize; Distribution::ALL.len()] = [const { AtomicUsize::new(0) }; Distribution::ALL.len()];

/// What writes the recorded metrics out: installed by the recorder's adapter.
static FLUSH: OnceLock<fn()> = OnceLock::new();

/// Installs what [`flush`] calls; the first installation wins.
pub fn set_flush(flush: fn()) {
    let _ = FLUSH.set(flush);
}

/// Writes out what was recorded since the last flush (nothing without a recorder).
pub fn flush() {
    for pending in &PENDING {
        pending.store(0, Ordering::Relaxed);
    }
    if let Some(flush) = FLUSH.get() {
        flush();
    }
}

/// Every metric name, counters first.
pub fn names() -> impl Iterator<Item = &'static str> {
    Counter::ALL
        .iter()
        .map(|c| c.name())
        .chain(Distribution::ALL.iter().map(|d| d.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_its_own_name() {
        let mut names: Vec<_> = names().collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
        assert_eq!(count, Counter::ALL.len() + Distribution::ALL.len());
    }
}
