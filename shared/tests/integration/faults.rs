//! Postgres failing under load, as a failover or an RDS Proxy restart does to the functions:
//! mixed concurrent requests (lists, gets, adds from three clients, through the functions'
//! routers in process, one pool per client and function as Lambda instances have) while
//!
//! - every backend connection of the database is terminated once a second
//!   (`pg_terminate_backend`): reads succeed (a read that lost its connection runs once more,
//!   a write the server refused by ending its session too);
//! - the server is stopped for 3 s and started again (a private cluster of the test's own):
//!   requests answer 503 with `Retry-After` while it is down, and only then, health says the
//!   database is down, and everything answers again once it is up.
//!
//! In both, every add answered 201 has its row, and a row without a 201 is only one whose add
//! was answered 503. Each prints its figures (for docs/AWS.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use e2e::events::{event, favorite_path, fixture, insert_fixture_user};
use serde_json::json;
use shared::adapters::sql::Database;
use shared::config::DatabaseSettings;
use sqlx::Connection;
use std::process::Command;
use tower::ServiceExt;

use crate::events::router;

const CLIENTS: usize = 3;
/// `DATABASE_TIMEOUT_MS` of the functions under test.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    List,
    Get,
    Add,
}

/// One request of the load and how it ended.
#[derive(Debug)]
struct Outcome {
    op: Op,
    started: Instant,
    ended: Instant,
    status: u16,
    /// For a 200 list: whether its body is whole (a stream broken off after its first row is
    /// visibly incomplete, by design).
    whole: bool,
    retry_after: bool,
}

impl Outcome {
    fn overlaps(&self, from: Instant, to: Instant) -> bool {
        self.started <= to && self.ended >= from
    }

    fn read_failed(&self) -> bool {
        self.op != Op::Add && (self.status != 200 || !self.whole)
    }
}

/// The functions of one client: list, get and add, each with a pool of its own.
struct Client {
    list: Router,
    get: Router,
    add: Router,
}

/// The routers of `CLIENTS` clients against `url` (migrated, with the fixture user), and the
/// 20 favorites the gets read.
async fn clients(url: &str) -> Vec<Client> {
    // SAFETY: set before the routers, which read it, are built.
    unsafe { std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true") };
    let fixture = fixture();
    let timeout = DATABASE_TIMEOUT.as_millis().to_string();
    let env = [
        ("DATABASE_URL", url),
        ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ("DATABASE_TIMEOUT_MS", timeout.as_str()),
    ];
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client {
            list: router("list-favorites", &env).await,
            get: router("get-favorite", &env).await,
            add: router("add-favorite", &env).await,
        });
    }
    for i in 0..20 {
        let (status, body, _) = call(
            &clients[0].add,
            "add-favorite/chart-201.json",
            json!({"body": {"id": format!("seed-{i}")}}),
        )
        .await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }
    clients
}

/// The answer of `router` to the sample event `name` patched with `patch`: status, body, and
/// whether it has `Retry-After`.
async fn call(router: &Router, name: &str, patch: serde_json::Value) -> (u16, bytes::Bytes, bool) {
    let request = lambda_http::request::from_str(std::str::from_utf8(&event(name, patch).unwrap()).unwrap()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    // A streamed list that breaks off midway is an error of the body, not of the status.
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (status, body, retry_after)
}

/// Every client in a loop of list, get, add (of a new favorite `load-*`) for `duration`.
async fn mixed_load(clients: Vec<Client>, duration: Duration) -> Vec<Outcome> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut round = 0;
            while started.elapsed() < duration {
                round += 1;
                let requests = [
                    (Op::List, &client.list, "list-favorites/first-page-200.json", json!({})),
                    (
                        Op::Get,
                        &client.get,
                        "get-favorite/missing-404.json",
                        favorite_path(&format!("seed-{}", round % 20)),
                    ),
                    (
                        Op::Add,
                        &client.add,
                        "add-favorite/chart-201.json",
                        json!({"body": {"id": format!("load-{n}-{round}")}}),
                    ),
                ];
                for (op, router, name, patch) in requests {
                    let at = Instant::now();
                    let (status, body, retry_after) = call(router, name, patch).await;
                    let whole =
                        op != Op::List || status != 200 || serde_json::from_slice::<serde_json::Value>(&body).is_ok();
                    if !matches!(status, 200 | 201) {
                        eprintln!("{op:?}: {status} {}", String::from_utf8_lossy(&body));
                    }
                    outcomes.push(Outcome {
                        op,
                        started: at,
                        ended: Instant::now(),
                        status,
                        whole,
                        retry_after,
                    });
                }
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }
    outcomes
}

