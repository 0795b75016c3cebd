//! `bench coldstart`: each function's binary size and cold start, against a bare `lambda_http`
//! hello (tests/hello-baseline) measured in the same run.
//!
//! The production wiring on local stand-ins, started by scripts/bench.sh: the database
//! credentials and the JWT key from Secrets Manager (moto), Postgres over verified TLS with a
//! password (a private server), proxy mode, both DynamoDB tables (moto), the cache on (Redis).
//! One process at a time, a runtime API stand-in of its own (so that a request a killed process
//! left in flight cannot take the next one's event) spawns a function with exactly the
//! environment of [`function_env`], hands it one realistic event from `events/` and kills it
//! once the answer is in. "Init" runs from the spawn to the function's first
//! `GET …/invocation/next` (where Lambda's INIT phase ends), "first answer" to the last byte of
//! its answer. `BENCH_RUNS` + 1 rounds, each function once per round in a new random order; the
//! first round is not measured (it warms the page cache with the binaries). The stand-in
//! acknowledges at once, so no delayed-ACK stall is counted.
//!
//! Knobs: `BENCH_RUNS` (20), `BENCH_BCRYPT_COST` (12: signup and login's dummy hash pay it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::report::{Report, Table, say};
use super::stats::{Samples, mib, ratio};
use super::tools::RedisCli;
use super::{function_binary, knob, random_hex, seed};
use crate::aws;
use crate::database::{Owner, TestDatabase, url_with_database};
use crate::events;
use crate::runtime_api::{Acks, Answer, FunctionProcess, Options, RuntimeApi};

const BASELINE: &str = "hello-baseline";
/// Lambda's own bound on INIT is 10 s; an answer gets 30 s more (a bcrypt at cost 12 is 0.3 s).
const COLD_START_TIMEOUT: Duration = Duration::from_secs(40);

/// Per function, the event of its first invocation and the status it must answer.
struct Case {
    name: &'static str,
    /// An `events/` file; `None`: an empty JSON object (the migrate function's event).
    event: Option<&'static str>,
    /// `None`: a plain invocation, not an API Gateway response.
    status: Option<u16>,
}

/// A realistic request for each: a page of the user's list, a login with a wrong password (a
/// full bcrypt verify, as every failed login), a signup of a new email, an add of a new asset, a
/// get and an update of an existing favorite, a remove of another one, an account deletion
/// refused for a wrong password (a full bcrypt verify too).
const CASES: &[Case] = &[
    Case {
        name: BASELINE,
        event: Some("health/ok-200.json"),
        status: Some(200),
    },
    Case {
        name: "health",
        event: Some("health/ok-200.json"),
        status: Some(200),
    },
    Case {
        name: "signup",
        event: Some("signup/valid-201.json"),
        status: Some(201),
    },
    Case {
        name: "login",
        event: Some("login/valid-200.json"),
        status: Some(401),
    },
    Case {
        name: "get-favorite",
        event: Some("get-favorite/missing-404.json"),
        status: Some(200),
    },
    Case {
        name: "add-favorite",
        event: Some("add-favorite/chart-201.json"),
        status: Some(201),
    },
    Case {
        name: "update-favorite",
        event: Some("update-favorite/missing-404.json"),
        status: Some(200),
    },
    Case {
        name: "remove-favorite",
        event: Some("remove-favorite/missing-404.json"),
        status: Some(204),
    },
    Case {
        name: "list-favorites",
        event: Some("list-favorites/first-page-200.json"),
        status: Some(200),
    },
    Case {
        name: "delete-account",
        event: Some("delete-account/wrong-password-401.json"),
        status: Some(401),
    },
    Case {
        name: "migrate",
        event: None,
        status: None,
    },
];

/// What the cold starts share: the environment's values and the bench user.
struct Setup {
    env: Vec<(String, String)>,
    email: String,
    token: String,
    /// Favorites the get and update cases read, and how many rounds remove (`fav-<round>`).
    get_id: String,
    update_id: String,
}

/// One cold start's figures.
struct ColdStart {
    init_ms: f64,
    answer_ms: f64,
}

