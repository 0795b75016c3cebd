//! `bench login`: does a login for an unknown email take as long as one with a wrong password,
//! and how much of a login is not bcrypt?
//!
//! The functions under the emulator against a fresh Postgres database, bcrypt at the production
//! cost. Logins of the two kinds are interleaved (and which goes first alternates) so that drift
//! on the machine hits both equally; bcrypt alone, timed in this process at the same cost, is
//! the baseline for "time beyond bcrypt".
//!
//! Knobs: `BENCH_ROUNDS` (40), `BCRYPT_COST` (12).

use std::time::Instant;

use anyhow::ensure;
use reqwest::Method;
use serde_json::json;

use super::emulator::Emulator;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, ratio};
use super::{RunDir, knob, random_hex};
use crate::Api;
use crate::database::{TestDatabase, admin_url};

pub async fn run() -> anyhow::Result<()> {
    let rounds: usize = knob("BENCH_ROUNDS", 40)?;
    let cost: u32 = knob("BCRYPT_COST", 12)?;
    let database = TestDatabase::create(&admin_url()?, "favorites_bench_login", None).await?;
    let dir = RunDir::new("login")?;
    let emulator = Emulator::start(
        &super::log_path("login-emulator"),
        &[
            ("DATABASE_URL", database.url.clone()),
            ("JWT_SECRET", random_hex(48)),
            ("BCRYPT_COST", cost.to_string()),
            ("FAVORITES_DATA_DIR", dir.display()),
            ("RUST_LOG", "warn".into()),
            // Timing, not throttling, is measured: no round may be locked out (a locked-out
            // login answers 429 before bcrypt runs). The throttle's counters stay in the path.
            ("LOGIN_MAX_FAILURES_PER_EMAIL", "1000000".into()),
            ("LOGIN_MAX_FAILURES_PER_IP", "1000000".into()),
        ],
        &[],
    )
    .await?;
    say(format!(
        "{rounds} rounds of each kind of failed login, bcrypt cost {cost}"
    ));
    let result = measure(&Api::new(&emulator.url), rounds, cost).await;
    drop(emulator);
    database.drop_now().await?;
    result
}

async fn measure(api: &Api, rounds: usize, cost: u32) -> anyhow::Result<()> {
    let session = api.new_user().await;
    let wrong = json!({"email": session.email, "password": "not the password"});
    let unknown =
        json!({"email": format!("nobody-{}@example.com", uuid::Uuid::new_v4()), "password": "not the password"});
    let login = |body: &serde_json::Value| api.send(Method::POST, "/login", None, Some(body.clone()));

    // Warm-up: the first invocation of each function pays its cold start.
    for body in [&wrong, &unknown] {
        ensure!(login(body).await.status() == 401, "a failed login did not answer 401");
    }
    let (mut wrong_ms, mut unknown_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let wrong_first = round % 2 == 0;
        for is_wrong in [wrong_first, !wrong_first] {
            let started = Instant::now();
            let status = login(if is_wrong { &wrong } else { &unknown }).await.status();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            ensure!(status == 401, "a failed login answered {status}");
            let samples = if is_wrong { &mut wrong_ms } else { &mut unknown_ms };
            samples.push(ms);
        }
    }
    let hash = bcrypt::hash("baseline password", cost)?;
    let mut bcrypt_ms = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let _ = bcrypt::verify("not the password", &hash)?;
        bcrypt_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let wrong = Samples::new(wrong_ms).median();
    let unknown = Samples::new(unknown_ms).median();
    let bcrypt = Samples::new(bcrypt_ms).median();
    let unknown_per_wrong = ratio(unknown, wrong);

    let mut report = Report::new("login");
    report.line(format!("bench-login: {}", super::machine()));
    report.blank();
    let mut table = Table::new(&[
        &format!("measurement (bcrypt cost {cost}, {rounds} rounds each)"),
        "median",
    ]);
    table.row(vec!["login, wrong password".into(), format!("{wrong:.1} ms")]);
    table.row(vec!["login, unknown email".into(), format!("{unknown:.1} ms")]);
    table.row(vec!["unknown ÷ wrong".into(), format!("{unknown_per_wrong:.3}")]);
    table.row(vec![
        "bcrypt verify alone (baseline, this process)".into(),
        format!("{bcrypt:.1} ms"),
    ]);
    table.row(vec![
        "login beyond bcrypt (wrong password − bcrypt)".into(),
        format!("{:.1} ms", wrong - bcrypt),
    ]);
    report.table(&table);
    report.blank();
    report.line(format!(
        "target: medians within 10% of each other: {}",
        verdict((unknown_per_wrong - 1.0).abs() <= 0.10)
    ));
    report.save()
}
