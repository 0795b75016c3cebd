//! The favorites cache against real Postgres and real Redis: consistency under random
//! interleavings, the per-user cap, and failing open when Redis stops, hangs or answers
//! garbage (the last with a fake server, which stands for a broken Redis we cannot make).
//!
//! Needs TEST_DATABASE_URL and TEST_REDIS_URL (set by `make test`); the stop/start tests run
//! a private `redis-server` (REDIS_SERVER_BIN or the one on PATH) with an append-only file, so
//! that what Redis held before the gap is still there after it.

use crate::support::a_user;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rand::Rng;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::adapters::bcrypt::BcryptPasswordHasher;
use shared::adapters::memory::MemoryFailedLoginCounter;
use shared::adapters::redis::CachePolicy;
use shared::adapters::redis::RedisFavoriteCache;
use shared::adapters::sql::Database;
use shared::config::CacheSettings;
use shared::domain::{
    Asset, AssetInput, Description, Email, FavoriteId, ListFilter, Password, SearchText, User, UserId,
};
use shared::ports::{ListQuery, PasswordHasher};
use shared::usecases::cache::{COOL_DOWN, CacheGuard, CacheStats};
use shared::usecases::delete_account::{DeleteAccountRequest, delete_account};
use shared::usecases::throttle::{LoginThrottle, ThrottlePolicy};
use shared::usecases::{add_favorite, list_favorites, remove_favorite, update_favorite};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("TEST_REDIS_URL is not set: run `make test`, or point it at a Redis server tests may write to")
    })
}

fn cache_config(url: &str, max_items: usize, max_bytes: usize) -> CacheSettings {
    CacheSettings {
        url: SecretString::from(url.to_string()),
        ca_bundle: None,
        policy: CachePolicy {
            ttl: Duration::from_secs(600),
            max_items,
            max_bytes,
            ..CachePolicy::default()
        },
    }
}

/// ElastiCache's shape: `rediss://`, the server's certificate checked against REDIS_CA_BUNDLE
/// (the private TLS Redis of `make test`); without the bundle the same server is not trusted,
/// and the list comes from the database alone.
#[tokio::test]
async fn a_rediss_cache_serves_with_its_ca_bundle_and_is_skipped_without_it() {
    let (port, ca) = match (std::env::var("TEST_TLS_REDIS_PORT"), std::env::var("TEST_TLS_REDIS_CA")) {
        (Ok(port), Ok(ca)) => (port, ca),
        _ => panic!("TEST_TLS_REDIS_PORT and TEST_TLS_REDIS_CA are not set: run `make test`"),
    };
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let user = a_user(db).await;
    add_favorite::add_favorite(db.favorites().as_ref(), None, user, insight("tls", 1))
        .await
        .unwrap();
    let url = format!("rediss://127.0.0.1:{port}");
    let trusted = guard(&CacheSettings {
        ca_bundle: Some(ca.into()),
        ..cache_config(&url, 1000, 1 << 20)
    });
    served_list(db, &trusted, user, query(None)).await;
    let listed = served_list(db, &trusted, user, query(None)).await;
    assert_eq!(listed, database_list(db, user).await);
    assert_eq!(
        CacheStats::get(&trusted.stats.hits),
        1,
        "the second list comes from Redis over TLS"
    );

    let untrusted = guard(&cache_config(&url, 1000, 1 << 20));
    let listed = served_list(db, &untrusted, user, query(None)).await;
    assert_eq!(listed, database_list(db, user).await);
    assert_eq!(
        CacheStats::get(&untrusted.stats.hits),
        0,
        "a certificate of an unknown CA is refused"
    );
}

fn guard(config: &CacheSettings) -> Arc<CacheGuard> {
    let cache = RedisFavoriteCache::new(config).unwrap();
    Arc::new(CacheGuard::new(Arc::new(cache), config.policy.timeout * 2))
}

/// A plain connection, to look at what the cache wrote.
async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn insight(id: &str, words: usize) -> Asset {
    let input: AssetInput = serde_json::from_value(json!({
        "id": id, "type": "insight", "name": format!("insight {id}"), "content": format!("{}end", "word ".repeat(words))
    }))
    .unwrap();
    input.parse().unwrap()
}

fn query(limit: Option<u64>) -> ListQuery {
    ListQuery {
        after: None,
        offset: 0,
        limit,
        filter: ListFilter::default(),
    }
}

/// The database's whole list, as JSON values.
async fn database_list(db: &Database, user: UserId) -> Vec<Value> {
    crate::support::json_rows(db.favorites().list_favorites(user, query(None)).await.unwrap()).await
}

