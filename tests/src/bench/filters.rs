//! `bench filters`: what a filter and a conditional request cost against the plain page, in the
//! same run (issue 17).
//!
//! One user with `BENCH_FAVORITES` favorites (1 000 000), one audience in every
//! `BENCH_EVERY` (100), the rest charts: `type=audience` and `q=shoppers` (the audiences' name)
//! each match 1% of the list. On Postgres, no cache (a filtered list never uses it, and the
//! baseline must not either), `limit=100` throughout, each request timed twice over: by the
//! client through the emulator (`cargo lambda watch`, with its relay hop), and as the
//! function's own time (list-favorites on the runtime API stand-in with quick ACKs, from the
//! event handed over to the answer's last byte; what Lambda bills, and what the targets judge).
//! The functions run as template.yaml ships them, `DATABASE_PROXY=true`: every statement is
//! sent unnamed, as behind RDS Proxy. A second function on a direct connection (statements
//! prepared by name and reused, where a plan can be) is timed beside it, not judged:
//! - baseline: `GET /favorites?limit=100`, the unfiltered first page (a 200);
//! - `type=audience`, `q=shoppers`, and the `type` page after a cursor 50 pages deep;
//! - a 304: the baseline again with the `If-None-Match` of its `ETag`.
//!
//! Every case once unmeasured (its answer checked: 100 matching items, or a 304 without a
//! body), then `BENCH_REQUESTS` rounds, each case once per round in turn, so that drift hits
//! all of them alike. Targets, on the function's own time: a page of a 1% filter ≤ 2 × the
//! baseline's median; the 304 ≤ 0.5 × the baseline's median.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::emulator::Emulator;
use super::no_hop::NoHop;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, group, ratio};
use super::{RunDir, knob, random_hex, seed};
use crate::Api;
use crate::database::{TestDatabase, admin_url};
use crate::runtime_api::Acks;

const PAGE: &str = "limit=100";
/// Any one request of the no-hop function.
const WITHIN: Duration = Duration::from_secs(30);

