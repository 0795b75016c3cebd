//! `bench list`: memory and throughput of the streamed list (`GET /favorites?limit=all`).
//!
//! For N favorites of one user (seeded cumulatively), each measured `BENCH_RUNS` times:
//! - the floor: Postgres emitting the same rows, `COPY (<the listing select>) TO STDOUT`
//!   (`shared::adapters::sql::LIST_COLUMNS` and `LIST_ORDER`, so it cannot drift from the code) read by this
//!   process over the wire protocol: no function, no HTTP;
//! - the list through the emulator (`cargo lambda watch`), its body counted and discarded;
//! - the list-favorites process's peak RSS (`VmHWM`, reset before each request);
//! - the same binary on the runtime API stand-in, without the emulator's relay hop.
//!
//! One unmeasured run per N checks the body is complete and has N items. Medians of the times,
//! maxima of the RSS. Targets: peak RSS at the largest N ≤ 1.25 × at the smallest; list items/s
//! ≥ 0.5 × COPY rows/s at every N.
//!
//! Knobs: `BENCH_SIZES` ("1000 100000 1000000", increasing), `BENCH_RUNS` (3), `BENCH_TIMEOUT`
//! (900 s, any one request or query).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::StreamExt;
use serde_json::Value;
use shared::adapters::sql::{LIST_COLUMNS, LIST_ORDER};
use sqlx::PgPool;
use uuid::Uuid;

use super::emulator::Emulator;
use super::no_hop::NoHop;
use super::report::{Report, Table, say, verdict};
use super::stats::{Samples, group, mib, ratio};
use super::{RunDir, knob, procfs, random_hex, seed};
use crate::Api;
use crate::database::{TestDatabase, admin_url};
use crate::runtime_api::{Acks, Counted};

/// How a complete JSON list ends.
const JSON_END: &[u8] = br#"],"next_cursor":null}"#;

/// The figures of one N.
struct Figures {
    n: u64,
    body_bytes: u64,
    copy_s: f64,
    list_s: f64,
    no_hop_s: f64,
    list_rss_kib: f64,
    no_hop_rss_kib: f64,
    emulator_rss_kib: Option<f64>,
    plan: String,
}

pub async fn run() -> anyhow::Result<()> {
    let sizes: Vec<u64> = knob::<String>("BENCH_SIZES", "1000 100000 1000000".into())?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("BENCH_SIZES: whole numbers separated by spaces")?;
    ensure!(
        !sizes.is_empty() && sizes.windows(2).all(|w| w[0] < w[1]),
        "BENCH_SIZES must increase"
    );
    let runs: usize = knob("BENCH_RUNS", 3)?;
    let timeout = Duration::from_secs(knob("BENCH_TIMEOUT", 900)?);
    procfs::reset_peak_rss(std::process::id()).context("this machine cannot reset a peak RSS (Linux ≥ 4.0 needed)")?;

    let database = TestDatabase::create(&admin_url()?, "favorites_bench", None).await?;
    let result = async {
        let db = PgPool::connect(&database.url)
            .await
            .context("connecting to the bench database")?;
        let bench = Bench::start(&database.url, timeout).await?;
        bench.measure(&db, &sizes, runs).await
    }
    .await;
    database.drop_now().await?;
    let (figures, db_version) = result?;
    report(&figures, runs, &db_version)
}

/// What the measurements run against: the emulator and its list-favorites process, the same
/// binary on the stand-in, a user and its token.
struct Bench {
    /// Runs as long as the bench: its list-favorites process is measured.
    _emulator: Emulator,
    api: Api,
    email: String,
    token: String,
    list_pid: u32,
    emulator_pid: Option<u32>,
    no_hop: NoHop,
    timeout: Duration,
    _dir: RunDir,
}