/// A list through the use case (cache first, database on a miss), as JSON values.
async fn served_list(db: &Database, cache: &Arc<CacheGuard>, user: UserId, q: ListQuery) -> Vec<Value> {
    let favorites = db.favorites();
    crate::support::json_rows(
        list_favorites::list_favorites(favorites.as_ref(), Some(cache), user, q, None)
            .await
            .unwrap(),
    )
    .await
}

/// What Redis holds for a user, read directly: (version, whole list?, favorites in order).
async fn raw_entry(redis: &mut redis::aio::MultiplexedConnection, user: UserId) -> Option<(u64, bool, Vec<Value>)> {
    let tag = user.as_uuid();
    let meta: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(format!("fav:{{{tag}}}:meta"))
        .arg("v")
        .arg("full")
        .query_async(redis)
        .await
        .unwrap();
    let version = meta[0].as_ref()?.parse().unwrap();
    let full = meta[1].as_deref() == Some("1");
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("fav:{{{tag}}}:order"))
        .arg("+")
        .arg("-")
        .arg("BYLEX")
        .arg("REV")
        .query_async(redis)
        .await
        .unwrap();
    let mut rows = Vec::new();
    for member in members {
        let value: Option<String> = redis::cmd("HGET")
            .arg(format!("fav:{{{tag}}}:items"))
            .arg(&member[17..])
            .query_async(redis)
            .await
            .unwrap();
        let value = value.unwrap_or_else(|| panic!("{member} is in the order set but not in the items"));
        rows.push(serde_json::from_str(&value[16..]).unwrap());
    }
    Some((version, full, rows))
}

async fn database_version(db: &Database, user: UserId) -> u64 {
    db.favorites().favorites_version(user).await.unwrap().0
}

/// The invariant, checked from outside: an entry at the database's version holds exactly the
/// first rows of the database's list (all of them when marked whole); an entry at an older
/// version is never served.
async fn assert_cache_agrees(
    db: &Database,
    cache: &Arc<CacheGuard>,
    redis: &mut redis::aio::MultiplexedConnection,
    user: UserId,
    round: usize,
) -> bool {
    let expected = database_list(db, user).await;
    let current = database_version(db, user).await;
    let entry = raw_entry(redis, user).await;
    let mut current_entry = false;
    if let Some((version, full, rows)) = &entry {
        assert!(
            *version <= current,
            "round {round}: the cache is at version {version}, ahead of the database ({current})"
        );
        if *version == current {
            current_entry = true;
            assert!(
                rows.len() <= expected.len(),
                "round {round}: the cache holds more than the database"
            );
            assert_eq!(
                rows[..],
                expected[..rows.len()],
                "round {round}: the cached prefix differs from the database"
            );
            if *full {
                assert_eq!(
                    rows.len(),
                    expected.len(),
                    "round {round}: a whole list that is not whole"
                );
            }
        }
    }
    // And what a reader gets, cache or not, is the database's list.
    assert_eq!(
        served_list(db, cache, user, query(None)).await,
        expected,
        "round {round}: the list served differs from the database"
    );
    assert_eq!(
        served_list(db, cache, user, query(Some(7))).await,
        expected.iter().take(7).cloned().collect::<Vec<_>>(),
        "round {round}: the first page served differs from the database"
    );
    current_entry
}

