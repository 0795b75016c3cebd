//! The benchmarks behind `make bench-*`, one subcommand each of the `bench` binary
//! (`scripts/bench.sh` starts the services a benchmark needs, builds, then runs it). Each
//! measures against a baseline in the same run and prints Markdown for docs/BENCHMARKS.md.
//!
//! - `login`, `list`, `cache`, `enrichment`, `coldstart`, `latency`, `filters`: the benchmarks, one module each
//! - `stats`: median, nearest-rank percentiles, means, ratios; the only place they are computed
//! - `report`: Markdown tables on stdout and in `.local/bench-<name>.md`
//! - `emulator`: the functions under `cargo lambda watch`, stopped with every function it started
//! - `no_hop`: list-favorites on the runtime API stand-in, without the emulator's relay hop
//! - `seed`: many favorites at once, by SQL, behind the functions' back
//! - `procfs`: peak memory of a process, and finding processes, from `/proc`
//! - `tools`: `hey` and `redis-cli`, run and read
//!
//! With `crate::events` (the sample events, patched), `crate::runtime_api` (a function without the emulator), `crate::database` (throwaway
//! databases) and `crate::Api` (the HTTP client).

pub mod cache;
pub mod coldstart;
pub mod emulator;
pub mod enrichment;
pub mod filters;
pub mod latency;
pub mod list;
pub mod login;
pub mod no_hop;
pub mod procfs;
pub mod report;
pub mod seed;
pub mod stats;
pub mod tools;

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};

/// Runs the benchmark `args[0]`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("login") => login::run().await,
        Some("list") => list::run().await,
        Some("cache") => cache::run().await,
        Some("enrichment") => enrichment::run().await,
        Some("coldstart") => coldstart::run().await,
        Some("latency") => latency::run().await,
        Some("filters") => filters::run().await,
        _ => bail!(
            "usage: bench login|list|cache|enrichment|coldstart|latency|filters (knobs: BENCH_* variables, see docs/BENCHMARKS.md)"
        ),
    }
}

/// The repository this binary was built from (events/, functions/, .local/).
pub fn repo_root() -> PathBuf {
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tests.parent().map(PathBuf::from).unwrap_or(tests)
}

/// Where the function binaries of this build are: beside this binary, the same profile.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench binary")?;
    Ok(exe.parent().context("the bench binary has no directory")?.to_path_buf())
}

/// A function binary of this build, checked to exist.
pub fn function_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (scripts/bench.sh does)",
        path.display()
    );
    Ok(path)
}

/// Whether this is a release build (and so the functions beside it are).
pub fn is_release() -> bool {
    bin_dir().is_ok_and(|dir| dir.ends_with("release"))
}

/// The knob `name` (an environment variable), or `default` when unset.
pub fn knob<T: FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The machine, for a report's first line: cores, memory, load, and any note the caller left
/// (`BENCH_NOTE`: scripts/bench.sh says there when a build was running).
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1_048_576.0);
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let note = std::env::var("BENCH_NOTE")
        .map(|n| format!("; NOTE: {n}"))
        .unwrap_or_default();
    format!(
        "{date}, {cores} cores, {memory_gib:.0} GiB, load average {}{note}",
        load_average()
    )
}

/// The log stream name of the functions a benchmark starts itself: scripts/bench.sh's marker
/// of the run (`BENCH_RUN_MARKER`), by which it stops whatever a failed run left behind.
pub fn log_stream() -> String {
    std::env::var("BENCH_RUN_MARKER").unwrap_or_else(|_| "bench".into())
}

/// `n` random hex characters.
pub fn random_hex(n: usize) -> String {
    let mut out = String::new();
    while out.len() < n {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(n);
    out
}

/// `.local/bench-<name>.log`: a log kept after the run (the last run's), for when it failed.
pub fn log_path(name: &str) -> PathBuf {
    repo_root().join(".local").join(format!("bench-{name}.log"))
}

/// A directory under `.local/` for one run's data, removed when dropped.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let path = repo_root()
            .join(".local")
            .join(format!("bench-{name}.{}", random_hex(8)));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as a string, for environment variables.
    pub fn display(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