pub async fn run() -> anyhow::Result<()> {
    let runs: usize = knob("BENCH_RUNS", 20)?;
    let bcrypt_cost: u32 = knob("BENCH_BCRYPT_COST", 12)?;
    ensure!(runs > 0, "BENCH_RUNS must be positive");
    check_cases()?;
    let sizes = sizes()?;

    let admin = std::env::var("TEST_TLS_PG_ADMIN_URL")
        .context("TEST_TLS_PG_ADMIN_URL: the TLS Postgres (scripts/bench.sh starts one)")?;
    let port = std::env::var("TEST_TLS_PG_PORT").context("TEST_TLS_PG_PORT")?;
    let ca = std::env::var("TEST_TLS_PG_CA").context("TEST_TLS_PG_CA")?;
    let redis_url = std::env::var("TEST_REDIS_URL").context("TEST_REDIS_URL: a Redis the functions may use")?;
    let owner = Owner::generate("bench");
    let database = TestDatabase::create(&admin, "favorites_bench", Some(owner.clone())).await?;
    let result = async {
        let prefix = format!("favorites-bench-{}", random_hex(8));
        let database_secret = json!({
            "engine": "postgres", "username": owner.role, "password": owner.password,
            "host": "127.0.0.1", "port": port.parse::<u16>()?, "dbname": database.name,
        });
        let resources = aws::create(&prefix, &random_hex(48), Some(&database_secret)).await?;
        let env = base_env(&resources, &ca, &redis_url, bcrypt_cost);
        let db = PgPool::connect(&url_with_database(&admin, &database.name)?)
            .await
            .context("connecting to the bench database")?;
        let setup = setup(env, &db, runs).await?;
        let redis = RedisCli { url: redis_url.clone() };
        let measured = measure(&setup, runs).await;
        let psql = psql_connections(&owner, &port, &ca, &database.name, runs);
        let user = seed::user_id(&db, &setup.email).await?;
        let keys: Vec<String> = ["meta", "order", "items", "enrichment"]
            .iter()
            .map(|k| format!("fav:{{{user}}}:{k}"))
            .collect();
        let mut del = vec!["del"];
        del.extend(keys.iter().map(String::as_str));
        let _ = redis.run(&del);
        let postgres: String = sqlx::query_scalar("show server_version").fetch_one(&db).await?;
        db.close().await;
        Ok::<_, anyhow::Error>((measured?, psql?, postgres))
    }
    .await;
    database.drop_now().await?;
    let ((figures, load_before, load_after, seconds), psql, postgres) = result?;
    report(
        &sizes,
        &figures,
        &psql,
        runs,
        bcrypt_cost,
        &postgres,
        &load_before,
        &load_after,
        seconds,
    )
}

/// Every function crate has a case.
fn check_cases() -> anyhow::Result<()> {
    for name in function_names()? {
        ensure!(
            CASES.iter().any(|c| c.name == name),
            "function {name} has no case in bench/coldstart.rs; add one"
        );
    }
    Ok(())
}

/// The package names of `functions/*/Cargo.toml`.
fn function_names() -> anyhow::Result<Vec<String>> {
    let dir = super::repo_root().join("functions");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .with_context(|| format!("no package name in {}", manifest.display()))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Bytes of each binary, and of `gzip -9` of it (about what its Lambda zip weighs).
fn sizes() -> anyhow::Result<BTreeMap<&'static str, (u64, u64)>> {
    let mut sizes = BTreeMap::new();
    for case in CASES {
        let path = function_binary(case.name)?;
        let bytes = std::fs::metadata(&path)?.len();
        let gzip = Command::new("gzip")
            .args(["-9", "-c"])
            .arg(&path)
            .output()
            .context("running gzip")?;
        ensure!(gzip.status.success(), "gzip -9 {} failed", path.display());
        say(format!(
            "{}: {bytes} bytes, gzip -9 {} bytes",
            case.name,
            gzip.stdout.len()
        ));
        sizes.insert(case.name, (bytes, gzip.stdout.len() as u64));
    }
    Ok(sizes)
}

