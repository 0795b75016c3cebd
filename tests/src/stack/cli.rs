//! `stack admin ENDPOINT` and `stack serve`: the commands behind `make stack` and the stack of
//! `make test` (scripts/lib.sh runs them).
//!
//! - `admin`: makes the administrator of a fresh IAM-enforcing moto server and prints its keys
//!   as shell assignments (`STACK_AWS_ACCESS_KEY_ID=…`, `STACK_AWS_SECRET_ACCESS_KEY=…`).
//! - `serve`: deploys and serves until SIGINT or SIGTERM. Reads the stand-ins' variables
//!   ([`StandIns::from_env`]), the administrator's (`STACK_AWS_*`), and the knobs
//!   `STACK_PORT` (default 9100), `STACK_NAME` (favorites-local), `STACK_TEMPLATE`
//!   (template.yaml) and `STACK_PARAMETERS` (`Name=value …` over samconfig.toml's first
//!   environment). Prints `stack database: <admin URL of its database>`, then
//!   `stack ready: <url>` once the API answers.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::{Admin, Options, Stack, StandIns};
use crate::bench::{bin_dir, repo_root};
use crate::rie::Rie;

pub async fn run(args: &[String]) -> Result<()> {
    match args {
        [command, endpoint] if command == "admin" => {
            let admin = Admin::bootstrap(endpoint).await?;
            println!("STACK_AWS_ACCESS_KEY_ID={}", admin.access_key_id);
            println!("STACK_AWS_SECRET_ACCESS_KEY={}", admin.secret_access_key);
            Ok(())
        }
        [command] if command == "serve" => serve().await,
        _ => bail!("usage: stack admin ENDPOINT | stack serve"),
    }
}

async fn serve() -> Result<()> {
    let knob = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    let port: u16 = knob("STACK_PORT", "9100").parse().context("STACK_PORT")?;
    let options = options_from_env(&knob("STACK_NAME", "favorites-local"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port} (STACK_PORT picks another)"))?;
    let stack = Stack::start(&options, listener).await?;
    for difference in &stack.differences {
        eprintln!("stack: unlike AWS: {difference}");
    }
    eprintln!("stack: function logs in {}", options.log_dir.display());
    if let Some(url) = &stack.database_url {
        println!("stack database: {url}");
    }
    println!("stack ready: {}", stack.url);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stack: stopping");
    drop(stack);
    Ok(())
}

/// The options of a stack named `name`, from the environment `make test` and `make stack` set.
pub fn options_from_env(name: &str) -> Result<Options> {
    let root = repo_root();
    let parameters: BTreeMap<String, String> = std::env::var("STACK_PARAMETERS")
        .unwrap_or_default()
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("STACK_PARAMETERS: {pair} is not Name=value"))
        })
        .collect::<Result<_>>()?;
    let log_dir = root.join(".local").join("stack").join(name);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    Ok(Options {
        template: std::env::var("STACK_TEMPLATE").map_or_else(|_| root.join("template.yaml"), Into::into),
        parameters,
        name: name.to_string(),
        python: root.join(".venv/bin/python"),
        rie: Rie::binary()?,
        bin_dir: bin_dir()?,
        log_dir,
        admin: Admin::from_env()?,
        stand_ins: StandIns::from_env()?,
    })
}
