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
    /// Where `invoke_url` listens.
    port: u16,
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

    /// Starts `rie` on `function` with exactly `env`; waits until it listens. The ports are
    /// free when picked but not held until the emulator binds them, so another process may take
    /// one first: the emulator then exits with "address already in use", and is started again on
    /// other ports, up to `PORT_ATTEMPTS` times.
    pub async fn start(rie: &Path, function: &Path, env: &[(String, String)], log: &Path) -> anyhow::Result<Self> {
        const PORT_ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut started = Self::spawn(rie, function, env, log, free_port()?, free_port()?)?;
            match started.wait_listening().await {
                Ok(()) => return Ok(started),
                Err(_) if attempt < PORT_ATTEMPTS && started.lost_a_port() => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    fn spawn(
        rie: &Path,
        function: &Path,
        env: &[(String, String)],
        log: &Path,
        port: u16,
        api_port: u16,
    ) -> anyhow::Result<Self> {
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
        Ok(Self {
            child,
            port,
            invoke_url: format!("http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"),
            reports,
            log: log.to_path_buf(),
        })
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
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

    /// Whether the emulator exited because one of its ports was taken.
    fn lost_a_port(&mut self) -> bool {
        self.exited().is_some()
            && std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains("address already in use"))
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

    /// The case `start` starts again: a port taken between its choice and the emulator's bind.
    #[tokio::test]
    async fn an_emulator_whose_port_was_taken_is_known_by_its_log() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api_port = taken.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("favorites-rie-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rie = Rie::spawn(
            &Rie::binary().unwrap(),
            Path::new("/bin/true"),
            &[],
            &dir.join("rie.log"),
            free_port().unwrap(),
            api_port,
        )
        .unwrap();
        let waited = rie.wait_listening().await;
        assert!(waited.is_err(), "the emulator listened with its runtime API port taken");
        assert!(rie.lost_a_port(), "log: {:?}", rie.last_lines(5));
        drop(rie);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