/// What Lambda sets in every execution environment, and the service's configuration as in
/// production (README, Configuration), for every function and the baseline alike. The login
/// case repeats one wrong password: the throttle is still read and counted on every attempt,
/// but its limits are lifted so that the answer stays the 401 being measured.
fn base_env(resources: &aws::Resources, ca: &str, redis_url: &str, bcrypt_cost: u32) -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", super::log_stream()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
        ("BCRYPT_COST", bcrypt_cost.to_string()),
        ("REDIS_URL", redis_url.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", var("AWS_ENDPOINT_URL")),
        ("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY")),
        ("AWS_SESSION_TOKEN", var("AWS_SESSION_TOKEN")),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        (
            "DATABASE_SECRET_ARN",
            resources
                .database_secret_arn
                .clone()
                .expect("created with the database secret"),
        ),
        ("DATABASE_PROXY", "true".into()),
        ("DATABASE_CA_BUNDLE", ca.into()),
        ("JWT_SECRET_ARN", resources.jwt_secret_arn.clone()),
        ("IDEMPOTENCY_TABLE", resources.idempotency_table.clone()),
        ("LOGIN_THROTTLE_TABLE", resources.login_throttle_table.clone()),
        ("LOGIN_MAX_FAILURES_PER_EMAIL", "1000000".into()),
        ("LOGIN_MAX_FAILURES_PER_IP", "1000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The whole environment function `name` starts with; nothing of ours is inherited.
fn function_env(setup_env: &[(String, String)], name: &str) -> Vec<(String, String)> {
    let mut env = setup_env.to_vec();
    env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), name.into()));
    env.push(("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{name}")));
    env
}

/// Through the functions themselves: sign up and log in a bench user (its token authenticates
/// the favorites events), then `runs` + 12 favorites by SQL: remove-favorite deletes
/// `fav-<round>`, get and update use the last two, and at least ten stay for the list's page.
async fn setup(env: Vec<(String, String)>, db: &PgPool, runs: usize) -> anyhow::Result<Setup> {
    let email = format!("bench-{}@example.com", random_hex(8));
    let password = format!("bench-{}", random_hex(16));
    let credentials = json!({"body": {"email": email, "password": password}});
    let signup = event_of("signup", credentials.clone())?;
    cold_start(
        &function_binary("signup")?,
        &function_env(&env, "signup"),
        signup,
        Some(201),
    )
    .await?;
    let login = event_of("login", credentials)?;
    let (_, answer) = cold_start(
        &function_binary("login")?,
        &function_env(&env, "login"),
        login,
        Some(200),
    )
    .await?;
    let body: Value = serde_json::from_slice(&answer.http_body()).context("login answered no JSON")?;
    let token = body["token"].as_str().context("login answered no token")?.to_string();
    let user = seed::user_id(db, &email).await?;
    let last = runs as u64 + 11;
    seed::favorites(db, user, 0, last).await?;
    say(format!("user {email} ({user}), favorites fav-0..fav-{last}"));
    Ok(Setup {
        env,
        email,
        token,
        get_id: format!("fav-{last}"),
        update_id: format!("fav-{}", last - 1),
    })
}

fn event_of(name: &str, patch: Value) -> anyhow::Result<Vec<u8>> {
    let case = CASES.iter().find(|c| c.name == name).context("no such case")?;
    match case.event {
        Some(file) => events::event(file, patch),
        None => Ok(b"{}".to_vec()),
    }
}

/// The event of `case` in round `run`.
fn case_event(case: &Case, setup: &Setup, run: usize) -> anyhow::Result<Vec<u8>> {
    let auth = events::bearer(&setup.token);
    let patch = match case.name {
        "signup" => json!({"body": {"email": format!("coldstart-{run}@example.com")}}),
        "login" => json!({"body": {"email": setup.email, "password": "not the password"}}),
        "add-favorite" => events::both(auth, json!({"body": {"id": format!("coldstart-{run}")}})),
        "get-favorite" => events::both(auth, events::favorite_path(&setup.get_id)),
        "update-favorite" => events::both(
            events::both(auth, events::favorite_path(&setup.update_id)),
            json!({"body": {"description": format!("round {run}")}}),
        ),
        "remove-favorite" => events::both(auth, events::favorite_path(&format!("fav-{run}"))),
        "list-favorites" => auth,
        // A wrong password, as login's: a full bcrypt verify, and the bench user stays.
        "delete-account" => auth,
        _ => json!({}),
    };
    event_of(case.name, patch)
}