/// Several tasks, one user, thousands of random adds, updates, removes and lists (whole lists,
/// first pages, later pages), with random delays around every cache call to widen the race
/// windows; after every round the cache must agree with the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_interleaving_of_changes_and_lists_leaves_the_cache_wrong() {
    const ROUNDS: usize = 40;
    const TASKS: usize = 4;
    const OPS_PER_TASK: usize = 25;
    const IDS: usize = 24;

    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    // A cap below the list's size, so that trimming and "not whole" are exercised too.
    let config = cache_config(&redis_url(), 12, 64 * 1024);
    let cache = guard(&config);
    let mut redis = connect(&redis_url()).await;
    let user = a_user(db).await;

    let mut rounds_with_current_entry = 0;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let favorites = db.favorites();
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..OPS_PER_TASK {
                    let (op, id, limit, words, pause) = {
                        let mut rng = rand::rng();
                        (
                            rng.random_range(0..10),
                            format!("fav-{:02}", rng.random_range(0..IDS)),
                            rng.random_range(1..20u64),
                            rng.random_range(0..40),
                            rng.random_range(0..3u64),
                        )
                    };
                    tokio::time::sleep(Duration::from_micros(pause * 300)).await;
                    let id_typed = FavoriteId::parse(&id).unwrap();
                    match op {
                        0..=2 => {
                            let _ =
                                add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight(&id, words))
                                    .await;
                        }
                        3..=4 => {
                            let description = Description::parse(&format!("edited {words}")).unwrap();
                            let _ = update_favorite::update_description(
                                favorites.as_ref(),
                                Some(&cache),
                                user,
                                &id_typed,
                                &description,
                                None,
                            )
                            .await;
                        }
                        5..=6 => {
                            let _ = remove_favorite::remove_favorite(
                                favorites.as_ref(),
                                Some(&cache),
                                user,
                                &id_typed,
                                None,
                            )
                            .await;
                        }
                        7..=8 => {
                            // As the handler does: the version read first, for the ETag.
                            let known = list_favorites::current_version(favorites.as_ref(), user).await.unwrap();
                            let rows: Vec<_> = list_favorites::list_favorites(
                                favorites.as_ref(),
                                Some(&cache),
                                user,
                                query(Some(limit)),
                                Some(known),
                            )
                            .await
                            .unwrap()
                            .try_collect()
                            .await
                            .unwrap();
                            assert!(rows.len() as u64 <= limit);
                        }
                        _ => {
                            let rows: Vec<_> = list_favorites::list_favorites(
                                favorites.as_ref(),
                                Some(&cache),
                                user,
                                query(None),
                                None,
                            )
                            .await
                            .unwrap()
                            .try_collect()
                            .await
                            .unwrap();
                            drop(rows);
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        if assert_cache_agrees(db, &cache, &mut redis, user, round).await {
            rounds_with_current_entry += 1;
        }
    }
    let stats = &cache.stats;
    let (hits, misses, failures) = (
        CacheStats::get(&stats.hits),
        CacheStats::get(&stats.misses),
        CacheStats::get(&stats.failures),
    );
    eprintln!(
        "{} operations; cache hits {hits}, misses {misses}, failures {failures}; rounds ending with a current entry {rounds_with_current_entry}/{ROUNDS}",
        ROUNDS * TASKS * OPS_PER_TASK
    );
    assert_eq!(failures, 0, "Redis was up the whole time");
    assert!(
        hits > 100,
        "the test must exercise cached reads, not only misses ({hits} hits)"
    );
    assert!(
        rounds_with_current_entry > ROUNDS / 2,
        "most rounds must end with an entry at the database's version, or the check proves little"
    );
}

#[tokio::test]
async fn a_filtered_list_is_the_databases_with_the_cache_warm_and_after_changes() {
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let cache = guard(&cache_config(&redis_url(), 1000, 1 << 20));
    let user = a_user(db).await;
    let favorites = db.favorites();
    for i in 0..6 {
        add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight(&format!("f{i}"), 1))
            .await
            .unwrap();
    }
    let ends_in_3 = ListQuery {
        filter: ListFilter::new([], Some(SearchText::parse("3").unwrap())),
        ..query(None)
    };
    let database_filtered =
        || async { crate::support::json_rows(favorites.list_favorites(user, ends_in_3.clone()).await.unwrap()).await };
    // The unfiltered list fills the cache; a filter is not served from it.
    served_list(db, &cache, user, query(None)).await;
    let hits = || CacheStats::get(&cache.stats.hits);
    let before = hits();
    let filtered = served_list(db, &cache, user, ends_in_3.clone()).await;
    assert_eq!(filtered, database_filtered().await);
    assert_eq!(filtered.len(), 1);
    assert_eq!(hits(), before, "a filtered list never reads the cache");

    // A change written through the cache shows in the filtered list at once.
    add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight("g3", 1))
        .await
        .unwrap();
    remove_favorite::remove_favorite(
        favorites.as_ref(),
        Some(&cache),
        user,
        &FavoriteId::parse("f3").unwrap(),
        None,
    )
    .await
    .unwrap();
    let filtered = served_list(db, &cache, user, ends_in_3.clone()).await;
    assert_eq!(filtered, database_filtered().await);
    assert_eq!(filtered[0]["id"], "g3");
    assert_eq!(filtered.len(), 1);
}

/// Whether Redis holds any of `user`'s keys, their enrichments' included.
async fn holds_anything_of(redis: &mut redis::aio::MultiplexedConnection, user: UserId) -> bool {
    let tag = user.as_uuid();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("fav:{{{tag}}}:*"))
        .query_async(redis)
        .await
        .unwrap();
    !keys.is_empty()
}

