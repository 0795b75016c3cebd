//! `bench latency`: warm invocations, timed at the client to the last byte, under AWS's own
//! runtime interface emulator and through the local API of `make run` (issue 15).
//!
//! Cases: list-favorites (a streamed answer) for `GET /favorites?limit=N` of a user with as many
//! favorites as the largest N, and get-favorite (a buffered answer) for an existing favorite,
//! 200 both.
//!
//! - Under `aws-lambda-rie` (the emulator the SAM CLI runs in its containers, from `.venv`): one
//!   emulator per function, on free ports, with only the variables the function reads
//!   (`DATABASE_URL` of a fresh migrated database, `JWT_SECRET`) and what Lambda sets. The bench
//!   POSTs the API Gateway REST events of `events/`, patched, to its invoke endpoint. The
//!   emulator's `REPORT RequestId: … Duration: X ms` line of each invocation, read from its
//!   stdout, is the server-side baseline: client p50 − REPORT p50 is what the answer's way back
//!   costs (a delayed-ACK stall on a connection with Nagle's algorithm on is 40 ms of it).
//! - The streaming baseline, under the same emulator: `stream-baseline` (upstream
//!   `lambda_http::run_with_streaming_response`, whose runtime client leaves Nagle on) answering
//!   with as many bytes as each list case, in four pieces.
//! - Through `cargo lambda watch` as `make run` serves it, pointed at the same database: the
//!   same requests over HTTP (no REPORT there).
//!
//! Every case: `BENCH_WARMUPS` unmeasured invocations, then `BENCH_REQUESTS` measured, one at a
//! time. Targets: under the emulator, client p50 ≤ REPORT p50 + 2 ms, and no measured invocation
//! at 35 ms or more; through `make run`, none at 35 ms or more either.
//!
//! Knobs: `BENCH_REQUESTS` (200), `BENCH_WARMUPS` (5), `BENCH_LIMITS` ("10 100 1000"),
//! `BENCH_RIE` (the emulator binary; default the SAM CLI's in `.venv`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use shared::adapters::jwt::{JwtAccessTokens, KeyRing, TokenPolicy};
use shared::domain::UserId;
use shared::ports::AccessTokens;
use sqlx::PgPool;
use uuid::Uuid;

use super::emulator::Emulator;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, group};
use super::{function_binary, knob, random_hex, seed};
use crate::database::{TestDatabase, admin_url};
use crate::events;
use crate::rie::STREAM_SEPARATOR;

/// A delayed-ACK stall is 40 ms on Linux; no warm invocation of these routes comes near it.
const STALL_MS: f64 = 35.0;
/// How much more than the function's own duration the client may see, at the median.
const WAY_BACK_MS: f64 = 2.0;
/// Any one invocation, and the emulator's REPORT line after it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Pieces of the streaming baseline's body.
const BASELINE_CHUNKS: usize = 4;

/// One request, as an event for the emulator and as a path for `make run`.
struct Case {
    label: String,
    function: &'static str,
    event: Vec<u8>,
    /// `None`: not served by `make run` (the baseline).
    path: Option<String>,
    streamed: bool,
}

/// A case through `make run` that did not answer 200: its label and what it answered.
struct Failed {
    label: String,
    problem: String,
}

/// The figures of one case on one path.
struct Figures {
    label: String,
    client_ms: Samples,
    /// The emulator's REPORT durations; `None` through `make run`.
    report_ms: Option<Samples>,
    /// Per invocation, client time − its REPORT duration: the answer's way back alone.
    way_back_each_ms: Option<Samples>,
    body_bytes: usize,
}

impl Figures {
    fn stalls(&self) -> usize {
        self.client_ms.count_at_least(STALL_MS)
    }

    /// Client p50 − REPORT p50.
    fn way_back_ms(&self) -> Option<f64> {
        self.report_ms.as_ref().map(|r| self.client_ms.median() - r.median())
    }
}

struct Knobs {
    requests: usize,
    warmups: usize,
    limits: Vec<u64>,
    rie: PathBuf,
}