/// `runs` + 1 rounds of one cold start per case, in a new random order each round; the first
/// round unmeasured. Returns the figures per function, the load average before and after, and
/// the seconds the rounds took.
async fn measure(
    setup: &Setup,
    runs: usize,
) -> anyhow::Result<(BTreeMap<&'static str, Vec<ColdStart>>, String, String, u64)> {
    let load_before = super::load_average();
    let started = Instant::now();
    let mut figures: BTreeMap<&'static str, Vec<ColdStart>> = BTreeMap::new();
    let mut order: Vec<&Case> = CASES.iter().collect();
    for run in 0..=runs {
        order.shuffle(&mut rand::rng());
        for case in &order {
            let event = case_event(case, setup, run)?;
            let env = function_env(&setup.env, case.name);
            let (figure, _) = cold_start(&function_binary(case.name)?, &env, event, case.status)
                .await
                .with_context(|| format!("{} (round {run})", case.name))?;
            if run > 0 {
                figures.entry(case.name).or_default().push(figure);
            }
        }
        say(format!(
            "round {run}/{runs} done{}",
            if run == 0 { " (unmeasured)" } else { "" }
        ));
    }
    Ok((figures, load_before, super::load_average(), started.elapsed().as_secs()))
}

/// The baseline of a first database connection: `psql` connecting as the functions do (TLS
/// verified against the CA, SCRAM) and running one query, process start to exit, in ms;
/// `runs` + 1 times, the first unmeasured.
fn psql_connections(owner: &Owner, port: &str, ca: &str, database: &str, runs: usize) -> anyhow::Result<Samples> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} dbname={database} user={} sslmode=verify-full sslrootcert={ca}",
        owner.role
    );
    let mut times = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        let output = Command::new("psql")
            .args(["-X", "-w", "-Atq", "-c", "select 1", &conninfo])
            .env("PGPASSWORD", &owner.password)
            .output()
            .context("running psql")?;
        let elapsed = started.elapsed();
        ensure!(
            output.status.success(),
            "psql {conninfo}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if run > 0 {
            times.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    Ok(Samples::new(times))
}

/// Spawns `binary` on a new stand-in with `event` queued, waits for its answer (which must be
/// `status`, or a plain invocation's answer for `None`), kills it.
async fn cold_start(
    binary: &Path,
    env: &[(String, String)],
    event: Vec<u8>,
    status: Option<u16>,
) -> anyhow::Result<(ColdStart, Answer)> {
    let runtime = RuntimeApi::start_with(Options {
        acks: Acks::Quick,
        body_limit: usize::MAX,
    })
    .await?;
    runtime.invoke(event);
    let mut process = FunctionProcess::spawn(binary, &runtime, env)?;
    let answer = loop {
        if let Some(answer) = runtime.try_answer(Duration::from_millis(5)).await {
            break answer;
        }
        let problem = if let Some(exit) = process.exited() {
            format!("exited ({exit}) before answering")
        } else if process.started_at.elapsed() > COLD_START_TIMEOUT {
            format!("did not answer within {COLD_START_TIMEOUT:?}")
        } else {
            continue;
        };
        bail!(
            "{}: {problem}; its last lines:\n{}",
            binary.display(),
            process.last_lines(30).join("\n")
        );
    };
    let started_at = process.started_at;
    let lines = process.last_lines(30);
    drop(process);
    drop(runtime);
    ensure!(
        !answer.error && answer.status() == status,
        "{}: answered status {:?} (error: {}), expected {status:?}: {}\nits last lines:\n{}",
        binary.display(),
        answer.status(),
        answer.error,
        String::from_utf8_lossy(&answer.http_body()[..answer.http_body().len().min(300)]),
        lines.join("\n")
    );
    let ms = |at: Instant| (at - started_at).as_secs_f64() * 1000.0;
    let figure = ColdStart {
        init_ms: ms(answer.asked_at),
        answer_ms: ms(answer.answered_at),
    };
    Ok((figure, answer))
}

