//! Login timing benchmark (not a test): does a login for an unknown email take as long as one
//! with a wrong password, and how much of a login is not bcrypt?
//!
//! Run through `make bench-login`, which starts the API under the Lambda emulator with release
//! builds and passes its address in `E2E_BASE_URL`. Logins of the two kinds are interleaved so
//! that drift on the machine hits both equally; bcrypt alone is timed in this process at the
//! same cost, as the baseline for "time beyond bcrypt".
//!
//! Prints a Markdown table for docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use e2e::Api;
use reqwest::Method;
use serde_json::json;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let cost: u32 = std::env::var("BCRYPT_COST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let api = Api::from_env();
    let session = api.new_user().await;
    let wrong = json!({"email": session.email, "password": "not the password"});
    let unknown =
        json!({"email": format!("nobody-{}@example.com", uuid::Uuid::new_v4()), "password": "not the password"});

    // Warm up: the first invocation of each function pays its cold start.
    for body in [&wrong, &unknown] {
        assert_eq!(
            api.send(Method::POST, "/login", None, Some(body.clone()))
                .await
                .status(),
            401
        );
    }
    let (mut wrong_times, mut unknown_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which kind goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [(&wrong, true), (&unknown, false)]
        } else {
            [(&unknown, false), (&wrong, true)]
        };
        for (body, is_wrong) in order {
            let started = Instant::now();
            let response = api.send(Method::POST, "/login", None, Some(body.clone())).await;
            let elapsed = started.elapsed();
            assert_eq!(response.status(), 401);
            if is_wrong {
                wrong_times.push(elapsed)
            } else {
                unknown_times.push(elapsed)
            }
        }
    }
    let hash = bcrypt::hash("baseline password", cost).unwrap();
    let mut bcrypt_times = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let _ = bcrypt::verify("not the password", &hash).unwrap();
        bcrypt_times.push(started.elapsed());
    }
    let (wrong_median, unknown_median, bcrypt_median) = (
        median(&mut wrong_times),
        median(&mut unknown_times),
        median(&mut bcrypt_times),
    );
    let ratio = ms(unknown_median) / ms(wrong_median);
    println!("| measurement (bcrypt cost {cost}, {rounds} rounds each) | median |");
    println!("|---|---|");
    println!("| login, wrong password | {:.1} ms |", ms(wrong_median));
    println!("| login, unknown email | {:.1} ms |", ms(unknown_median));
    println!("| unknown ÷ wrong | {ratio:.3} |");
    println!(
        "| bcrypt verify alone (baseline, this process) | {:.1} ms |",
        ms(bcrypt_median)
    );
    println!(
        "| login beyond bcrypt (wrong password − bcrypt) | {:.1} ms |",
        ms(wrong_median) - ms(bcrypt_median)
    );
    let within = (ratio - 1.0).abs() <= 0.10;
    println!();
    println!(
        "target: medians within 10% of each other: {}",
        if within { "met" } else { "MISSED" }
    );
}