#[tokio::test]
async fn a_deleted_account_leaves_nothing_of_its_own_in_redis() {
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let cache = guard(&cache_config(&redis_url(), 1000, 1 << 20));
    let mut redis = connect(&redis_url()).await;
    let hasher = BcryptPasswordHasher::new(4);
    let password = || Password::parse("correct horse battery".into()).unwrap();
    let leaver = User {
        id: UserId::generate(),
        email: Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4())).unwrap(),
        password_hash: hasher.hash(&password()).await.unwrap(),
    };
    db.users().insert_user(&leaver).await.unwrap();
    let stayer = a_user(db).await;
    let favorites = db.favorites();
    for user in [leaver.id, stayer] {
        for i in 0..3 {
            add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight(&format!("l{i}"), 1))
                .await
                .unwrap();
        }
        served_list(db, &cache, user, query(None)).await;
        cache
            .remember_enrichments(user, &[("l0".into(), Some(json!({"views": 1})))])
            .await;
        assert!(raw_entry(&mut redis, user).await.is_some(), "the list filled the entry");
    }

    let throttle = LoginThrottle::new(Arc::new(MemoryFailedLoginCounter::default()), ThrottlePolicy::default());
    let request = DeleteAccountRequest {
        user: leaver.id,
        password: password(),
        source: "203.0.113.7".into(),
    };
    delete_account(db.users().as_ref(), &hasher, &throttle, Some(&cache), request)
        .await
        .unwrap();

    assert!(
        !holds_anything_of(&mut redis, leaver.id).await,
        "the entry and the enrichments went"
    );
    assert_eq!(CacheStats::get(&cache.stats.failures), 0);
    let kept = raw_entry(&mut redis, stayer).await.expect("another user's entry stays");
    assert_eq!(kept.2, database_list(db, stayer).await);
    assert_eq!(cache.enrichments(stayer, &["l0".into()]).await.len(), 1);
}

#[tokio::test]
async fn one_users_long_list_puts_only_the_capped_prefix_into_redis() {
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let cache = guard(&cache_config(&redis_url(), 50, 1 << 20));
    let mut redis = connect(&redis_url()).await;
    let user = a_user(db).await;
    let favorites = db.favorites();
    for i in 0..120 {
        add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight(&format!("f{i:03}"), 3))
            .await
            .unwrap();
    }
    let expected = database_list(db, user).await;
    assert_eq!(served_list(db, &cache, user, query(None)).await, expected);
    let (_, full, rows) = raw_entry(&mut redis, user).await.expect("the list filled the cache");
    assert_eq!(rows.len(), 50, "the entry stops at the cap");
    assert!(!full);
    assert_eq!(rows[..], expected[..50]);

    let hits = || CacheStats::get(&cache.stats.hits);
    let before = hits();
    assert_eq!(served_list(db, &cache, user, query(Some(11))).await, expected[..11]);
    assert_eq!(hits(), before + 1, "a page inside the prefix is a hit");
    let deep = ListQuery {
        after: None,
        offset: 45,
        limit: Some(11),
        filter: ListFilter::default(),
    };
    assert_eq!(served_list(db, &cache, user, deep).await, expected[45..56]);
    assert_eq!(
        hits(),
        before + 1,
        "a page past the prefix is a miss, served by the database"
    );
    assert_eq!(served_list(db, &cache, user, query(None)).await, expected);
    assert_eq!(hits(), before + 1, "the whole list of a capped entry is a miss");

    // A user's bytes are capped too: 30 favorites of ~2 KB do not fit in 16 KB.
    let cache = guard(&cache_config(&redis_url(), 1000, 16 * 1024));
    let user = a_user(db).await;
    for i in 0..30 {
        add_favorite::add_favorite(
            favorites.as_ref(),
            Some(&cache),
            user,
            insight(&format!("big{i:02}"), 400),
        )
        .await
        .unwrap();
    }
    let expected = database_list(db, user).await;
    assert_eq!(served_list(db, &cache, user, query(Some(3))).await, expected[..3]);
    let (_, full, rows) = raw_entry(&mut redis, user).await.unwrap();
    assert!(
        !full && !rows.is_empty() && rows.len() < 9,
        "{} rows cached",
        rows.len()
    );
    assert_eq!(rows[..], expected[..rows.len()]);
}

