//! Postgres failing under load, as a failover or an RDS Proxy restart does to the functions:
//! mixed concurrent requests (lists, gets, adds from three clients, through the functions'
//! routers in process) while every backend connection of the database is terminated once a
//! second (`pg_terminate_backend`). Reads succeed (a read that lost its connection runs once
//! more; only a connection lost twice in a row, or a list broken off after its first row, is a
//! failed read); every add answered 201 has its row, and a row without a 201 is only one whose
//! add was answered 503. (The second fault, Postgres stopped for 3 s, is not here yet.)
//!
//! Prints its figures (requests, failed reads, adds answered 201 and 503, rows) for docs/.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use e2e::events::{event, favorite_path};
use serde_json::json;
use sqlx::Connection;
use tower::ServiceExt;

use e2e::events::fixture;

use crate::events::{insert_fixture_user, router};

const LOAD: Duration = Duration::from_secs(8);
const CLIENTS: usize = 3;

#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    failed_reads: AtomicUsize,
    broken_streams: AtomicUsize,
    added: AtomicUsize,
    adds_unavailable: AtomicUsize,
    adds_failed: AtomicUsize,
    terminated: AtomicUsize,
}

/// The answer of `router` to the sample event `name` patched with `patch`: status and body.
async fn call(router: &Router, name: &str, patch: serde_json::Value) -> (u16, bytes::Bytes) {
    let request = lambda_http::request::from_str(std::str::from_utf8(&event(name, patch).unwrap()).unwrap()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    // A streamed list that breaks off midway is an error of the body, not of the status.
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_survive_backends_terminated_every_second_and_writes_stay_exactly_once() {
    // SAFETY: set before the routers, which read it, are built.
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let db = crate::support::postgres().await;
    insert_fixture_user(&db.database).await;
    let fixture = fixture();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ("DATABASE_TIMEOUT_MS", "3000"),
    ];
    // One "instance" per client and function, as Lambda runs them: each has its own pool.
    let mut instances = Vec::new();
    for _ in 0..CLIENTS {
        instances.push((
            router("list-favorites", &env).await,
            router("get-favorite", &env).await,
            router("add-favorite", &env).await,
        ));
    }
    let seed = &instances[0].2;
    for i in 0..20 {
        let (status, body) = call(
            seed,
            "add-favorite/chart-201.json",
            json!({"body": {"id": format!("seed-{i}")}}),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }

    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let database_name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let terminator = {
        let (tally, done) = (tally.clone(), done.clone());
        let mut admin = sqlx::PgConnection::connect(&crate::support::admin_url()).await.unwrap();
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let ended: i64 = sqlx::query_scalar(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity
                      where datname = $1 and pid <> pg_backend_pid()",
                )
                .bind(&database_name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
                tally
                    .terminated
                    .fetch_add(usize::try_from(ended).unwrap_or(0), Ordering::SeqCst);
            }
        })
    };
    let started = Instant::now();
    let mut clients = Vec::new();
    for (client, (list, get, add)) in instances.into_iter().enumerate() {
        let tally = tally.clone();
        clients.push(tokio::spawn(async move {
            let mut round = 0;
            while started.elapsed() < LOAD {
                round += 1;
                let (status, body) = call(&list, "list-favorites/first-page-200.json", json!({})).await;
                if status != 200 {
                    tally.failed_reads.fetch_add(1, Ordering::SeqCst);
                    eprintln!("list: {status} {}", String::from_utf8_lossy(&body));
                } else if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                    // Broken off after its first row: visibly incomplete, by design.
                    tally.broken_streams.fetch_add(1, Ordering::SeqCst);
                }
                let id = format!("seed-{}", round % 20);
                let (status, body) = call(&get, "get-favorite/missing-404.json", favorite_path(&id)).await;
                if status != 200 {
                    tally.failed_reads.fetch_add(1, Ordering::SeqCst);
                    eprintln!("get: {status} {}", String::from_utf8_lossy(&body));
                }
                let id = format!("load-{client}-{round}");
                let (status, _) = call(&add, "add-favorite/chart-201.json", json!({"body": {"id": id}})).await;
                match status {
                    201 => tally.added.fetch_add(1, Ordering::SeqCst),
                    503 => tally.adds_unavailable.fetch_add(1, Ordering::SeqCst),
                    _ => tally.adds_failed.fetch_add(1, Ordering::SeqCst),
                };
                tally.requests.fetch_add(3, Ordering::SeqCst);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    terminator.await.unwrap();

    let shared::adapters::sql::Database::Postgres(pg) = &db.database else {
        panic!("a Postgres database")
    };
    let rows: i64 = sqlx::query_scalar("select count(*) from favorites where id like 'load-%'")
        .persistent(false)
        .fetch_one(pg.pool())
        .await
        .unwrap();
    let rows = usize::try_from(rows).unwrap();
    let t = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    eprintln!(
        "fault run: {} requests in {:?}, {} backends terminated; failed reads {}, lists broken off {}; adds answered 201: {}, 503: {}, other: {}; rows {}",
        t(&tally.requests),
        LOAD,
        t(&tally.terminated),
        t(&tally.failed_reads),
        t(&tally.broken_streams),
        t(&tally.added),
        t(&tally.adds_unavailable),
        t(&tally.adds_failed),
        rows
    );
    assert!(
        t(&tally.terminated) > 0,
        "no backend was terminated: the run proves nothing"
    );
    // Target 0. A read fails only when its connection is lost twice in a row, or a list breaks
    // off after its first row; without the retry, 5 to 7 of each run's reads fail.
    assert!(
        t(&tally.failed_reads) + t(&tally.broken_streams) <= 2,
        "reads failed while backends were terminated"
    );
    assert_eq!(t(&tally.adds_failed), 0, "an add answered neither 201 nor 503");
    assert!(rows >= t(&tally.added), "an add answered 201 has no row");
    assert!(
        rows <= t(&tally.added) + t(&tally.adds_unavailable),
        "a row without an answer that could have written it"
    );
}
