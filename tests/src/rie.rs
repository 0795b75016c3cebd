//! One function binary under AWS's own Lambda Runtime Interface Emulator (`aws-lambda-rie`,
//! which the SAM CLI wheel in `.venv` carries), on free ports of 127.0.0.1.
//!
//! The emulator hands its own environment to the function, so it is started with exactly the
//! environment it is given and nothing of ours. Its output (its START/END/REPORT lines and
//! everything the function prints) goes to a log file; the `Duration` of each REPORT line also
//! to a channel. Like Lambda, it starts the function at the first invocation, not before.
//! Stopped, with the function, when dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::sync::mpsc;

use crate::bench::{free_port, procfs, repo_root};

/// The separator between a streamed answer's JSON prelude and its body.
pub const STREAM_SEPARATOR: &[u8] = &[0; 8];

pub struct Rie {
    child: Child,
    /// `http://127.0.0.1:<port>/2015-03-31/functions/function/invocations`
    pub invoke_url: String,
    /// The `Duration` of each REPORT line, in order.
    pub reports: mpsc::UnboundedReceiver<f64>,
    pub log: PathBuf,
}

impl Rie {
    /// The SAM CLI's emulator in `.venv`, or `AWS_LAMBDA_RIE` (`BENCH_RIE` for the benchmarks).
    pub fn binary() -> anyhow::Result<PathBuf> {
        if let Some(path) = ["AWS_LAMBDA_RIE", "BENCH_RIE"].iter().find_map(std::env::var_os) {
            return Ok(PathBuf::from(path));
        }
        let lib = repo_root().join(".venv").join("lib");
        let found = std::fs::read_dir(&lib)
            .with_context(|| format!("reading {} (the scripts install the SAM CLI there)", lib.display()))?
            .filter_map(Result::ok)
            .map(|python| {
                python
                    .path()
                    .join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
            })
            .find(|path| path.exists());
        found.context(
            "no aws-lambda-rie-x86_64 in .venv: pip install aws-sam-cli (the scripts do), or set AWS_LAMBDA_RIE",
        )
    }

    /// Starts `rie` on `function` with exactly `env`; waits until it listens.
    pub async fn start(rie: &Path, function: &Path, env: &[(String, String)], log: &Path) -> anyhow::Result<Self> {
        let (port, api_port) = (free_port()?, free_port()?);
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(rie);
        command
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg(function)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone()?);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().with_context(|| format!("starting {}", rie.display()))?;
        let stdout = child.stdout.take().context("the emulator's stdout")?;
        let (sender, reports) = mpsc::unbounded_channel();
        std::thread::spawn(move || copy_and_read_reports(stdout, log_file, &sender));
        let mut rie = Self {
            child,
            invoke_url: format!("http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"),
            reports,
            log: log.to_path_buf(),
        };
        rie.wait_listening(port).await?;
        Ok(rie)
    }

    async fn wait_listening(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = self.exited() {
                bail!("aws-lambda-rie exited ({status}); see {}", self.log.display());
            }
            ensure!(
                Instant::now() < deadline,
                "aws-lambda-rie is not listening after 10 s; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The log's last `n` lines.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

impl Drop for Rie {
    fn drop(&mut self) {
        procfs::stop(&procfs::tree(self.child.id()), Duration::from_secs(10));
        let _ = self.child.wait();
    }
}

/// Copies the emulator's stdout (its own lines and the function's) to `log`, sending the
/// duration of each `REPORT` line.
fn copy_and_read_reports(stdout: impl std::io::Read, mut log: std::fs::File, reports: &mpsc::UnboundedSender<f64>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if let Some(ms) = report_duration(&line) {
            let _ = reports.send(ms);
        }
    }
}

/// `X` of `REPORT RequestId: … Duration: X ms …` (not `Init Duration`, not `Billed Duration`).
pub fn report_duration(line: &str) -> Option<f64> {
    let rest = &line[line.find("REPORT RequestId:")?..];
    rest.split('\t')
        .flat_map(|field| field.split("  "))
        .map(str::trim)
        .find_map(|field| field.strip_prefix("Duration:"))
        .and_then(|value| value.trim().trim_end_matches("ms").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_duration_is_neither_init_nor_billed() {
        let line = "REPORT RequestId: 5f1c\tInit Duration: 12.50 ms\tDuration: 3.94 ms\tBilled Duration: 4 ms\tMemory Size: 1024 MB\tMax Memory Used: 20 MB\t";
        assert_eq!(report_duration(line), Some(3.94));
        assert_eq!(
            report_duration("REPORT RequestId: x  Duration: 1.25 ms  Billed Duration: 2 ms"),
            Some(1.25)
        );
        assert_eq!(report_duration("END RequestId: 5f1c"), None);
    }
}