impl Bench {
    async fn start(database_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let dir = RunDir::new("list")?;
        let jwt_secret = random_hex(48);
        let env = [
            ("DATABASE_URL", database_url.to_string()),
            ("JWT_SECRET", jwt_secret.clone()),
            ("FAVORITES_DATA_DIR", dir.display()),
            ("RUST_LOG", "warn".to_string()),
        ];
        let mut emulator_env = env.to_vec();
        emulator_env.push(("BCRYPT_COST", "4".into()));
        let emulator = Emulator::start(&super::log_path("list-emulator"), &emulator_env, &[]).await?;
        let api = Api::new(&emulator.url);
        let session = api.new_user().await;
        let warm_up = api
            .send(reqwest::Method::GET, "/favorites?limit=1", Some(&session.token), None)
            .await;
        ensure!(
            warm_up.status() == 200,
            "the warm-up list answered {}",
            warm_up.status()
        );
        let list_pid = emulator
            .function_pid("list-favorites")
            .context("no list-favorites process of the emulator after the warm-up")?;
        let emulator_pid = emulator.emulator_pid();
        say(format!(
            "list-favorites under the emulator: pid {list_pid}; emulator: pid {emulator_pid:?}"
        ));

        let no_hop = NoHop::start(Acks::Delayed, &env, 4096).await?;
        let bench = Self {
            _emulator: emulator,
            api,
            email: session.email,
            token: session.token,
            list_pid,
            emulator_pid,
            no_hop,
            timeout,
            _dir: dir,
        };
        bench.no_hop_once(0, Duration::from_secs(60)).await?;
        Ok(bench)
    }

    async fn measure(&self, db: &PgPool, sizes: &[u64], runs: usize) -> anyhow::Result<(Vec<Figures>, String)> {
        let user = seed::user_id(db, &self.email).await?;
        let listing = listing_sql(user);
        let mut figures = Vec::new();
        let mut seeded = 0;
        for &n in sizes {
            say(format!(
                "N = {}: seed, then COPY / list / no-hop list × {runs}",
                group(n)
            ));
            seed::favorites(db, user, seeded + 1, n).await?;
            seeded = n;
            // Flush the seeding's dirty pages now rather than during the measurements.
            if sqlx::raw_sql("checkpoint").execute(db).await.is_err() {
                say("checkpoint refused (not a superuser?); the first runs may compete with the checkpointer");
            }
            self.verify_list(n).await?;
            let plan: String = sqlx::query_scalar(&format!("explain {listing}"))
                .fetch_one(db)
                .await
                .context("explaining the listing")?;
            copy_once(db, &listing, n).await?; // warms the cache for every reader alike

            let (mut copy_s, mut list_s, mut no_hop_s) = (Vec::new(), Vec::new(), Vec::new());
            let (mut list_rss, mut no_hop_rss, mut emulator_rss) = (Vec::new(), Vec::new(), Vec::new());
            let mut body_bytes = 0;
            for run in 1..=runs {
                copy_s.push(copy_once(db, &listing, n).await?);

                procfs::reset_peak_rss(self.list_pid)?;
                if let Some(pid) = self.emulator_pid {
                    procfs::reset_peak_rss(pid)?;
                }
                let (seconds, bytes) = self.list_once().await?;
                list_s.push(seconds);
                body_bytes = bytes;
                list_rss.push(procfs::peak_rss_kib(self.list_pid)? as f64);
                if let Some(pid) = self.emulator_pid {
                    emulator_rss.push(procfs::peak_rss_kib(pid)? as f64);
                }

                procfs::reset_peak_rss(self.no_hop.process.pid())?;
                no_hop_s.push(self.no_hop_once(n, self.timeout).await?);
                no_hop_rss.push(procfs::peak_rss_kib(self.no_hop.process.pid())? as f64);
                say(format!(
                    "N={n} run {run}: COPY {:.3}s, list {:.3}s (RSS {} KiB), no-hop {:.3}s (RSS {} KiB)",
                    copy_s[run - 1],
                    list_s[run - 1],
                    list_rss[run - 1],
                    no_hop_s[run - 1],
                    no_hop_rss[run - 1]
                ));
            }
            ensure!(
                procfs::is_alive(self.list_pid),
                "the list-favorites process {} is gone (restarted?); its RSS figures would be wrong",
                self.list_pid
            );
            figures.push(Figures {
                n,
                body_bytes,
                copy_s: Samples::new(copy_s).median(),
                list_s: Samples::new(list_s).median(),
                no_hop_s: Samples::new(no_hop_s).median(),
                list_rss_kib: Samples::new(list_rss).max(),
                no_hop_rss_kib: Samples::new(no_hop_rss).max(),
                emulator_rss_kib: (!emulator_rss.is_empty()).then(|| Samples::new(emulator_rss).max()),
                plan: plan.split("  (cost=").next().unwrap_or_default().trim().to_string(),
            });
        }
        let version: String = sqlx::query_scalar("show server_version").fetch_one(db).await?;
        Ok((figures, version))
    }

