//! `bench cache`: list pages served from the Redis cache versus from Postgres alone, in the
//! same run.
//!
//! One user with `BENCH_FAVORITES` favorites (seeded by SQL, `favorites_version` bumped as a
//! write would). Two emulators on the same database: "uncached" without `REDIS_URL`, "cached"
//! with the private Redis of `BENCH_REDIS_URL` (scripts/bench.sh starts it, so that its
//! statistics count only this benchmark) and room for the whole list. After a warm-up that checks
//! cached pages equal uncached ones:
//! - round trips: `CONFIG RESETSTAT`, `BENCH_RT_REQUESTS` cached 50-item pages, `INFO
//!   commandstats`, with `MONITOR` telling the commands the function sent from those its Lua
//!   script ran;
//! - through the emulator: `hey -z BENCH_SECONDS -c BENCH_CONCURRENCY` per (page size, mode),
//!   `BENCH_RUNS` times alternating which mode goes first; medians;
//! - without the emulator: the same binary on the runtime API stand-in, `BENCH_NOHOP_REQUESTS`
//!   invocations per (page size, mode), uncached and cached alternating; from handing over the
//!   event to the last byte. Twice: with quick ACKs (the function's own time) and with the
//!   kernel's delayed ACKs (the 40 ms stall of docs/BENCHMARKS.md).
//!
//! Targets: one Redis round trip per cached page; cached p99 < uncached p99 at both sizes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;
use sqlx::PgPool;

use super::emulator::Emulator;
use super::no_hop::NoHop;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, group, ratio};
use super::tools::{Load, Monitored, RedisCli, hey};
use super::{RunDir, knob, random_hex, seed};
use crate::Api;
use crate::database::{TestDatabase, admin_url};
use crate::runtime_api::Acks;

const SIZES: [u64; 2] = [50, 1000];
const MODES: [Mode; 2] = [Mode::Uncached, Mode::Cached];
/// Room for the whole list in the cache.
const CACHE_MAX_ITEMS: u64 = 5000;
const CACHE_ENV: [&str; 5] = [
    "REDIS_URL",
    "REDIS_TIMEOUT_MS",
    "CACHE_TTL_SECONDS",
    "CACHE_MAX_ITEMS",
    "CACHE_MAX_BYTES",
];
/// A stall of the delayed-ACK kind.
const STALL_MS: f64 = 35.0;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Uncached,
    Cached,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Uncached => "uncached",
            Mode::Cached => "cached",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Uncached => "uncached (Postgres)",
            Mode::Cached => "cached (Redis hit)",
        }
    }
}

struct Knobs {
    seconds: u64,
    concurrency: u64,
    runs: usize,
    rt_requests: u64,
    no_hop_requests: usize,
    favorites: u64,
    redis_url: String,
}

pub async fn run() -> anyhow::Result<()> {
    let knobs = Knobs {
        seconds: knob("BENCH_SECONDS", 20)?,
        concurrency: knob("BENCH_CONCURRENCY", 4)?,
        runs: knob("BENCH_RUNS", 3)?,
        rt_requests: knob("BENCH_RT_REQUESTS", 200)?,
        no_hop_requests: knob("BENCH_NOHOP_REQUESTS", 400)?,
        favorites: knob("BENCH_FAVORITES", 2000)?,
        redis_url: std::env::var("BENCH_REDIS_URL")
            .context("BENCH_REDIS_URL: a private Redis (scripts/bench.sh starts one)")?,
    };
    ensure!(
        knobs.favorites > 1000 && knobs.favorites <= CACHE_MAX_ITEMS,
        "BENCH_FAVORITES must exceed 1000 (so both pages have a next page) and be at most {CACHE_MAX_ITEMS} (so the whole list is cached)"
    );
    ensure!(
        knobs.runs > 0 && knobs.rt_requests > 0 && knobs.no_hop_requests > 0,
        "the BENCH_* counts must be positive"
    );
    let database = TestDatabase::create(&admin_url()?, "favorites_bench", None).await?;
    let result = measure(&database.url, &knobs).await;
    database.drop_now().await?;
    result
}