/// The rows the load's adds wrote.
async fn load_rows(url: &str) -> usize {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from favorites where id like 'load-%'")
        .persistent(false)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    usize::try_from(rows).unwrap()
}

fn count(outcomes: &[Outcome], keep: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| keep(o)).count()
}

/// Every add answered 201 has its row; every other row is of an add answered 503.
fn assert_adds_exactly_once(outcomes: &[Outcome], rows: usize) {
    let added = count(outcomes, |o| o.op == Op::Add && o.status == 201);
    let unavailable = count(outcomes, |o| o.op == Op::Add && o.status == 503);
    assert_eq!(
        count(outcomes, |o| o.op == Op::Add && !matches!(o.status, 201 | 503)),
        0,
        "an add answered neither 201 nor 503"
    );
    assert!(rows >= added, "an add answered 201 has no row");
    assert!(
        rows <= added + unavailable,
        "a row without an answer that could have written it"
    );
}

/// requests; failed reads; lists broken off; adds 201 / 503; rows.
fn figures(outcomes: &[Outcome], rows: usize) -> String {
    format!(
        "{} requests; failed reads {} (lists broken off after their first row {}); adds answered 201: {}, 503: {}; rows {}",
        outcomes.len(),
        count(outcomes, |o| o.read_failed()),
        count(outcomes, |o| o.op == Op::List && !o.whole),
        count(outcomes, |o| o.op == Op::Add && o.status == 201),
        count(outcomes, |o| o.op == Op::Add && o.status == 503),
        rows
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_survive_backends_terminated_every_second_and_writes_stay_exactly_once() {
    let db = crate::support::postgres().await;
    insert_fixture_user(&db.database).await.unwrap();
    let clients = clients(&db.url).await;

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
        let done = done.clone();
        let mut admin = sqlx::PgConnection::connect(&crate::support::admin_url()).await.unwrap();
        tokio::spawn(async move {
            let mut terminated = 0;
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
                terminated += ended;
            }
            terminated
        })
    };
    let outcomes = mixed_load(clients, Duration::from_secs(8)).await;
    done.store(true, Ordering::SeqCst);
    let terminated = terminator.await.unwrap();
    let rows = load_rows(&db.url).await;
    eprintln!(
        "backends terminated every second for 8 s ({terminated} in all): {}",
        figures(&outcomes, rows)
    );

    assert!(terminated > 0, "no backend was terminated: the run proves nothing");
    // Target 0. A read fails only when its connection is lost twice in a row, or a list breaks
    // off after its first row; without the retry, 5 to 7 of each run's reads fail.
    assert!(
        count(&outcomes, Outcome::read_failed) <= 2,
        "reads failed while backends were terminated"
    );
    assert_adds_exactly_once(&outcomes, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_database_is_a_503_while_it_is_down_and_only_then() {
    let server = PrivatePostgres::start().await;
    let url = server.url();
    let database = Database::connect(&DatabaseSettings::for_url(&url), None).await.unwrap();
    database.migrate().await.unwrap();
    insert_fixture_user(&database).await.unwrap();
    let clients = clients(&url).await;
    let fixture = fixture();
    let health = router(
        "health",
        &[
            ("DATABASE_URL", url.as_str()),
            ("JWT_SECRET", fixture.jwt_secret.as_str()),
        ],
    )
    .await;

    // Stopped 2 s into the load (a fast shutdown: sessions end, as in a failover), started
    // again 3 s later; health asked half a second into the outage.
    let fault = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let down = Instant::now();
        server.ctl(&["stop", "-m", "fast"]).await;
        let probe = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            call(&health, "health/ok-200.json", json!({})).await
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.ctl(&["start", "-l", &server.log()]).await;
        let up = Instant::now();
        let (status, body, _) = probe.await.unwrap();
        (down, up, status, body, server)
    });
    let outcomes = mixed_load(clients, Duration::from_secs(10)).await;
    let (down, up, health_status, health_body, server) = fault.await.unwrap();
    let rows = load_rows(&server.url()).await;
    let unavailable: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 503).collect();
    let slowest = unavailable
        .iter()
        .map(|o| o.ended - o.started)
        .max()
        .unwrap_or_default();
    eprintln!(
        "stopped for {:?}: {}; reads failed while up {}; 503s {} (slowest {slowest:?}), all while down: {}; health while down: {health_status} {}",
        up - down,
        figures(&outcomes, rows),
        count(&outcomes, |o| o.read_failed() && !o.overlaps(down, up)),
        unavailable.len(),
        unavailable.iter().all(|o| o.overlaps(down, up)),
        String::from_utf8_lossy(&health_body),
    );

    assert!(
        !unavailable.is_empty(),
        "no request saw the database down: the run proves nothing"
    );
    for outcome in &unavailable {
        assert!(
            outcome.overlaps(down, up),
            "a 503 while the database was up: {outcome:?}"
        );
        assert!(outcome.retry_after, "a 503 without Retry-After: {outcome:?}");
        assert!(
            outcome.ended - outcome.started <= DATABASE_TIMEOUT + Duration::from_secs(1),
            "a 503 took longer than the database timeout allows: {outcome:?}"
        );
    }
    for outcome in outcomes.iter().filter(|o| !o.overlaps(down, up)) {
        assert!(
            !outcome.read_failed(),
            "a read failed while the database was up: {outcome:?}"
        );
    }
    assert!(
        outcomes.iter().any(|o| o.started > up && o.status == 200),
        "nothing answered after the database came back"
    );
    assert_eq!(health_status, 503);
    assert!(
        String::from_utf8_lossy(&health_body).contains("database"),
        "health does not say the database is down"
    );
    assert_adds_exactly_once(&outcomes, rows);
}