    /// `GET /favorites?limit=all` through the emulator, checked to be a 200.
    async fn get_all(&self) -> anyhow::Result<reqwest::Response> {
        let response = self
            .api
            .http
            .get(self.api.url("/favorites?limit=all"))
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .send()
            .await
            .context("GET /favorites?limit=all")?;
        ensure!(
            response.status() == 200,
            "GET /favorites?limit=all answered {}",
            response.status()
        );
        Ok(response)
    }

    /// Seconds for `GET /favorites?limit=all` through the emulator, to its last byte, and the
    /// body's bytes; checks the 200 and that the body is complete.
    async fn list_once(&self) -> anyhow::Result<(f64, u64)> {
        let started = Instant::now();
        let response = self.get_all().await?;
        let mut counted = Counted::new(0);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            counted.take(&chunk.context("reading the list")?);
        }
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            counted.tail.ends_with(JSON_END),
            "the list body does not end with {JSON_END:?} (cut short?)"
        );
        Ok((seconds, counted.bytes))
    }

    /// Seconds for the same list answered by the no-hop process, from handing over the event to
    /// the last byte; checks the 200, completeness and the count.
    async fn no_hop_once(&self, n: u64, within: Duration) -> anyhow::Result<f64> {
        let answer = self.no_hop.list(&self.token, "all", within).await?;
        ensure!(
            !answer.error && answer.status() == Some(200) && answer.items == n && answer.tail.ends_with(JSON_END),
            "the no-hop list of {n} failed: status {:?}, error {}, {} items, body starts {:?}",
            answer.status(),
            answer.error,
            answer.items,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
        );
        Ok(answer.invocation_time().as_secs_f64())
    }

    /// One unmeasured list that checks the body: up to 100 000 items parsed, ids and order
    /// checked; beyond, streamed with its head, tail and item count checked.
    async fn verify_list(&self, n: u64) -> anyhow::Result<()> {
        let response = self.get_all().await?;
        if n <= 100_000 {
            let document: Value = response.json().await.context("the list is not JSON")?;
            let data = document["data"].as_array().context("no data array")?;
            let id = |i: usize| data[i]["id"].as_str().unwrap_or_default().to_string();
            let newest_first = data
                .windows(2)
                .all(|w| w[0]["created_at"].as_str() > w[1]["created_at"].as_str());
            let types: std::collections::BTreeSet<&str> = data.iter().filter_map(|d| d["type"].as_str()).collect();
            ensure!(
                data.len() as u64 == n
                    && document["next_cursor"].is_null()
                    && id(0) == "fav-1"
                    && id(data.len() - 1) == format!("fav-{n}")
                    && newest_first
                    && (n < 3 || types.len() == 3),
                "the list of N={n} is wrong ({} items; parsed, ids and order checked)",
                data.len()
            );
            say(format!(
                "N={n}: {} items, parsed as JSON, ids and order checked",
                data.len()
            ));
        } else {
            let mut counted = Counted::new(9);
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                counted.take(&chunk.context("reading the list")?);
            }
            ensure!(
                counted.kept == br#"{"data":["# && counted.tail.ends_with(JSON_END) && counted.items == n,
                "the list of N={n} is wrong (streamed: head, tail and item count checked; items: {})",
                counted.items
            );
            say(format!(
                "N={n}: {} items, streamed: head, tail and item count checked",
                counted.items
            ));
        }
        Ok(())
    }
}

/// The list function's select for `user`, in the list's order. COPY takes no parameters, so
/// the user id (a UUID, never text from outside) is written into it.
fn listing_sql(user: Uuid) -> String {
    format!("{LIST_COLUMNS} from favorites where user_id = '{user}'::uuid {LIST_ORDER}")
}

