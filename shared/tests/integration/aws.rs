//! The DynamoDB-backed ports and Secrets Manager against a real local AWS endpoint: the moto
//! server `make test` starts (AWS_ENDPOINT_URL). Each store contract runs against both
//! adapters, DynamoDB and the embedded in-memory default, with the same expectations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::aws;
use secrecy::ExposeSecret;
use shared::adapters::dynamodb::{DynamoDbFailedLoginCounter, DynamoDbIdempotencyStore};
use shared::adapters::jwt::{JwtAccessTokens, KeyRing, TokenPolicy};
use shared::adapters::memory::{MemoryFailedLoginCounter, MemoryIdempotencyStore};
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::domain::UserId;
use shared::ports::{
    AccessTokens, Claim, FailedLoginCounter, IdempotencyStore, RecordState, SecretSource, StoredResponse, TokenRejected,
};
use shared::secrets::{CachedSecret, Secret};

async fn table() -> String {
    let name = format!("favorites-test-{}", uuid::Uuid::new_v4().simple());
    crate::support::create_table(&name).await;
    name
}

async fn idempotency_stores() -> Vec<(&'static str, Arc<dyn IdempotencyStore>)> {
    vec![
        ("memory", Arc::new(MemoryIdempotencyStore::default())),
        (
            "dynamodb",
            Arc::new(DynamoDbIdempotencyStore::new(aws().await, table().await)),
        ),
    ]
}

async fn counters() -> Vec<(&'static str, Arc<dyn FailedLoginCounter>)> {
    vec![
        ("memory", Arc::new(MemoryFailedLoginCounter::default())),
        (
            "dynamodb",
            Arc::new(DynamoDbFailedLoginCounter::new(aws().await, table().await)),
        ),
    ]
}

fn in_(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        SystemTime::now() + Duration::from_secs(seconds as u64)
    } else {
        SystemTime::now() - Duration::from_secs((-seconds) as u64)
    }
}