pub async fn run() -> anyhow::Result<()> {
    let knobs = Knobs {
        requests: knob("BENCH_REQUESTS", 200)?,
        warmups: knob("BENCH_WARMUPS", 5)?,
        limits: knob::<String>("BENCH_LIMITS", "10 100 1000".into())?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("BENCH_LIMITS: whole numbers separated by spaces")?,
        rie: crate::rie::Rie::binary()?,
    };
    ensure!(knobs.requests > 0, "BENCH_REQUESTS must be positive");
    ensure!(!knobs.limits.is_empty(), "BENCH_LIMITS is empty");

    let database = TestDatabase::create(&admin_url()?, "favorites_bench", None).await?;
    let result = async {
        let db = PgPool::connect(&database.url)
            .await
            .context("connecting to the bench database")?;
        let jwt_secret = random_hex(48);
        let token = bench_user(&db, &jwt_secret, *knobs.limits.iter().max().unwrap_or(&1)).await?;
        let postgres: String = sqlx::query_scalar("show server_version").fetch_one(&db).await?;
        db.close().await;
        let env = [
            ("DATABASE_URL".to_string(), database.url.clone()),
            ("JWT_SECRET".to_string(), jwt_secret),
        ];
        let cases = cases(&token, &knobs.limits)?;
        let rie = under_rie(&knobs, &cases, &env).await?;
        let baseline = baseline(&knobs, &rie).await?;
        let mut paths: Vec<(String, String)> = cases
            .iter()
            .filter_map(|c| Some((c.label.clone(), c.path.clone()?)))
            .collect();
        paths.extend(baseline.iter().map(|b| {
            let path = format!(
                "/lambda-url/stream-baseline/favorites?bytes={}&chunks={BASELINE_CHUNKS}",
                b.body_bytes
            );
            (b.label.clone(), path)
        }));
        let watch = through_make_run(&knobs, &paths, &env, &token).await?;
        Ok::<_, anyhow::Error>((rie, baseline, watch, postgres))
    }
    .await;
    database.drop_now().await?;
    let (rie, baseline, watch, postgres) = result?;
    report(&knobs, &rie, &baseline, &watch, &postgres)
}

/// A user with favorites `fav-1` to `fav-<n>` (by SQL), and a token for it signed with
/// `jwt_secret` as login would sign it.
async fn bench_user(db: &PgPool, jwt_secret: &str, n: u64) -> anyhow::Result<String> {
    let user = Uuid::now_v7();
    let email = format!("bench-{}@example.com", random_hex(8));
    // Never logged in with: the token is made here.
    sqlx::query("insert into users (id, email, password_hash) values ($1, $2, 'no password')")
        .bind(user)
        .bind(&email)
        .execute(db)
        .await
        .context("creating the bench user")?;
    seed::favorites(db, user, 1, n).await?;
    let keys = Arc::new(KeyRing::fixed(jwt_secret.to_string().into()));
    let issued = JwtAccessTokens::new(&TokenPolicy::default(), keys)
        .issue(UserId::from_uuid(user))
        .await
        .context("signing the bench user's token")?;
    say(format!("user {email} ({user}), favorites fav-1..fav-{n}"));
    Ok(issued.token)
}

fn cases(token: &str, limits: &[u64]) -> anyhow::Result<Vec<Case>> {
    let auth = events::bearer(token);
    let mut cases = Vec::new();
    for limit in limits {
        cases.push(Case {
            label: format!("list-favorites, limit={}", group(*limit)),
            function: "list-favorites",
            event: events::event(
                "list-favorites/first-page-200.json",
                events::both(
                    auth.clone(),
                    json!({"queryStringParameters": {"limit": limit.to_string()}}),
                ),
            )?,
            path: Some(format!("/favorites?limit={limit}")),
            streamed: true,
        });
    }
    cases.push(Case {
        label: "get-favorite (buffered)".into(),
        function: "get-favorite",
        event: events::event(
            "get-favorite/missing-404.json",
            events::both(auth, events::favorite_path("fav-1")),
        )?,
        path: Some("/favorites/fav-1".into()),
        streamed: false,
    });
    Ok(cases)
}

/// Each function under an emulator of its own, its cases one after the other.
async fn under_rie(knobs: &Knobs, cases: &[Case], env: &[(String, String)]) -> anyhow::Result<Vec<Figures>> {
    let http = reqwest::Client::new();
    let mut figures = Vec::new();
    let mut functions: Vec<&str> = cases.iter().map(|c| c.function).collect();
    functions.dedup();
    for function in functions {
        let mut rie = Rie::start(&knobs.rie, function, env).await?;
        for case in cases.iter().filter(|c| c.function == function) {
            figures.push(rie.measure(&http, case, knobs).await?);
        }
    }
    Ok(figures)
}