/// A Postgres server of the test's own, which it may stop and start: initdb in a new directory
/// (trust authentication, no fsync), on a free port of 127.0.0.1, with the binaries of the
/// server `make test` runs (`TEST_PG_BIN`). Stopped and deleted when dropped. As root, its
/// commands run as the OS user `postgres` (initdb and postgres refuse root).
struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    async fn start() -> Self {
        let bin = PathBuf::from(
            std::env::var("TEST_PG_BIN")
                .expect("TEST_PG_BIN is not set: run `make test`, or set it to the Postgres server's bin directory"),
        );
        let dir = std::env::temp_dir().join(format!("favorites-fault-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let server = Self {
            bin,
            dir,
            port: e2e::bench::free_port().unwrap(),
        };
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&server.dir);
            run(chown).await;
        }
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb).await;
        server.ctl(&["start", "-l", &server.log()]).await;
        server
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> String {
        self.dir.join("postgres.log").display().to_string()
    }

    /// `pg_ctl <args>` on this server, waiting for it to finish (`-w`).
    async fn ctl(&self, args: &[&str]) {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir.display(),
            self.port
        );
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-o", &options])
            .args(args);
        run(pg_ctl).await;
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match is_root() {
            true => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            false => Command::new(program),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Path::new("/proc/self")
        .metadata()
        .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

async fn run(command: Command) {
    let shown = format!("{command:?}");
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