/// Seconds for Postgres to emit the listing's rows to this process (`COPY … TO STDOUT`);
/// checks the count.
async fn copy_once(db: &PgPool, listing: &str, n: u64) -> anyhow::Result<f64> {
    let mut connection = db.acquire().await.context("connecting for COPY")?;
    let started = Instant::now();
    let mut rows = 0u64;
    let mut stream = connection
        .copy_out_raw(&format!("copy ({listing}) to stdout"))
        .await
        .context("starting COPY")?;
    while let Some(chunk) = stream.next().await {
        rows += chunk.context("reading COPY")?.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    ensure!(rows == n, "COPY emitted {rows} rows, expected {n}");
    Ok(seconds)
}

fn report(figures: &[Figures], runs: usize, db_version: &str) -> anyhow::Result<()> {
    let (first, last) = (&figures[0], &figures[figures.len() - 1]);
    let rate = |n: u64, s: f64| n as f64 / s;
    let mut report = Report::new("list");
    report.line(format!(
        "bench-list: {}, Postgres {db_version}, runs per figure: {runs}",
        super::machine()
    ));
    report.blank();
    let mut table = Table::new(&[
        ">N",
        ">COPY rows/s",
        ">list items/s",
        ">list ÷ COPY",
        ">peak RSS (MiB)",
        &format!(">RSS ÷ RSS at {}", group(first.n)),
    ]);
    for f in figures {
        table.row(vec![
            group(f.n),
            group(rate(f.n, f.copy_s).round() as u64),
            group(rate(f.n, f.list_s).round() as u64),
            format!("{:.2}", ratio(f.copy_s, f.list_s)),
            format!("{:.1}", f.list_rss_kib / 1024.0),
            format!("{:.2}", ratio(f.list_rss_kib, first.list_rss_kib)),
        ]);
    }
    report.table(&table);
    report.blank();
    report.line("Details (medians of the times, maxima of the RSS; the no-hop run is the same binary on the runtime API stand-in instead of the emulator):");
    report.blank();
    let mut table = Table::new(&[
        ">N",
        ">body (MiB)",
        ">COPY (s)",
        ">list via emulator (s)",
        ">list MiB/s",
        ">no-hop list (s)",
        ">no-hop items/s",
        ">no-hop ÷ COPY",
        ">no-hop peak RSS (MiB)",
        ">emulator peak RSS (MiB)",
    ]);
    for f in figures {
        table.row(vec![
            group(f.n),
            format!("{:.1}", mib(f.body_bytes)),
            format!("{:.3}", f.copy_s),
            format!("{:.3}", f.list_s),
            format!("{:.1}", mib(f.body_bytes) / f.list_s),
            format!("{:.3}", f.no_hop_s),
            group(rate(f.n, f.no_hop_s).round() as u64),
            format!("{:.2}", ratio(f.copy_s, f.no_hop_s)),
            format!("{:.1}", f.no_hop_rss_kib / 1024.0),
            f.emulator_rss_kib
                .map_or("?".into(), |kib| format!("{:.1}", kib / 1024.0)),
        ]);
    }
    report.table(&table);
    report.blank();
    for f in figures {
        report.line(format!("COPY plan at {}: {}", group(f.n), f.plan));
    }
    report.blank();
    let rss_ratio = ratio(last.list_rss_kib, first.list_rss_kib);
    let lowest = figures
        .iter()
        .map(|f| ratio(f.copy_s, f.list_s))
        .fold(f64::INFINITY, f64::min);
    report.line(format!(
        "- memory target (peak RSS at {} ≤ 1.25 × at {}): **{}**, ratio {rss_ratio:.2}",
        group(last.n),
        group(first.n),
        verdict(rss_ratio <= 1.25)
    ));
    report.line(format!(
        "- throughput target (list items/s ≥ 0.5 × COPY rows/s, every N): **{}**, lowest ratio {lowest:.2}, at {}: {:.2}",
        verdict(lowest >= 0.5),
        group(last.n),
        ratio(last.copy_s, last.list_s)
    ));
    report.save()
}