async fn measure(database_url: &str, knobs: &Knobs) -> anyhow::Result<()> {
    let db = PgPool::connect(database_url)
        .await
        .context("connecting to the bench database")?;
    let redis = RedisCli {
        url: knobs.redis_url.clone(),
    };
    let dir = RunDir::new("cache")?;
    // JWT_TTL_SECONDS: the token must outlive a long run.
    let common = vec![
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_SECRET", random_hex(48)),
        ("JWT_TTL_SECONDS", "86400".to_string()),
        ("BCRYPT_COST", "4".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let cache_env = [
        ("REDIS_URL", knobs.redis_url.clone()),
        ("CACHE_MAX_ITEMS", CACHE_MAX_ITEMS.to_string()),
        ("CACHE_MAX_BYTES", "16777216".to_string()),
    ];
    let env_of = |mode: Mode| {
        let mut env = common.clone();
        env.push(("FAVORITES_DATA_DIR", dir.path().join(mode.name()).display().to_string()));
        if mode == Mode::Cached {
            env.extend(cache_env.iter().cloned());
        }
        env
    };
    for mode in MODES {
        std::fs::create_dir_all(dir.path().join(mode.name()))?;
    }
    let uncached = Emulator::start(&super::log_path("cache-uncached"), &env_of(Mode::Uncached), &CACHE_ENV).await?;
    let cached = Emulator::start(&super::log_path("cache-cached"), &env_of(Mode::Cached), &CACHE_ENV).await?;
    let api = BTreeMap::from([
        (Mode::Uncached, Api::new(&uncached.url)),
        (Mode::Cached, Api::new(&cached.url)),
    ]);

    let session = api[&Mode::Uncached].new_user().await;
    let token = session.token.clone();
    let user = seed::user_id(&db, &session.email).await?;
    say(format!("seeding {} favorites", knobs.favorites));
    seed::favorites(&db, user, 1, knobs.favorites).await?;
    let version: i64 = sqlx::query_scalar("select favorites_version from users where id = $1")
        .bind(user)
        .fetch_one(&db)
        .await?;

    say("warm-up: each page on each emulator; cached pages must equal uncached ones");
    let mut body_bytes = BTreeMap::new();
    for limit in SIZES {
        let path = format!("/favorites?limit={limit}");
        get_page(&api[&Mode::Uncached], &path, &token).await?;
        let reference = get_page(&api[&Mode::Uncached], &path, &token).await?;
        let filled = get_page(&api[&Mode::Cached], &path, &token).await?; // a miss: fills the cache
        let hit = get_page(&api[&Mode::Cached], &path, &token).await?;
        same_page(&reference, &filled, limit)?;
        same_page(&reference, &hit, limit)?;
        body_bytes.insert(limit, hit.len());
    }
    let meta_key = format!("fav:{{{user}}}:meta");
    let entry = redis.run(&["hmget", &meta_key, "v", "full", "n"])?;
    let entry: Vec<&str> = entry.lines().collect();
    ensure!(
        entry == [version.to_string().as_str(), "1", knobs.favorites.to_string().as_str()],
        "the cache entry {meta_key} is not the whole list at version {version}: v, full, n = {entry:?}"
    );

    say("no-hop functions: list-favorites on runtime API stand-ins, uncached and cached, quick and delayed ACKs");
    let mut no_hop = BTreeMap::new();
    for acks in [Acks::Quick, Acks::Delayed] {
        for mode in MODES {
            no_hop.insert((acks, mode), NoHop::start(acks, &env_of(mode), 1024).await?);
        }
    }

    let round_trips = round_trips(&api[&Mode::Cached], &token, &redis, knobs.rt_requests, dir.path()).await?;

    say(format!(
        "load: hey -z {}s -c {}, {} runs per (page size, mode)",
        knobs.seconds, knobs.concurrency, knobs.runs
    ));
    let load_before = super::load_average();
    let mut loads: BTreeMap<(u64, Mode), Vec<Load>> = BTreeMap::new();
    let mut evalsha_per_answer: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for run in 1..=knobs.runs {
        let order = if run % 2 == 1 {
            MODES
        } else {
            [Mode::Cached, Mode::Uncached]
        };
        for limit in SIZES {
            for mode in order {
                if mode == Mode::Cached {
                    redis.run(&["config", "resetstat"])?;
                }
                let output = dir.path().join(format!("hey-{}-{limit}-{run}.txt", mode.name()));
                let url = api[&mode].url(&format!("/favorites?limit={limit}"));
                let load = hey(&url, &token, knobs.seconds, knobs.concurrency, &output)
                    .with_context(|| format!("{} limit={limit} run {run}", mode.name()))?;
                if mode == Mode::Cached {
                    let calls = redis.command_calls()?;
                    let evalsha = calls.get("evalsha").copied().unwrap_or(0);
                    evalsha_per_answer
                        .entry(limit)
                        .or_default()
                        .push(evalsha as f64 / load.answers as f64);
                }
                say(format!(
                    "run {run}, limit={limit}, {}: p50 {:.2} ms, p99 {:.2} ms, {:.1} req/s ({} answers, all 200)",
                    mode.name(),
                    load.p50_ms,
                    load.p99_ms,
                    load.requests_per_s,
                    load.answers
                ));
                loads.entry((limit, mode)).or_default().push(load);
            }
        }
    }
    let load_after = super::load_average();

    let mut invocations = BTreeMap::new();
    let mut evalsha_per_invocation = BTreeMap::new();
    for acks in [Acks::Quick, Acks::Delayed] {
        say(format!(
            "no hop, {} ACKs: {} invocations per (page size, mode)",
            acks_name(acks),
            knobs.no_hop_requests
        ));
        redis.run(&["config", "resetstat"])?;
        let mut count = 0;
        for limit in SIZES {
            let pair = [&no_hop[&(acks, Mode::Uncached)], &no_hop[&(acks, Mode::Cached)]];
            let times = alternate(pair, &token, limit, knobs.no_hop_requests).await?;
            count += knobs.no_hop_requests + 1;
            for (mode, ms) in MODES.into_iter().zip(times) {
                invocations.insert((acks, limit, mode), Samples::new(ms));
            }
        }
        let evalsha = redis.command_calls()?.get("evalsha").copied().unwrap_or(0);
        evalsha_per_invocation.insert(acks, evalsha as f64 / count as f64);
    }
    let mut logged: Vec<String> = std::fs::read_to_string(super::log_path("cache-cached"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    for ((_, mode), function) in &no_hop {
        if *mode == Mode::Cached {
            logged.extend(function.process.last_lines(usize::MAX));
        }
    }
    let cache_failures = logged.iter().filter(|l| l.contains("favorites cache failed")).count();

    let postgres: String = sqlx::query_scalar("show server_version").fetch_one(&db).await?;
    let redis_version = redis
        .run(&["info", "server"])?
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_string))
        .unwrap_or_default();
    let figures = Figures {
        knobs,
        body_bytes,
        round_trips,
        loads,
        evalsha_per_answer,
        invocations,
        evalsha_per_invocation,
        cache_failures,
        header: format!(
            "bench-cache: {}, Postgres {postgres}, Redis {redis_version}; load average {load_before} at the start of the load runs, {load_after} at the end",
            super::machine()
        ),
    };
    drop((uncached, cached));
    report(&figures)
}

async fn get_page(api: &Api, path: &str, token: &str) -> anyhow::Result<Vec<u8>> {
    let response = api.send(reqwest::Method::GET, path, Some(token), None).await;
    let status = response.status();
    let body = response.bytes().await?.to_vec();
    ensure!(
        status == 200,
        "GET {path} answered {status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok(body)
}

/// Both pages parse, have `limit` items, the same items in the same order, and the same
/// `next_cursor` (the list is longer than the page).
fn same_page(uncached: &[u8], cached: &[u8], limit: u64) -> anyhow::Result<()> {
    let u: Value = serde_json::from_slice(uncached).context("the uncached page is not JSON")?;
    let c: Value = serde_json::from_slice(cached).context("the cached page is not JSON")?;
    let items = |v: &Value| v["data"].as_array().map_or(0, Vec::len) as u64;
    ensure!(
        items(&u) == limit && items(&c) == limit,
        "limit={limit}: pages of {} and {} items",
        items(&u),
        items(&c)
    );
    ensure!(
        u["data"] == c["data"],
        "limit={limit}: the cached page's items differ from the uncached one's"
    );
    ensure!(
        !u["next_cursor"].is_null() && u["next_cursor"] == c["next_cursor"],
        "limit={limit}: next_cursor {} uncached, {} cached",
        u["next_cursor"],
        c["next_cursor"]
    );
    say(format!(
        "limit={limit}: cached and uncached pages are identical ({limit} items, same next_cursor)"
    ));
    Ok(())
}

/// Round trips per cached page: Redis's own count of `EVALSHA` and `MONITOR`'s view of who sent
/// what, over `requests` sequential cached pages of 50.
struct RoundTrips {
    requests: u64,
    calls: BTreeMap<String, u64>,
    monitored: Monitored,
}

async fn round_trips(
    api: &Api,
    token: &str,
    redis: &RedisCli,
    requests: u64,
    dir: &Path,
) -> anyhow::Result<RoundTrips> {
    say(format!(
        "round trips: {requests} sequential cached requests of limit=50, INFO commandstats and MONITOR"
    ));
    redis.run(&["config", "resetstat"])?;
    let monitor = redis.monitor(&dir.join("monitor.log"))?;
    for _ in 0..requests {
        get_page(api, "/favorites?limit=50", token).await?;
    }
    // Stop MONITOR first, so that it does not show our INFO.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let monitored = monitor.stop()?;
    let calls = redis.command_calls()?;
    Ok(RoundTrips {
        requests,
        calls,
        monitored,
    })
}

/// One page of `limit`: milliseconds from handing over the event to the last byte; checks the
/// 200 and the count.
async fn page_ms(function: &NoHop, token: &str, limit: u64) -> anyhow::Result<f64> {
    let answer = function
        .list(token, &limit.to_string(), Duration::from_secs(60))
        .await?;
    ensure!(
        !answer.error && answer.status() == Some(200) && answer.items == limit,
        "no-hop limit={limit}: status {:?}, error {}, {} items",
        answer.status(),
        answer.error,
        answer.items
    );
    Ok(answer.invocation_time().as_secs_f64() * 1000.0)
}

/// `count` invocations of each function of `pair` at `limit`, taking turns one by one (which
/// goes first alternates too), after one unmeasured invocation each.
async fn alternate(pair: [&NoHop; 2], token: &str, limit: u64, count: usize) -> anyhow::Result<[Vec<f64>; 2]> {
    for function in pair {
        page_ms(function, token, limit).await?;
    }
    let mut times = [Vec::with_capacity(count), Vec::with_capacity(count)];
    for i in 0..count {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            times[which].push(page_ms(pair[which], token, limit).await?);
        }
    }
    Ok(times)
}

fn acks_name(acks: Acks) -> &'static str {
    match acks {
        Acks::Quick => "quick",
        Acks::Delayed => "delayed",
    }
}

struct Figures<'k> {
    knobs: &'k Knobs,
    body_bytes: BTreeMap<u64, usize>,
    round_trips: RoundTrips,
    loads: BTreeMap<(u64, Mode), Vec<Load>>,
    evalsha_per_answer: BTreeMap<u64, Vec<f64>>,
    invocations: BTreeMap<(Acks, u64, Mode), Samples>,
    evalsha_per_invocation: BTreeMap<Acks, f64>,
    cache_failures: usize,
    header: String,
}

