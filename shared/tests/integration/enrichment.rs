//! Enrichment of the streamed list against a small enrichment server whose latency and faults
//! each test controls (the real service is outside our system), with the list read from real
//! Postgres. Whatever the server does, the list is complete, in order, enriched where the
//! server answered, and done within the deadline plus a small margin.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::a_user;
use e2e::enrichment_server::{FakeEnrichment, Mode};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::adapters::enrichment::HttpEnrichmentClient;
use shared::adapters::redis::RedisFavoriteCache;
use shared::adapters::sql::Database;
use shared::domain::{AssetInput, ListFilter, UserId};
use shared::ports::ListQuery;
use shared::secrets::Secret;
use shared::usecases::cache::CacheGuard;
use shared::usecases::enrich::{BreakerState, Enrichment, EnrichmentPolicy};
use shared::usecases::list_favorites;
use tokio::time::Instant;

const API_KEY: &str = "test-enrichment-key";

async fn fake_server(mode: Mode) -> (String, FakeEnrichment) {
    e2e::enrichment_server::spawn(API_KEY, mode).await
}

fn policy() -> EnrichmentPolicy {
    EnrichmentPolicy {
        batch: 10,
        in_flight: 3,
        call_timeout: Duration::from_millis(150),
        deadline: Duration::from_millis(600),
        retries: 2,
        backoff: Duration::from_millis(10),
        breaker_failures: 3,
        breaker_open_for: Duration::from_millis(400),
    }
}

fn enrichment(url: &str, policy: EnrichmentPolicy) -> Arc<Enrichment> {
    let client = HttpEnrichmentClient::new(url, Secret::fixed(SecretString::from(API_KEY))).unwrap();
    Arc::new(Enrichment::new(Box::new(client), policy, None))
}

/// Enrichment whose results are cached in the test Redis for `enrichment_ttl`.
fn cached_enrichment(url: &str, enrichment_ttl: Duration) -> Arc<Enrichment> {
    let redis_url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (make test sets it)");
    let config = shared::config::CacheSettings {
        url: SecretString::from(redis_url),
        ca_bundle: None,
        policy: shared::adapters::redis::CachePolicy {
            ttl: Duration::from_secs(60),
            enrichment_ttl,
            ..Default::default()
        },
    };
    let cache = Arc::new(CacheGuard::new(
        Arc::new(RedisFavoriteCache::new(&config).unwrap()),
        Duration::from_millis(400),
    ));
    let client = HttpEnrichmentClient::new(url, Secret::fixed(SecretString::from(API_KEY))).unwrap();
    Arc::new(Enrichment::new(Box::new(client), policy(), Some(cache)))
}

async fn seeded(n: usize) -> (crate::support::TestDatabase, UserId) {
    let test_db = crate::support::postgres().await;
    let user = a_user(&test_db.database).await;
    for i in 0..n {
        let input: AssetInput =
            serde_json::from_value(json!({"id": format!("a{i:03}"), "type": "insight", "name": "n", "content": "c"}))
                .unwrap();
        test_db
            .database
            .favorites()
            .insert_favorite(user, &input.parse().unwrap())
            .await
            .unwrap();
    }
    (test_db, user)
}

/// The whole list through enrichment: the rows, and how long it took.
async fn enriched_list(db: &Database, user: UserId, enrichment: &Arc<Enrichment>) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    let favorites = db.favorites();
    let query = ListQuery {
        after: None,
        offset: 0,
        limit: None,
        filter: ListFilter::default(),
    };
    let rows = list_favorites::list_favorites(favorites.as_ref(), None, user, query, None)
        .await
        .unwrap();
    let rows = crate::support::json_rows(enrichment.enrich(user, rows, "req-123".into())).await;
    (rows, started.elapsed())
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|row| row["id"].as_str().unwrap().to_string()).collect()
}

fn enriched(rows: &[Value]) -> usize {
    rows.iter().filter(|row| row.get("enrichment").is_some()).count()
}

/// Every list must be whole and in order, and end within the deadline plus a margin.
fn assert_complete(rows: &[Value], elapsed: Duration, n: usize) {
    let expected: Vec<String> = (0..n).rev().map(|i| format!("a{i:03}")).collect();
    assert_eq!(ids(rows), expected, "the list is complete and in order");
    let bound = policy().deadline + Duration::from_millis(400);
    assert!(
        elapsed < bound,
        "took {elapsed:?}, more than the deadline plus a margin ({bound:?})"
    );
}

