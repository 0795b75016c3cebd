//! The functions under the Lambda emulator (`cargo lambda watch`) on a free port of 127.0.0.1,
//! built with this binary's profile, for the benchmarks that go through HTTP. Stopped when
//! dropped, with every function process it started (each runs in a session of its own, so its
//! process group is not enough: they are found by the runtime API address only they were given).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{free_port, procfs, report::say};

pub struct Emulator {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Emulator {
    /// Starts the emulator with `env` on top of ours (minus `unset`), logging to `log`, and
    /// waits until `/health` answers 200 (the first start may compile).
    pub async fn start(log: &Path, env: &[(&str, String)], unset: &[&str]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new("cargo");
        command.args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--color",
            "never",
            "-A",
            "127.0.0.1",
            "-P",
        ]);
        command.arg(port.to_string());
        if super::is_release() {
            command.arg("--release");
        }
        for name in unset {
            command.env_remove(name);
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CARGO_TERM_COLOR", "never")
            .current_dir(super::repo_root())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        say(format!(
            "starting the functions: cargo lambda watch on {url} (log: {})",
            log.display()
        ));
        let child = command
            .spawn()
            .context("starting cargo lambda watch (is cargo-lambda installed?)")?;
        let mut emulator = Self {
            url,
            child,
            log: log.to_path_buf(),
        };
        emulator.wait_healthy(Duration::from_secs(600)).await?;
        Ok(emulator)
    }

    async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::new();
        loop {
            let answer = http
                .get(format!("{}/health", self.url))
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status() == 200) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "cargo lambda watch exited ({status}) before answering; see {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}/health did not answer 200 within {within:?}; see {}",
                    self.url,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// What the functions it starts find in `AWS_LAMBDA_RUNTIME_API`, as an environment entry.
    fn runtime_api_entry(&self) -> String {
        format!("AWS_LAMBDA_RUNTIME_API={}/", self.url)
    }

    /// The process of function `binary` this emulator started (after its first invocation).
    pub fn function_pid(&self, binary: &str) -> Option<u32> {
        procfs::with_environment(&self.runtime_api_entry())
            .into_iter()
            .find(|pid| procfs::exe(*pid).is_some_and(|exe| exe.ends_with(binary)))
    }

    /// The emulator's own process (cargo-lambda, under cargo), for its memory.
    pub fn emulator_pid(&self) -> Option<u32> {
        procfs::tree(self.child.id())
            .into_iter()
            .find(|pid| procfs::exe(*pid).is_some_and(|exe| exe.ends_with("cargo-lambda")))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let functions = procfs::with_environment(&self.runtime_api_entry());
        let mut pids = procfs::tree(self.child.id());
        pids.extend(functions);
        procfs::stop(&pids, Duration::from_secs(10));
        let _ = self.child.wait();
    }
}
