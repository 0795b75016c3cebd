//! Every TCP connection the functions open has `TCP_NODELAY`: the Lambda Runtime API (the
//! runtime loop and the shutdown extension), Postgres, Redis, the AWS SDK and the enrichment
//! service. With Nagle's algorithm on, a small write made while an earlier one is still
//! unacknowledged waits for that ACK, which a Linux receiver delays by up to 40 ms.
//!
//! Each test opens connections with the production client, against a real server (or, for
//! the Runtime API and the enrichment service, the stand-ins we test the functions with), then
//! finds this process's sockets connected to that server's port (`/proc/net/tcp*` for the
//! inode, `/proc/self/fd` for the descriptor) and reads the option back from each. Needs
//! TEST_DATABASE_URL, TEST_REDIS_URL and AWS_ENDPOINT_URL (moto), as `make test` sets them.

use std::collections::HashSet;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use secrecy::SecretString;
use shared::adapters::enrichment::HttpEnrichmentClient;
use shared::adapters::redis::RedisFavoriteCache;
use shared::adapters::sql::Database;
use shared::config::{CacheSettings, DatabaseSettings};
use shared::domain::{ListFilter, UserId};
use shared::ports::{AssetRef, DatabaseHealth, EnrichmentClient, FavoriteCache, ListQuery};
use shared::runtime::{ResponseMode, Runtime};
use shared::secrets::Secret;

/// `TCP_NODELAY` of each of this process's established TCP connections to `port` (client
/// sides only: the remote end is `port`).
fn nodelay_of_connections_to(port: u16) -> Vec<bool> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let remote_port = fields[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && fields[3] == "01" {
                inodes.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    let mut flags = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !inodes.contains(target.to_string_lossy().as_ref()) {
            continue;
        }
        let fd: RawFd = entry.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: the descriptor was open a moment ago and belongs to a client the test keeps
        // alive until the assertions are done; it is only read from, never closed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        flags.push(socket2::SockRef::from(&fd).tcp_nodelay().unwrap());
    }
    flags
}

#[track_caller]
fn assert_all_nodelay(what: &str, port: u16) {
    let flags = nodelay_of_connections_to(port);
    assert!(!flags.is_empty(), "{what}: no connection to port {port} found");
    assert!(
        flags.iter().all(|&on| on),
        "{what}: {} of {} connections to port {port} have Nagle's algorithm on",
        flags.iter().filter(|&&on| !on).count(),
        flags.len()
    );
}

fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap().split(['/', '?']).next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn postgres_connections_have_nodelay() {
    let url = crate::support::admin_url();
    let database = Database::connect(&DatabaseSettings::for_url(&url), None).await.unwrap();
    database.ping().await.unwrap();
    assert_all_nodelay("Postgres (sqlx)", port_of(&url));
    database.close().await;
}

#[tokio::test]
async fn redis_connections_have_nodelay() {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (make test sets it)");
    let cache = RedisFavoriteCache::new(&CacheSettings::for_url(url.clone())).unwrap();
    let query = ListQuery {
        after: None,
        offset: 0,
        limit: Some(1),
        filter: ListFilter::default(),
    };
    cache.page(UserId::generate(), &query).await.unwrap();
    assert_all_nodelay("Redis", port_of(&url));
}

#[tokio::test]
async fn aws_sdk_connections_have_nodelay() {
    // The SDK configuration the functions load (its HTTP client is what is checked), sent to a
    // server that accepts and never answers, so that the connection is open while it is read:
    // moto's server closes each connection after its answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = aws_sdk_secretsmanager::config::Builder::from(crate::support::aws().await)
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .build();
    let call = tokio::spawn(async move {
        let client = aws_sdk_secretsmanager::Client::from_conf(config);
        client.get_secret_value().secret_id("nodelay").send().await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nodelay_of_connections_to(port).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_all_nodelay("AWS SDK", port);
    call.abort();
    holder.abort();
}

#[tokio::test]
async fn enrichment_connections_have_nodelay() {
    let (url, _fake) =
        e2e::enrichment_server::spawn("key", e2e::enrichment_server::Mode::Healthy { latency_ms: 0 }).await;
    let client = HttpEnrichmentClient::new(&url, Secret::fixed(SecretString::from("key"))).unwrap();
    let assets = [AssetRef {
        id: "a".into(),
        kind: "chart".into(),
    }];
    client.fetch(&assets, "request", Duration::from_secs(5)).await.unwrap();
    assert_all_nodelay("enrichment (reqwest)", port_of(&url));
}

#[tokio::test]
async fn runtime_api_connections_have_nodelay() {
    let api = e2e::runtime_api::RuntimeApi::start().await;
    // The shutdown extension registers through AWS_LAMBDA_RUNTIME_API, as in Lambda; its
    // connection stays open for the long poll of its next event.
    // SAFETY: set before anything of this test reads the environment, and nothing else runs
    // in this process (nextest runs each test in a process of its own).
    unsafe { std::env::set_var("AWS_LAMBDA_RUNTIME_API", &api.address) };
    let extension = shared::runtime::register_extension("nodelay-test", &[]).await.unwrap();
    tokio::spawn(extension.run());
    let runtime = Runtime::new(&api.address, Default::default()).unwrap();
    let router = axum::Router::new().fallback(|| async { "hello" });
    tokio::spawn(runtime.serve(router, ResponseMode::Streaming));
    api.invoke(include_bytes!("../../../events/health/ok-200.json").to_vec());
    let answer = api.answer(Duration::from_secs(30)).await;
    assert!(answer.streamed && !answer.error);
    assert_all_nodelay("Runtime API", port_of(&format!("http://{}", api.address)));
    assert!(
        nodelay_of_connections_to(port_of(&format!("http://{}", api.address))).len() >= 2,
        "the runtime loop's and the extension's connections"
    );
}

/// The helper the tests above use must see a connection when there is one: a
/// connection of our own with the option off is found, and reported off.
#[tokio::test]
async fn a_connection_with_nagle_on_is_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _server = listener.accept().await.unwrap();
    client.set_nodelay(false).unwrap();
    assert_eq!(nodelay_of_connections_to(port), vec![false]);
    client.set_nodelay(true).unwrap();
    assert_eq!(nodelay_of_connections_to(port), vec![true]);
}