#[allow(clippy::too_many_arguments)]
fn report(
    sizes: &BTreeMap<&'static str, (u64, u64)>,
    figures: &BTreeMap<&'static str, Vec<ColdStart>>,
    psql: &Samples,
    runs: usize,
    bcrypt_cost: u32,
    postgres: &str,
    load_before: &str,
    load_after: &str,
    seconds: u64,
) -> anyhow::Result<()> {
    let samples = |name: &str, f: fn(&ColdStart) -> f64| Samples::new(figures[name].iter().map(f).collect());
    let init = |name: &str| samples(name, |c| c.init_ms);
    let answer = |name: &str| samples(name, |c| c.answer_ms);
    let invocation = |name: &str| samples(name, |c| c.answer_ms - c.init_ms);
    let answered = |case: &Case| case.status.map_or("-".to_string(), |s| s.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();

    let mut report = Report::new("coldstart");
    report.line(format!(
        "bench-coldstart: {}, kernel {}, Postgres {postgres}, {runs} cold starts per function (nearest-rank percentiles), BCRYPT_COST={bcrypt_cost}, load average {load_before} before and {load_after} after the {seconds}s of cold starts",
        super::machine(),
        kernel.trim()
    ));
    report.blank();
    let mut table = Table::new(&[
        "function",
        ">answer",
        ">size (MiB)",
        ">gzip -9 (MiB)",
        ">init p50 (ms)",
        ">init p90 (ms)",
        ">first answer p50 (ms)",
        ">first answer p90 (ms)",
    ]);
    for case in CASES {
        let (bytes, gzip) = sizes[case.name];
        table.row(vec![
            case.name.into(),
            answered(case),
            format!("{:.2}", mib(bytes)),
            format!("{:.2}", mib(gzip)),
            format!("{:.1}", init(case.name).median()),
            format!("{:.1}", init(case.name).percentile(90.0)),
            format!("{:.1}", answer(case.name).median()),
            format!("{:.1}", answer(case.name).percentile(90.0)),
        ]);
    }
    report.table(&table);
    report.blank();
    report.line(format!(
        "Against the baseline ({BASELINE}); the first invocation alone (first answer − init, per cold start); maxima:"
    ));
    report.blank();
    let mut table = Table::new(&[
        "function",
        ">bytes",
        ">gzip -9 bytes",
        ">size ÷ baseline",
        ">init p50 − baseline (ms)",
        ">first answer p50 − baseline (ms)",
        ">invocation p50 (ms)",
        ">invocation p90 (ms)",
        ">init max (ms)",
        ">first answer max (ms)",
    ]);
    let (base_bytes, _) = sizes[BASELINE];
    for case in CASES {
        let (bytes, gzip) = sizes[case.name];
        table.row(vec![
            case.name.into(),
            bytes.to_string(),
            gzip.to_string(),
            format!("{:.2}", ratio(bytes as f64, base_bytes as f64)),
            format!("{:+.1}", init(case.name).median() - init(BASELINE).median()),
            format!("{:+.1}", answer(case.name).median() - answer(BASELINE).median()),
            format!("{:.1}", invocation(case.name).median()),
            format!("{:.1}", invocation(case.name).percentile(90.0)),
            format!("{:.1}", init(case.name).max()),
            format!("{:.1}", answer(case.name).max()),
        ]);
    }
    report.table(&table);
    report.blank();
    report.line(
        "The first database connection (TCP, TLS verified against the CA, SCRAM, one query): psql, process start to exit, against the first invocation of health (its pool's first connection and its query):",
    );
    report.blank();
    let mut table = Table::new(&["", ">p50 (ms)", ">p90 (ms)", ">max (ms)"]);
    for (name, samples) in [("psql", psql), ("health, first invocation", &invocation("health"))] {
        table.row(vec![
            name.into(),
            format!("{:.1}", samples.median()),
            format!("{:.1}", samples.percentile(90.0)),
            format!("{:.1}", samples.max()),
        ]);
    }
    report.table(&table);
    report.save()
}
