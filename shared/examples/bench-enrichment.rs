//! `make bench-enrichment`: latency of a listed page (100 favorites, Postgres, in process)
//! with no enrichment, with a healthy enrichment service at 0, 5 and 50 ms, and with the
//! service down and the circuit open. The configurations take turns, request by request, in
//! a new random order each round, so drift on the machine touches them alike. Needs TEST_DATABASE_URL (an admin URL: a fresh
//! database is created and dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use shared::adapters::enrichment::HttpEnrichmentClient;
use shared::adapters::sql::Database;
use shared::config::DatabaseConfig;
use shared::domain::{AssetInput, Email, PasswordHash, User, UserId};
use shared::ports::ListQuery;
use shared::secrets::RotatingSecret;
use shared::usecases::enrich::{BreakerState, Enrichment, EnrichmentPolicy};
use shared::usecases::list_favorites::list_favorites;
use sqlx::Connection;

const KEY: &str = "bench-key";
const FAVORITES: usize = 500;
const PAGE: u64 = 100;

fn policy() -> EnrichmentPolicy {
    // The production defaults (shared/src/config.rs).
    EnrichmentPolicy {
        batch: 50,
        in_flight: 4,
        call_timeout: Duration::from_millis(300),
        deadline: Duration::from_millis(1_000),
        retries: 2,
        backoff: Duration::from_millis(25),
        breaker_failures: 5,
        breaker_open_for: Duration::from_secs(600),
    }
}

async fn page(db: &Database, user: UserId, enrichment: Option<&Arc<Enrichment>>) -> usize {
    let favorites = db.favorites();
    let query = ListQuery {
        after: None,
        offset: 0,
        limit: Some(PAGE),
    };
    let rows = list_favorites(favorites.as_ref(), None, user, query).await.unwrap();
    let rows = match enrichment {
        Some(enrichment) => enrichment.enrich(user, rows, "bench".into()),
        None => rows,
    };
    let rows: Vec<_> = rows.try_collect().await.unwrap();
    rows.iter().filter(|row| row.json.contains("\"enrichment\"")).count()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS").map_or(Ok(300), |v| v.parse())?;
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL: an admin URL of a Postgres server");
    let name = format!("favorites_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await?;
    let url = {
        let (base, _) = admin.rsplit_once('/').expect("TEST_DATABASE_URL ends with /<database>");
        format!("{base}/{name}")
    };
    let result = run(&url, rounds).await;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut conn)
        .await?;
    result
}

async fn run(url: &str, rounds: usize) -> anyhow::Result<()> {
    let db = Database::connect(&DatabaseConfig::for_url(url), None).await?;
    db.migrate().await?;
    let user = User {
        id: UserId::generate(),
        email: Email::parse("bench@example.com").unwrap(),
        password_hash: PasswordHash::new("x".into()),
    };
    db.users().insert_user(&user).await?;
    for i in 0..FAVORITES {
        let input: AssetInput = serde_json::from_value(serde_json::json!({
            "id": format!("chart-{i:04}"), "type": "chart", "name": format!("Revenue {i}"),
            "description": "monthly revenue", "x_axis": "month", "y_axis": "EUR",
            "data": [{"x": "2026-01", "y": 100}, {"x": "2026-02", "y": 120}, {"x": "2026-03", "y": 140}]
        }))?;
        db.favorites().insert_favorite(user.id, &input.parse().unwrap()).await?;
    }

    let mut configs: Vec<(String, Option<Arc<Enrichment>>, usize)> = vec![("no enrichment".into(), None, 0)];
    for latency_ms in [0, 5, 50] {
        let mode = e2e::enrichment_server::Mode::Healthy { latency_ms };
        let (server, _) = e2e::enrichment_server::spawn(KEY, mode).await;
        let client = HttpEnrichmentClient::new(&server, RotatingSecret::fixed(SecretString::from(KEY)))?;
        let enrichment = Arc::new(Enrichment::new(Box::new(client), policy(), None));
        configs.push((format!("healthy, {latency_ms} ms"), Some(enrichment), PAGE as usize));
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let client = HttpEnrichmentClient::new(
        &format!("http://127.0.0.1:{closed}"),
        RotatingSecret::fixed(SecretString::from(KEY)),
    )?;
    let down = Arc::new(Enrichment::new(Box::new(client), policy(), None));
    while down.breaker_state() != BreakerState::Open {
        page(&db, user.id, Some(&down)).await;
    }
    configs.push(("down, circuit open".into(), Some(down), 0));

    // Warm-up, checking each configuration enriches what it should.
    for (label, enrichment, expected) in &configs {
        for _ in 0..20 {
            let enriched = page(&db, user.id, enrichment.as_ref()).await;
            assert_eq!(
                enriched, *expected,
                "{label}: {enriched} favorites enriched, expected {expected}"
            );
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); configs.len()];
    // A new order every round: whatever follows the 50 ms configuration (an idle pause) or
    // comes first must not always be the same configuration.
    let mut order: Vec<usize> = (0..configs.len()).collect();
    for _ in 0..rounds {
        order.shuffle(&mut rand::rng());
        for &i in &order {
            let started = Instant::now();
            page(&db, user.id, configs[i].1.as_ref()).await;
            samples[i].push(started.elapsed());
        }
    }
    let base_mean = samples[0].iter().sum::<Duration>().as_secs_f64() / rounds as f64 * 1000.0;
    println!(
        "page of {PAGE} of {FAVORITES} favorites, Postgres, {rounds} requests per configuration, taking turns in random order"
    );
    println!();
    println!("| configuration | mean ms | p50 ms | p99 ms | mean ÷ no enrichment |");
    println!("|---|---:|---:|---:|---:|");
    let mut open_ratio = 0.0;
    for ((label, _, _), mut times) in configs.iter().zip(samples) {
        times.sort();
        let mean = times.iter().sum::<Duration>().as_secs_f64() / rounds as f64 * 1000.0;
        let ratio = mean / base_mean;
        if label.starts_with("down") {
            open_ratio = ratio;
        }
        println!(
            "| {label} | {mean:.2} | {:.2} | {:.2} | {ratio:.3} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    println!();
    let verdict = if open_ratio <= 1.05 { "met" } else { "NOT met" };
    println!(
        "target (circuit open costs at most 5% over no enrichment): **{verdict}**, +{:.1}%",
        (open_ratio - 1.0) * 100.0
    );
    db.close().await;
    Ok(())
}
