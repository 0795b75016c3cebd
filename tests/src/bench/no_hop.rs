//! list-favorites without the emulator's relay hop: the same binary on a runtime API stand-in of
//! its own (`crate::runtime_api`), handed the list event of `events/` directly.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::function_binary;
use crate::events;
use crate::runtime_api::{Acks, Answer, FunctionProcess, Options, RuntimeApi};

pub struct NoHop {
    runtime: RuntimeApi,
    pub process: FunctionProcess,
}

impl NoHop {
    /// Starts list-favorites with `env`, what Lambda sets, and `memory_mb` as its memory size.
    pub async fn start(acks: Acks, env: &[(&str, String)], memory_mb: u32) -> anyhow::Result<Self> {
        // The prelude and the body's first bytes are enough: answers are counted, not kept.
        let runtime = RuntimeApi::start_with(Options { acks, body_limit: 4096 }).await?;
        let lambda = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("AWS_LAMBDA_FUNCTION_NAME", "list-favorites".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", super::log_stream()),
        ];
        let all: Vec<(String, String)> = env
            .iter()
            .chain(lambda.iter())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let process = FunctionProcess::spawn(&function_binary("list-favorites")?, &runtime, &all)?;
        Ok(Self { runtime, process })
    }

    /// `GET /favorites?limit=<limit>` with `token`; the answer, whatever it is.
    pub async fn list(&self, token: &str, limit: &str, within: Duration) -> anyhow::Result<Answer> {
        self.get(token, json!({"limit": limit}), json!({}), within).await
    }

    /// `GET /favorites` with `token`, these query parameters and these headers (JSON objects of
    /// strings); the answer, whatever it is.
    pub async fn get(&self, token: &str, query: Value, headers: Value, within: Duration) -> anyhow::Result<Answer> {
        let event = events::event(
            "list-favorites/first-page-200.json",
            events::both(
                events::bearer(token),
                json!({"queryStringParameters": query, "headers": headers}),
            ),
        )?;
        self.runtime.call(event, within).await.with_context(|| {
            format!(
                "the no-hop function's last lines:\n{}",
                self.process.last_lines(20).join("\n")
            )
        })
    }
}
