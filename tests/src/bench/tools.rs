//! The outside tools the benchmarks call where they measure something we should not rewrite:
//! `hey` (HTTP load, latency percentiles) and `redis-cli` (`MONITOR`, `INFO commandstats`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// What one `hey` run measured.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests_per_s: f64,
    pub answers: u64,
}

/// `hey -z <seconds>s -c <concurrency>` against `url` with a bearer token; its output is kept in
/// `output`. Fails unless every answer was a 200 and hey saw no error.
pub fn hey(url: &str, token: &str, seconds: u64, concurrency: u64, output: &Path) -> anyhow::Result<Load> {
    let out = Command::new("timeout")
        .arg((seconds + 120).to_string())
        .arg("hey")
        .args(["-z", &format!("{seconds}s"), "-c", &concurrency.to_string(), "-t", "30"])
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .context("running hey (is it installed? scripts/bench.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::write(output, &text).with_context(|| format!("writing {}", output.display()))?;
    ensure!(out.status.success(), "hey failed: {}", last_lines(&text, 20));
    parse_hey(&text).context("reading hey's summary")
}

fn parse_hey(text: &str) -> anyhow::Result<Load> {
    if let Some(errors) = text.split("Error distribution:").nth(1) {
        bail!("hey saw errors:{}", errors.chars().take(1000).collect::<String>());
    }
    let mut requests_per_s = None;
    let mut percentiles = BTreeMap::new();
    let mut codes = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_s = value.trim().parse::<f64>().ok();
        } else if let Some((p, rest)) = line.split_once("% in ") {
            if let (Ok(p), Some(secs)) = (p.parse::<u32>(), rest.strip_suffix(" secs")) {
                percentiles.insert(p, secs.trim().parse::<f64>()? * 1000.0);
            }
        } else if let Some(rest) = line.strip_prefix('[')
            && let Some((code, count)) = rest.split_once(']')
            && let Some(count) = count.trim().strip_suffix(" responses")
        {
            codes.insert(code.parse::<u16>()?, count.trim().parse::<u64>()?);
        }
    }
    ensure!(
        !codes.is_empty() && codes.keys().all(|c| *c == 200),
        "not every answer was 200: {codes:?}"
    );
    let (Some(requests_per_s), Some(p50_ms), Some(p99_ms)) = (
        requests_per_s,
        percentiles.get(&50).copied(),
        percentiles.get(&99).copied(),
    ) else {
        bail!("no Requests/sec or no 50%/99% latency (hey prints a 99% only from 100 answers on: raise BENCH_SECONDS)");
    };
    Ok(Load {
        p50_ms,
        p99_ms,
        requests_per_s,
        answers: codes[&200],
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `redis-cli` against one server.
pub struct RedisCli {
    pub url: String,
}

impl RedisCli {
    /// One command; its output, trimmed.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("timeout")
            .args(["10", "redis-cli", "-u", &self.url])
            .args(args)
            .output()
            .context("running redis-cli (is it installed? scripts/bench.sh installs it)")?;
        ensure!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .replace('\r', "")
            .trim()
            .to_string())
    }

    /// Calls per command since the last `CONFIG RESETSTAT` (`INFO commandstats`), by name.
    pub fn command_calls(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(parse_commandstats(&self.run(&["info", "commandstats"])?))
    }

    /// `MONITOR` into `path` until the returned guard is stopped or dropped.
    pub fn monitor(&self, path: &Path) -> anyhow::Result<Monitor> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let child = Command::new("timeout")
            .args(["600", "redis-cli", "-u", &self.url, "monitor"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-cli monitor")?;
        let monitor = Monitor {
            child,
            path: path.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l == "OK")) {
            ensure!(Instant::now() < deadline, "redis-cli monitor did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(monitor)
    }
}

fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// A running `redis-cli monitor`.
pub struct Monitor {
    child: Child,
    path: PathBuf,
}

/// What `MONITOR` saw: commands sent by clients (top level) and commands run inside scripts.
#[derive(Debug, Default)]
pub struct Monitored {
    pub top_level: BTreeMap<String, u64>,
    pub in_scripts: BTreeMap<String, u64>,
    pub clients: usize,
    pub scripts: usize,
}

impl Monitor {
    /// Stops monitoring and reads what it saw.
    pub fn stop(mut self) -> anyhow::Result<Monitored> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        Ok(parse_monitor(&text))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines `<time> [<db> <client address>] "CMD" "arg"…` for commands a client sent, and
/// `<time> [<db> lua] "CMD" …` for commands a script ran.
fn parse_monitor(text: &str) -> Monitored {
    let mut seen = Monitored::default();
    let (mut clients, mut scripts) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for line in text.lines() {
        let Some((source, command)) = line.split_once(" [").and_then(|(_, rest)| rest.split_once("] ")) else {
            continue;
        };
        let mut words = command.split(' ').map(|w| w.trim_matches('"'));
        let name = words.next().unwrap_or_default().to_uppercase();
        if source.ends_with(" lua") {
            *seen.in_scripts.entry(name).or_default() += 1;
        } else {
            clients.insert(source.to_string());
            if name == "EVALSHA" {
                scripts.insert(words.next().unwrap_or_default().to_string());
            }
            *seen.top_level.entry(name).or_default() += 1;
        }
    }
    seen.clients = clients.len();
    seen.scripts = scripts.len();
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hey_summary_is_read() {
        let text = "Summary:\n  Total:\t20.0 secs\n  Requests/sec:\t36.0250\n\nLatency distribution:\n  10% in 0.0300 secs\n  50% in 0.1283 secs\n  99% in 0.1801 secs\n\nStatus code distribution:\n  [200]\t720 responses\n";
        let load = parse_hey(text).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(load.p50_ms, 128.3) && close(load.p99_ms, 180.1), "{load:?}");
        assert_eq!((load.requests_per_s, load.answers), (36.025, 720));
        assert!(parse_hey(&text.replace("[200]", "[500]")).is_err());
        assert!(parse_hey(&format!("{text}\nError distribution:\n  [1]\tGet: EOF\n")).is_err());
    }

    #[test]
    fn monitor_tells_clients_from_scripts() {
        let text = "OK\n1.1 [0 127.0.0.1:5000] \"EVALSHA\" \"abc\" \"3\"\n1.2 [0 lua] \"HMGET\" \"k\"\n1.3 [0 127.0.0.1:5000] \"evalsha\" \"abc\"\n";
        let seen = parse_monitor(text);
        assert_eq!(seen.top_level["EVALSHA"], 2);
        assert_eq!(seen.in_scripts["HMGET"], 1);
        assert_eq!((seen.clients, seen.scripts), (1, 1));
    }

    #[test]
    fn commandstats_are_read() {
        let calls = parse_commandstats(
            "# Commandstats\ncmdstat_evalsha:calls=200,usec=1,usec_per_call=0.1\ncmdstat_config|resetstat:calls=1,usec=2",
        );
        assert_eq!(calls["evalsha"], 200);
        assert_eq!(calls["config|resetstat"], 1);
    }
}