/// Medians over the runs of p50, p99 and requests/s.
fn medians(loads: &[Load]) -> (f64, f64, f64) {
    let of = |f: fn(&Load) -> f64| Samples::new(loads.iter().map(f).collect()).median();
    (of(|l| l.p50_ms), of(|l| l.p99_ms), of(|l| l.requests_per_s))
}

fn report(f: &Figures) -> anyhow::Result<()> {
    let k = f.knobs;
    let mut report = Report::new("cache");
    report.line(&f.header);
    report.blank();
    report.line(format!(
        "One user with {} favorites; GET /favorites?limit=N with a Bearer token; `hey -z {}s -c {}`, {} runs per row (alternating which mode goes first), medians; every answer 200.",
        group(k.favorites),
        k.seconds,
        k.concurrency,
        k.runs
    ));
    report.blank();
    let mut table = Table::new(&[">page size", "mode", ">body (KiB)", ">p50 (ms)", ">p99 (ms)", ">req/s"]);
    for limit in SIZES {
        for mode in MODES {
            let (p50, p99, rps) = medians(&f.loads[&(limit, mode)]);
            table.row(vec![
                group(limit),
                mode.label().into(),
                format!("{:.1}", f.body_bytes[&limit] as f64 / 1024.0),
                format!("{p50:.2}"),
                format!("{p99:.2}"),
                group(rps.round() as u64),
            ]);
        }
    }
    report.table(&table);
    report.blank();
    let mut table = Table::new(&[
        ">page size",
        ">p50 cached ÷ uncached",
        ">p99 cached ÷ uncached",
        ">req/s cached ÷ uncached",
    ]);
    for limit in SIZES {
        let (u50, u99, urps) = medians(&f.loads[&(limit, Mode::Uncached)]);
        let (c50, c99, crps) = medians(&f.loads[&(limit, Mode::Cached)]);
        table.row(vec![
            group(limit),
            format!("{:.2}", ratio(c50, u50)),
            format!("{:.2}", ratio(c99, u99)),
            format!("{:.2}", ratio(crps, urps)),
        ]);
    }
    report.table(&table);
    report.blank();
    report.line(format!(
        "Without the emulator (the same binary on the runtime API stand-in, {} sequential invocations per row, uncached and cached alternating; from handing over the event to the last byte of the streamed response; quick ACKs: the stand-in acknowledges every segment at once, delayed: the kernel's default):",
        k.no_hop_requests
    ));
    report.blank();
    let mut table = Table::new(&[
        ">page size",
        "mode",
        "ACKs",
        ">p50 (ms)",
        ">p99 (ms)",
        ">mean (ms)",
        ">≥ 35 ms",
    ]);
    for acks in [Acks::Quick, Acks::Delayed] {
        for limit in SIZES {
            for mode in MODES {
                let s = &f.invocations[&(acks, limit, mode)];
                table.row(vec![
                    group(limit),
                    mode.label().into(),
                    acks_name(acks).into(),
                    format!("{:.2}", s.median()),
                    format!("{:.2}", s.percentile(99.0)),
                    format!("{:.2}", s.mean()),
                    format!("{:.0}%", s.share_at_least(STALL_MS) * 100.0),
                ]);
            }
        }
    }
    report.table(&table);
    report.blank();
    let mut table = Table::new(&[
        ">page size",
        "ACKs",
        ">p50 cached ÷ uncached",
        ">p99 cached ÷ uncached",
        ">mean cached ÷ uncached",
    ]);
    for acks in [Acks::Quick, Acks::Delayed] {
        for limit in SIZES {
            let u = &f.invocations[&(acks, limit, Mode::Uncached)];
            let c = &f.invocations[&(acks, limit, Mode::Cached)];
            table.row(vec![
                group(limit),
                acks_name(acks).into(),
                format!("{:.2}", ratio(c.median(), u.median())),
                format!("{:.2}", ratio(c.percentile(99.0), u.percentile(99.0))),
                format!("{:.2}", ratio(c.mean(), u.mean())),
            ]);
        }
    }
    report.table(&table);
    report.blank();
    report.line(format!(
        "EVALSHA per cached no-hop invocation: {:.3} (quick ACKs), {:.3} (delayed)",
        f.evalsha_per_invocation[&Acks::Quick],
        f.evalsha_per_invocation[&Acks::Delayed]
    ));
    report.blank();
    report.line("Every run through the emulator (p50 ms / p99 ms / req/s):");
    report.blank();
    for limit in SIZES {
        for mode in MODES {
            let runs: Vec<String> = f.loads[&(limit, mode)]
                .iter()
                .map(|l| format!("{:.2} / {:.2} / {:.1}", l.p50_ms, l.p99_ms, l.requests_per_s))
                .collect();
            let extra = match mode {
                Mode::Cached => format!(
                    " — EVALSHA per answer: {}",
                    f.evalsha_per_answer[&limit]
                        .iter()
                        .map(|e| format!("{e:.3}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Mode::Uncached => String::new(),
            };
            report.line(format!("- limit={limit}, {}: {}{extra}", mode.name(), runs.join("; ")));
        }
    }
    report.blank();
    let rt = &f.round_trips;
    let evalsha = rt.calls.get("evalsha").copied().unwrap_or(0);
    let eval = rt.calls.get("eval").copied().unwrap_or(0);
    let top_level: u64 = rt.monitored.top_level.values().sum();
    let others = top_level.saturating_sub(evalsha);
    let per_page = evalsha as f64 / rt.requests as f64;
    let list = |m: &BTreeMap<String, u64>| m.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ");
    report.line(format!(
        "Round trips per cached page ({} sequential requests of limit=50 after CONFIG RESETSTAT):",
        rt.requests
    ));
    report.blank();
    report.line(format!(
        "- EVALSHA: {evalsha} calls = **{per_page:.2} per page**; EVAL: {eval} (the script was loaded during the warm-up)"
    ));
    report.line(format!(
        "- sent by the function (MONITOR, top level): {top_level} commands ({}) over {} connection(s), {} distinct script(s)",
        list(&rt.monitored.top_level),
        rt.monitored.clients,
        rt.monitored.scripts
    ));
    report.line(format!(
        "- run inside the Lua script, which INFO commandstats counts too: {}",
        list(&rt.monitored.in_scripts)
    ));
    report.line(format!("- INFO commandstats, every line: {}", list(&rt.calls)));
    report.line("  (config|resetstat and monitor are redis-cli's own; INFO does not count itself)");
    report.blank();
    report.line(format!(
        "Cache failures logged by the cached functions during the run: {}",
        f.cache_failures
    ));
    report.blank();
    let one_round_trip = evalsha == rt.requests && eval == 0 && others == 0;
    report.line(format!(
        "- one round trip per cached page: **{}** ({per_page:.2} EVALSHA per page, {others} other top-level commands)",
        verdict(one_round_trip)
    ));
    for limit in SIZES {
        let (_, u99, _) = medians(&f.loads[&(limit, Mode::Uncached)]);
        let (_, c99, _) = medians(&f.loads[&(limit, Mode::Cached)]);
        report.line(format!(
            "- cached p99 < uncached p99 at limit={limit}, through the emulator (hey): **{}** ({c99:.2} ms vs {u99:.2} ms)",
            verdict(c99 < u99)
        ));
    }
    for acks in [Acks::Quick, Acks::Delayed] {
        for limit in SIZES {
            let u99 = f.invocations[&(acks, limit, Mode::Uncached)].percentile(99.0);
            let c99 = f.invocations[&(acks, limit, Mode::Cached)].percentile(99.0);
            report.line(format!(
                "- cached p99 < uncached p99 at limit={limit}, without the emulator, {} ACKs: **{}** ({c99:.2} ms vs {u99:.2} ms)",
                acks_name(acks),
                verdict(c99 < u99)
            ));
        }
    }
    report.save()
}
