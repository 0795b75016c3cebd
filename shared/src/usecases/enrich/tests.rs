//! The enrichment policy under paused tokio time: backoff, deadline and circuit breaker are
//! checked to the millisecond, with no wall-clock sleep. The service is a scripted client (the
//! enrichment service is outside our system); the HTTP adapter's own faults (refused
//! connections, hung bodies, malformed answers) are `shared/tests/integration/enrichment.rs`'s.

use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use futures::stream;

use super::*;
use crate::ports::{FetchError, ListPosition};

#[test]
fn metadata_is_spliced_into_the_row() {
    let meta = serde_json::json!({"owner": "x"});
    assert_eq!(
        with_metadata(r#"{"id":"a"}"#, &meta),
        r#"{"id":"a","enrichment":{"owner":"x"}}"#
    );
    assert_eq!(with_metadata("{}", &meta), r#"{"enrichment":{"owner":"x"}}"#);
}

/// How the scripted service answers a call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Metadata for every asset, after this long.
    Healthy(Duration),
    /// A failure, at once: retriable (a 503) or not (a malformed body).
    Fails { retriable: bool },
}

/// The enrichment service, scripted: every call answers as `answer` says now, within the
/// timeout it is given (like the HTTP adapter, a slow answer is a retriable timeout).
struct Scripted {
    answer: StdMutex<Answer>,
    /// When each call started (paused time).
    calls: StdMutex<Vec<Instant>>,
}

#[async_trait]
impl EnrichmentClient for Arc<Scripted> {
    async fn fetch(&self, assets: &[AssetRef], _request_id: &str, timeout: Duration) -> Result<Metadata, FetchError> {
        self.calls.lock().unwrap().push(Instant::now());
        let answer = *self.answer.lock().unwrap();
        match answer {
            Answer::Healthy(latency) => {
                if latency > timeout {
                    tokio::time::sleep(timeout).await;
                    return Err(FetchError {
                        reason: "timed out".into(),
                        retriable: true,
                    });
                }
                tokio::time::sleep(latency).await;
                Ok(assets
                    .iter()
                    .map(|asset| (asset.id.clone(), serde_json::json!({"owner": "someone"})))
                    .collect())
            }
            Answer::Fails { retriable } => Err(FetchError {
                reason: "scripted failure".into(),
                retriable,
            }),
        }
    }
}

struct Service {
    enrichment: Arc<Enrichment>,
    client: Arc<Scripted>,
}

impl Service {
    fn new(answer: Answer, policy: EnrichmentPolicy) -> Self {
        let client = Arc::new(Scripted {
            answer: StdMutex::new(answer),
            calls: StdMutex::new(Vec::new()),
        });
        Self {
            enrichment: Arc::new(Enrichment::new(Box::new(client.clone()), policy, None)),
            client,
        }
    }

    /// From now on, the service answers this way.
    fn answer(&self, answer: Answer) {
        *self.client.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> Vec<Instant> {
        self.client.calls.lock().unwrap().clone()
    }

    /// Lists `n` favorites through enrichment: how many came out enriched, and how long the
    /// list took (paused time).
    async fn list(&self, n: usize) -> (usize, Duration) {
        let started = Instant::now();
        let rows: Vec<_> = self
            .enrichment
            .enrich(UserId::generate(), favorites(n), "req-1".into())
            .collect()
            .await;
        assert_eq!(rows.len(), n, "every favorite is listed, enriched or not");
        let enriched = rows
            .into_iter()
            .filter(|row| row.as_ref().unwrap().json.contains("\"enrichment\""))
            .count();
        (enriched, started.elapsed())
    }
}

fn favorites(n: usize) -> FavoriteStream {
    let rows: Vec<anyhow::Result<ListedFavorite>> = (0..n)
        .map(|i| {
            Ok(ListedFavorite {
                position: ListPosition {
                    created_at: chrono::Utc::now(),
                    id: format!("a{i}"),
                },
                json: format!(r#"{{"id":"a{i}","type":"chart"}}"#),
            })
        })
        .collect();
    Box::pin(stream::iter(rows))
}

fn policy() -> EnrichmentPolicy {
    EnrichmentPolicy {
        batch: 10,
        in_flight: 1,
        breaker_failures: 1_000,
        ..EnrichmentPolicy::default()
    }
}

fn gaps(calls: &[Instant]) -> Vec<Duration> {
    calls.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_with_full_jitter() {
    let policy = EnrichmentPolicy {
        retries: 3,
        backoff: Duration::from_millis(100),
        deadline: Duration::from_secs(60),
        ..policy()
    };
    let ceilings = [100, 200, 400].map(Duration::from_millis);
    let mut longest = [Duration::ZERO; 3];
    // Full jitter draws each backoff from [0, ceiling]: over 200 lists, the longest wait before
    // each retry comes close to its ceiling, and none exceeds it.
    for _ in 0..200 {
        let service = Service::new(Answer::Fails { retriable: true }, policy.clone());
        let (enriched, _) = service.list(10).await;
        assert_eq!(enriched, 0);
        let gaps = gaps(&service.calls());
        assert_eq!(gaps.len(), 3, "the first call and three retries");
        for (i, gap) in gaps.into_iter().enumerate() {
            assert!(
                gap <= ceilings[i],
                "retry {}: waited {gap:?}, above {:?}",
                i + 1,
                ceilings[i]
            );
            longest[i] = longest[i].max(gap);
        }
    }
    for (i, longest) in longest.into_iter().enumerate() {
        assert!(
            longest >= ceilings[i].mul_f64(0.9),
            "retry {}: the longest wait was {longest:?}, the ceiling doubles to {:?}",
            i + 1,
            ceilings[i]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn failures_that_would_repeat_are_not_retried() {
    let service = Service::new(Answer::Fails { retriable: false }, policy());
    let (enriched, elapsed) = service.list(10).await;
    assert_eq!((enriched, service.calls().len()), (0, 1));
    assert_eq!(elapsed, Duration::ZERO, "no backoff either");
    assert_eq!(service.enrichment.stats.retries.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_service_costs_the_deadline_and_no_more() {
    let policy = EnrichmentPolicy {
        in_flight: 4,
        ..policy()
    };
    let service = Service::new(Answer::Healthy(Duration::from_secs(10)), policy.clone());
    let (enriched, elapsed) = service.list(200).await;
    assert_eq!(enriched, 0);
    assert!(
        elapsed <= policy.deadline,
        "the list took {elapsed:?}, past the {:?} deadline",
        policy.deadline
    );
    let calls = service.calls();
    assert!(
        calls.iter().all(|call| *call - calls[0] < policy.deadline),
        "no call starts past the deadline"
    );
    assert!(service.enrichment.stats.past_deadline.load(Ordering::Relaxed) > 0);
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_made_whose_backoff_ends_past_the_deadline() {
    let policy = EnrichmentPolicy {
        retries: 100,
        backoff: Duration::from_millis(100),
        deadline: Duration::from_millis(1_000),
        ..policy()
    };
    for _ in 0..50 {
        let service = Service::new(Answer::Fails { retriable: true }, policy.clone());
        let (_, elapsed) = service.list(10).await;
        // By the deadline at the latest (a sleep ends on a millisecond tick, so exactly on it).
        assert!(elapsed <= policy.deadline, "gave up at {elapsed:?}, past the deadline");
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_circuit_and_an_open_circuit_costs_nothing() {
    let policy = EnrichmentPolicy {
        retries: 0,
        breaker_failures: 3,
        ..policy()
    };
    let service = Service::new(Answer::Fails { retriable: true }, policy);
    service.list(20).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Closed, "two failures");
    service.list(10).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Open, "the third");
    let calls = service.calls().len();
    service.answer(Answer::Healthy(Duration::from_millis(5)));
    let (enriched, elapsed) = service.list(100).await;
    assert_eq!((enriched, elapsed), (0, Duration::ZERO));
    assert_eq!(service.calls().len(), calls, "no call while open");

    // A success between failures starts the count again.
    let service = Service::new(Answer::Fails { retriable: true }, service.enrichment.policy.clone());
    service.list(20).await;
    service.answer(Answer::Healthy(Duration::ZERO));
    service.list(10).await;
    service.answer(Answer::Fails { retriable: true });
    service.list(20).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn after_its_open_period_one_probe_at_a_time_and_success_closes_the_circuit() {
    let policy = EnrichmentPolicy {
        retries: 0,
        breaker_failures: 1,
        in_flight: 4,
        ..policy()
    };
    let service = Service::new(Answer::Fails { retriable: true }, policy.clone());
    service.list(10).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Open);

    tokio::time::advance(policy.breaker_open_for - Duration::from_millis(1)).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::HalfOpen);

    // Four batches at once: one is the probe, the three beside it go out without metadata.
    service.answer(Answer::Healthy(Duration::from_millis(50)));
    let calls = service.calls().len();
    let (enriched, _) = service.list(40).await;
    assert_eq!(service.calls().len(), calls + 1, "one probe");
    assert_eq!(enriched, 10, "the probe's batch");
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Closed);
    let (enriched, _) = service.list(40).await;
    assert_eq!(enriched, 40, "closed: everything is enriched");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_circuit_for_another_period() {
    let policy = EnrichmentPolicy {
        retries: 0,
        breaker_failures: 2,
        ..policy()
    };
    let service = Service::new(Answer::Fails { retriable: true }, policy.clone());
    service.list(20).await;
    tokio::time::advance(policy.breaker_open_for).await;
    let calls = service.calls().len();
    service.list(10).await;
    assert_eq!(service.calls().len(), calls + 1, "the probe");
    assert_eq!(
        service.enrichment.breaker_state(),
        BreakerState::Open,
        "one failed probe is enough, not breaker_failures"
    );
    tokio::time::advance(policy.breaker_open_for - Duration::from_millis(1)).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(service.enrichment.breaker_state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_caller_hung_up_is_over_once_a_call_could_have_timed_out() {
    let policy = EnrichmentPolicy {
        retries: 0,
        breaker_failures: 1,
        ..policy()
    };
    let service = Service::new(Answer::Fails { retriable: true }, policy.clone());
    service.list(10).await;
    tokio::time::advance(policy.breaker_open_for).await;

    // The probe goes out, then its list is dropped (the client hung up) before it answers.
    service.answer(Answer::Healthy(Duration::from_secs(60)));
    let mut abandoned = service
        .enrichment
        .enrich(UserId::generate(), favorites(10), "req-gone".into());
    let calls = service.calls().len();
    assert!(
        tokio::time::timeout(Duration::from_millis(10), abandoned.next())
            .await
            .is_err()
    );
    assert_eq!(service.calls().len(), calls + 1, "the probe is out");
    drop(abandoned);

    // Until a call could have timed out, no other probe; after that, the next list probes.
    service.answer(Answer::Healthy(Duration::ZERO));
    let (enriched, _) = service.list(10).await;
    assert_eq!((enriched, service.calls().len()), (0, calls + 1));
    tokio::time::advance(policy.call_timeout).await;
    let (enriched, _) = service.list(10).await;
    assert_eq!(enriched, 10);
    assert_eq!(service.enrichment.breaker_state(), BreakerState::Closed);
}