fn response(body: &str) -> StoredResponse {
    StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn a_key_is_claimed_once_then_completed_then_replayed() {
    for (name, store) in idempotency_stores().await {
        let key = format!("k-{}", uuid::Uuid::new_v4());
        assert_eq!(
            store.claim(&key, "h1", in_(30), in_(3600)).await.unwrap(),
            Claim::Claimed,
            "{name}"
        );
        let Claim::Taken(record) = store.claim(&key, "h1", in_(30), in_(3600)).await.unwrap() else {
            panic!("{name}: a second claim must find the first");
        };
        assert_eq!(record.request_hash, "h1", "{name}");
        assert!(matches!(record.state, RecordState::InProgress { .. }), "{name}");

        store
            .complete(&key, &response(r#"{"id":"a"}"#), in_(3600))
            .await
            .unwrap();
        let Claim::Taken(record) = store.claim(&key, "h2", in_(30), in_(3600)).await.unwrap() else {
            panic!("{name}: a completed key stays taken");
        };
        assert_eq!(record.request_hash, "h1", "{name}: the first request's hash is kept");
        assert_eq!(
            record.state,
            RecordState::Completed(response(r#"{"id":"a"}"#)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_released_key_an_abandoned_claim_and_an_expired_record_can_be_claimed_again() {
    for (name, store) in idempotency_stores().await {
        let released = format!("r-{}", uuid::Uuid::new_v4());
        store.claim(&released, "h", in_(30), in_(3600)).await.unwrap();
        store.release(&released).await.unwrap();
        assert_eq!(
            store.claim(&released, "h", in_(30), in_(3600)).await.unwrap(),
            Claim::Claimed,
            "{name}: released"
        );

        let abandoned = format!("a-{}", uuid::Uuid::new_v4());
        store.claim(&abandoned, "h", in_(-1), in_(3600)).await.unwrap();
        assert_eq!(
            store.claim(&abandoned, "h", in_(30), in_(3600)).await.unwrap(),
            Claim::Claimed,
            "{name}: abandoned"
        );

        let expired = format!("e-{}", uuid::Uuid::new_v4());
        store.claim(&expired, "h", in_(30), in_(-1)).await.unwrap();
        assert_eq!(
            store.claim(&expired, "h", in_(30), in_(3600)).await.unwrap(),
            Claim::Claimed,
            "{name}: expired"
        );

        // A completed record is never released by a late `release`.
        let done = format!("d-{}", uuid::Uuid::new_v4());
        store.claim(&done, "h", in_(30), in_(3600)).await.unwrap();
        store.complete(&done, &response("{}"), in_(3600)).await.unwrap();
        store.release(&done).await.unwrap();
        assert!(
            matches!(
                store.claim(&done, "h", in_(30), in_(3600)).await.unwrap(),
                Claim::Taken(_)
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn of_many_concurrent_claims_of_one_key_exactly_one_wins() {
    for (name, store) in idempotency_stores().await {
        let key = format!("c-{}", uuid::Uuid::new_v4());
        let claims = (0..16).map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.claim(&key, "h", in_(30), in_(3600)).await.unwrap() })
        });
        let results = futures::future::join_all(claims).await;
        let won = results.iter().filter(|r| matches!(r, Ok(Claim::Claimed))).count();
        assert_eq!(won, 1, "{name}: {results:?}");
    }
}

#[tokio::test]
async fn failures_are_counted_atomically_per_key_and_cleared() {
    for (name, counter) in counters().await {
        let (a, b) = (
            format!("a-{}", uuid::Uuid::new_v4()),
            format!("b-{}", uuid::Uuid::new_v4()),
        );
        let keys = [a.clone(), b.clone()];
        assert_eq!(counter.counts(&keys).await.unwrap(), vec![0, 0], "{name}");
        let adds = (0..10).map(|_| {
            let counter = counter.clone();
            let keys = keys.clone();
            tokio::spawn(async move { counter.add_failure(&keys, in_(600)).await.unwrap() })
        });
        for add in futures::future::join_all(adds).await {
            add.unwrap();
        }
        counter.add_failure(std::slice::from_ref(&b), in_(600)).await.unwrap();
        assert_eq!(counter.counts(&keys).await.unwrap(), vec![10, 11], "{name}");
        counter.clear(&a).await.unwrap();
        assert_eq!(counter.counts(&keys).await.unwrap(), vec![0, 11], "{name}");

        let expired = format!("x-{}", uuid::Uuid::new_v4());
        counter
            .add_failure(std::slice::from_ref(&expired), in_(-1))
            .await
            .unwrap();
        assert_eq!(
            counter.counts(&[expired]).await.unwrap(),
            vec![0],
            "{name}: expired counts 0"
        );
    }
}

#[tokio::test]
async fn secrets_manager_gives_the_current_and_after_a_rotation_the_previous_version() {
    let source = SecretsManagerSource::new(aws().await);
    let id = crate::support::create_secret("first value").await;
    let first = source.current(&id).await.unwrap();
    assert_eq!(first.value.expose_secret(), "first value");
    assert!(source.previous(&id).await.unwrap().is_none(), "never rotated");

    crate::support::rotate_secret(&id, "second value").await;
    let second = source.current(&id).await.unwrap();
    assert_eq!(second.value.expose_secret(), "second value");
    assert_ne!(second.version_id, first.version_id);
    let previous = source.previous(&id).await.unwrap().expect("the replaced version");
    assert_eq!(previous.value.expose_secret(), "first value");

    let missing = source.current("no-such-secret").await.unwrap_err();
    assert!(format!("{missing:#}").contains("no-such-secret"), "{missing:#}");
}

#[tokio::test]
async fn a_cached_secret_is_read_once_per_ttl_and_again_when_refused() {
    let source: Arc<dyn SecretSource> = Arc::new(SecretsManagerSource::new(aws().await));
    let id = crate::support::create_secret("v1").await;
    let cached = CachedSecret::new(source, id.clone(), Duration::from_secs(3600));
    let v1 = cached.get().await.unwrap();
    crate::support::rotate_secret(&id, "v2").await;
    assert_eq!(
        cached.get().await.unwrap().value.expose_secret(),
        "v1",
        "within the TTL"
    );
    let refreshed = cached.refresh(&v1.version_id).await.unwrap();
    assert_eq!(refreshed.value.expose_secret(), "v2", "refused: read again at once");
    // A second caller that saw v1 refused too gets v2 without another read.
    assert_eq!(
        cached.refresh(&v1.version_id).await.unwrap().version_id,
        refreshed.version_id
    );
}

fn jwt_config(grace: Duration) -> TokenPolicy {
    TokenPolicy {
        grace,
        ..TokenPolicy::default()
    }
}

async fn instance(id: &str, ttl: Duration, grace: Duration) -> JwtAccessTokens {
    let source: Arc<dyn SecretSource> = Arc::new(SecretsManagerSource::new(aws().await));
    let keys = KeyRing::new(Secret::Stored(CachedSecret::new(source, id, ttl)), grace)
        .await
        .unwrap();
    JwtAccessTokens::new(&jwt_config(grace), Arc::new(keys))
}

const KEY_1: &str = "first-key-0123456789abcdef0123456789abcdef";
const KEY_2: &str = "second-key-0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn tokens_survive_a_key_rotation_for_the_grace_period() {
    let id = crate::support::create_secret(KEY_1).await;
    let user = UserId::generate();
    let old_instance = instance(&id, Duration::from_secs(1), Duration::from_secs(3600)).await;
    let before = old_instance.issue(user).await.unwrap().token;

    crate::support::rotate_secret(&id, KEY_2).await;
    // A new instance (cold start after the rotation) signs with the new key and still
    // accepts the token signed before the rotation.
    let new_instance = instance(&id, Duration::from_secs(300), Duration::from_secs(3600)).await;
    let after = new_instance.issue(user).await.unwrap().token;
    assert_ne!(kid(&before), kid(&after));
    assert_eq!(
        new_instance.verify(&before).await,
        Ok(user),
        "previous key within the grace period"
    );
    assert_eq!(new_instance.verify(&after).await, Ok(user));

    // The old instance has the old key cached (TTL not yet passed when asked first)…
    // …and meets a token with an unknown key id: it looks again and accepts it.
    assert_eq!(
        old_instance.verify(&after).await,
        Ok(user),
        "unknown kid: the key is read again"
    );
    assert_eq!(old_instance.verify(&before).await, Ok(user));
}

#[tokio::test]
async fn without_a_grace_period_the_previous_key_is_refused() {
    let id = crate::support::create_secret(KEY_1).await;
    let user = UserId::generate();
    let before = instance(&id, Duration::from_secs(300), Duration::ZERO)
        .await
        .issue(user)
        .await
        .unwrap()
        .token;
    crate::support::rotate_secret(&id, KEY_2).await;
    let after_rotation = instance(&id, Duration::from_secs(300), Duration::ZERO).await;
    assert_eq!(after_rotation.verify(&before).await, Err(TokenRejected::Invalid));
}

/// Secrets Manager, counting the reads that reach it.
struct Counted {
    inner: SecretsManagerSource,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SecretSource for Counted {
    async fn current(&self, id: &str) -> anyhow::Result<shared::ports::SecretVersion> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.current(id).await
    }

    async fn previous(&self, id: &str) -> anyhow::Result<Option<shared::ports::SecretVersion>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.previous(id).await
    }
}

#[tokio::test]
async fn a_forged_key_id_cannot_make_an_instance_read_the_secret_on_every_request() {
    let id = crate::support::create_secret(KEY_1).await;
    let counted = Arc::new(Counted {
        inner: SecretsManagerSource::new(aws().await),
        reads: Default::default(),
    });
    let source: Arc<dyn SecretSource> = counted.clone();
    let keys = KeyRing::new(
        Secret::Stored(CachedSecret::new(source, id, Duration::from_secs(300))),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let tokens = JwtAccessTokens::new(&jwt_config(Duration::from_secs(3600)), Arc::new(keys));
    let user = UserId::generate();
    let good = tokens.issue(user).await.unwrap().token;
    // A token with a made-up kid, signed with some other key.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("0000000000000000".into());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": user.to_string(), "iat": now, "exp": now + 60, "iss": "favorites", "aud": "favorites-api"});
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"attacker-key-attacker-key-attacker-key"),
    )
    .unwrap();
    let at_start = counted.reads.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(tokens.verify(&forged).await, Err(TokenRejected::Invalid));
    }
    assert_eq!(tokens.verify(&good).await, Ok(user));
    // The first unknown kid may trigger one read; the next 49 within 5 s may not.
    let reads = counted.reads.load(std::sync::atomic::Ordering::SeqCst) - at_start;
    assert!(reads <= 1, "{reads} reads of the secret for 50 forged tokens");
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("tokens carry a kid")
}

#[tokio::test]
async fn a_rotated_enrichment_key_is_read_again_when_the_service_refuses_the_old_one() {
    use e2e::enrichment_server::{Mode, spawn};
    use shared::adapters::enrichment::HttpEnrichmentClient;
    use shared::ports::{AssetRef, EnrichmentClient};

    let id = crate::support::create_secret("old-api-key").await;
    let source: Arc<dyn SecretSource> = Arc::new(SecretsManagerSource::new(aws().await));
    let key = Secret::Stored(CachedSecret::new(source, id.clone(), Duration::from_secs(3600)));
    // The service already accepts only the new key; the instance holds the old one.
    let (url, _fake) = spawn("new-api-key", Mode::Healthy { latency_ms: 0 }).await;
    let client = HttpEnrichmentClient::new(&url, key).unwrap();
    let assets = [AssetRef {
        id: "a".into(),
        kind: "chart".into(),
    }];
    let timeout = Duration::from_secs(2);
    assert!(
        client.fetch(&assets, "r1", timeout).await.is_err(),
        "the secret has not rotated yet"
    );

    crate::support::rotate_secret(&id, "new-api-key").await;
    let refused = client.fetch(&assets, "r2", timeout).await.unwrap_err();
    assert!(refused.retriable, "a newer key is in hand: worth another attempt");
    let metadata = client.fetch(&assets, "r3", timeout).await.unwrap();
    assert!(metadata.contains_key("a"));
}