/// The streaming baseline under the emulator, at the body size of each list case.
async fn baseline(knobs: &Knobs, rie_figures: &[Figures]) -> anyhow::Result<Vec<Figures>> {
    let http = reqwest::Client::new();
    let mut rie = Rie::start(&knobs.rie, "stream-baseline", &[]).await?;
    let mut figures = Vec::new();
    for list in rie_figures.iter().filter(|f| f.label.starts_with("list-favorites")) {
        let case = Case {
            label: format!(
                "baseline: upstream lambda_http streaming, {} B in {BASELINE_CHUNKS} pieces",
                group(list.body_bytes as u64)
            ),
            function: "stream-baseline",
            event: events::event(
                "list-favorites/first-page-200.json",
                json!({"queryStringParameters": {
                    "bytes": list.body_bytes.to_string(), "chunks": BASELINE_CHUNKS.to_string(),
                }}),
            )?,
            path: None,
            streamed: true,
        };
        figures.push(rie.measure(&http, &case, knobs).await?);
    }
    Ok(figures)
}

/// The same requests through `cargo lambda watch`, with the same database and key (the
/// baseline through its `/lambda-url/` route). A case that does not answer 200 is reported as
/// such, not measured.
async fn through_make_run(
    knobs: &Knobs,
    paths: &[(String, String)],
    env: &[(String, String)],
    token: &str,
) -> anyhow::Result<Vec<Result<Figures, Failed>>> {
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let emulator = Emulator::start(&super::log_path("latency-watch"), &env, &[]).await?;
    let http = reqwest::Client::new();
    let mut figures = Vec::new();
    for (label, path) in paths {
        let url = format!("{}{path}", emulator.url);
        let once = || async {
            let started = Instant::now();
            let response = http
                .get(&url)
                .bearer_auth(token)
                .timeout(TIMEOUT)
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            let status = response.status();
            let body = response.bytes().await.with_context(|| format!("reading GET {path}"))?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            ensure!(
                status == 200,
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
            Ok::<_, anyhow::Error>((ms, body.len()))
        };
        say(format!("make run: {label}"));
        let measured = async {
            for _ in 0..knobs.warmups {
                once().await?;
            }
            let (mut client_ms, mut body_bytes) = (Vec::new(), 0);
            for _ in 0..knobs.requests {
                let (ms, bytes) = once().await?;
                client_ms.push(ms);
                body_bytes = bytes;
            }
            Ok::<_, anyhow::Error>((client_ms, body_bytes))
        }
        .await;
        figures.push(match measured {
            Ok((client_ms, body_bytes)) => Ok(Figures {
                label: label.clone(),
                client_ms: Samples::new(client_ms),
                report_ms: None,
                way_back_each_ms: None,
                body_bytes,
            }),
            Err(error) => {
                say(format!("make run: {label}: {error:#}"));
                Err(Failed {
                    label: label.clone(),
                    problem: format!("{error:#}"),
                })
            }
        });
    }
    Ok(figures)
}

/// One function under `aws-lambda-rie` on free ports; stopped, with the function, when dropped.
struct Rie(crate::rie::Rie);

impl Rie {
    /// Starts the emulator on function `name` with `env`, plus what Lambda sets; nothing of
    /// ours is inherited (the emulator hands its environment to the function).
    async fn start(rie: &Path, name: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        let log = super::log_path(&format!("latency-rie-{name}"));
        let mut all: Vec<(String, String)> = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", super::log_stream()),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        all.extend(env.iter().cloned());
        say(format!("{name} under aws-lambda-rie (log: {})", log.display()));
        Ok(Self(
            crate::rie::Rie::start(rie, &function_binary(name)?, &all, &log).await?,
        ))
    }

    /// One invocation: milliseconds to the answer's last byte, its REPORT duration, and the
    /// HTTP body's bytes; checks that the answer is a 200.
    async fn invoke(&mut self, http: &reqwest::Client, case: &Case) -> anyhow::Result<(f64, f64, usize)> {
        let started = Instant::now();
        let response = http
            .post(&self.0.invoke_url)
            .body(case.event.clone())
            .timeout(TIMEOUT)
            .send()
            .await
            .with_context(|| format!("invoking {}", case.function))?;
        let answer = response.bytes().await.context("reading the answer")?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, body_bytes) = api_gateway_status(&answer, case.streamed);
        ensure!(
            status == Some(200),
            "{}: answered {status:?}, not 200: {}\n(see {})",
            case.label,
            String::from_utf8_lossy(&answer[..answer.len().min(300)]),
            self.0.log.display()
        );
        let report = tokio::time::timeout(TIMEOUT, self.0.reports.recv())
            .await
            .ok()
            .flatten()
            .with_context(|| format!("no REPORT line after an invocation; see {}", self.0.log.display()))?;
        Ok((ms, report, body_bytes))
    }

    async fn measure(&mut self, http: &reqwest::Client, case: &Case, knobs: &Knobs) -> anyhow::Result<Figures> {
        say(format!("aws-lambda-rie: {}", case.label));
        for _ in 0..knobs.warmups {
            self.invoke(http, case).await?;
        }
        let (mut client_ms, mut report_ms, mut body_bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..knobs.requests {
            let (ms, report, bytes) = self.invoke(http, case).await?;
            client_ms.push(ms);
            report_ms.push(report);
            body_bytes = bytes;
        }
        let way_back = client_ms.iter().zip(&report_ms).map(|(c, r)| c - r).collect();
        Ok(Figures {
            label: case.label.clone(),
            client_ms: Samples::new(client_ms),
            report_ms: Some(Samples::new(report_ms)),
            way_back_each_ms: Some(Samples::new(way_back)),
            body_bytes,
        })
    }
}

/// The API Gateway status of an answer (from the prelude of a streamed one, the `statusCode` of
/// a buffered one) and the length of its HTTP body.
fn api_gateway_status(answer: &[u8], streamed: bool) -> (Option<u16>, usize) {
    let (prelude, body_bytes) = if streamed {
        match answer
            .windows(STREAM_SEPARATOR.len())
            .position(|w| w == STREAM_SEPARATOR)
        {
            Some(at) => (&answer[..at], answer.len() - at - STREAM_SEPARATOR.len()),
            None => return (None, 0),
        }
    } else {
        (answer, 0)
    };
    let Ok(document) = serde_json::from_slice::<Value>(prelude) else {
        return (None, 0);
    };
    let body_bytes = match streamed {
        true => body_bytes,
        false => document["body"].as_str().map_or(0, str::len),
    };
    let status = document["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok());
    (status, body_bytes)
}

fn ms(value: f64) -> String {
    format!("{value:.2}")
}

fn report(
    knobs: &Knobs,
    rie: &[Figures],
    baseline: &[Figures],
    watch: &[Result<Figures, Failed>],
    postgres: &str,
) -> anyhow::Result<()> {
    let mut out = Report::new("latency");
    let profile = if super::is_release() { "release" } else { "debug" };
    out.line(format!(
        "Machine: {}; Postgres {postgres}; {profile} build; {} warm invocations per case after {} warm-ups, one at a time.",
        super::machine(),
        knobs.requests,
        knobs.warmups
    ));
    out.blank();
    out.line(format!(
        "Under aws-lambda-rie ({}); times in ms, client = wall time to the last byte, REPORT = the emulator's `Duration`:",
        knobs.rie.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    ));
    out.blank();
    let mut table = Table::new(&[
        "case",
        ">body bytes",
        ">client p50",
        ">p90",
        ">p99",
        ">REPORT p50",
        ">client p50 − REPORT p50",
        ">max(client − REPORT)",
        ">≥ 35 ms",
        ">REPORT ≥ 35 ms",
    ]);
    for figures in rie.iter().chain(baseline) {
        let report = figures.report_ms.as_ref().context("a REPORT figure")?;
        table.row(vec![
            figures.label.clone(),
            group(figures.body_bytes as u64),
            ms(figures.client_ms.median()),
            ms(figures.client_ms.percentile(90.0)),
            ms(figures.client_ms.percentile(99.0)),
            ms(report.median()),
            ms(figures.way_back_ms().unwrap_or(f64::NAN)),
            ms(figures.way_back_each_ms.as_ref().map_or(f64::NAN, Samples::max)),
            format!("{} of {}", figures.stalls(), figures.client_ms.len()),
            report.count_at_least(STALL_MS).to_string(),
        ]);
    }
    out.table(&table);
    out.blank();
    out.line("Through `cargo lambda watch` (`make run`'s emulator), same database and token; times in ms:");
    out.blank();
    let mut table = Table::new(&["case", ">body bytes", ">client p50", ">p90", ">p99", ">≥ 35 ms"]);
    for figures in watch {
        let row = match figures {
            Ok(figures) => vec![
                figures.label.clone(),
                group(figures.body_bytes as u64),
                ms(figures.client_ms.median()),
                ms(figures.client_ms.percentile(90.0)),
                ms(figures.client_ms.percentile(99.0)),
                format!("{} of {}", figures.stalls(), figures.client_ms.len()),
            ],
            Err(failed) => vec![
                failed.label.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "not measured".into(),
            ],
        };
        table.row(row);
    }
    out.table(&table);
    out.blank();
    for failed in watch.iter().filter_map(|f| f.as_ref().err()) {
        out.line(format!(
            "- Not measured through `make run`: {}: {}",
            failed.label, failed.problem
        ));
    }

    let worst = rie
        .iter()
        .max_by(|a, b| a.way_back_ms().partial_cmp(&b.way_back_ms()).expect("no NaN"))
        .context("no case measured")?;
    let worst_way_back = worst.way_back_ms().unwrap_or(f64::NAN);
    out.line(format!(
        "- Target: under the emulator, client p50 ≤ REPORT p50 + {WAY_BACK_MS} ms in every case: {} (largest difference {} ms, {}).",
        verdict(worst_way_back <= WAY_BACK_MS),
        ms(worst_way_back),
        worst.label
    ));
    let stalls: usize = rie.iter().map(Figures::stalls).sum();
    let measured: usize = rie.iter().map(|f| f.client_ms.len()).sum();
    let slow_inside: usize = rie
        .iter()
        .filter_map(|f| f.report_ms.as_ref())
        .map(|r| r.count_at_least(STALL_MS))
        .sum();
    out.line(format!(
        "- Target: under the emulator, no invocation at {STALL_MS} ms or more: {} ({stalls} of {measured}; the REPORT duration itself at {STALL_MS} ms or more in {slow_inside}).",
        verdict(stalls == 0)
    ));
    let ours: Vec<&Result<Figures, Failed>> = watch
        .iter()
        .filter(|f| {
            !f.as_ref()
                .map_or_else(|e| &e.label, |f| &f.label)
                .starts_with("baseline")
        })
        .collect();
    let watch_stalls: usize = ours.iter().filter_map(|f| f.as_ref().ok()).map(Figures::stalls).sum();
    let watch_measured: usize = ours
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .map(|f| f.client_ms.len())
        .sum();
    let watch_failed = ours.iter().filter(|f| f.is_err()).count();
    out.line(format!(
        "- Target: through `make run`, no request at {STALL_MS} ms or more: {} ({watch_stalls} of {watch_measured}; {watch_failed} case(s) not answering 200).",
        verdict(watch_stalls == 0 && watch_failed == 0)
    ));
    let baseline_stalls: usize = baseline.iter().map(Figures::stalls).sum();
    let baseline_measured: usize = baseline.iter().map(|f| f.client_ms.len()).sum();
    out.line(format!(
        "- Baseline: upstream lambda_http streaming under the same emulator, {baseline_stalls} of {baseline_measured} invocations at {STALL_MS} ms or more."
    ));
    out.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_answer_has_its_status_in_the_prelude() {
        let mut answer = br#"{"statusCode":200,"headers":{}}"#.to_vec();
        answer.extend_from_slice(STREAM_SEPARATOR);
        answer.extend_from_slice(b"{\"data\":[]}");
        assert_eq!(api_gateway_status(&answer, true), (Some(200), 11));
        assert_eq!(
            api_gateway_status(br#"{"statusCode":404,"body":"{}"}"#, false),
            (Some(404), 2)
        );
        assert_eq!(api_gateway_status(b"{}", true), (None, 0));
    }
}