/// One request the benchmark times.
struct Case {
    label: &'static str,
    /// The query parameters besides `limit=100`.
    params: Vec<(&'static str, String)>,
    if_none_match: Option<String>,
    /// At most this many times the baseline's median (the target), if it has one.
    target: Option<f64>,
}

pub async fn run() -> anyhow::Result<()> {
    let favorites: u64 = knob("BENCH_FAVORITES", 1_000_000)?;
    let every: u64 = knob("BENCH_EVERY", 100)?;
    let requests: usize = knob("BENCH_REQUESTS", 200)?;
    ensure!(
        every > 0 && favorites / every > 100 * 60 && requests > 0,
        "BENCH_FAVORITES / BENCH_EVERY must exceed 6 000 (60 full pages of the filter) and BENCH_REQUESTS be positive"
    );
    let database = TestDatabase::create(&admin_url()?, "favorites_bench", None).await?;
    let result = measure(&database.url, favorites, every, requests).await;
    database.drop_now().await?;
    result
}

async fn measure(database_url: &str, favorites: u64, every: u64, requests: usize) -> anyhow::Result<()> {
    let db = PgPool::connect(database_url)
        .await
        .context("connecting to the bench database")?;
    let dir = RunDir::new("filters")?;
    let env = [
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_SECRET", random_hex(48)),
        ("JWT_TTL_SECONDS", "86400".to_string()),
        ("BCRYPT_COST", "4".to_string()),
        ("RUST_LOG", "warn".to_string()),
        ("FAVORITES_DATA_DIR", dir.path().display().to_string()),
    ];
    let shipped = [env.as_slice(), &[("DATABASE_PROXY", "true".to_string())]].concat();
    let emulator = Emulator::start(&super::log_path("filters"), &shipped, &["REDIS_URL", "ENRICHMENT_URL"]).await?;
    let no_hop = NoHop::start(Acks::Quick, &shipped, 1024).await?;
    let named = NoHop::start(Acks::Quick, &env, 1024).await?;
    let api = Api::new(&emulator.url);
    let session = api.new_user().await;
    let user = seed::user_id(&db, &session.email).await?;
    say(format!(
        "seeding {} favorites, one audience in every {every}",
        group(favorites)
    ));
    seed::favorites_with_rare_audiences(&db, user, 1, favorites, every).await?;

    let baseline = format!("/favorites?{PAGE}");
    let first = api.send(Method::GET, &baseline, Some(&session.token), None).await;
    let etag = first
        .headers()
        .get("etag")
        .context("the list has no ETag")?
        .to_str()?
        .to_string();
    let deep_cursor = cursor_after_pages(&api, &session.token, "type=audience", 50).await?;
    let case = |label, params: Vec<(&'static str, String)>, if_none_match: Option<String>, target| Case {
        label,
        params,
        if_none_match,
        target,
    };
    let audience = || ("type", "audience".to_string());
    let cases = [
        case("unfiltered page (baseline, 200)", vec![], None, None),
        case("type=audience (1%)", vec![audience()], None, Some(2.0)),
        case(
            "type=audience, 50 pages deep (cursor)",
            vec![audience(), ("cursor", deep_cursor)],
            None,
            Some(2.0),
        ),
        case("q=shoppers (1%)", vec![("q", "shoppers".into())], None, Some(2.0)),
        case("unfiltered page, If-None-Match (304)", vec![], Some(etag), Some(0.5)),
    ];
    say("checking every case's answer once");
    for case in &cases {
        check(&api, &session.token, case).await?;
        let expected = if case.if_none_match.is_some() { 304 } else { 200 };
        for (function, how) in [(&no_hop, "as shipped"), (&named, "direct connection")] {
            let answer = no_hop_call(function, &session.token, case).await?;
            ensure!(
                answer.status() == Some(expected),
                "{} (no hop, {how}): {:?}",
                case.label,
                answer.status()
            );
        }
    }
    say(format!(
        "{requests} rounds of {} cases, through the emulator and without it",
        cases.len()
    ));
    let mut client: Vec<Vec<f64>> = vec![Vec::with_capacity(requests); cases.len()];
    let mut function: Vec<Vec<f64>> = vec![Vec::with_capacity(requests); cases.len()];
    let mut function_named: Vec<Vec<f64>> = vec![Vec::with_capacity(requests); cases.len()];
    for _ in 0..requests {
        for (i, case) in cases.iter().enumerate() {
            client[i].push(timed(&api, &session.token, case).await?);
            for (function, times) in [(&no_hop, &mut function), (&named, &mut function_named)] {
                let answer = no_hop_call(function, &session.token, case).await?;
                times[i].push(answer.invocation_time().as_secs_f64() * 1000.0);
            }
        }
    }
    let mut report = Report::new("filters");
    report.line(format!("bench-filters: {}", super::machine()));
    report.line(format!(
        "One user, {} favorites, 1 in {every} an audience; limit=100; {requests} rounds; Postgres, no cache; ms.",
        group(favorites),
    ));
    report.blank();
    report.line(
        "The function's own time, as shipped (DATABASE_PROXY=true: statements unnamed; runtime API stand-in, quick ACKs; the targets are judged here):",
    );
    report.blank();
    report.table(&table(&cases, function, true));
    report.blank();
    report.line("The function's own time on a direct connection (statements named and reused; not what ships):");
    report.blank();
    report.table(&table(&cases, function_named, false));
    report.blank();
    report.line("Through the emulator, client-side, to the last byte:");
    report.blank();
    report.table(&table(&cases, client, false));
    report.save()
}

fn path(case: &Case) -> String {
    let mut path = format!("/favorites?{PAGE}");
    for (name, value) in &case.params {
        path.push_str(&format!("&{name}={value}"));
    }
    path
}

async fn no_hop_call(no_hop: &NoHop, token: &str, case: &Case) -> anyhow::Result<crate::runtime_api::Answer> {
    let mut query = json!({"limit": "100"});
    for (name, value) in &case.params {
        query[*name] = Value::String(value.clone());
    }
    let headers = match &case.if_none_match {
        Some(tag) => json!({"If-None-Match": tag}),
        None => json!({}),
    };
    no_hop.get(token, query, headers, WITHIN).await
}

/// The `next_cursor` after `pages` pages of `filter`.
async fn cursor_after_pages(api: &Api, token: &str, filter: &str, pages: usize) -> anyhow::Result<String> {
    let mut path = format!("/favorites?{filter}&{PAGE}");
    let mut cursor = String::new();
    for _ in 0..pages {
        let page: Value = api.send(Method::GET, &path, Some(token), None).await.json().await?;
        cursor = page["next_cursor"]
            .as_str()
            .context("the filtered list ended before the page the bench reads")?
            .to_string();
        path = format!("/favorites?{filter}&{PAGE}&cursor={cursor}");
    }
    Ok(cursor)
}

async fn send(api: &Api, token: &str, case: &Case) -> reqwest::Response {
    let headers: Vec<(&str, &str)> = case
        .if_none_match
        .iter()
        .map(|tag| ("if-none-match", tag.as_str()))
        .collect();
    api.send_with(Method::GET, &path(case), Some(token), None, &headers)
        .await
}

/// The answer is what the case measures: a full page of matches, or a 304 without a body.
async fn check(api: &Api, token: &str, case: &Case) -> anyhow::Result<()> {
    let response = send(api, token, case).await;
    let status = response.status();
    let body = response.bytes().await?;
    if case.if_none_match.is_some() {
        ensure!(
            status == 304 && body.is_empty(),
            "{}: {status}, {} bytes",
            case.label,
            body.len()
        );
        return Ok(());
    }
    ensure!(status == 200, "{}: {status}", case.label);
    let page: Value = serde_json::from_slice(&body).with_context(|| format!("{}: not JSON", case.label))?;
    let items = page["data"].as_array().context("no data")?;
    ensure!(items.len() == 100, "{}: {} items", case.label, items.len());
    if !case.params.is_empty() {
        ensure!(
            items.iter().all(|item| item["type"] == "audience"),
            "{}: a favorite that does not match",
            case.label
        );
    }
    Ok(())
}

/// Milliseconds from sending to the last byte.
async fn timed(api: &Api, token: &str, case: &Case) -> anyhow::Result<f64> {
    let started = Instant::now();
    let response = send(api, token, case).await;
    let status = response.status();
    response.bytes().await?;
    ensure!(status == 200 || status == 304, "{}: {status}", case.label);
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Medians and tails of each case against the baseline's median; verdicts where `judged`.
fn table(cases: &[Case], times: Vec<Vec<f64>>, judged: bool) -> Table {
    let samples: Vec<Samples> = times.into_iter().map(Samples::new).collect();
    let baseline = samples[0].median();
    let mut table = Table::new(&[
        "request",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "× baseline p50",
        "target",
        "verdict",
    ]);
    for (case, samples) in cases.iter().zip(&samples) {
        let times = ratio(samples.median(), baseline);
        let target = case.target.filter(|_| judged);
        table.row(vec![
            case.label.to_string(),
            format!("{:.2}", samples.median()),
            format!("{:.2}", samples.percentile(90.0)),
            format!("{:.2}", samples.percentile(99.0)),
            format!("{times:.2}"),
            target.map_or("—".into(), |t| format!("≤ {t}×")),
            target.map_or("—", |t| verdict(times <= t)).to_string(),
        ]);
    }
    table
}
