//! `bench enrichment`: latency of a listed page (100 of one user's 500 favorites, Postgres, the
//! list use case in this process: no emulator, no HTTP in front) with no enrichment, with a
//! healthy enrichment service answering after 0, 5 and 50 ms (the fake of
//! `crate::enrichment_server`), and with the service down and the circuit open. The
//! configurations take turns, request by request, in a new random order each round, so drift on
//! the machine touches them alike.
//!
//! Knob: `BENCH_ROUNDS` (300).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::TryStreamExt;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use shared::adapters::enrichment::HttpEnrichmentClient;
use shared::adapters::sql::Database;
use shared::config::DatabaseSettings;
use shared::domain::{AssetInput, Email, ListFilter, PasswordHash, User, UserId};
use shared::ports::ListQuery;
use shared::secrets::Secret;
use shared::usecases::enrich::{BreakerState, Enrichment, EnrichmentPolicy};
use shared::usecases::list_favorites::list_favorites;

use super::knob;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, ratio};
use crate::database::{TestDatabase, admin_url};
use crate::enrichment_server::{self, Mode};

const KEY: &str = "bench-key";
const FAVORITES: usize = 500;
const PAGE: u64 = 100;

fn policy() -> EnrichmentPolicy {
    // The production defaults, with the circuit kept open for the whole run once it opens.
    EnrichmentPolicy {
        breaker_open_for: Duration::from_secs(600),
        ..EnrichmentPolicy::default()
    }
}

struct Configuration {
    label: String,
    enrichment: Option<Arc<Enrichment>>,
    /// How many favorites of a page it must enrich.
    enriched: usize,
}

pub async fn run() -> anyhow::Result<()> {
    let rounds: usize = knob("BENCH_ROUNDS", 300)?;
    let database = TestDatabase::create(&admin_url()?, "favorites_bench_enrichment", None).await?;
    let db = Database::connect(&DatabaseSettings::for_url(&database.url), None).await?;
    let result = measure(&db, rounds).await;
    db.close().await;
    database.drop_now().await?;
    result
}

async fn measure(db: &Database, rounds: usize) -> anyhow::Result<()> {
    let user = User {
        id: UserId::generate(),
        email: Email::parse("bench@example.com").map_err(|e| anyhow::anyhow!("{e:?}"))?,
        password_hash: PasswordHash::new("x".into()),
    };
    db.users()
        .insert_user(&user)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    say(format!("seeding {FAVORITES} favorites"));
    for i in 0..FAVORITES {
        let input: AssetInput = serde_json::from_value(serde_json::json!({
            "id": format!("chart-{i:04}"), "type": "chart", "name": format!("Revenue {i}"),
            "description": "monthly revenue", "x_axis": "month", "y_axis": "EUR",
            "data": [{"x": "2026-01", "y": 100}, {"x": "2026-02", "y": 120}, {"x": "2026-03", "y": 140}]
        }))?;
        let asset = input.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        db.favorites()
            .insert_favorite(user.id, &asset)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }

    let mut configurations = vec![Configuration {
        label: "no enrichment".into(),
        enrichment: None,
        enriched: 0,
    }];
    for latency_ms in [0, 5, 50] {
        let (server, _) = enrichment_server::spawn(KEY, Mode::Healthy { latency_ms }).await;
        configurations.push(Configuration {
            label: format!("healthy, {latency_ms} ms"),
            enrichment: Some(enrichment(&server)?),
            enriched: PAGE as usize,
        });
    }
    let closed = super::free_port()?;
    let down = enrichment(&format!("http://127.0.0.1:{closed}"))?;
    while down.breaker_state() != BreakerState::Open {
        page(db, user.id, Some(&down)).await?;
    }
    configurations.push(Configuration {
        label: "down, circuit open".into(),
        enrichment: Some(down),
        enriched: 0,
    });

    say("warm-up, checking each configuration enriches what it should");
    for configuration in &configurations {
        for _ in 0..20 {
            let enriched = page(db, user.id, configuration.enrichment.as_ref()).await?;
            ensure!(
                enriched == configuration.enriched,
                "{}: {enriched} favorites enriched, expected {}",
                configuration.label,
                configuration.enriched
            );
        }
    }
    say(format!("{rounds} rounds"));
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); configurations.len()];
    // A new order every round: whatever follows the 50 ms configuration (an idle pause) or
    // comes first must not always be the same configuration.
    let mut order: Vec<usize> = (0..configurations.len()).collect();
    for _ in 0..rounds {
        order.shuffle(&mut rand::rng());
        for &i in &order {
            let started = Instant::now();
            page(db, user.id, configurations[i].enrichment.as_ref()).await?;
            samples[i].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    let samples: Vec<Samples> = samples.into_iter().map(Samples::new).collect();
    let baseline = samples[0].mean();
    let mut report = Report::new("enrichment");
    report.line(format!("bench-enrichment: {}", super::machine()));
    report.line(format!(
        "page of {PAGE} of {FAVORITES} favorites, Postgres, {rounds} requests per configuration, taking turns in random order"
    ));
    report.blank();
    let mut table = Table::new(&[
        "configuration",
        ">mean ms",
        ">p50 ms",
        ">p99 ms",
        ">mean ÷ no enrichment",
    ]);
    let mut open_ratio = 0.0;
    for (configuration, times) in configurations.iter().zip(&samples) {
        let mean_ratio = ratio(times.mean(), baseline);
        if configuration.label.starts_with("down") {
            open_ratio = mean_ratio;
        }
        table.row(vec![
            configuration.label.clone(),
            format!("{:.2}", times.mean()),
            format!("{:.2}", times.median()),
            format!("{:.2}", times.percentile(99.0)),
            format!("{mean_ratio:.3}"),
        ]);
    }
    report.table(&table);
    report.blank();
    report.line(format!(
        "target (circuit open costs at most 5% over no enrichment): **{}**, {:+.1}%",
        verdict(open_ratio <= 1.05),
        (open_ratio - 1.0) * 100.0
    ));
    report.save()
}

fn enrichment(url: &str) -> anyhow::Result<Arc<Enrichment>> {
    let client = HttpEnrichmentClient::new(url, Secret::fixed(SecretString::from(KEY)))?;
    Ok(Arc::new(Enrichment::new(Box::new(client), policy(), None)))
}

/// One page through the list use case (and enrichment, when given); how many favorites came
/// out enriched.
async fn page(db: &Database, user: UserId, enrichment: Option<&Arc<Enrichment>>) -> anyhow::Result<usize> {
    let favorites = db.favorites();
    let query = ListQuery {
        after: None,
        offset: 0,
        limit: Some(PAGE),
        filter: ListFilter::default(),
    };
    let rows = list_favorites(favorites.as_ref(), None, user, query, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("listing a page")?;
    let rows = match enrichment {
        Some(enrichment) => enrichment.enrich(user, rows, "bench".into()),
        None => rows,
    };
    let rows: Vec<_> = rows.try_collect().await.context("reading the page")?;
    Ok(rows.iter().filter(|row| row.json.contains("\"enrichment\"")).count())
}
