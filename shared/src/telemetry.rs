//! Logging: JSON lines on stdout, which Lambda ships to CloudWatch Logs as they are.
//! `RUST_LOG` (or `LOG_LEVEL`) sets the filter; the default keeps our crate at info and
//! the libraries at warn.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "warn,shared=info,lambda_runtime=error".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .try_init();
}