#[tokio::test]
async fn a_healthy_service_enriches_every_favorite_in_order_with_the_request_id() {
    let (db, user) = seeded(45).await;
    let (url, fake) = fake_server(Mode::Healthy { latency_ms: 5 }).await;
    let enrichment = enrichment(&url, policy());
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment).await;
    assert_complete(&rows, elapsed, 45);
    assert_eq!(enriched(&rows), 45);
    assert_eq!(rows[0]["enrichment"]["owner"], "owner of a044");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 5, "batches of 10");
    assert!(fake.request_ids.lock().unwrap().iter().all(|id| id == "req-123"));
}

#[tokio::test]
async fn partial_answers_enrich_what_they_cover() {
    let (db, user) = seeded(20).await;
    let (url, _) = fake_server(Mode::Partial).await;
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment(&url, policy())).await;
    assert_complete(&rows, elapsed, 20);
    assert_eq!(enriched(&rows), 10);
}

#[tokio::test]
async fn server_errors_are_retried_then_given_up_without_failing_the_list() {
    let (db, user) = seeded(20).await;
    let (url, fake) = fake_server(Mode::Status { status: 500 }).await;
    let enrichment = enrichment(&url, policy());
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment).await;
    assert_complete(&rows, elapsed, 20);
    assert_eq!(enriched(&rows), 0);
    assert!(enrichment.stats.retries.load(Ordering::SeqCst) >= 1, "500s are retried");
    assert!(fake.calls.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn malformed_answers_are_not_retried() {
    let (db, user) = seeded(10).await;
    let (url, fake) = fake_server(Mode::Malformed).await;
    let enrichment = enrichment(&url, policy());
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment).await;
    assert_complete(&rows, elapsed, 10);
    assert_eq!(enriched(&rows), 0);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "the same answer would come again");
    assert_eq!(enrichment.stats.retries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_service_slower_than_the_deadline_costs_the_deadline_and_no_more() {
    let (db, user) = seeded(60).await;
    let (url, _) = fake_server(Mode::Healthy { latency_ms: 5_000 }).await;
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment(&url, policy())).await;
    assert_complete(&rows, elapsed, 60);
    assert_eq!(enriched(&rows), 0);
}

#[tokio::test]
async fn a_body_that_stops_midway_is_a_timeout() {
    let (db, user) = seeded(25).await;
    let (url, _) = fake_server(Mode::HangMidBody).await;
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment(&url, policy())).await;
    assert_complete(&rows, elapsed, 25);
    assert_eq!(enriched(&rows), 0);
}

#[tokio::test]
async fn a_service_that_is_down_opens_the_circuit_and_then_costs_no_call() {
    let (db, user) = seeded(30).await;
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = enrichment(&format!("http://127.0.0.1:{port}"), policy());
    let (rows, elapsed) = enriched_list(&db.database, user, &down).await;
    assert_complete(&rows, elapsed, 30);
    assert_eq!(down.breaker_state(), BreakerState::Open);
    let calls = down.stats.calls.load(Ordering::SeqCst);
    let (rows, elapsed) = enriched_list(&db.database, user, &down).await;
    assert_complete(&rows, elapsed, 30);
    assert_eq!(
        down.stats.calls.load(Ordering::SeqCst),
        calls,
        "an open circuit makes no calls"
    );
    assert!(down.stats.short_circuited.load(Ordering::SeqCst) >= 1);
    // Half-open, one probe at a time, closed again on success: usecases/enrich/tests.rs, under
    // paused time.
}

#[tokio::test]
async fn with_the_cache_on_a_warm_list_makes_no_call_until_the_results_expire() {
    let (db, user) = seeded(25).await;
    let (url, fake) = fake_server(Mode::Partial).await;
    let enrichment = cached_enrichment(&url, Duration::from_secs(1));

    let (cold, _) = enriched_list(&db.database, user, &enrichment).await;
    let calls = fake.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 3);
    let (warm, elapsed) = enriched_list(&db.database, user, &enrichment).await;
    assert_complete(&warm, elapsed, 25);
    assert_eq!(warm, cold, "the same metadata, and the same absences, from the cache");
    assert_eq!(enriched(&warm), 13);
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls, "a warm list makes no call");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    enriched_list(&db.database, user, &enrichment).await;
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls + 3,
        "expired results are fetched again"
    );
}

#[tokio::test]
async fn with_the_cache_on_an_open_circuit_makes_no_calls_either() {
    let (db, user) = seeded(30).await;
    let (url, fake) = fake_server(Mode::Status { status: 503 }).await;
    let enrichment = cached_enrichment(&url, Duration::from_secs(60));
    let (rows, elapsed) = enriched_list(&db.database, user, &enrichment).await;
    assert_complete(&rows, elapsed, 30);
    assert_eq!(enrichment.breaker_state(), BreakerState::Open);
    let calls = fake.calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (rows, elapsed) = enriched_list(&db.database, user, &enrichment).await;
        assert_complete(&rows, elapsed, 30);
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "nothing was cached, and still no call"
    );
}
