//! The Lambda lifecycle, the same for every function: init (JSON logs, the EMF metrics
//! recorder and its `ColdStart`, the process-wide TLS crypto provider), the function's
//! settings from the environment, the development bootstrap on the embedded default, the
//! function built through one [`Wiring`], the graceful-shutdown extension with what the
//! wiring needs closed, then the runtime loop with the request layer (`http::observe`:
//! request ids, the request span, the metrics flush per answer) around the router.
//!
//! A failure before the loop ends the cold start with the reason in the log. What each
//! function builds is `functions.rs`'s business, not this module's.

use anyhow::Context;

use crate::config::{DatabaseSettings, ProcessEnv, Settings};
use crate::functions::Function;
use crate::http::observe::observed;
use crate::metrics::Counter;
use crate::runtime::Runtime;
use crate::wiring::Wiring;

/// Variables the libraries read themselves, not our settings: template.yaml gives them to every
/// function behind the API, and its check (`shared/tests/template.rs`) requires them there.
pub const READ_BY_LIBRARIES: &[&str] = &[
    // lambda_http: REST API events carry the stage in the path, which the routers must not see.
    "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
];

/// Runs function `F`: cold start (a failed one is reported to the Runtime API), then the
/// runtime loop.
pub async fn run<F: Function>() -> Result<(), lambda_http::Error> {
    init()?;
    let runtime = Runtime::from_env()?;
    let router = observed(runtime.init(cold_start::<F>()).await?);
    match runtime.serve(router, F::RESPONSE).await {}
}

async fn cold_start<F: Function>() -> Result<axum::Router, lambda_http::Error> {
    let settings =
        F::Settings::from_env(&ProcessEnv).inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let wiring = Wiring::default();
    let router = build::<F>(settings, &wiring)
        .await
        .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "cold start failed"))?;
    // Last, so that what it closes exists; before the runtime loop, which ends the init phase.
    crate::shutdown::install(wiring.take_shutdown_hooks()).await;
    Ok(router)
}

async fn build<F: Function>(settings: F::Settings, wiring: &Wiring) -> anyhow::Result<axum::Router> {
    if let Some(data_dir) = settings.embedded_data_dir() {
        crate::development::bootstrap(data_dir)?;
    }
    F::build(settings, wiring).await
}

/// Logs, the TLS crypto provider and metrics (counting this cold start).
fn init() -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    // rustls needs one process-wide crypto provider before any TLS client is built (Redis
    // over TLS); a second install is a harmless error.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    crate::adapters::emf::install(&function_name())
        .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "cold start failed"))?;
    crate::metrics::increment(Counter::ColdStart);
    Ok(())
}

/// The `function` dimension of the metrics: Lambda's function name (the stack's, so that two
/// stacks in one account keep apart), else the binary's name.
fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            let binary = std::env::args_os().next()?;
            Some(
                std::path::Path::new(&binary)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Applies the database migrations. Postgres is migrated only through this deliberate step
/// (the `migrate` function, run by the deploy or by hand), never as a side effect of a cold
/// start: two versions of the code may be live during a deploy.
async fn migrate(settings: &DatabaseSettings, wiring: &Wiring) -> anyhow::Result<()> {
    let database = wiring.connect(settings).await?;
    database.migrate().await?;
    database.close().await;
    Ok(())
}

/// The `migrate` function: a Lambda handler when started by the Lambda runtime (the deploy
/// invokes it), a one-shot command otherwise (`cargo run -p migrate`). It reads the database
/// settings and nothing else.
pub async fn run_migrate() -> Result<(), lambda_http::Error> {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if in_lambda {
        init()?;
    } else {
        crate::telemetry::init();
    }
    let settings = DatabaseSettings::from_env(&ProcessEnv)
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    if let Some(data_dir) = settings.embedded_data_dir() {
        crate::development::bootstrap(data_dir)?;
    }
    let wiring = Wiring::default();
    if !in_lambda {
        migrate(&settings, &wiring)
            .await
            .inspect_err(|e| tracing::error!(error = format!("{e:#}"), "migration failed"))?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    crate::shutdown::install(wiring.take_shutdown_hooks()).await;
    let runtime = Runtime::from_env()?;
    let (settings, wiring) = (&settings, &wiring);
    let served = runtime.serve_events(move |_| async move {
        let migrated = migrate(settings, wiring).await.context("migrating");
        // No HTTP layer here to flush at the end of the answer.
        crate::metrics::flush();
        migrated.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "migration failed");
            lambda_http::Error::from(format!("{e:#}"))
        })?;
        Ok::<_, lambda_http::Error>(serde_json::json!({ "status": "migrated" }))
    });
    match served.await {}
}