/// A private Redis with an append-only file, so that a restart brings back what it held.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    fn start_in(dir: std::path::PathBuf, port: u16) -> Self {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = std::process::Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (set REDIS_SERVER_BIN, or install redis-server): {e}"));
        let redis = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the private Redis did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("favorites-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_in(dir, port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Killed outright: nothing is written on the way down beyond what is already on disk.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn restart(mut self) -> Self {
        self.kill();
        let dir = std::mem::take(&mut self.dir);
        let port = self.port;
        std::mem::forget(self);
        Self::start_in(dir, port)
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_everything_works_from_the_database_and_nothing_stale_is_served_after() {
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let mut private = PrivateRedis::start();
    let cache = guard(&cache_config(&private.url(), 1000, 1 << 20));
    let favorites = db.favorites();
    let user = a_user(db).await;
    for i in 0..5 {
        add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight(&format!("f{i}"), 3))
            .await
            .unwrap();
    }
    served_list(db, &cache, user, query(None)).await; // fills
    let hits = CacheStats::get(&cache.stats.hits);
    assert_eq!(
        served_list(db, &cache, user, query(None)).await,
        database_list(db, user).await
    );
    assert_eq!(CacheStats::get(&cache.stats.hits), hits + 1, "warm before the gap");
    let version_before_gap = database_version(db, user).await;

    private.kill();
    let started = Instant::now();
    add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight("during-gap", 3))
        .await
        .unwrap();
    remove_favorite::remove_favorite(
        favorites.as_ref(),
        Some(&cache),
        user,
        &FavoriteId::parse("f0").unwrap(),
        None,
    )
    .await
    .unwrap();
    update_favorite::update_description(
        favorites.as_ref(),
        Some(&cache),
        user,
        &FavoriteId::parse("f1").unwrap(),
        &Description::parse("changed while Redis was down").unwrap(),
        None,
    )
    .await
    .unwrap();
    let expected = database_list(db, user).await;
    assert_eq!(served_list(db, &cache, user, query(None)).await, expected);
    assert_eq!(served_list(db, &cache, user, query(Some(2))).await, expected[..2]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "Redis down must cost little: {:?}",
        started.elapsed()
    );
    assert!(CacheStats::get(&cache.stats.failures) > 0, "the failures are counted");

    // Back, with the entry it held before the gap (the append-only file), now stale.
    let private = private.restart();
    let mut redis = connect(&private.url()).await;
    let (stale_version, _, stale_rows) = raw_entry(&mut redis, user).await.expect("Redis kept its data");
    assert_eq!(stale_version, version_before_gap);
    assert_ne!(stale_rows, expected, "the entry from before the gap is stale");

    // Whether or not the guard is still cooling down, nothing stale may be served.
    let deadline = Instant::now() + COOL_DOWN * 5;
    let hits = CacheStats::get(&cache.stats.hits);
    loop {
        assert_eq!(served_list(db, &cache, user, query(None)).await, expected);
        assert_eq!(served_list(db, &cache, user, query(Some(3))).await, expected[..3]);
        if CacheStats::get(&cache.stats.hits) > hits {
            break; // refilled after the gap and serving again
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (version, _, rows) = raw_entry(&mut redis, user).await.unwrap();
    assert_eq!(version, database_version(db, user).await);
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_a_bounded_delay_not_an_error() {
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let private = PrivateRedis::start();
    let config = cache_config(&private.url(), 1000, 1 << 20);
    let cache = guard(&config);
    let favorites = db.favorites();
    let user = a_user(db).await;
    add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight("a", 3))
        .await
        .unwrap();
    served_list(db, &cache, user, query(None)).await;

    private.signal("STOP");
    let started = Instant::now();
    add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight("b", 3))
        .await
        .unwrap();
    let expected = database_list(db, user).await;
    assert_eq!(expected.len(), 2);
    for _ in 0..5 {
        assert_eq!(served_list(db, &cache, user, query(None)).await, expected);
    }
    let elapsed = started.elapsed();
    private.signal("CONT");
    // One timeout, then the cool-down skips the cache: far less than six timeouts.
    assert!(elapsed < config.policy.timeout * 2 * 3, "took {elapsed:?}");
    assert!(CacheStats::get(&cache.stats.failures) >= 1);
    assert!(CacheStats::get(&cache.stats.bypassed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_answering_garbage_is_a_miss_and_a_counted_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(b"%%\x00 not RESP at all\r\n:zz\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let test_db = crate::support::postgres().await;
    let db = &test_db.database;
    let cache = guard(&cache_config(&format!("redis://127.0.0.1:{port}"), 1000, 1 << 20));
    let favorites = db.favorites();
    let user = a_user(db).await;
    add_favorite::add_favorite(favorites.as_ref(), Some(&cache), user, insight("a", 3))
        .await
        .unwrap();
    tokio::time::sleep(COOL_DOWN).await;
    assert_eq!(
        served_list(db, &cache, user, query(None)).await,
        database_list(db, user).await
    );
    assert!(CacheStats::get(&cache.stats.failures) >= 2);
    assert_eq!(CacheStats::get(&cache.stats.hits), 0);
    server.abort();
}
